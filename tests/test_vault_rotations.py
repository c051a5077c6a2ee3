"""Rotations on a real signer, driven by the real CLI, while signing requests keep coming.

The runbook's "Rotating KMS keys" (in both modes), "Rotating the operator set" (completed, and
cancelled), "Switching modes" (both ways) and "Registering multiple credentials", command for
command. Each scenario owns one signer (``tests/vault_support.py``: SQLite state and key store,
local file KMS, small Argon2id) holding one validator key imported into the encrypted store with
``containment-chamber keys import``; that key is the one signed with.

While each ceremony runs, a background thread drives signing requests at that key with the
benchmark's load client (``bench/_client.py``: BLOCK_V2, ATTESTATION and RANDAO_REVEAL requests
whose slots and epochs only rise, so slashing protection never refuses), in short rounds on one
keep-alive connection, and counts every answer by status: every one must be 200 (no 503, no
5xx, no dropped connection). A signature of each section is verified with the reference BLS
implementation. Load is stopped for restarts (the signer is down, then sealed, by design) and
runs again once it has unsealed.

Also checked throughout: the key check value in the stored record never changes (the master key
is the same across every rotation), a KMS key that fails its encrypt/decrypt round trip is named
in a 502 and leaves the stored state byte-identical, refusals change nothing, and no secret
appears in any log line, CLI output, HTTP answer, metrics page or database.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from py_ecc.bls import G2ProofOfPossession as reference_bls
from rich.console import Console

from bench import _client as bench_client
from chamber.cli.operator import operator_app
from chamber.crypto import kdf
from chamber.crypto.keystore import encrypt_keystore
from chamber.vault import states
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.local_kms import LocalKms
from chamber.vault.records import RECORD_KEY
from chamber.vault.service import Vault, VaultHooks, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests.harness import make_keys
from tests.test_vault_credentials import add, list_ids, remove
from tests.vault_support import (
    OPS_TOKEN,
    SETUP_LOG_MESSAGE,
    SIGNING_TOKEN,
    Chamber,
    CliResult,
    cli,
    encodings,
    vault_config,
)

PASSPHRASES = {
    "alice": "alice: correct horse battery staple",
    "bob": "bob's passphrase, long enough 42",
    "carol": "carol-types-this-one-at-the-prompt",
    "dave": "dave: a passphrase for the new set",
    "eve": "eve's own passphrase, 16+ characters",
    "frank": "frank registers during the rotation",
}
ALICE_SECOND = "alice: the second password credential"
OLD_OPERATORS = ("alice", "bob", "carol")
NEW_OPERATORS = ("dave", "eve", "frank")
OLD_KMS = ("local:old-a", "local:old-b", "local:old-c")
NEW_KMS = ("local:new-a", "local:new-b", "local:new-c")
BROKEN_KMS = "local:broken"
KEYSTORE_PASSWORD = "keystore-password-for-the-rotations"
KEY = make_keys(1, seed="vault-rotations")[0]
#: Answers the load must have counted before a ceremony starts and after it ends.
LOAD_MARGIN = 10
#: Section name -> answers by status, for the report at the end of the module.
LOAD_REPORT: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def keystore_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keystore = encrypt_keystore(
        KEY.secret.to_bytes(32, "big"),
        KEYSTORE_PASSWORD,
        kdf="pbkdf2",
        kdf_params={"c": 1024},  # fast; the import path is not what is tested here
        pubkey=KEY.pubkey,
        path="m/12381/3600/0/0/0",
    )
    path = tmp_path_factory.mktemp("keystores") / "keystore-m_12381_3600_0_0_0.json"
    path.write_text(json.dumps(keystore))
    return path


@pytest.fixture(scope="module", autouse=True)
def load_report() -> Iterator[None]:
    yield
    if LOAD_REPORT:
        width = max(len(name) for name in LOAD_REPORT)
        print("\nsigning load during each section (answers by status):")
        for name, counts in LOAD_REPORT.items():
            print(f"  {name:<{width}}  {counts}")


# ---------------------------------------------------------------------- the signing load


class SigningLoad:
    """Signing requests at the scenario's validator key from a background thread until stopped.

    Rounds of the benchmark's ``LoadGenerator`` (one keep-alive connection, one request in
    flight, ``ROUND_SECONDS`` each, answers in flight drained at the end of a round); the
    ``KeyState`` outlives the rounds and the restarts, so slots and epochs keep rising against
    the one slashing database. Every answer is counted by status; a transport failure counts as
    ``conn_reset`` / ``no_answer``, a failure to connect as ``connect <error>``.
    """

    ROUND_SECONDS = 0.5

    def __init__(self, port: int, key: Any) -> None:
        self.address = ("127.0.0.1", port)
        self.key = key
        self.statuses: Counter[str] = Counter()
        self.examples: list[str] = []
        self.samples: list[tuple[int, int, bytes, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signing-load", daemon=True)

    def _run(self) -> None:
        pattern = bench_client.mix_pattern([1, 2, 1])  # BLOCK_V2 : ATTESTATION : RANDAO
        while not self._stop.is_set():
            try:
                generator = bench_client.LoadGenerator(self.address, [self.key], 1, pattern)
                result = generator.run(0.0, self.ROUND_SECONDS, samples_per_type=1)
            except OSError as error:
                with self._lock:
                    self.statuses[f"connect {type(error).__name__}"] += 1
                    self.examples.append(repr(error))
                self._stop.wait(0.1)
                continue
            not_ok = sum(1 for kind in result.kinds if kind & bench_client.FAILED)
            with self._lock:
                self.statuses["200"] += len(result.kinds) - not_ok
                self.statuses.update(result.failures)
                self.examples.extend(result.failure_examples)
                if len(self.samples) < 3:
                    self.samples.extend(result.samples)

    def answered(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def wait_answers(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.answered() < count:
            assert self._thread.is_alive(), "the load thread died"
            assert time.monotonic() < deadline, f"only {dict(self.statuses)} answers"
            time.sleep(0.02)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the load thread did not stop"


def verify_sample(sample: tuple[int, int, bytes, bytes]) -> None:
    """A signed answer of the load is a valid signature by the imported validator key."""
    _, _, root, body = sample
    signature = bytes.fromhex(json.loads(body)["signature"][2:])
    assert reference_bls.Verify(KEY.pubkey, root, signature), "not signed by the imported key"


# ---------------------------------------------------------------------- one scenario


def rotation_config(root: Path) -> dict[str, Any]:
    """The runbook's configuration; the operators' token also has the chamber_rotate scope."""
    config = vault_config(root)
    config["auth_policies"]["ops-team"]["allowed_scopes"] = [
        "chamber_seal",
        "chamber_rotate",
        "chamber_status",
        "chamber_keys_write",
    ]
    return config


class Scenario:
    """One signer (its files kept across restarts), its validator key's request stream and
    what the leak check must look for."""

    def __init__(self, root: Path, keystore: Path) -> None:
        self.chamber = Chamber(root)
        self.chamber.config_path.write_text(yaml.safe_dump(rotation_config(root)))
        self.keystore = keystore
        self.key = bench_client.KeyState(0, KEY.pubkey_hex, "127.0.0.1", SIGNING_TOKEN)
        self.kcv: str | None = None
        #: Registration tokens, by name, and the one transcript entry allowed to show each.
        self.tokens: dict[str, tuple[str, str]] = {}
        #: KMS key files deleted during the scenario (their contents stay secrets).
        self.deleted_kms_files: dict[str, bytes] = {}

    # ------------------------------------------------------------------ CLI

    def operator(self, command: str, *args: str, **kw: Any) -> CliResult:
        return self.chamber.operator(command, *args, **kw)

    def rotate(self, command: str, *args: str, token: str = "env:CC_AUTH_TOKEN") -> CliResult:
        """``containment-chamber operator rotate COMMAND --signer-url URL --auth-token ...``"""
        return self.chamber.run_cli(
            "operator",
            "rotate",
            command,
            "--signer-url",
            self.chamber.url,
            "--auth-token",
            token,
            *args,
        )

    def register(self, operator: str, token: str, passphrase: str | None = None) -> CliResult:
        return self.operator(
            "register",
            "--operator",
            operator,
            "--registration-token",
            "env:REGISTRATION_TOKEN",
            "--passphrase-stdin",
            stdin=(passphrase or PASSPHRASES[operator]) + "\n",
            env={"REGISTRATION_TOKEN": token},
        )

    def unseal(self, operator: str, passphrase: str | None = None) -> CliResult:
        return self.operator(
            "unseal",
            "--operator",
            operator,
            "--passphrase-stdin",
            stdin=(passphrase or PASSPHRASES[operator]) + "\n",
        )

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.operator("status", "--auth-token", "env:CC_AUTH_TOKEN").json()
        return answer

    def import_key(self) -> None:
        result = self.chamber.run_cli(
            "keys",
            "import",
            str(self.keystore),
            "--signer-url",
            self.chamber.url,
            "--auth-token",
            "env:CC_AUTH_TOKEN",
            "--password-stdin",
            stdin=KEYSTORE_PASSWORD + "\n",
        )
        assert result.json()["data"] == [
            {"file": str(self.keystore), "status": "imported", "pubkey": KEY.pubkey_hex}
        ]

    def keep_tokens(self, tokens: dict[str, str], label: str, where: str) -> None:
        for operator, token in tokens.items():
            assert token.startswith("cc-reg-")
            self.tokens[f"{label} registration token of {operator}"] = (token, where)

    # ------------------------------------------------------------------ ceremonies

    def init_kms_only(self, kms: tuple[str, ...] = OLD_KMS, threshold: int = 2) -> None:
        self.chamber.start()
        setup_token = self.chamber.wait_setup_token()
        answer = self.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            ",".join(kms),
            "--kms-threshold",
            str(threshold),
            env={"SETUP_TOKEN": setup_token},
        ).json()
        assert answer == {"status": "unsealed", "validators_loaded": 0}
        self.kcv = self.stored_kcv()
        self.import_key()

    def init_unseal_mode(self, kms: tuple[str, ...] = OLD_KMS) -> None:
        """Init with three operators (2 of 3), every one registers, alice and bob unseal."""
        self.chamber.start()
        setup_token = self.chamber.wait_setup_token()
        result = self.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            ",".join(kms),
            "--kms-threshold",
            "2",
            "--unseal-threshold",
            "2",
            "--operators",
            ",".join(OLD_OPERATORS),
            env={"SETUP_TOKEN": setup_token},
        )
        tokens = result.json()["operator_tokens"]
        self.keep_tokens(tokens, "init", "operator init stdout")
        self.kcv = self.stored_kcv()
        for operator in OLD_OPERATORS:
            self.register(operator, tokens[operator]).json()
        self.chamber.wait_state("kms_unsealed")
        self.unseal("alice").json()
        assert self.unseal("bob").json() == {"status": "unsealed", "validators_loaded": 0}
        self.import_key()

    def restart(self, state: str) -> dict[str, Any]:
        self.chamber.restart()
        return self.chamber.wait_state(state)

    def delete_kms_keys(self, key_ids: tuple[str, ...]) -> None:
        for key_id in key_ids:
            path = self.chamber.kms_dir / f"{key_id.removeprefix('local:')}.key"
            self.deleted_kms_files[path.name] = path.read_bytes()
            path.unlink()

    # ------------------------------------------------------------------ stored state

    def stored_record(self) -> dict[str, Any]:
        rows = [row for row in self.chamber.state_rows()["state"] if row[0] == RECORD_KEY]
        assert len(rows) == 1, rows
        record: dict[str, Any] = json.loads(rows[0][1])
        return record

    def stored_kcv(self) -> str:
        kcv: str = self.stored_record()["kcv"]
        return kcv

    def assert_same_master_key(self) -> None:
        assert self.kcv is not None
        assert self.stored_kcv() == self.kcv, "the key check value changed"

    # ------------------------------------------------------------------ the load

    @contextmanager
    def signing_load(self, section: str) -> Iterator[SigningLoad]:
        """Signing requests from before the body starts until after it ends; then every answer
        must have been 200."""
        assert self.chamber.signer is not None and self.chamber.signer.port is not None
        load = SigningLoad(self.chamber.signer.port, self.key)
        load.start()
        try:
            load.wait_answers(LOAD_MARGIN)
            yield load
            load.wait_answers(load.answered() + LOAD_MARGIN)
        finally:
            load.stop()
            LOAD_REPORT[section] = dict(load.statuses)
        assert set(load.statuses) == {"200"}, (dict(load.statuses), load.examples)
        assert load.samples, "no signed answer was sampled"
        verify_sample(load.samples[0])

    def assert_signs(self, section: str) -> None:
        with self.signing_load(section):
            pass

    # ------------------------------------------------------------------ secrets

    def assert_no_secret_leaked(self) -> None:
        """No secret in any log line, CLI output, HTTP answer or metrics page, nor in the
        databases; registration tokens only in the answer that handed them out; setup tokens
        only in their own log line."""
        chamber = self.chamber
        chamber.stop()
        secrets = {
            "ops auth token": OPS_TOKEN,
            "signing auth token": SIGNING_TOKEN,
            "keystore password": KEYSTORE_PASSWORD,
            "validator secret key": KEY.secret_hex[2:],
            "alice's second passphrase": ALICE_SECOND,
            **{f"passphrase of {op}": passphrase for op, passphrase in PASSPHRASES.items()},
            **{name: token for name, (token, _) in self.tokens.items()},
        }
        key_files = {
            name: data
            for name, data in {**chamber.kms_key_files(), **self.deleted_kms_files}.items()
            if len(data) == 32  # not the deliberately broken one
        }
        assert key_files, "no KMS key file found"
        for name, content in key_files.items():
            for i, form in enumerate(encodings(content)):
                secrets[f"KMS key file {name} (encoding {i})"] = form
        setup_tokens = chamber.setup_tokens()
        assert setup_tokens

        for where, text in chamber.transcript:
            lowered = text.lower()
            for name, secret in secrets.items():
                if name in self.tokens and where == self.tokens[name][1]:
                    continue  # handed to the ceremony coordinator, as the runbook shows
                assert secret.lower() not in lowered, f"{name} leaked into {where}"
            if where != "server log":
                for token in setup_tokens:
                    assert token not in text, f"a setup token leaked into {where}"
        for name, (token, where) in self.tokens.items():
            carriers = [w for w, text in chamber.transcript if token in text]
            assert carriers == [where], (name, carriers)

        lines = chamber.server_log_lines()
        for token in setup_tokens:
            carriers = [line for line in lines if token in line]
            assert len(carriers) == 1, carriers
            entry = json.loads(carriers[0])
            assert (entry["message"], entry["level"]) == (SETUP_LOG_MESSAGE, "WARNING")

        raw_secrets = {name: secret.encode() for name, secret in secrets.items()}
        raw_secrets["validator secret key (raw)"] = KEY.secret.to_bytes(32, "big")
        raw_secrets.update({f"KMS key file {name} (raw)": data for name, data in key_files.items()})
        raw_secrets.update({f"setup token {i}": t.encode() for i, t in enumerate(setup_tokens)})
        for file_name, data in chamber.files_at_rest().items():
            for name, raw in raw_secrets.items():
                assert raw not in data, f"{name} is stored in {file_name}"


@pytest.fixture
def scenario(tmp_path: Path, keystore_file: Path) -> Iterator[Scenario]:
    created = Scenario(tmp_path / "chamber", keystore_file)
    try:
        yield created
    finally:
        created.chamber.stop()


# ---------------------------------------------------------------------- assertions


def assert_refused(result: CliResult, status: int, *fragments: str) -> None:
    """The signer refused: exit 1, one ``containment-chamber: the signer answered ...`` line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    prefix = f"containment-chamber: the signer answered {status}: "
    assert result.stderr.startswith(prefix), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def refused_without_change(
    scenario: Scenario, result_of: Any, status: int, *fragments: str
) -> CliResult:
    before = scenario.chamber.state_rows()
    result: CliResult = result_of()
    assert_refused(result, status, *fragments)
    assert scenario.chamber.state_rows() == before, "a refused request changed the stored state"
    return result


def broken_kms_key(scenario: Scenario) -> Path:
    """A local KMS key whose file exists but is not a key (5 bytes): its round trip fails."""
    path = scenario.chamber.kms_dir / f"{BROKEN_KMS.removeprefix('local:')}.key"
    path.write_bytes(b"\x00\x01\x02\x03\x04")
    return path


def assert_failing_kms_key_changes_nothing(scenario: Scenario) -> None:
    path = broken_kms_key(scenario)
    refused_without_change(
        scenario,
        lambda: scenario.rotate(
            "kms", "--kms-key-arns", f"{NEW_KMS[0]},{BROKEN_KMS}", "--kms-threshold", "2"
        ),
        502,
        f"KMS key {BROKEN_KMS}: key file {path} is not a 32-byte key",
    )


# ---------------------------------------------------------------------- 1. KMS rotation


def test_rotate_kms_in_kms_only_mode(scenario: Scenario) -> None:
    scenario.init_kms_only()
    assert scenario.status()["seal"]["kms"] == {"threshold": 2, "keys": 3}

    with scenario.signing_load("rotate kms (kms_only)"):
        assert_failing_kms_key_changes_nothing(scenario)
        # Only a token with the chamber_rotate scope may rotate.
        refused_without_change(
            scenario,
            lambda: scenario.rotate(
                "kms",
                "--kms-key-arns",
                ",".join(NEW_KMS),
                "--kms-threshold",
                "2",
                token="env:SIGNING_TOKEN",
            ),
            403,
            "policy 'signing-client' does not grant scope 'chamber_rotate'",
        )
        # kms_only mode has no operators to rotate, and nothing to cancel.
        refused_without_change(
            scenario,
            lambda: scenario.rotate("unseal", "--unseal-threshold", "2", "--operators", "x,y"),
            409,
            "the chamber is in kms_only mode: use operator rotate mode --mode unseal",
        )
        refused_without_change(
            scenario,
            lambda: scenario.rotate("unseal-cancel"),
            409,
            "no operator rotation is in progress (state unsealed)",
        )
        answer = scenario.rotate(
            "kms", "--kms-key-arns", ",".join(NEW_KMS[:2]), "--kms-threshold", "2"
        ).json()
        assert answer == {"status": "ok", "shares": 2, "threshold": 2}
        status = scenario.status()
        assert status["seal"] == {
            "status": "unsealed",
            "mode": "kms_only",
            "kms": {"threshold": 2, "keys": 2},
        }
        scenario.assert_same_master_key()
    assert [share["key_id"] for share in scenario.stored_record()["kms"]["shares"]] == list(
        NEW_KMS[:2]
    )
    assert 'containment_rotations_total{kind="kms"} 1.0' in scenario.chamber.metrics()

    # The old keys are no longer needed: without them the signer unseals by itself.
    scenario.delete_kms_keys(OLD_KMS)
    status = scenario.restart("unsealed")
    assert status["keys"] == {"loaded": 1}
    scenario.assert_signs("after restart (kms_only, new KMS keys)")
    scenario.assert_same_master_key()
    scenario.assert_no_secret_leaked()


def test_rotate_kms_in_unseal_mode(scenario: Scenario) -> None:
    scenario.init_unseal_mode()
    operators_before = scenario.stored_record()["operators"]["members"]

    with scenario.signing_load("rotate kms (unseal)"):
        assert_failing_kms_key_changes_nothing(scenario)
        answer = scenario.rotate(
            "kms", "--kms-key-arns", ",".join(NEW_KMS), "--kms-threshold", "2"
        ).json()
        assert answer == {"status": "ok", "shares": 3, "threshold": 2}
        seal = scenario.status()["seal"]
        assert (seal["status"], seal["mode"], seal["kms"]) == (
            "unsealed",
            "unseal",
            {"threshold": 2, "keys": 3},
        )
        scenario.assert_same_master_key()
    record = scenario.stored_record()
    assert [share["key_id"] for share in record["kms"]["shares"]] == list(NEW_KMS)
    # The operators and their credentials are untouched (only the bundle is re-encrypted).
    assert record["operators"]["members"] == operators_before

    scenario.delete_kms_keys(OLD_KMS)
    scenario.restart("kms_unsealed")
    assert scenario.unseal("carol").json() == {"shares_received": 1, "shares_required": 2}
    assert scenario.unseal("alice").json() == {"status": "unsealed", "validators_loaded": 1}
    scenario.assert_signs("after restart (unseal, new KMS keys)")
    scenario.assert_same_master_key()
    scenario.assert_no_secret_leaked()


# ---------------------------------------------------------------------- 2. operator rotation


def test_rotate_unseal_replaces_the_operator_set(scenario: Scenario) -> None:
    scenario.init_unseal_mode()

    with scenario.signing_load("rotate unseal (completed)"):
        result = scenario.rotate(
            "unseal", "--unseal-threshold", "2", "--operators", ",".join(NEW_OPERATORS)
        )
        answer = result.json()
        assert answer["status"] == "awaiting_rotation"
        tokens = answer["operator_tokens"]
        assert sorted(tokens) == sorted(NEW_OPERATORS)
        assert "secure channel" in result.stderr
        scenario.keep_tokens(tokens, "rotation", "operator rotate stdout")
        status = scenario.status()
        assert status["seal"]["status"] == "awaiting_rotation"
        assert status["seal"]["operators"]["names"] == list(OLD_OPERATORS)
        # While the new set registers: no KMS rotation, no second operator rotation.
        refused_without_change(
            scenario,
            lambda: scenario.rotate(
                "kms", "--kms-key-arns", ",".join(NEW_KMS), "--kms-threshold", "2"
            ),
            409,
            "an operator rotation is in progress",
        )
        refused_without_change(
            scenario,
            lambda: scenario.rotate("unseal", "--unseal-threshold", "1", "--operators", "zed"),
            409,
            "an operator rotation is already in progress",
        )
        assert scenario.register("dave", tokens["dave"]).json() == {
            "registered": 1,
            "remaining": 2,
        }
        assert scenario.register("eve", tokens["eve"]).json() == {"registered": 2, "remaining": 1}
        assert scenario.register("frank", tokens["frank"]).json() == {
            "registered": 3,
            "remaining": 0,
            "status": "unsealed",
        }
        seal = scenario.status()["seal"]
        assert seal["status"] == "unsealed"
        assert seal["operators"] == {
            "threshold": 2,
            "names": list(NEW_OPERATORS),
            "registered": 3,
        }
        scenario.assert_same_master_key()
    assert scenario.stored_record()["rotation"] is None
    assert 'containment_rotations_total{kind="unseal"} 1.0' in scenario.chamber.metrics()

    scenario.restart("kms_unsealed")
    # The old operators are gone; two of the new ones unseal.
    for operator in OLD_OPERATORS:
        refused_without_change(
            scenario,
            lambda operator=operator: scenario.unseal(operator),
            400,
            f"operator: unknown operator '{operator}'",
        )
    assert scenario.unseal("frank").json() == {"shares_received": 1, "shares_required": 2}
    assert scenario.unseal("dave").json() == {"status": "unsealed", "validators_loaded": 1}
    scenario.assert_signs("after restart (new operators)")
    scenario.assert_same_master_key()
    scenario.assert_no_secret_leaked()


def test_rotate_unseal_cancel_restores_the_previous_set(scenario: Scenario) -> None:
    scenario.init_unseal_mode()
    before = scenario.stored_record()

    with scenario.signing_load("rotate unseal + unseal-cancel"):
        answer = scenario.rotate(
            "unseal", "--unseal-threshold", "2", "--operators", ",".join(NEW_OPERATORS)
        ).json()
        assert answer["status"] == "awaiting_rotation"
        tokens = answer["operator_tokens"]
        scenario.keep_tokens(tokens, "rotation", "operator rotate stdout")
        assert scenario.register("dave", tokens["dave"]).json() == {
            "registered": 1,
            "remaining": 2,
        }
        assert scenario.rotate("unseal-cancel").json() == {"status": "unsealed"}
        # The rotation's tokens died with it.
        refused_without_change(
            scenario,
            lambda: scenario.register("eve", tokens["eve"]),
            409,
            "no registration is in progress (state unsealed)",
        )
        refused_without_change(
            scenario,
            lambda: scenario.rotate("unseal-cancel"),
            409,
            "no operator rotation is in progress (state unsealed)",
        )
        seal = scenario.status()["seal"]
        assert seal["status"] == "unsealed"
        assert seal["operators"]["names"] == list(OLD_OPERATORS)
        scenario.assert_same_master_key()
    # Exactly the previous configuration: same KMS layer, same operators, same bundle.
    after = scenario.stored_record()
    assert after["rotation"] is None
    for part in ("kms", "operators", "kcv", "mode", "chamber_id"):
        assert after[part] == before[part], part

    scenario.restart("kms_unsealed")
    refused_without_change(
        scenario, lambda: scenario.unseal("dave"), 400, "operator: unknown operator 'dave'"
    )
    assert scenario.unseal("bob").json() == {"shares_received": 1, "shares_required": 2}
    assert scenario.unseal("carol").json() == {"status": "unsealed", "validators_loaded": 1}
    scenario.assert_signs("after restart (previous operators)")
    scenario.assert_same_master_key()
    scenario.assert_no_secret_leaked()


# ---------------------------------------------------------------------- 3. mode switch


def test_rotate_mode_kms_only_to_unseal_and_back(scenario: Scenario) -> None:
    scenario.init_kms_only()

    with scenario.signing_load("rotate mode kms_only -> unseal"):
        refused_without_change(
            scenario,
            lambda: scenario.rotate("mode", "--mode", "kms_only"),
            409,
            "the chamber is already in kms_only mode",
        )
        refused_without_change(
            scenario,
            lambda: scenario.rotate("mode", "--mode", "unseal"),
            400,
            "operators: switching to unseal mode needs operators and an unseal_threshold",
        )
        result = scenario.rotate(
            "mode",
            "--mode",
            "unseal",
            "--unseal-threshold",
            "2",
            "--operators",
            ",".join(OLD_OPERATORS),
        )
        answer = result.json()
        assert answer["status"] == "awaiting_rotation"
        tokens = answer["operator_tokens"]
        assert sorted(tokens) == sorted(OLD_OPERATORS)
        assert "secure channel" in result.stderr
        scenario.keep_tokens(tokens, "mode switch", "operator rotate stdout")
        seal = scenario.status()["seal"]
        assert (seal["status"], seal["mode"]) == ("awaiting_rotation", "kms_only")
        for count, operator in enumerate(OLD_OPERATORS, start=1):
            answer = scenario.register(operator, tokens[operator]).json()
            assert (answer["registered"], answer["remaining"]) == (count, 3 - count)
        assert answer["status"] == "unsealed"
        seal = scenario.status()["seal"]
        assert (seal["status"], seal["mode"]) == ("unsealed", "unseal")
        scenario.assert_same_master_key()

    # Unseal mode now: a restart waits for the operators.
    scenario.restart("kms_unsealed")
    scenario.unseal("carol").json()
    assert scenario.unseal("bob").json() == {"status": "unsealed", "validators_loaded": 1}

    with scenario.signing_load("rotate mode unseal -> kms_only"):
        refused_without_change(
            scenario,
            lambda: scenario.rotate(
                "mode", "--mode", "kms_only", "--unseal-threshold", "2", "--operators", "a,b"
            ),
            400,
            "operators: kms_only mode has no operators",
        )
        assert scenario.rotate("mode", "--mode", "kms_only").json() == {
            "status": "unsealed",
            "mode": "kms_only",
        }
        assert scenario.status()["seal"] == {
            "status": "unsealed",
            "mode": "kms_only",
            "kms": {"threshold": 2, "keys": 3},
        }
        scenario.assert_same_master_key()
    assert scenario.stored_record()["operators"] is None
    # (Counted per process: the restart above reset the counters.)
    assert 'containment_rotations_total{kind="mode"} 1.0' in scenario.chamber.metrics()

    # kms_only again: the restart unseals with no human step.
    status = scenario.restart("unsealed")
    assert status["keys"] == {"loaded": 1}
    scenario.assert_signs("after restart (back to kms_only)")
    scenario.assert_same_master_key()
    scenario.assert_no_secret_leaked()


# ---------------------------------------------------------------------- 4. credentials


def test_multiple_credentials_while_signing(scenario: Scenario) -> None:
    """The runbook's "Registering Multiple Credentials" (tests/test_vault_credentials.py covers
    it in depth), here with signing going on: a second password, the first removed, and after a
    restart the second one unseals."""
    scenario.init_unseal_mode()
    chamber = scenario.chamber

    with scenario.signing_load("credentials add / remove"):
        answer = add(
            chamber, "alice", "password-1", PASSPHRASES["alice"], "password-2", ALICE_SECOND
        )
        assert answer.json() == {"operator": "alice", "credential_id": "password-2"}
        assert list_ids(chamber, "alice") == ["password-1", "password-2"]
        answer = remove(chamber, "alice", "password-2", ALICE_SECOND, "password-1")
        assert answer.json() == {"operator": "alice", "removed_credential_id": "password-1"}
        assert list_ids(chamber, "alice") == ["password-2"]
        assert scenario.status()["seal"]["status"] == "unsealed"
        scenario.assert_same_master_key()

    scenario.restart("kms_unsealed")
    refused_without_change(
        scenario,
        lambda: scenario.unseal("alice"),
        401,
        "wrong passphrase for operator 'alice'",
    )
    assert scenario.unseal("alice", ALICE_SECOND).json() == {
        "shares_received": 1,
        "shares_required": 2,
    }
    assert scenario.unseal("bob").json() == {"status": "unsealed", "validators_loaded": 1}
    scenario.assert_signs("after restart (alice's second password)")
    scenario.assert_same_master_key()
    scenario.assert_no_secret_leaked()


# ---------------------------------------------------------------------- 5. the CLI alone

NO_SIGNER = "http://127.0.0.1:1"
ROTATE_FLAGS = {
    "kms": ["--auth-token", "--kms-key-arns", "--kms-threshold", "--signer-url"],
    "unseal": ["--auth-token", "--unseal-threshold", "--operators", "--signer-url"],
    "unseal-cancel": ["--auth-token", "--signer-url", "--allow-plaintext-signer"],
    "mode": ["--auth-token", "--mode", "--unseal-threshold", "--operators", "--signer-url"],
}


def help_text(*command: str) -> str:
    buffer = io.StringIO()
    operator_app.help_print(list(command), console=Console(file=buffer, width=200))
    return buffer.getvalue()


def test_rotate_help_lists_the_runbook_commands_and_flags() -> None:
    overview = cli("operator", "rotate", "--help")  # registered in the real command line
    assert overview.returncode == 0, overview.stderr
    for command in ROTATE_FLAGS:
        assert command in overview.stdout
    assert "rotate" in help_text()
    for command, flags in ROTATE_FLAGS.items():
        text = help_text("rotate", command)
        for flag in flags:
            assert flag in text, (command, flag)


def test_rotate_usage_errors() -> None:
    for args in (
        ["kms", "--kms-key-arns", "local:a", "--kms-threshold", "1"],
        ["unseal", "--unseal-threshold", "1", "--operators", "dave"],
        ["unseal-cancel"],
        ["mode", "--mode", "kms_only"],
    ):
        # A literal token is refused before anything is sent.
        literal = cli("operator", "rotate", *args, "--auth-token", "abc", "--signer-url", NO_SIGNER)
        assert literal.returncode == 2, (args, literal.stderr)
        assert "env:VAR" in literal.stderr and "abc" not in literal.stderr
        # Plain HTTP to another host needs --allow-plaintext-signer.
        remote = cli(
            "operator",
            "rotate",
            *args,
            "--auth-token",
            "env:CC_TEST_TOKEN",
            "--signer-url",
            "http://10.1.2.3:9000",
            env={"CC_TEST_TOKEN": "some-token-0123456789"},
        )
        assert remote.returncode == 2, (args, remote.stderr)
        assert "--allow-plaintext-signer" in remote.stderr
    bad_mode = cli("operator", "rotate", "mode", "--mode", "sideways", "--auth-token", "env:X")
    assert bad_mode.returncode == 2 and "kms_only" in bad_mode.stderr
    empty = cli(
        "operator",
        "rotate",
        "kms",
        "--kms-key-arns",
        " , ",
        "--kms-threshold",
        "1",
        "--auth-token",
        "env:CC_TEST_TOKEN",
        "--signer-url",
        NO_SIGNER,
        env={"CC_TEST_TOKEN": "some-token-0123456789"},
    )
    assert empty.returncode == 2
    assert "--kms-key-arns: give at least one comma-separated value" in empty.stderr
    unreachable = cli(
        "operator",
        "rotate",
        "unseal-cancel",
        "--auth-token",
        "-",
        "--signer-url",
        NO_SIGNER,
        stdin="token-from-stdin-0123456789\n",
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("containment-chamber: cannot reach the signer at ")
    assert "token-from-stdin" not in unreachable.stderr


# ---------------------------------------------------------------------- 6. defects found
#
# Each test below shows one defect found while writing this file (see its xfail reason); the
# in-process ones drive :class:`Vault` directly, which is cheaper and deterministic.

SMALL_ARGON2 = kdf.Argon2Params(memory_kib=1024, iterations=1, parallelism=1)
UNIT_KMS = ["local:unit-a", "local:unit-b"]


def pw(operator: str, credential_id: str = "password-1") -> bytes:
    return f"{operator} / {credential_id}: long enough passphrase".encode()


class StepHooks(VaultHooks):
    def __init__(self) -> None:
        self.steps: list[tuple[str, dict[str, Any]]] = []

    def ceremony_step(self, step: str, details: Any) -> None:
        self.steps.append((step, dict(details)))


class SlowAnswerStore:
    """The SQLite state store, but while ``slow`` is set ``put`` answers ``delay`` seconds after
    committing, as a remote store (DynamoDB) does while its answer is on the way: the new record
    is visible to readers before the writer has learnt its version."""

    name = "slow-answer"

    def __init__(self, inner: SQLiteStateBackend, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.slow = False

    def get(self, key: str) -> tuple[bytes, int] | None:
        return self.inner.get(key)

    def put(self, key: str, value: bytes, expected_version: int) -> int:
        version = self.inner.put(key, value, expected_version)
        if self.slow:
            time.sleep(self.delay)
        return version

    def delete(self, key: str, expected_version: int) -> None:
        self.inner.delete(key, expected_version)

    def close(self) -> None:
        self.inner.close()


@contextmanager
def booted_vault(
    root: Path, *, store: Any = None, refresh_interval_seconds: float = 0.0
) -> Iterator[tuple[Vault, str]]:
    """A vault on SQLite and the local KMS, booted: (vault, the setup token it logged)."""
    tokens: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "setup_token" in record.__dict__:
                tokens.append(str(record.__dict__["setup_token"]))

    logger = logging.getLogger("chamber.vault")
    handler, level = Grab(level=logging.DEBUG), logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    vault = Vault(
        store or SQLiteStateBackend(root / "state.sqlite"),
        KmsSet({"local": LocalKms}, {"local": {"directory": str(root / "kms")}}),
        {"passphrase": PassphraseCredential},
        options=VaultOptions(
            argon2=SMALL_ARGON2,
            kms_retry_max_seconds=0.2,
            refresh_interval_seconds=refresh_interval_seconds,
        ),
        hooks=StepHooks(),
    )
    try:
        vault.boot()
        assert tokens, "no setup token logged"
        yield vault, tokens[-1]
    finally:
        vault.stop()
        vault.store.close()
        logger.removeHandler(handler)
        logger.setLevel(level)


def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_switch_to_unseal_mode_completes_as_a_mode_rotation(tmp_path: Path) -> None:
    with booted_vault(tmp_path) as (vault, setup_token):
        vault.init(setup_token, UNIT_KMS, 2)
        tokens = vault.rotate_mode("unseal", ["alice"], 1)["operator_tokens"]
        assert vault.register("alice", tokens["alice"], pw("alice"))["status"] == "unsealed"
        hooks = vault.hooks
        assert isinstance(hooks, StepHooks)
        assert ("rotation_started", {"kind": "mode", "operators": ["alice"]}) in hooks.steps
        assert hooks.steps[-1] == ("rotation_complete", {"kind": "mode"})


def test_the_poll_does_not_follow_this_replicas_own_commit(tmp_path: Path) -> None:
    store = SlowAnswerStore(SQLiteStateBackend(tmp_path / "state.sqlite"), delay=0.3)
    with booted_vault(tmp_path, store=store, refresh_interval_seconds=0.02) as (vault, token):
        tokens = vault.init(token, UNIT_KMS, 2, ["alice", "bob"], 2)["operator_tokens"]
        vault.register("alice", tokens["alice"], pw("alice"))
        vault.register("bob", tokens["bob"], pw("bob"))
        wait_for(lambda: vault.state == states.KMS_UNSEALED, "kms_unsealed")
        assert vault.unseal("alice", pw("alice")) == {"shares_received": 1, "shares_required": 2}
        store.slow = True
        vault.add_credential("bob", "password-1", pw("bob"), "password-2", pw("bob", "2"))
        store.slow = False
        time.sleep(0.5)  # many poll intervals
        wait_for(lambda: vault.state == states.KMS_UNSEALED, "kms_unsealed again")
        assert vault.shares_received == 1, "alice's share was dropped"
        assert vault.unseal("bob", pw("bob", "2"))["status"] == "unsealed"


def test_status_counts_a_key_imported_after_unsealing(scenario: Scenario) -> None:
    scenario.init_kms_only()  # unsealed with 0 keys, then one key imported
    scenario.assert_signs("status after keys import")
    assert scenario.status()["keys"] == {"loaded": 1}
