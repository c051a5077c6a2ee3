"""The chamber key API end to end: real signer processes, SQLite files, the real CLI for setup.

Issue #7's acceptance points, each proven against a running signer (``tests.vault_support.
Chamber``: waitress on a random loopback port, a SQLite key store and state, the local KMS,
``operator init`` in KMS-only mode through the CLI):

1. Generation: the ``backup`` column is read straight from the key store file and decrypted
   here with the test's own age identity; the mnemonic is re-derived with an EIP-2333 / BIP-39
   implementation written in this file (checked against the EIP's own vectors) and py_ecc; the
   key then signs through ``/api/v1/eth2/sign`` and py_ecc checks the signature.
   ``per_key`` and ``per_batch`` mnemonics.
2. Deposit data: every entry recomputed with remerkleable + hashlib + py_ecc
   (``tests.test_deposit_data.check_entry``), withdrawal credentials rebuilt byte by byte (0x01,
   0x02, 0x00 from the backed-up mnemonic's withdrawal key).
3. Import: good, malformed, wrong-password, duplicate keystores and raw keys in one request;
   exactly the good ones land in the store file and sign; every other gets its own result.
4. Lifecycle: deactivate (unsignable once the PATCH has returned), activate, delete (with the
   key's slashing history), delete again.
5. Limits and refusals: item caps, generate disabled, sealed, the concurrency cap, the request
   deadline, scopes, malformed input; refused requests leave the store file byte-identical.

Finally nothing secret (key secrets, mnemonics, keystore passwords, the age identity, tokens)
appears in any HTTP answer, CLI output or server log line, nor in clear in the database files.

Four signers, one per configuration, started side by side once for the module: ``main``
(generate with backup, ``per_key``), ``batch`` (``per_batch``), ``nobackup`` (generate without
backup, sealed by its last test) and ``limits`` (generate disabled, one import at a time, a 1 s
import deadline, no time at all for lifecycle requests). Tests run in file order; each creates
the keys it needs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyrage
import pytest
import yaml
from eth_typing import BLSPubkey, BLSSignature
from mnemonic import Mnemonic
from py_ecc.bls import G2ProofOfPossession as reference_bls
from pyrage import x25519

from chamber.crypto.keystore import MAX_PBKDF2_ITERATIONS, encrypt_keystore
from tests import bodies, harness
from tests.harness import CURVE_ORDER, Response, make_keys
from tests.ssz_oracle import ORACLE_MAINNET, oracle_request_root
from tests.test_deposit_data import ADDRESS, ADDRESS_2, check_entry
from tests.vault_support import OPS_TOKEN, SIGNING_TOKEN, Chamber, encodings, vault_config

KEYS = "/api/v1/chamber/keys"
GENERATE = f"{KEYS}/generate"
IMPORT = f"{KEYS}/import"
WRITER_TOKEN = "writer-token-keys-api-7c4e19b2d0a6"
KMS_KEYS = "local:keys-api-a,local:keys-api-b,local:keys-api-c"
GWEI = 10**9
ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"
#: Cheap keystore KDFs: the import path is what is tested, not the KDF's cost.
PBKDF2_FAST = {"c": 1024}
SCRYPT_FAST = {"n": 1024, "r": 8, "p": 1}
#: The ``limits`` signer's import deadline, and how long a "slow" keystore's KDF is made to
#: take on this machine (calibrated below): far beyond the deadline, whatever the CPU.
IMPORT_DEADLINE = 1.0
SLOW_KDF_SECONDS = 2.0
LIFECYCLE_DEADLINE = 1e-9
#: Keys one import request may carry on the ``main`` signer.
IMPORT_CAP = 13
BACKUP_FIELDS = {"format", "kind", "mnemonic", "path", "index", "pubkey"}
#: A key every test of the ``main`` signer may rely on being stored and active.
ANCHOR = make_keys(1, seed="keys-api-anchor")[0]


# ---------------------------------------------------------------------- independent oracle
#
# BIP-39 seed and EIP-2333 key derivation written from the specifications with hashlib / hmac
# only (nothing from chamber), checked against the EIP's published vectors below.


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _hkdf_mod_r(ikm: bytes) -> int:
    salt, sk = b"BLS-SIG-KEYGEN-SALT-", 0
    while sk == 0:
        salt = hashlib.sha256(salt).digest()
        okm = _hkdf_expand(_hkdf_extract(salt, ikm + b"\x00"), (48).to_bytes(2, "big"), 48)
        sk = int.from_bytes(okm, "big") % CURVE_ORDER
    return sk


def _lamport_chunks(ikm: bytes, salt: bytes) -> list[bytes]:
    okm = _hkdf_expand(_hkdf_extract(salt, ikm), b"", 32 * 255)
    return [okm[i : i + 32] for i in range(0, len(okm), 32)]


def _child_sk(parent: int, index: int) -> int:
    salt = index.to_bytes(4, "big")
    ikm = parent.to_bytes(32, "big")
    chunks = _lamport_chunks(ikm, salt) + _lamport_chunks(bytes(b ^ 0xFF for b in ikm), salt)
    lamport_pk = b"".join(hashlib.sha256(chunk).digest() for chunk in chunks)
    return _hkdf_mod_r(hashlib.sha256(lamport_pk).digest())


def oracle_seed(mnemonic: str, passphrase: str = "") -> bytes:
    words = unicodedata.normalize("NFKD", mnemonic).encode()
    salt = ("mnemonic" + unicodedata.normalize("NFKD", passphrase)).encode()
    return hashlib.pbkdf2_hmac("sha512", words, salt, 2048)


def oracle_derive(mnemonic: str, path: str) -> int:
    nodes = path.split("/")
    assert nodes[0] == "m"
    sk = _hkdf_mod_r(oracle_seed(mnemonic))
    for node in nodes[1:]:
        sk = _child_sk(sk, int(node))
    return sk


def test_oracle_matches_the_eip2333_vectors() -> None:
    # EIP-2333 test cases 0 and 1 (case 0's seed is BIP-39's "abandon ... about" / "TREZOR").
    seed = oracle_seed("abandon " * 11 + "about", "TREZOR")
    assert seed.hex().startswith("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e534")
    master = _hkdf_mod_r(seed)
    assert master == 6083874454709270928345386274498605044986640685124978867557563392430687146096
    assert _child_sk(master, 0) == (
        20397789859736650942317412262472558107875392172444076792671091975210932703118
    )
    seed = bytes.fromhex("3141592653589793238462643383279502884197169399375105820974944592")
    master = _hkdf_mod_r(seed)
    assert master == (29757020647961307431480504535336562678282505419141012933316116377660817309383)
    assert _child_sk(master, 3141592653) == (
        25457201688850691947727629385191704516744796114925897962676248250929345014287
    )


# ---------------------------------------------------------------------- the signers


@dataclass
class Rig:
    """One running signer of this module, and every secret it was given or made."""

    name: str
    chamber: Chamber
    identity: x25519.Identity | None = None
    #: name -> text that must never appear in an answer, an output or a log line.
    secrets: dict[str, str] = field(default_factory=dict)
    #: raw secret bytes that must never be stored in clear.
    raw_secrets: dict[str, bytes] = field(default_factory=dict)

    @property
    def store_path(self) -> Path:
        return self.chamber.root / "keys.sqlite"

    def remember(self, key: harness.TestKey, what: str) -> None:
        self.secrets[f"secret of {what}"] = key.secret_hex[2:]
        self.raw_secrets[f"secret of {what}"] = key.secret.to_bytes(32, "big")

    # -------------------------------------------------------------- HTTP

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = OPS_TOKEN
    ) -> Response:
        return self.chamber.http(method, path, body, token)

    def ok(self, method: str, path: str, body: Any = None, token: str | None = OPS_TOKEN) -> Any:
        response = self.request(method, path, body, token)
        assert response.status == 200, (method, path, response.status, response.body)
        return response.json()

    def generate(self, **body: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.ok("POST", GENERATE, body)
        return answer

    def import_(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.ok("POST", IMPORT, body)["data"]
        return answer

    def set_status(self, pubkeys: list[str], status: str) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.ok(
            "PATCH", KEYS, {"pubkeys": pubkeys, "status": status}
        )["data"]
        return answer

    def sign(self, pubkey_hex: str, body: dict[str, Any]) -> Response:
        return self.chamber.sign(pubkey_hex, body)

    # -------------------------------------------------------------- the store file

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every row of the key store, read straight from the SQLite file (read-only)."""
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT pubkey, ciphertext, status, origin, created_at, backup FROM validator_keys"
            ).fetchall()
        finally:
            conn.close()
        return {
            "0x" + bytes(pubkey).hex(): {
                "ciphertext": bytes(ciphertext),
                "status": status,
                "origin": origin,
                "created_at": created_at,
                "backup": None if backup is None else bytes(backup),
            }
            for pubkey, ciphertext, status, origin, created_at, backup in found
        }

    def store_bytes(self) -> dict[str, bytes]:
        """The store's database and write-ahead log, byte for byte (not the -shm index, which
        readers touch)."""
        return {
            path.name: path.read_bytes()
            for path in (self.store_path, self.store_path.with_name("keys.sqlite-wal"))
            if path.exists()
        }

    def backup(self, pubkey_hex: str) -> dict[str, Any]:
        """The stored backup of ``pubkey_hex``, decrypted with this test's age identity."""
        assert self.identity is not None
        blob = self.rows()[pubkey_hex]["backup"]
        assert blob is not None and blob.startswith(ARMOR), blob
        payload: dict[str, Any] = json.loads(pyrage.decrypt(blob, [self.identity]))
        self.secrets[f"mnemonic of {pubkey_hex}"] = payload["mnemonic"]
        return payload


@contextmanager
def _start(
    root: Path, name: str, keys: dict[str, Any], identity: x25519.Identity | None = None
) -> Iterator[Rig]:
    """A signer with ``chamber.keys: keys``, initialised (KMS-only) through the CLI."""
    chamber = Chamber(root)
    chamber.env["WRITER_TOKEN"] = WRITER_TOKEN
    config = vault_config(root)
    policies = config["auth_policies"]
    policies["ops-team"]["allowed_scopes"] = [
        "chamber_seal",
        "chamber_status",
        "chamber_keys_list",
        "chamber_keys_generate",
        "chamber_keys_write",
        "chamber_keys_delete",
    ]
    # Everything on keys except generating them.
    policies["keys-writer"] = {
        "token": "env:WRITER_TOKEN",
        "allowed_scopes": ["chamber_keys_list", "chamber_keys_write", "chamber_keys_delete"],
    }
    config["chamber"] = {"keys": keys}
    chamber.config_path.write_text(yaml.safe_dump(config))
    chamber.start()
    rig = Rig(name, chamber, identity)
    rig.secrets.update(
        {"ops token": OPS_TOKEN, "signing token": SIGNING_TOKEN, "writer token": WRITER_TOKEN}
    )
    if identity is not None:
        rig.secrets["age identity"] = str(identity)
    try:
        setup_token = chamber.wait_setup_token()
        answer = chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            KMS_KEYS,
            "--kms-threshold",
            "2",
            env={"SETUP_TOKEN": setup_token},
        ).json()
        assert answer == {"status": "unsealed", "validators_loaded": 0}
        yield rig
    finally:
        chamber.stop()


def _with_backup(identity: x25519.Identity, **generate: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "backup": {"enabled": True, "recipients": [str(identity.to_public())]},
        **generate,
    }


def _configurations() -> dict[str, tuple[dict[str, Any], x25519.Identity | None]]:
    """``chamber.keys`` (and the backup's age identity) of each signer of this module."""
    main_identity, batch_identity = x25519.Identity.generate(), x25519.Identity.generate()
    return {
        "main": (
            {
                "generate": _with_backup(
                    main_identity, mnemonic="per_key", max_items_per_request=4
                ),
                "import": {"max_items_per_request": IMPORT_CAP},
                "lifecycle": {"max_items_per_request": 3},
            },
            main_identity,
        ),
        "batch": ({"generate": _with_backup(batch_identity, mnemonic="per_batch")}, batch_identity),
        "nobackup": ({"generate": {"enabled": True}}, None),
        # Generate stays at its default (disabled); one import at a time, with a short deadline;
        # lifecycle requests run out of time before their first key.
        "limits": (
            {
                "import": {
                    "max_concurrent_requests": 1,
                    "request_timeout_seconds": IMPORT_DEADLINE,
                },
                "lifecycle": {"request_timeout_seconds": LIFECYCLE_DEADLINE},
            },
            None,
        ),
    }


@pytest.fixture(scope="module")
def rigs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Rig]]:
    """The four signers, started (and stopped) side by side: each start is mostly waiting."""
    configurations = _configurations()
    roots = {name: tmp_path_factory.mktemp(f"keys-api-{name}") for name in configurations}
    managers: dict[str, Any] = {}

    def enter(name: str) -> Rig:
        keys, identity = configurations[name]
        managers[name] = manager = _start(roots[name], name, keys, identity)
        rig: Rig = manager.__enter__()
        return rig

    def leave(name: str) -> None:
        managers[name].__exit__(None, None, None)

    with ThreadPoolExecutor(len(configurations)) as pool:
        futures = {name: pool.submit(enter, name) for name in configurations}
        wait(futures.values())
        try:
            started = {name: future.result() for name, future in futures.items()}
        except BaseException:
            list(pool.map(leave, [n for n, f in futures.items() if f.exception() is None]))
            raise
    try:
        main = started["main"]
        main.remember(ANCHOR, "the anchor key")
        assert main.import_({"raw_keys": [{"secret": ANCHOR.secret_hex}]}) == [
            {"status": "imported", "pubkey": ANCHOR.pubkey_hex}
        ]
        yield started
    finally:
        with ThreadPoolExecutor(len(started)) as pool:
            stopped = [pool.submit(leave, name) for name in started]
        for future in stopped:
            future.result()  # a signer that did not exit cleanly fails the module


@pytest.fixture(scope="module")
def main(rigs: dict[str, Rig]) -> Rig:
    """Generate with backup, ``per_key``; small item caps; :data:`ANCHOR` stored."""
    return rigs["main"]


@pytest.fixture(scope="module")
def batch(rigs: dict[str, Rig]) -> Rig:
    """Generate with backup, ``per_batch``."""
    return rigs["batch"]


@pytest.fixture(scope="module")
def nobackup(rigs: dict[str, Rig]) -> Rig:
    """Generate without backup; sealed by the last test that uses it."""
    return rigs["nobackup"]


@pytest.fixture(scope="module")
def limits(rigs: dict[str, Rig]) -> Rig:
    """Generate disabled, one import at a time, 1 s import deadline, no lifecycle time."""
    return rigs["limits"]


# ---------------------------------------------------------------------- helpers


def signing_root(body: dict[str, Any]) -> bytes:
    return oracle_request_root(body, ORACLE_MAINNET)


def assert_signs(rig: Rig, pubkey_hex: str, sk: int, epoch: int, *, verify: bool = False) -> bytes:
    """``pubkey_hex`` signs a RANDAO reveal through the API, and the signature is the one py_ecc
    makes with ``sk`` (BLS signatures are deterministic); with ``verify``, py_ecc also verifies
    it against the public key (slower: a pairing)."""
    body = bodies.randao(epoch)
    response = rig.sign(pubkey_hex, body)
    assert response.status == 200, (pubkey_hex, response.status, response.body)
    signature = bytes.fromhex(response.json()["signature"][2:])
    root = signing_root(body)
    assert signature == reference_bls.Sign(sk, root)
    if verify:
        assert reference_bls.Verify(
            BLSPubkey(bytes.fromhex(pubkey_hex[2:])), root, BLSSignature(signature)
        )
    return signature


def assert_unsignable(rig: Rig, pubkey_hex: str) -> None:
    response = rig.sign(pubkey_hex, bodies.randao())
    assert response.status == 404, (response.status, response.body)


def check_backup(payload: dict[str, Any], pubkey_hex: str, index: int) -> int:
    """The decrypted backup is a complete format-1 document whose mnemonic really gives
    ``pubkey_hex`` at ``m/12381/3600/<index>/0/0``; returns the re-derived secret key."""
    assert set(payload) == BACKUP_FIELDS
    assert payload["format"] == 1
    assert payload["kind"] == "bip39-mnemonic"
    assert payload["index"] == index
    assert payload["path"] == f"m/12381/3600/{index}/0/0"
    assert payload["pubkey"] == pubkey_hex
    mnemonic = payload["mnemonic"]
    assert len(mnemonic.split()) == 24
    assert Mnemonic("english").check(mnemonic), "not a valid BIP-39 mnemonic (checksum)"
    sk = oracle_derive(mnemonic, payload["path"])
    assert 0 < sk < CURVE_ORDER
    assert reference_bls.SkToPk(sk) == bytes.fromhex(pubkey_hex[2:])
    return sk


def generated(answer: dict[str, Any], count: int, paths: list[str]) -> list[str]:
    data = answer["data"]
    assert len(data) == count
    for entry, path in zip(data, paths, strict=True):
        assert entry == {
            "status": "generated",
            "pubkey": entry["pubkey"],
            "path": path,
            "backup": True,
        }
    pubkeys = [entry["pubkey"] for entry in data]
    assert len(set(pubkeys)) == count
    return pubkeys


def assert_stored(rig: Rig, pubkeys: list[str], origin: str, *, backup: bool) -> None:
    rows = rig.rows()
    for pubkey in pubkeys:
        row = rows[pubkey]
        assert (row["status"], row["origin"]) == ("active", origin), pubkey
        assert (row["backup"] is not None) == backup


def withdrawal_pubkey(mnemonic: str, index: int) -> bytes:
    return bytes(reference_bls.SkToPk(oracle_derive(mnemonic, f"m/12381/3600/{index}/0")))


def keystore(
    key: harness.TestKey,
    password: str,
    *,
    kdf: Literal["scrypt", "pbkdf2"] = "pbkdf2",
    index: int = 0,
) -> dict[str, Any]:
    params = PBKDF2_FAST if kdf == "pbkdf2" else SCRYPT_FAST
    return encrypt_keystore(
        key.secret.to_bytes(32, "big"),
        password,
        kdf=kdf,
        kdf_params=params,
        pubkey=key.pubkey,
        path=f"m/12381/3600/{index}/0/0",
    )


@functools.cache
def slow_pbkdf2_iterations() -> int:
    """PBKDF2 iterations that take about :data:`SLOW_KDF_SECONDS` here (the signer's workers
    run on the same CPUs), within what the signer accepts."""
    probe = 1 << 17
    # The fastest of several probes: a busy moment would make one probe slow, the KDF sized
    # from it too fast, and the "slow" keystore could then finish before its deadline.
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"probe", b"salt", probe)
        timings.append(time.perf_counter() - started)
    took = max(min(timings), 1e-4)
    return min(MAX_PBKDF2_ITERATIONS, max(probe, int(probe * SLOW_KDF_SECONDS / took)))


def slow_keystore(key: harness.TestKey) -> dict[str, Any]:
    """A keystore whose KDF takes seconds. Built cheaply: a fast keystore with its cost raised
    afterwards (so it would decrypt to "wrong password" if it were ever reached)."""
    document = encrypt_keystore(
        key.secret.to_bytes(32, "big"), "slow", kdf="pbkdf2", kdf_params=PBKDF2_FAST
    )
    document["crypto"]["kdf"]["params"]["c"] = slow_pbkdf2_iterations()
    return document


def fake_pubkey(seed: str) -> str:
    return make_keys(1, seed=seed)[0].pubkey_hex


# ---------------------------------------------------------------------- 1. generation


def test_generate_per_key_backups_rederive_and_sign(main: Rig) -> None:
    answer = main.generate(count=3)
    assert answer["mnemonic"] == "per_key"
    assert answer["deposit_data"] == []  # no withdrawal credentials asked for
    pubkeys = generated(answer, 3, ["m/12381/3600/0/0/0"] * 3)
    assert_stored(main, pubkeys, "generated", backup=True)

    mnemonics = set()
    for position, pubkey in enumerate(pubkeys):
        payload = main.backup(pubkey)
        sk = check_backup(payload, pubkey, index=0)
        mnemonics.add(payload["mnemonic"])
        assert_signs(main, pubkey, sk, bodies.BASE_EPOCH + position, verify=position == 0)
    assert len(mnemonics) == 3, "per_key: every key has its own mnemonic"

    listed = {entry["pubkey"]: entry for entry in main.ok("GET", KEYS)["data"]}
    for pubkey in pubkeys:
        assert listed[pubkey] == {
            "pubkey": pubkey,
            "store": "sqlite",
            "status": "active",
            "origin": "generated",
            "created_at": listed[pubkey]["created_at"],
            "backup": True,
            "loaded": True,
        }


def test_generate_per_batch_one_mnemonic_consecutive_indices(batch: Rig) -> None:
    answer = batch.generate(count=3, bls_withdrawal=True)
    assert answer["mnemonic"] == "per_batch"
    paths = [f"m/12381/3600/{i}/0/0" for i in range(3)]
    pubkeys = generated(answer, 3, paths)
    assert_stored(batch, pubkeys, "generated", backup=True)

    payloads = [batch.backup(pubkey) for pubkey in pubkeys]
    assert len({p["mnemonic"] for p in payloads}) == 1, "per_batch: one mnemonic for the batch"
    mnemonic = payloads[0]["mnemonic"]
    secrets = [
        check_backup(payload, pubkey, index)
        for index, (payload, pubkey) in enumerate(zip(payloads, pubkeys, strict=True))
    ]

    # 0x00 credentials: sha256 of the withdrawal key at m/12381/3600/i/0, first byte 0.
    entries = answer["deposit_data"]
    assert [e["pubkey"] for e in entries] == [p[2:] for p in pubkeys]
    for index, (entry, sk) in enumerate(zip(entries, secrets, strict=True)):
        expected = b"\x00" + hashlib.sha256(withdrawal_pubkey(mnemonic, index)).digest()[1:]
        assert bytes.fromhex(entry["withdrawal_credentials"]) == expected
        assert entry["amount"] == 32 * GWEI
        check_entry(entry, sk, bytes(4))

    for index, (pubkey, sk) in enumerate(zip(pubkeys, secrets, strict=True)):
        assert_signs(batch, pubkey, sk, bodies.BASE_EPOCH + index, verify=index == 2)

    # The next request is a new batch: a new mnemonic, indices from 0 again.
    again = batch.generate(count=2)
    more = generated(again, 2, paths[:2])
    second = [batch.backup(pubkey) for pubkey in more]
    assert second[0]["mnemonic"] == second[1]["mnemonic"] != mnemonic
    for index, pubkey in enumerate(more):
        check_backup(second[index], pubkey, index)


# ---------------------------------------------------------------------- 2. deposit data


def test_generate_deposit_data_execution_and_compounding(main: Rig) -> None:
    answer = main.generate(count=2, withdrawal_address=ADDRESS)
    pubkeys = generated(answer, 2, ["m/12381/3600/0/0/0"] * 2)
    entries = answer["deposit_data"]
    assert [e["pubkey"] for e in entries] == [p[2:] for p in pubkeys]
    for entry, pubkey in zip(entries, pubkeys, strict=True):
        sk = check_backup(main.backup(pubkey), pubkey, 0)
        assert bytes.fromhex(entry["withdrawal_credentials"]) == (
            b"\x01" + bytes(11) + bytes.fromhex(ADDRESS[2:])
        )
        assert entry["amount"] == 32 * GWEI
        assert entry["network_name"] == "mainnet"
        check_entry(entry, sk, bytes(4))  # signature verified by py_ecc under DOMAIN_DEPOSIT

    amount = 2048 * GWEI
    answer = main.generate(
        count=1, withdrawal_address=ADDRESS_2, compounding=True, amount_gwei=amount
    )
    [pubkey] = generated(answer, 1, ["m/12381/3600/0/0/0"])
    [entry] = answer["deposit_data"]
    assert entry["pubkey"] == pubkey[2:]
    assert bytes.fromhex(entry["withdrawal_credentials"]) == (
        b"\x02" + bytes(11) + bytes.fromhex(ADDRESS_2[2:])
    )
    assert entry["amount"] == amount
    check_entry(entry, check_backup(main.backup(pubkey), pubkey, 0), bytes(4))


def test_generate_bls_withdrawal_with_backup(main: Rig) -> None:
    answer = main.generate(count=1, bls_withdrawal=True)
    [pubkey] = generated(answer, 1, ["m/12381/3600/0/0/0"])
    [entry] = answer["deposit_data"]
    payload = main.backup(pubkey)
    sk = check_backup(payload, pubkey, 0)
    credentials = bytes.fromhex(entry["withdrawal_credentials"])
    assert credentials[0] == 0
    assert credentials == (
        b"\x00" + hashlib.sha256(withdrawal_pubkey(payload["mnemonic"], 0)).digest()[1:]
    )
    check_entry(entry, sk, bytes(4))


def test_bls_withdrawal_without_backup_is_refused(nobackup: Rig) -> None:
    before = nobackup.store_bytes()
    response = nobackup.request("POST", GENERATE, {"count": 1, "bls_withdrawal": True})
    assert response.status == 400, response.body
    answer = response.json()
    assert answer["field"] == "bls_withdrawal"
    assert "chamber.keys.generate.backup" in answer["message"]
    assert nobackup.store_bytes() == before
    assert nobackup.rows() == {}
    # Without the backup, execution credentials are fine (and nothing is backed up).
    generated_answer = nobackup.generate(count=1, withdrawal_address=ADDRESS)
    [result] = generated_answer["data"]
    assert result["status"] == "generated" and result["backup"] is False
    assert nobackup.rows()[result["pubkey"]]["backup"] is None
    assert len(generated_answer["deposit_data"]) == 1


# ---------------------------------------------------------------------- 3. import


def test_import_good_bad_duplicate_and_raw_keys(main: Rig) -> None:
    k0, k1, k2, k3, k4, k5, r1, r2, r3, other = make_keys(10, seed="keys-api-import")
    passwords = {
        "k0": "pw-k0-Quartz-lantern-91",
        "k1": "pw-k1-Ember-Harbour-37",
        "k2": "pw-k2-Cobalt-meadow-55",
        "k3": "pw-k3-Saffron-Tundra-08",
        "k4": "pw-k4-Willow-Gravel-64",
        "k5": "pw-k5-Juniper-Falcon-29",
        "junk": "pw-junk-Nimbus-Orchid-12",
        "wrong": "pw-wrong-Definitely-Not-It-73",
    }
    for name, key in zip(
        ["k0", "k1", "k2", "k3", "k4", "k5", "r1", "r2", "r3"],
        [k0, k1, k2, k3, k4, k5, r1, r2, r3],
        strict=True,
    ):
        main.remember(key, f"import key {name}")
    main.secrets.update({f"password {name}": pw for name, pw in passwords.items()})

    # Stored by an earlier request.
    assert main.import_(
        {"keystores": [keystore(k0, passwords["k0"])], "passwords": [passwords["k0"]]}
    ) == [{"status": "imported", "pubkey": k0.pubkey_hex}]
    before = main.rows()

    no_crypto = keystore(k2, passwords["k2"])
    del no_crypto["crypto"]
    lying = keystore(k5, passwords["k5"])
    lying["pubkey"] = other.pubkey_hex[2:]  # decrypts fine, but to another key than it claims
    request = {
        "keystores": [
            json.dumps(keystore(k1, passwords["k1"])),  # JSON text, as the keymanager API has it
            '{"crypto": {"kdf": ',  # malformed JSON text
            no_crypto,
            keystore(k3, passwords["k3"]),  # given the wrong password below
            keystore(k1, passwords["k1"]),  # the same key again, in the same request
            keystore(k0, passwords["k0"]),  # stored by the previous request
            keystore(k4, passwords["k4"], kdf="scrypt"),
            "[1, 2]",  # JSON, but no object
            lying,
        ],
        "passwords": [
            passwords["k1"],
            passwords["junk"],
            passwords["k2"],
            passwords["wrong"],
            passwords["k1"],
            passwords["k0"],
            passwords["k4"],
            passwords["junk"],
            passwords["k5"],
        ],
        "raw_keys": [
            {"secret": r1.secret_hex},
            {"secret": r2.secret_hex[2:].upper(), "pubkey": r2.pubkey_hex[2:].upper()},
            {"secret": r3.secret_hex, "pubkey": other.pubkey_hex},  # not r3's public key
            {"secret": k4.secret_hex, "pubkey": k4.pubkey_hex},  # keystore 6's key again
        ],
    }
    results = main.import_(request)
    assert len(results) == IMPORT_CAP  # exactly at the cap: allowed
    assert results[0] == {"status": "imported", "pubkey": k1.pubkey_hex}
    assert results[1] == {"status": "error", "message": "keystore 1: not valid JSON"}
    assert results[2]["status"] == "error" and set(results[2]) == {"status", "message"}
    assert results[2]["message"].startswith("keystore 2: ") and "crypto" in results[2]["message"]
    assert results[3]["status"] == "error" and set(results[3]) == {"status", "message"}
    assert results[3]["message"].startswith("keystore 3: ")
    assert "wrong password" in results[3]["message"]
    assert results[4] == {"status": "duplicate", "pubkey": k1.pubkey_hex}
    assert results[5] == {"status": "duplicate", "pubkey": k0.pubkey_hex}
    assert results[6] == {"status": "imported", "pubkey": k4.pubkey_hex}
    assert results[7] == {"status": "error", "message": "keystore 7: not a JSON object"}
    assert results[8]["status"] == "error" and set(results[8]) == {"status", "message"}
    assert results[8]["message"].startswith("keystore 8: the public key given for it")
    assert other.pubkey_hex in results[8]["message"] and k5.pubkey_hex in results[8]["message"]
    assert results[9] == {"status": "imported", "pubkey": r1.pubkey_hex}
    assert results[10] == {"status": "imported", "pubkey": r2.pubkey_hex}
    assert results[11]["status"] == "error" and set(results[11]) == {"status", "message"}
    assert results[11]["message"].startswith("raw key 2: the public key given for it")
    assert other.pubkey_hex in results[11]["message"] and r3.pubkey_hex in results[11]["message"]
    assert results[12] == {"status": "duplicate", "pubkey": k4.pubkey_hex}

    # Exactly the good ones were written, as active imported keys without backup.
    rows = main.rows()
    new = {pubkey for pubkey in rows if pubkey not in before}
    good = [k1, k4, r1, r2]
    assert new == {key.pubkey_hex for key in good}
    assert_stored(main, [key.pubkey_hex for key in good], "imported", backup=False)
    for key in (k2, k3, k5, r3, other):
        assert key.pubkey_hex not in rows
    for pubkey, row in before.items():
        assert rows[pubkey] == row, "an existing row changed"
    for epoch, key in enumerate(good, start=bodies.BASE_EPOCH):
        assert_signs(main, key.pubkey_hex, key.secret, epoch, verify=key is r2)

    # No secret nor password in any answer or server log line so far.
    texts = [text for _, text in main.chamber.transcript] + main.chamber.server_log_lines()
    for name, secret in main.secrets.items():
        for text in texts:
            assert secret.lower() not in text.lower(), f"{name} leaked"


# ---------------------------------------------------------------------- 4. lifecycle


def test_lifecycle_deactivate_activate_delete(main: Rig) -> None:
    key = make_keys(1, seed="keys-api-lifecycle")[0]
    main.remember(key, "the lifecycle key")
    pubkey = key.pubkey_hex
    unknown = fake_pubkey("keys-api-never-stored")
    assert main.import_({"raw_keys": [{"secret": key.secret_hex}]})[0]["status"] == "imported"

    # An attestation now, to find in the slashing history exported by the deletion.
    attestation = bodies.attestation(bodies.BASE_EPOCH - 1, bodies.BASE_EPOCH)
    response = main.sign(pubkey, attestation)
    assert response.status == 200, response.body
    root = signing_root(attestation)
    assert bytes.fromhex(response.json()["signature"][2:]) == reference_bls.Sign(key.secret, root)

    # Deactivate while a client keeps signing: every request sent after the PATCH returned is
    # refused (the key is unsignable before the answer, not eventually).
    stop = threading.Event()
    seen: list[tuple[float, int]] = []

    def hammer() -> None:
        epoch = bodies.BASE_EPOCH
        while not stop.is_set():
            sent = time.monotonic()
            status = main.sign(pubkey, bodies.randao(epoch)).status
            seen.append((sent, status))
            epoch += 1

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert main.set_status([pubkey], "inactive") == [{"status": "deactivated", "pubkey": pubkey}]
    returned = time.monotonic()
    assert_unsignable(main, pubkey)
    time.sleep(0.3)
    stop.set()
    thread.join(10)
    assert any(status == 200 for sent, status in seen if sent < returned), seen
    after = [status for sent, status in seen if sent > returned]
    assert after and set(after) == {404}, seen
    assert main.rows()[pubkey]["status"] == "inactive"
    listed = {e["pubkey"]: e for e in main.ok("GET", KEYS, None)["data"]}
    assert (listed[pubkey]["status"], listed[pubkey]["loaded"]) == ("inactive", False)
    inactive = {e["pubkey"] for e in main.ok("GET", f"{KEYS}?status=inactive")["data"]}
    assert pubkey in inactive and ANCHOR.pubkey_hex not in inactive

    # Per key, in request order.
    assert main.set_status([pubkey, unknown], "inactive") == [
        {"status": "unchanged", "pubkey": pubkey},
        {
            "status": "not_found",
            "pubkey": unknown,
            "message": "no encrypted key store holds this key",
        },
    ]
    assert main.set_status([unknown, pubkey, ANCHOR.pubkey_hex], "active") == [
        {
            "status": "not_found",
            "pubkey": unknown,
            "message": "no encrypted key store holds this key",
        },
        {"status": "activated", "pubkey": pubkey},
        {"status": "unchanged", "pubkey": ANCHOR.pubkey_hex},
    ]
    assert main.rows()[pubkey]["status"] == "active"
    assert_signs(main, pubkey, key.secret, bodies.BASE_EPOCH + 10_000)

    # Delete: unsignable, the row gone, and the key's history handed over (EIP-3076).
    answer = main.ok("DELETE", KEYS, {"pubkeys": [pubkey, unknown]})
    assert answer["data"] == [
        {"status": "deleted", "pubkey": pubkey},
        {"status": "not_found", "pubkey": unknown},
    ]
    interchange = answer["slashing_protection"]
    assert interchange["metadata"] == {
        "interchange_format_version": "5",
        "genesis_validators_root": bodies.MAINNET_GVR,
    }
    [history] = interchange["data"]
    assert history["pubkey"] == pubkey
    assert history["signed_blocks"] == []
    assert history["signed_attestations"] == [
        {
            "source_epoch": str(bodies.BASE_EPOCH - 1),
            "target_epoch": str(bodies.BASE_EPOCH),
            "signing_root": "0x" + root.hex(),
        }
    ]
    assert_unsignable(main, pubkey)
    assert pubkey not in main.rows()
    assert pubkey not in {e["pubkey"] for e in main.ok("GET", KEYS)["data"]}

    again = main.ok("DELETE", KEYS, {"pubkeys": [pubkey]})
    assert again["data"] == [{"status": "not_found", "pubkey": pubkey}]
    # Gone from the key store, the history stays in the slashing database.
    assert [e["pubkey"] for e in again["slashing_protection"]["data"]] == [pubkey]
    assert main.set_status([pubkey], "active")[0]["status"] == "not_found"
    assert_signs(main, ANCHOR.pubkey_hex, ANCHOR.secret, bodies.BASE_EPOCH)


# ---------------------------------------------------------------------- 5. refusals


def test_generate_disabled_by_default(limits: Rig) -> None:
    before = limits.store_bytes()
    response = limits.request("POST", GENERATE, {"count": 1})
    assert response.status == 403, response.body
    assert "chamber.keys.generate.enabled" in response.json()["message"]
    assert limits.store_bytes() == before
    assert limits.rows() == {}


def _warm_import_pool(rig: Rig) -> None:
    """Start the signer's decryption workers (spawned on first use, which can take longer than
    the 1 s deadline): import two cheap keystores, resending what timed out."""
    keys = make_keys(2, seed="keys-api-warmup")
    pending = {key.pubkey_hex: key for key in keys}
    for key in keys:
        rig.remember(key, f"warm-up key {key.pubkey_hex[:10]}")
    for _ in range(20):
        items = list(pending.values())
        results = rig.import_(
            {
                "keystores": [keystore(k, "warm-up-pw") for k in items],
                "passwords": ["warm-up-pw"] * len(items),
            }
        )
        for key, result in zip(items, results, strict=True):
            if result["status"] == "imported":
                del pending[key.pubkey_hex]
            else:
                assert "timed out" in result["message"], result
        if not pending:
            return
        time.sleep(0.5)
    raise AssertionError("the import workers never answered within the deadline")


def test_import_deadline_times_out_the_keys_not_reached(limits: Rig) -> None:
    _warm_import_pool(limits)
    cheap = make_keys(2, seed="keys-api-deadline-cheap")
    slow = make_keys(2, seed="keys-api-deadline-slow")
    raw = make_keys(1, seed="keys-api-deadline-raw")[0]
    for key in (*cheap, *slow, raw):
        limits.remember(key, f"deadline key {key.pubkey_hex[:10]}")
    before = limits.rows()
    started = time.monotonic()
    results = limits.import_(
        {
            "keystores": [keystore(k, "deadline-pw") for k in cheap]
            + [slow_keystore(k) for k in slow],
            "passwords": ["deadline-pw"] * 2 + ["slow"] * 2,
            "raw_keys": [{"secret": raw.secret_hex}],
        }
    )
    elapsed = time.monotonic() - started
    assert elapsed >= IMPORT_DEADLINE
    assert results[0] == {"status": "imported", "pubkey": cheap[0].pubkey_hex}
    assert results[1] == {"status": "imported", "pubkey": cheap[1].pubkey_hex}
    for index in (2, 3):
        assert results[index] == {
            "status": "error",
            "message": (
                f"keystore {index}: timed out: the request's {IMPORT_DEADLINE:g} s "
                "(chamber.keys.import.request_timeout_seconds) ran out before this key was "
                "processed; send it again"
            ),
        }
    assert results[4] == {"status": "imported", "pubkey": raw.pubkey_hex}
    rows = limits.rows()
    assert set(rows) - set(before) == {cheap[0].pubkey_hex, cheap[1].pubkey_hex, raw.pubkey_hex}
    for key in (*cheap, raw):
        assert_signs(limits, key.pubkey_hex, key.secret, bodies.BASE_EPOCH)


def test_import_concurrency_cap_answers_503_not_a_queue(limits: Rig) -> None:
    slow = make_keys(1, seed="keys-api-concurrency-slow")
    first: dict[str, Response] = {}

    def slow_request() -> None:
        first["response"] = limits.request(
            "POST",
            IMPORT,
            {"keystores": [slow_keystore(k) for k in slow], "passwords": ["slow"]},
        )

    thread = threading.Thread(target=slow_request, daemon=True)
    thread.start()
    refused: list[tuple[harness.TestKey, Response, float]] = []
    admitted: list[harness.TestKey] = []
    attempt = 0
    while thread.is_alive() and not refused:
        key = make_keys(1, seed=f"keys-api-concurrency-{attempt}")[0]
        limits.remember(key, f"concurrency key {attempt}")
        attempt += 1
        started = time.monotonic()
        response = limits.request("POST", IMPORT, {"raw_keys": [{"secret": key.secret_hex}]})
        took = time.monotonic() - started
        if response.status == 503:
            refused.append((key, response, took))
        else:
            assert response.status == 200, response.body  # sent before the slow one arrived
            admitted.append(key)
    still_running = thread.is_alive()
    thread.join(30)
    assert refused, "no request was refused while the slow import ran"
    assert still_running, "the 503 must come while the first request still runs (no queue)"
    key, response, took = refused[0]
    assert took < IMPORT_DEADLINE, "refused at once, not after waiting for the slot"
    assert int(response.headers["Retry-After"]) >= 1
    answer = response.json()
    assert "chamber.keys.import.max_concurrent_requests = 1" in answer["message"], answer
    rows = limits.rows()
    assert key.pubkey_hex not in rows, "a refused request imported its key"
    for other in admitted:
        assert other.pubkey_hex in rows

    done = first["response"]
    assert done.status == 200, done.body
    assert [r["status"] for r in done.json()["data"]] == ["error"]
    assert all("timed out" in r["message"] for r in done.json()["data"])
    # The slot is free again.
    late = make_keys(1, seed="keys-api-concurrency-late")[0]
    limits.remember(late, "late concurrency key")
    assert limits.import_({"raw_keys": [{"secret": late.secret_hex}]})[0]["status"] == "imported"


def test_lifecycle_past_its_deadline_answers_error_per_key(limits: Rig) -> None:
    key = make_keys(1, seed="keys-api-lifecycle-deadline")[0]
    limits.remember(key, "the lifecycle-deadline key")
    assert limits.import_({"raw_keys": [{"secret": key.secret_hex}]})[0]["status"] == "imported"
    unknown = fake_pubkey("keys-api-lifecycle-deadline-unknown")
    before = limits.store_bytes()
    message = (
        f"timed out: the request's {LIFECYCLE_DEADLINE:g} s "
        "(chamber.keys.lifecycle.request_timeout_seconds) ran out before this key was "
        "processed; send it again"
    )
    expected = [
        {"status": "error", "pubkey": pubkey, "message": message}
        for pubkey in (key.pubkey_hex, unknown)
    ]
    assert limits.set_status([key.pubkey_hex, unknown], "inactive") == expected
    answer = limits.ok("DELETE", KEYS, {"pubkeys": [key.pubkey_hex, unknown]})
    assert answer["data"] == expected
    # Nothing was changed: the key is stored, active and signs.
    assert limits.store_bytes() == before
    assert limits.rows()[key.pubkey_hex]["status"] == "active"
    assert_signs(limits, key.pubkey_hex, key.secret, bodies.BASE_EPOCH)


def test_sealed_chamber_refuses_generate_import_activate(nobackup: Rig) -> None:
    answer = nobackup.generate(count=1)
    [pubkey] = [entry["pubkey"] for entry in answer["data"]]
    assert nobackup.set_status([pubkey], "inactive")[0]["status"] == "deactivated"
    raw = make_keys(1, seed="keys-api-sealed")[0]
    nobackup.remember(raw, "the sealed-import key")

    assert nobackup.chamber.operator("seal", "--auth-token", "env:CC_AUTH_TOKEN").json() == {
        "status": "sealed"
    }
    before_bytes, before_rows = nobackup.store_bytes(), nobackup.rows()
    for method, path, body in [
        ("POST", GENERATE, {"count": 1}),
        ("POST", IMPORT, {"raw_keys": [{"secret": raw.secret_hex}]}),
        ("POST", IMPORT, {"keystores": [keystore(raw, "sealed-pw")], "passwords": ["sealed-pw"]}),
        ("PATCH", KEYS, {"pubkeys": [pubkey], "status": "active"}),
    ]:
        response = nobackup.request(method, path, body)
        assert response.status == 503, (method, path, response.status, response.body)
        assert "sealed" in response.json()["message"]
        assert int(response.headers["Retry-After"]) >= 1
        assert nobackup.store_bytes() == before_bytes, (method, path)
    assert nobackup.rows() == before_rows
    assert raw.pubkey_hex not in before_rows


def _refusal_cases() -> list[Any]:
    """Malformed, over-cap and unauthorised requests: ``(id, method, path, body, token, status,
    field, fragment)``, each refused before anything is written."""
    real = ANCHOR.pubkey_hex
    others = [fake_pubkey(f"keys-api-other-{i}") for i in range(3)]
    ks = keystore(make_keys(1, seed="keys-api-refused-keystore")[0], "refused-pw")
    raw = {"secret": make_keys(1, seed="keys-api-refused-raw")[0].secret_hex}
    address: dict[str, Any] = {"count": 1, "withdrawal_address": ADDRESS}
    generate_400: list[tuple[str, Any, str | None, str]] = [  # (id, body, field, fragment)
        ("bad-json", b'{"count": ', None, "not valid JSON"),
        ("not-object", b"[1]", None, "JSON object"),
        ("no-count", {}, "count", "count: required"),
        ("count-text", {"count": "2"}, "count", "integer"),
        ("count-bool", {"count": True}, "count", "integer"),
        ("count-zero", {"count": 0}, "count", "at least one"),
        ("over-cap", {"count": 5}, "count", "chamber.keys.generate.max_items_per_request"),
        (
            "address-checksum",
            {"count": 1, "withdrawal_address": ADDRESS.lower()},
            "withdrawal_address",
            "checksum",
        ),
        ("address-type", {"count": 1, "withdrawal_address": 5}, "withdrawal_address", "string"),
        ("address-and-bls", {**address, "bls_withdrawal": True}, "withdrawal_address", "not both"),
        ("compounding-alone", {"count": 1, "compounding": True}, "compounding", "address"),
        ("compounding-type", {**address, "compounding": "yes"}, "compounding", "true or false"),
        ("bls-type", {"count": 1, "bls_withdrawal": 1}, "bls_withdrawal", "true or false"),
        ("amount-over", {**address, "amount_gwei": 33 * GWEI}, "amount_gwei", "between"),
        ("amount-type", {"count": 1, "amount_gwei": "32000000000"}, "amount_gwei", "integer"),
        ("store", {"count": 1, "store": "nope"}, "store", "nope"),
    ]
    import_400: list[tuple[str, Any, str | None, str]] = [
        ("bad-json", b"nope", None, "not valid JSON"),
        ("empty", {}, "keystores", "at least one"),
        ("keystores-type", {"keystores": {}}, "keystores", "list"),
        ("no-passwords", {"keystores": [ks]}, "passwords", "required"),
        (
            "password-count",
            {"keystores": [ks], "passwords": ["refused-pw", "x"]},
            "passwords",
            "one password per keystore",
        ),
        ("password-type", {"keystores": [ks], "passwords": [7]}, "passwords", "list of strings"),
        ("raw-type", {"raw_keys": raw}, "raw_keys", "list"),
        (
            "over-cap",
            {"raw_keys": [raw] * (IMPORT_CAP + 1)},
            "raw_keys",
            "chamber.keys.import.max_items_per_request",
        ),
        (
            "over-cap-mixed",
            {"keystores": [ks] * 7, "passwords": ["refused-pw"] * 7, "raw_keys": [raw] * 7},
            "keystores",
            f"{IMPORT_CAP + 1} keys in one request; at most {IMPORT_CAP}",
        ),
        ("store", {"raw_keys": [raw], "store": "nope"}, "store", "nope"),
        ("store-type", {"raw_keys": [raw], "store": 3}, "store", "string"),
    ]
    inactive: dict[str, Any] = {"status": "inactive"}
    patch_400: list[tuple[str, Any, str | None, str]] = [
        ("bad-json", b"{", None, "not valid JSON"),
        ("bad-pubkey", {"pubkeys": [real, "0x1234"], **inactive}, "pubkeys", "pubkeys[1]"),
        ("pubkey-type", {"pubkeys": [real, 7], **inactive}, "pubkeys", "list of strings"),
        ("no-pubkeys", inactive, "pubkeys", "required"),
        ("empty", {"pubkeys": [], **inactive}, "pubkeys", "at least one"),
        ("no-status", {"pubkeys": [real]}, "status", "required"),
        ("bad-status", {"pubkeys": [real], "status": "paused"}, "status", "'active' or 'inactive'"),
        (
            "over-cap",
            {"pubkeys": [real, *others], **inactive},
            "pubkeys",
            "chamber.keys.lifecycle.max_items_per_request",
        ),
    ]
    delete_400: list[tuple[str, Any, str | None, str]] = [
        ("bad-pubkey", {"pubkeys": [real, "zz"]}, "pubkeys", "pubkeys[1]"),
        ("no-body", b"", "pubkeys", "required"),
        (
            "over-cap",
            {"pubkeys": [real, *others]},
            "pubkeys",
            "chamber.keys.lifecycle.max_items_per_request",
        ),
    ]
    denied = [  # (id, method, path, body, token, status): the message names the scope
        ("generate-no-token", "POST", GENERATE, {"count": 1}, None, 401, "chamber_keys_generate"),
        (
            "generate-no-scope",
            "POST",
            GENERATE,
            {"count": 1},
            WRITER_TOKEN,
            403,
            "chamber_keys_generate",
        ),
        ("import-no-token", "POST", IMPORT, {"raw_keys": [raw]}, None, 401, "chamber_keys_write"),
        (
            "import-no-scope",
            "POST",
            IMPORT,
            {"raw_keys": [raw]},
            SIGNING_TOKEN,
            403,
            "chamber_keys_write",
        ),
        (
            "patch-no-token",
            "PATCH",
            KEYS,
            {"pubkeys": [real], **inactive},
            None,
            401,
            "chamber_keys_write",
        ),
        ("delete-no-token", "DELETE", KEYS, {"pubkeys": [real]}, None, 401, "chamber_keys_delete"),
        (
            "delete-no-scope",
            "DELETE",
            KEYS,
            {"pubkeys": [real]},
            SIGNING_TOKEN,
            403,
            "chamber_keys_delete",
        ),
        ("list-no-token", "GET", KEYS, None, None, 401, "chamber_keys_list"),
    ]
    cases = [
        pytest.param(method, path, body, OPS_TOKEN, 400, name, fragment, id=f"{kind}-{case}")
        for kind, method, path, table in [
            ("generate", "POST", GENERATE, generate_400),
            ("import", "POST", IMPORT, import_400),
            ("patch", "PATCH", KEYS, patch_400),
            ("delete", "DELETE", KEYS, delete_400),
        ]
        for case, body, name, fragment in table
    ]
    cases.append(
        pytest.param(
            "GET",
            f"{KEYS}?status=gone",
            None,
            OPS_TOKEN,
            400,
            "status",
            "status",
            id="list-bad-status",
        )
    )
    cases += [
        pytest.param(method, path, body, token, status, None, scope, id=case)
        for case, method, path, body, token, status, scope in denied
    ]
    return cases


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "field_name", "fragment"), _refusal_cases()
)
def test_refused_requests_change_nothing(
    main: Rig,
    method: str,
    path: str,
    body: Any,
    token: str | None,
    status: int,
    field_name: str | None,
    fragment: str,
) -> None:
    before_bytes, before_rows = main.store_bytes(), main.rows()
    response = main.request(method, path, body, token)
    assert response.status == status, response.body
    answer = response.json()
    assert fragment in answer["message"], answer
    if field_name is not None:
        assert answer["field"] == field_name, answer
        assert answer["message"].startswith(field_name), answer
    assert main.store_bytes() == before_bytes, "a refused request changed the key store file"
    assert main.rows() == before_rows
    if path == KEYS:  # the key named in the refused lifecycle request still signs
        assert_signs(main, ANCHOR.pubkey_hex, ANCHOR.secret, bodies.BASE_EPOCH)


# ---------------------------------------------------------------------- no leaks


def test_no_secret_in_any_answer_log_or_file(
    main: Rig, batch: Rig, nobackup: Rig, limits: Rig
) -> None:
    for rig in (main, batch, nobackup, limits):
        texts = [(where, text.lower()) for where, text in rig.chamber.transcript]
        texts += [("server log", line.lower()) for line in rig.chamber.server_log_lines()]
        for name, secret in rig.secrets.items():
            for where, text in texts:
                assert secret.lower() not in text, f"{rig.name}: {name} leaked into {where}"
        at_rest = rig.chamber.files_at_rest()
        forbidden = {name: value.encode() for name, value in rig.secrets.items()}
        forbidden.update(rig.raw_secrets)
        for name, raw in rig.raw_secrets.items():
            for i, form in enumerate(encodings(raw)):
                forbidden[f"{name} (encoding {i})"] = form.encode()
        for file_name, data in at_rest.items():
            for name, value in forbidden.items():
                assert value not in data, f"{rig.name}: {name} is stored in clear in {file_name}"


def test_passwords_are_taken_exactly_as_sent(main: Rig) -> None:
    """A password may hold commas and spaces: nothing is split or stripped, and a single string
    where a list belongs is refused rather than split."""
    (key,) = make_keys(1, seed="keys-api-password-commas")
    password = "  pw, with commas, and spaces  "
    main.remember(key, "comma password key")
    main.secrets["comma password"] = password
    body = {"keystores": [keystore(key, password)], "passwords": password}
    refused = main.request("POST", IMPORT, body)
    assert refused.status == 400, refused.body
    assert refused.json()["message"].startswith("passwords:")
    assert main.import_({**body, "passwords": [password]}) == [
        {"status": "imported", "pubkey": key.pubkey_hex}
    ]
