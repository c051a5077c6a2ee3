"""The Ethereum keymanager API (``GET | POST | DELETE /eth/v1/keystores``) against its spec.

Real signer processes (waitress on random loopback ports), the real CLI for the vault ceremony,
real SQLite files (slashing database, vault state, encrypted key store). One signer is shared by
the module's tests, which run in file order; it has a filesystem key source (two raw keys,
read-only to the keymanager) beside the encrypted ``key_sources.sqlite`` store the keymanager
imports into by default, and ``http.key_manager_api.max_items_per_request: 5``.

Every answer of the three routes is validated against the response schemas of the external
keymanager specification (``../shared/vectors/web3signer/openapi-specs/eth2/keymanager/``), with
``$ref`` resolved across its files, and the ``slashing_protection`` strings against an EIP-3076
schema written out here. :func:`test_the_spec_checker_can_fail` proves the checker rejects what
the spec forbids, so a passing validation means something.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from py_ecc.bls import G2ProofOfPossession as reference_bls

from chamber.crypto.keystore import encrypt_keystore
from tests import bodies
from tests.harness import (
    MAINNET_GVR,
    Client,
    Response,
    SubprocessSigner,
    base_config,
    make_keys,
    write_raw_keys,
)
from tests.ssz_oracle import ORACLE_MAINNET, oracle_request_root
from tests.support import REPO_ROOT
from tests.vault_support import OPS_TOKEN, SIGNING_TOKEN, Chamber, vault_config

SPEC_DIR = REPO_ROOT.parent / "shared" / "vectors" / "web3signer" / "openapi-specs" / "eth2"
KEYSTORES_SPEC = SPEC_DIR / "keymanager" / "paths" / "keystores.yaml"
ROUTE = "/eth/v1/keystores"
LISTER_TOKEN = "keymanager-lister-token-7c1d9e0f33"
MAX_ITEMS = 5
PASSWORD = "keymanager-keystore-password"
WRONG_GVR = "0x" + "ab" * 32

#: F0, F1: the filesystem key source (read-only to the keymanager). The rest are imported.
FS = make_keys(2, seed="keymanager-fs")
K = make_keys(10, seed="keymanager-import")
DRAIN_ROUNDS = 3
DRAIN_KEYS = make_keys(DRAIN_ROUNDS, seed="keymanager-drain")


# ---------------------------------------------------------------------- the specification


def _load(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _resolve(node: Any, base: Path) -> Any:
    """``node`` with every ``$ref`` (local or to another file of the spec) inlined."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target, _, pointer = ref.partition("#")
            where = (base.parent / target).resolve() if target else base
            found = _load(where)
            for part in pointer.strip("/").split("/"):
                if part:
                    found = found[part]
            return _resolve(found, where)
        return {key: _resolve(value, base) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, base) for item in node]
    return node


@cache
def response_schema(method: str, status: int) -> dict[str, Any]:
    """The JSON schema the spec gives for ``method``'s ``status`` answer (refs inlined)."""
    operation = _resolve(_load(KEYSTORES_SPEC)[method.lower()], KEYSTORES_SPEC)
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {ROUTE}: the spec has no {status} answer"
    schema: dict[str, Any] = responses[str(status)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


#: EIP-3076 (interchange format version 5), complete or minimal form, as the EIP defines it.
PUBKEY = {"type": "string", "pattern": "^0x[0-9a-fA-F]{96}$"}
ROOT = {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}
UINT = {"type": "string", "pattern": "^[0-9]+$"}
EIP3076 = {
    "type": "object",
    "required": ["metadata", "data"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["interchange_format_version", "genesis_validators_root"],
            "properties": {
                "interchange_format_version": {"const": "5"},
                "genesis_validators_root": ROOT,
            },
        },
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pubkey", "signed_blocks", "signed_attestations"],
                "properties": {
                    "pubkey": PUBKEY,
                    "signed_blocks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["slot"],
                            "properties": {"slot": UINT, "signing_root": ROOT},
                        },
                    },
                    "signed_attestations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["source_epoch", "target_epoch"],
                            "properties": {
                                "source_epoch": UINT,
                                "target_epoch": UINT,
                                "signing_root": ROOT,
                            },
                        },
                    },
                },
            },
        },
    },
}


def spec_errors(method: str, response: Response | tuple[int, Any]) -> list[str]:
    """Every way ``response`` departs from the spec (empty: it conforms)."""
    if isinstance(response, Response):
        status = response.status
        assert response.headers.get_content_type() == "application/json", response.headers
        body = response.json()
    else:
        status, body = response
    validator = jsonschema.Draft202012Validator(response_schema(method, status))
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]
    if not problems and isinstance(body, dict) and isinstance(body.get("slashing_protection"), str):
        try:
            document = json.loads(body["slashing_protection"])
        except ValueError:
            return ["slashing_protection: not JSON text"]
        eip = jsonschema.Draft202012Validator(EIP3076)
        problems += [f"slashing_protection: {e.message}" for e in eip.iter_errors(document)]
    return problems


def conforms(method: str, response: Response, status: int) -> Any:
    """``response`` has ``status`` and a spec-conforming body; the parsed body."""
    assert response.status == status, (response.status, response.body)
    problems = spec_errors(method, response)
    assert not problems, f"{method} {ROUTE} {status} answer departs from the spec: {problems}"
    return response.json()


# ---------------------------------------------------------------------- requests


def keystore(key: Any, password: str = PASSWORD) -> str:
    """An EIP-2335 keystore as the JSON text the spec's ``Keystore`` schema has (cheap KDF)."""
    return json.dumps(
        encrypt_keystore(
            key.secret.to_bytes(32, "big"),
            password,
            kdf="pbkdf2",
            kdf_params={"c": 1024},
            pubkey=key.pubkey,
            path="m/12381/3600/0/0/0",
        )
    )


def interchange(
    pubkey: str,
    attestations: list[tuple[int, int, str]],
    gvr: str = MAINNET_GVR,
    blocks: tuple[int, ...] = (),
) -> str:
    return json.dumps(
        {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": gvr},
            "data": [
                {
                    "pubkey": pubkey,
                    "signed_blocks": [
                        {"slot": str(slot), "signing_root": "0x" + "99" * 32} for slot in blocks
                    ],
                    "signed_attestations": [
                        {"source_epoch": str(s), "target_epoch": str(t), "signing_root": root}
                        for s, t, root in attestations
                    ],
                }
            ],
        }
    )


def att(source: int, target: int, root_byte: str = "44") -> dict[str, Any]:
    return bodies.attestation(source, target, root="0x" + root_byte * 32)


def root_of(body: dict[str, Any]) -> str:
    return "0x" + oracle_request_root(body, ORACLE_MAINNET).hex()


def exported(answer: dict[str, Any]) -> dict[str, set[tuple[int, int, str | None]]]:
    """A DELETE answer's ``slashing_protection`` (a JSON string): pubkey -> attestations."""
    assert isinstance(answer["slashing_protection"], str)
    document = json.loads(answer["slashing_protection"])
    assert document["metadata"] == {
        "interchange_format_version": "5",
        "genesis_validators_root": MAINNET_GVR,
    }
    return {
        entry["pubkey"].lower(): {
            (int(a["source_epoch"]), int(a["target_epoch"]), a.get("signing_root"))
            for a in entry["signed_attestations"]
        }
        for entry in document["data"]
    }


# ---------------------------------------------------------------------- the signer


@dataclass
class KeymanagerSigner:
    chamber: Chamber
    fs_dir: Path
    config: dict[str, Any]
    keys_db: Path
    notes: list[str] = field(default_factory=list)

    def km(self, method: str, body: Any = None, token: str | None = OPS_TOKEN) -> Response:
        return Client(self.chamber.url, token=token).request(method, ROUTE, body)

    def listed(self) -> dict[str, bool]:
        answer = conforms("GET", self.km("GET"), 200)
        return {entry["validating_pubkey"]: entry["readonly"] for entry in answer["data"]}

    def sign(self, key: Any, body: dict[str, Any]) -> Response:
        return self.chamber.sign(key.pubkey_hex, body)

    def write_config(self) -> None:
        self.chamber.config_path.write_text(yaml.safe_dump(self.config))

    def restart(self) -> None:
        self.chamber.restart()
        self.chamber.wait_state("unsealed", timeout=30)

    def stored_pubkeys(self) -> set[str]:
        conn = sqlite3.connect(f"file:{self.keys_db}?mode=ro", uri=True)
        try:
            return {
                "0x" + bytes(r[0]).hex() for r in conn.execute("SELECT pubkey FROM validator_keys")
            }
        finally:
            conn.close()


def init_kms_only(chamber: Chamber) -> None:
    token = chamber.wait_setup_token()
    answer = chamber.operator(
        "init",
        "--setup-token",
        "env:SETUP_TOKEN",
        "--kms-key-arns",
        "local:keymanager-a",
        "--kms-threshold",
        "1",
        env={"SETUP_TOKEN": token},
    ).json()
    assert answer["status"] == "unsealed", answer


@pytest.fixture(scope="module")
def km(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeymanagerSigner]:
    root = tmp_path_factory.mktemp("keymanager")
    fs_dir = root / "fs-keys"
    write_raw_keys(fs_dir, FS)
    chamber = Chamber(root / "chamber")
    chamber.env["LISTER_TOKEN"] = LISTER_TOKEN
    config = vault_config(chamber.root)
    config["key_sources"] = {
        "filesystem": {"paths": [str(fs_dir)]},
        "sqlite": {"path": str(chamber.root / "keys.sqlite")},
    }
    config["http"] = {"key_manager_api": {"enabled": True, "max_items_per_request": MAX_ITEMS}}
    config["auth_policies"]["ops-team"]["allowed_scopes"] += [
        "list_keys",
        "import_keystores",
        "delete_keys",
    ]
    config["auth_policies"]["lister"] = {
        "token": "env:LISTER_TOKEN",
        "allowed_scopes": ["list_keys"],
    }
    signer = KeymanagerSigner(chamber, fs_dir, config, chamber.root / "keys.sqlite")
    signer.write_config()
    chamber.start()
    try:
        init_kms_only(chamber)
        yield signer
    finally:
        chamber.stop()
        for note in signer.notes:
            print(f"\n[keymanager] {note}")


# ---------------------------------------------------------------------- the checker itself


def test_the_spec_checker_can_fail() -> None:
    """Bodies the spec forbids are reported: the validation of the real answers has teeth."""
    good_list = {"data": [{"validating_pubkey": FS[0].pubkey_hex, "readonly": True}]}
    assert spec_errors("GET", (200, good_list)) == []
    assert spec_errors("GET", (200, {}))  # data is required
    assert spec_errors("GET", (200, {"data": [{"validating_pubkey": "0x1234"}]}))
    assert spec_errors(
        "GET", (200, {"data": [{"validating_pubkey": FS[0].pubkey_hex, "readonly": "no"}]})
    )

    assert spec_errors("POST", (200, {"data": [{"status": "imported"}]})) == []
    assert spec_errors("POST", (200, {"data": [{"status": "generated"}]}))  # not in the enum
    assert spec_errors("POST", (200, {"data": [{"message": "no status"}]}))
    assert spec_errors("POST", (200, {"data": [{"status": "error", "message": 7}]}))

    export = interchange(K[0].pubkey_hex, [(1, 2, "0x" + "11" * 32)])
    assert (
        spec_errors(
            "DELETE", (200, {"data": [{"status": "deleted"}], "slashing_protection": export})
        )
        == []
    )
    assert spec_errors("DELETE", (200, {"data": [{"status": "deleted"}]}))  # export required
    assert spec_errors(
        "DELETE", (200, {"data": [{"status": "removed"}], "slashing_protection": export})
    )
    # The chamber key API answers the export as an object; the keymanager spec wants a string.
    assert spec_errors("DELETE", (200, {"data": [], "slashing_protection": json.loads(export)}))
    bad_export = json.dumps({"metadata": {"interchange_format_version": "4"}, "data": []})
    assert spec_errors("DELETE", (200, {"data": [], "slashing_protection": bad_export}))

    assert spec_errors("POST", (400, {"message": "x"})) == []
    assert spec_errors("POST", (400, {"error": "bad request"}))  # message is required
    with pytest.raises(AssertionError, match="no 404"):
        spec_errors("GET", (404, {"message": "x"}))


# ---------------------------------------------------------------------- off by default


def test_the_api_is_off_by_default(tmp_path: Path) -> None:
    """Without ``http.key_manager_api.enabled`` the route does not exist: 404 for every method,
    even with a token holding every keymanager scope."""
    write_raw_keys(tmp_path / "keys", FS[:1])
    config = base_config(tmp_path / "keys")
    config["auth_policies"]["keymanager"] = {
        "token": LISTER_TOKEN,
        "allowed_scopes": ["list_keys", "import_keystores", "delete_keys"],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    signer = SubprocessSigner(path)
    try:
        client = Client(signer.wait_ready(), token=LISTER_TOKEN)
        for method, body in (
            ("GET", None),
            ("POST", {"keystores": [keystore(K[9])], "passwords": [PASSWORD]}),
            ("DELETE", {"pubkeys": [FS[0].pubkey_hex]}),
        ):
            assert client.request(method, ROUTE, body).status == 404, method
        # The signer itself is up and serves its other routes.
        assert client.request("GET", "/upcheck").status == 200
    finally:
        assert signer.stop() == 0


# ---------------------------------------------------------------------- auth and limits


def test_auth_and_item_limit(km: KeymanagerSigner) -> None:
    """No token → 401, a token without the route's scope → 403, more than
    ``max_items_per_request`` keys → 400 naming the field; all with the spec's error body."""
    post = {"keystores": [keystore(K[9])], "passwords": [PASSWORD]}
    delete = {"pubkeys": [K[9].pubkey_hex]}
    for method, body, scope_less in (
        ("GET", None, SIGNING_TOKEN),
        ("POST", post, LISTER_TOKEN),
        ("DELETE", delete, LISTER_TOKEN),
    ):
        conforms(method, km.km(method, body, token=None), 401)
        conforms(method, km.km(method, body, token="not-a-token-of-this-signer-0123"), 401)
        answer = conforms(method, km.km(method, body, token=scope_less), 403)
        assert "scope" in answer["message"]
    # The lister may list.
    conforms("GET", km.km("GET", token=LISTER_TOKEN), 200)

    too_many = MAX_ITEMS + 1
    answer = conforms(
        "POST",
        km.km(
            "POST", {"keystores": [keystore(K[9])] * too_many, "passwords": [PASSWORD] * too_many}
        ),
        400,
    )
    assert answer["field"] == "keystores" and str(MAX_ITEMS) in answer["message"]
    answer = conforms("DELETE", km.km("DELETE", {"pubkeys": [K[9].pubkey_hex] * too_many}), 400)
    assert answer["field"] == "pubkeys" and str(MAX_ITEMS) in answer["message"]
    answer = conforms("POST", km.km("POST", {"keystores": [keystore(K[9])], "passwords": []}), 400)
    assert answer["field"] == "passwords"
    answer = conforms("DELETE", km.km("DELETE", {"pubkeys": ["0x1234"]}), 400)
    assert answer["field"] == "pubkeys"
    # None of it imported anything.
    assert K[9].pubkey_hex not in km.listed()
    assert km.sign(K[9], bodies.randao()).status == 404


# ---------------------------------------------------------------------- list and import


def test_list_marks_filesystem_keys_readonly(km: KeymanagerSigner) -> None:
    assert km.listed() == {FS[0].pubkey_hex: True, FS[1].pubkey_hex: True}


def test_import_answers_per_key_in_request_order(km: KeymanagerSigner) -> None:
    """One result per keystore, in order: imported | duplicate (earlier in the request, or
    already loaded from any source, the filesystem one included) | error (wrong password)."""
    request = [
        (keystore(K[0]), PASSWORD),
        (keystore(K[0]), PASSWORD),  # the same key again in the request
        (keystore(FS[0]), PASSWORD),  # loaded from the filesystem source
        (keystore(K[1]), "not the password of this keystore"),
        (keystore(K[2]), PASSWORD),
    ]
    answer = conforms(
        "POST",
        km.km("POST", {"keystores": [k for k, _ in request], "passwords": [p for _, p in request]}),
        200,
    )
    statuses = [entry["status"] for entry in answer["data"]]
    assert statuses == ["imported", "duplicate", "duplicate", "error", "imported"], answer
    assert answer["data"][3]["message"], answer
    assert all(set(entry) <= {"status", "message"} for entry in answer["data"])
    assert all("message" not in e for e in answer["data"] if e["status"] != "error")
    assert PASSWORD not in json.dumps(answer)

    # A second request: the key imported before is a duplicate; an entry that is not a
    # keystore is that entry's own error; a keystore object (not text) is accepted too.
    answer = conforms(
        "POST",
        km.km(
            "POST",
            {
                "keystores": [keystore(K[0]), "{not json", keystore(K[1])],
                "passwords": [PASSWORD, PASSWORD, PASSWORD],
            },
        ),
        200,
    )
    assert [e["status"] for e in answer["data"]] == ["duplicate", "error", "imported"], answer

    listed = km.listed()
    assert listed == {
        FS[0].pubkey_hex: True,
        FS[1].pubkey_hex: True,
        K[0].pubkey_hex: False,
        K[1].pubkey_hex: False,
        K[2].pubkey_hex: False,
    }
    # Imported into the encrypted store (the default target with a vault), and signable.
    assert {K[0].pubkey_hex, K[1].pubkey_hex, K[2].pubkey_hex} <= km.stored_pubkeys()
    for key in (K[0], K[1], K[2]):
        response = km.sign(key, bodies.randao())
        assert response.status == 200, response.body


def test_slashing_protection_is_applied_before_the_key_signs(km: KeymanagerSigner) -> None:
    """The interchange given with an import is in force before the key is signable: during the
    import a client hammering the key with an attestation slashable against that history only
    ever gets 404 (not loaded yet) or 412 (refused), never a signature; afterwards the
    history refuses double votes, surrounds and old blocks, and allows the next duty."""
    key = K[3]
    epoch = bodies.BASE_EPOCH
    # A long history (its import takes a while: a wrong order would leave the key signable
    # without it for that long), ending with the vote at ``epoch``.
    history = [(t - 1, t, f"0x{t:064x}") for t in range(epoch - 3000, epoch)]
    history.append((epoch - 1, epoch, root_of(att(epoch - 1, epoch))))
    document = interchange(key.pubkey_hex, history, blocks=(epoch * 32,))
    double_vote = att(epoch - 1, epoch, "ee")  # same target, another block root

    answers: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answers.append(km.sign(key, double_vote).status)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        answer = conforms(
            "POST",
            km.km(
                "POST",
                {
                    "keystores": [keystore(key)],
                    "passwords": [PASSWORD],
                    "slashing_protection": document,
                },
            ),
            200,
        )
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert answer["data"] == [{"status": "imported"}]
    assert set(answers) <= {404, 412}, f"slashable attestation answered {sorted(set(answers))}"
    assert 404 in answers and 412 in answers, sorted(set(answers))
    km.notes.append(
        f"slashing protection before signable: {answers.count(404)} x 404 then "
        f"{answers.count(412)} x 412 for the hammered slashable attestation"
    )

    assert km.sign(key, double_vote).status == 412
    assert km.sign(key, att(epoch - 2, epoch + 1)).status == 412  # surrounds the history
    assert km.sign(key, bodies.block_v2(slot=epoch * 32)).status == 412
    assert km.sign(key, bodies.block_v2(slot=epoch * 32 - 1)).status == 412  # below the floor
    response = km.sign(key, att(epoch, epoch + 1))  # the next duty
    assert response.status == 200, response.body
    response = km.sign(key, att(epoch - 1, epoch))  # the imported vote itself: same root
    assert response.status == 200, response.body


@pytest.mark.parametrize(
    "document",
    [
        "this is not JSON",
        json.dumps({"data": []}),  # no metadata
        json.dumps({"metadata": {"interchange_format_version": "5"}, "data": []}),
        interchange(K[4].pubkey_hex, [(10, 11, "0x" + "22" * 32)], gvr=WRONG_GVR),
        # Contradicts itself: a surround inside the file.
        interchange(K[4].pubkey_hex, [(10, 20, "0x" + "22" * 32), (11, 19, "0x" + "33" * 32)]),
    ],
    ids=["not-json", "no-metadata", "no-gvr", "wrong-genesis", "slashable"],
)
def test_a_bad_interchange_imports_nothing(km: KeymanagerSigner, document: str) -> None:
    """An invalid, wrong-network or slashable interchange is a 400 naming slashing_protection,
    and neither the key nor any history is imported."""
    key = K[4]
    answer = conforms(
        "POST",
        km.km(
            "POST",
            {
                "keystores": [keystore(key)],
                "passwords": [PASSWORD],
                "slashing_protection": document,
            },
        ),
        400,
    )
    assert answer["field"] == "slashing_protection", answer
    assert answer["message"].startswith("slashing_protection"), answer
    assert key.pubkey_hex not in km.listed()
    assert key.pubkey_hex not in km.stored_pubkeys()
    assert km.sign(key, att(10, 11)).status == 404
    # No history either: deleting the (absent) key finds nothing to return.
    answer = conforms("DELETE", km.km("DELETE", {"pubkeys": [key.pubkey_hex]}), 200)
    assert answer["data"] == [{"status": "not_found"}]
    assert exported(answer) == {}


# ---------------------------------------------------------------------- delete


def test_delete_answers_per_key_with_the_history(km: KeymanagerSigner) -> None:
    """deleted | not_found | error (read-only source) in order; the export is a JSON string
    holding what the deleted key signed; the deleted key then answers 404, the read-only key
    still signs; a second identical DELETE answers not_active with the same history."""
    key = K[5]
    answer = conforms(
        "POST", km.km("POST", {"keystores": [keystore(key)], "passwords": [PASSWORD]}), 200
    )
    assert answer["data"] == [{"status": "imported"}]
    epoch = bodies.BASE_EPOCH + 100
    signed = att(epoch - 1, epoch)
    response = km.sign(key, signed)
    assert response.status == 200, response.body
    signature = bytes.fromhex(response.json()["signature"][2:])
    root = root_of(signed)
    assert reference_bls.Verify(key.pubkey, bytes.fromhex(root[2:]), signature)

    unknown = make_keys(1, seed="keymanager-unknown")[0]
    request = {"pubkeys": [key.pubkey_hex, unknown.pubkey_hex, FS[1].pubkey_hex]}
    first = conforms("DELETE", km.km("DELETE", request), 200)
    assert [e["status"] for e in first["data"]] == ["deleted", "not_found", "error"], first
    assert "filesystem" in first["data"][2]["message"]
    assert all(set(e) <= {"status", "message"} for e in first["data"])
    history = exported(first)
    assert (epoch - 1, epoch, root) in history[key.pubkey_hex]
    assert unknown.pubkey_hex not in history

    assert km.sign(key, att(epoch, epoch + 1)).status == 404
    assert key.pubkey_hex not in km.listed()
    assert key.pubkey_hex not in km.stored_pubkeys()
    response = km.sign(FS[1], att(epoch - 1, epoch))
    assert response.status == 200, response.body
    assert km.listed()[FS[1].pubkey_hex] is True

    second = conforms("DELETE", km.km("DELETE", request), 200)
    assert [e["status"] for e in second["data"]] == ["not_active", "not_found", "error"], second
    assert exported(second)[key.pubkey_hex] == history[key.pubkey_hex]

    # An empty request is valid and answers nothing (never a 404).
    empty = conforms("DELETE", km.km("DELETE", {"pubkeys": []}), 200)
    assert empty["data"] == [] and exported(empty) == {}


def big_block(slot: int) -> dict[str, Any]:
    """A valid BLOCK_V2 (phase 0, full block) of ~240 KB: 128 attestations of 2048 bits, two
    attester slashings of 2048 indices, 16 deposits. Its parsing and hashing keep a signing
    request busy for ~15 ms between the key look-up and the slashing-protection record,
    widening the window in which a missing drain would let a signature escape the export."""
    attestation = {
        "aggregation_bits": "0x" + "ff" * 256 + "01",
        "data": {
            "slot": str(slot - 1),
            "index": "0",
            "beacon_block_root": "0x" + "01" * 32,
            "source": {"epoch": "1", "root": "0x" + "02" * 32},
            "target": {"epoch": "2", "root": "0x" + "03" * 32},
        },
        "signature": "0x" + "04" * 96,
    }
    indexed = {
        "attesting_indices": [str(i) for i in range(2048)],
        "data": attestation["data"],
        "signature": "0x" + "04" * 96,
    }
    deposit = {
        "proof": ["0x" + "0b" * 32] * 33,
        "data": {
            "pubkey": "0x" + "0c" * 48,
            "withdrawal_credentials": "0x" + "0d" * 32,
            "amount": "32000000000",
            "signature": "0x" + "0e" * 96,
        },
    }
    block = {
        "slot": str(slot),
        "proposer_index": "7",
        "parent_root": "0x" + "05" * 32,
        "state_root": "0x" + "06" * 32,
        "body": {
            "randao_reveal": "0x" + "07" * 96,
            "eth1_data": {
                "deposit_root": "0x" + "08" * 32,
                "deposit_count": "1",
                "block_hash": "0x" + "09" * 32,
            },
            "graffiti": "0x" + "0a" * 32,
            "proposer_slashings": [],
            "attester_slashings": [{"attestation_1": indexed, "attestation_2": indexed}] * 2,
            "attestations": [attestation] * 128,
            "deposits": [deposit] * 16,
            "voluntary_exits": [],
        },
    }
    phase0 = {"previous_version": "0x00000000", "current_version": "0x00000000", "epoch": "0"}
    return {
        "type": "BLOCK_V2",
        "fork_info": {"fork": phase0, "genesis_validators_root": MAINNET_GVR},
        "beacon_block": {"version": "PHASE0", "block": block},
    }


def exported_blocks(answer: dict[str, Any]) -> dict[str, set[tuple[int, str | None]]]:
    document = json.loads(answer["slashing_protection"])
    return {
        entry["pubkey"].lower(): {
            (int(b["slot"]), b.get("signing_root")) for b in entry["signed_blocks"]
        }
        for entry in document["data"]
    }


@pytest.mark.parametrize("round_number", range(DRAIN_ROUNDS))
def test_delete_under_signing_load_exports_every_signature(
    km: KeymanagerSigner, round_number: int
) -> None:
    """DELETE while clients sign with the key continuously (large blocks with increasing slots
    and attestations with increasing epochs): every signature any client received is in the
    exported history (none was produced after the export), and every request sent after the
    DELETE answered is refused with 404. Several rounds, one key each: the race a missing
    drain loses is a matter of milliseconds."""
    key = DRAIN_KEYS[round_number]
    answer = conforms(
        "POST", km.km("POST", {"keystores": [keystore(key)], "passwords": [PASSWORD]}), 200
    )
    assert answer["data"] == [{"status": "imported"}]
    epochs = itertools.count(bodies.BASE_EPOCH + 1000)
    slots = itertools.count(1000)
    lock = threading.Lock()
    #: (started, finished, status, kind, body)
    results: list[tuple[float, float, int, str, dict[str, Any]]] = []
    stop = threading.Event()

    def load(kind: str) -> None:
        client = Client(km.chamber.url, token=SIGNING_TOKEN)
        while not stop.is_set():
            with lock:
                if kind == "block":
                    body = big_block(next(slots))
                else:
                    target = next(epochs)
                    body = att(target - 1, target)
            started = time.monotonic()
            response = client.sign(key.pubkey_hex, body)
            with lock:
                results.append((started, time.monotonic(), response.status, kind, body))

    threads = [threading.Thread(target=load, args=("block",)) for _ in range(6)]
    threads += [threading.Thread(target=load, args=("attestation",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while sum(1 for r in results if r[2] == 200 and r[3] == "block") < 10:
            assert time.monotonic() < deadline, "the load does not sign"
            time.sleep(0.01)
        sent = time.monotonic()
        deleted = conforms("DELETE", km.km("DELETE", {"pubkeys": [key.pubkey_hex]}), 200)
        answered = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert deleted["data"] == [{"status": "deleted"}]
    attestations = exported(deleted)[key.pubkey_hex]
    blocks = dict(exported_blocks(deleted)[key.pubkey_hex])

    statuses = {r[2] for r in results}
    assert statuses <= {200, 404}, statuses
    signed = [(kind, body) for _, _, status, kind, body in results if status == 200]
    missing: list[object] = []
    checked_block_root = False
    for kind, body in signed:
        if kind == "attestation":
            data = body["attestation"]
            entry = (int(data["source"]["epoch"]), int(data["target"]["epoch"]), root_of(body))
            if entry not in attestations:
                missing.append(entry)
            continue
        slot = int(body["beacon_block"]["block"]["slot"])
        if slot not in blocks:
            missing.append(("block", slot))
        elif not checked_block_root:  # the independent SSZ oracle, once (it is slow)
            assert blocks[slot] == root_of(body)
            checked_block_root = True
    assert not missing, f"{len(missing)} signatures handed out are not in the export: {missing[:5]}"
    late = [r[:4] for r in results if r[0] > answered and r[2] != 404]
    assert not late, f"signed after the DELETE answered: {late[:3]}"
    in_flight = sum(1 for _, end, status, _, _ in results if status == 200 and end > sent)
    after = sum(1 for r in results if r[0] > answered)
    assert after > 0 and checked_block_root
    km.notes.append(
        f"delete under load, round {round_number}: {len(signed)} signatures (all in the "
        f"export: {len(blocks)} blocks, {len(attestations)} attestations), {in_flight} "
        f"answered 200 after the DELETE was sent, {after} requests after it answered "
        f"(all 404); DELETE took {answered - sent:.3f} s"
    )


def chamber_set_status(km: KeymanagerSigner, key: Any, status: str, expected: str) -> None:
    """Activate / deactivate through the chamber key API (``PATCH /api/v1/chamber/keys``)."""
    body = {"pubkeys": [key.pubkey_hex], "status": status}
    response = km.chamber.http("PATCH", "/api/v1/chamber/keys", body, OPS_TOKEN)
    assert response.status == 200, response.body
    assert response.json()["data"] == [{"status": expected, "pubkey": key.pubkey_hex}]


def test_a_deactivated_key_is_a_duplicate(km: KeymanagerSigner) -> None:
    """A key deactivated in the encrypted store (chamber key API) is known to the keymanager:
    importing it again answers ``duplicate`` and does not make it signable."""
    key = K[2]
    chamber_set_status(km, key, "inactive", "deactivated")
    assert km.sign(key, bodies.randao()).status == 404
    assert key.pubkey_hex not in km.listed()  # not loaded: not listed
    answer = conforms(
        "POST", km.km("POST", {"keystores": [keystore(key)], "passwords": [PASSWORD]}), 200
    )
    assert answer["data"] == [{"status": "duplicate"}]
    assert km.sign(key, bodies.randao()).status == 404
    chamber_set_status(km, key, "active", "activated")
    response = km.sign(key, bodies.randao())
    assert response.status == 200, response.body


# ---------------------------------------------------------------------- storage


def test_imported_keys_survive_a_restart(km: KeymanagerSigner) -> None:
    """Default storage with a vault: the encrypted key_sources.sqlite store. A restart (kms_only
    unseals by itself) loads the imported keys again; deleted ones stay deleted; the imported
    slashing history is still in force."""
    km.restart()
    listed = km.listed()
    assert listed == {
        FS[0].pubkey_hex: True,
        FS[1].pubkey_hex: True,
        K[0].pubkey_hex: False,
        K[1].pubkey_hex: False,
        K[2].pubkey_hex: False,
        K[3].pubkey_hex: False,
    }
    for key in (K[0], K[1], K[2]):
        response = km.sign(key, bodies.randao(bodies.BASE_EPOCH + 1))
        assert response.status == 200, response.body
    epoch = bodies.BASE_EPOCH
    assert km.sign(K[3], att(epoch - 1, epoch, "ee")).status == 412
    for key in (K[5], *DRAIN_KEYS):
        assert km.sign(key, bodies.randao()).status == 404
    health = Client(km.chamber.url, token=None).request("GET", "/healthcheck").json()
    keys_check = next(c for c in health["checks"] if c["id"] == "keys")
    assert keys_check["data"]["failed"] == 0, health


def test_memory_store_forgets_at_restart(km: KeymanagerSigner) -> None:
    """``http.key_manager_api.store: memory``: imported keys sign but are gone after a restart;
    keys of the encrypted store are then read-only to the keymanager (it cannot delete there)."""
    km.config["http"]["key_manager_api"]["store"] = "memory"
    km.write_config()
    km.restart()
    key = K[7]
    answer = conforms(
        "POST",
        km.km(
            "POST",
            {"keystores": [keystore(key), keystore(K[0])], "passwords": [PASSWORD, PASSWORD]},
        ),
        200,
    )
    assert [e["status"] for e in answer["data"]] == ["imported", "duplicate"]
    # A key deactivated in the encrypted store is known here too: no way around the
    # deactivation through a memory import.
    chamber_set_status(km, K[2], "inactive", "deactivated")
    answer = conforms(
        "POST", km.km("POST", {"keystores": [keystore(K[2])], "passwords": [PASSWORD]}), 200
    )
    assert answer["data"] == [{"status": "duplicate"}]
    assert km.sign(K[2], bodies.randao()).status == 404
    listed = km.listed()
    assert listed[key.pubkey_hex] is False
    assert listed[K[0].pubkey_hex] is True  # in the sqlite store, not the keymanager's
    assert key.pubkey_hex not in km.stored_pubkeys()
    response = km.sign(key, bodies.randao())
    assert response.status == 200, response.body

    km.restart()
    assert key.pubkey_hex not in km.listed()
    assert km.sign(key, bodies.randao()).status == 404
    response = km.sign(K[0], bodies.randao())
    assert response.status == 200, response.body


def test_no_secret_in_the_server_log(km: KeymanagerSigner) -> None:
    """Keystore passwords and the imported secret keys never reach the server's log."""
    lines = "\n".join(km.chamber.server_log_lines()).lower()
    assert "keys imported" in lines or "keystores imported" in lines  # the log is the real one
    assert PASSWORD.lower() not in lines
    for key in (*K, *DRAIN_KEYS, *FS):
        assert key.secret_hex[2:] not in lines
