"""Operator credentials: ``operator credentials add | remove | list`` and
``/api/v1/chamber/unseal/credentials``.

Part 1 follows the runbook's "Registering Multiple Credentials" and "Managing credentials" on a
real signer process driven by the real CLI (``tests/vault_support.py``: SQLite state, local file
KMS, small Argon2id). Its tests share one signer and run in file order, each starting by checking
the state it needs; refusals are checked for their status, message and for leaving the stored
state byte-identical, and the last one searches everything that left the processes (and the
files at rest) for the passphrases.

Part 2 is the CLI alone (usage errors, prompts, help). Part 3 drives :class:`Vault` in process
for the edge cases that are cheaper there.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import cyclopts
import falcon.testing
import pytest
import yaml
from rich.console import Console

from chamber.api.app import create_falcon_app
from chamber.cli.operator import operator_app
from chamber.config import Settings
from chamber.crypto import kdf
from chamber.errors import (
    BadRequest,
    ChamberError,
    Conflict,
    KmsError,
    TooManyAttempts,
    Unauthorized,
)
from chamber.plugins import load_plugins
from chamber.signer import build_signer
from chamber.vault import states
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.limiter import AttemptLimiter
from chamber.vault.local_kms import LocalKms
from chamber.vault.records import RECORD_KEY, VaultRecord
from chamber.vault.service import Vault, VaultHooks, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests.vault_support import (
    ARGON2,
    OPS_TOKEN,
    SIGNING_TOKEN,
    Chamber,
    CliResult,
    TerminalSession,
    cli,
    encodings,
)

OPERATORS = ("alice", "bob")
KMS_KEYS = "local:credentials-a,local:credentials-b,local:credentials-c"
PASSPHRASES = {
    "alice/password-1": "alice: the first passphrase, long enough",
    "alice/password-2": "alice: a second passphrase for the vault",
    "alice/password-3": "alice: third, added after the Argon2 change",
    "bob/password-1": "bob's passphrase, long enough 42",
    "bob/password-2": "bob types this one at a real prompt",
}
WRONG_PASSPHRASE = "certainly not alice's passphrase"
SHORT_PASSPHRASE = "fifteen chars.."  # 15 characters: one short
BIGGER_MEMORY_KIB = 2 * ARGON2["memory_kib"]
CREDENTIALS_PATH = "/api/v1/chamber/unseal/credentials"
NO_SIGNER = "http://127.0.0.1:1"


def secret(operator: str, credential_id: str) -> str:
    return PASSPHRASES[f"{operator}/{credential_id}"]


@pytest.fixture(scope="module")
def chamber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chamber]:
    cham = Chamber(tmp_path_factory.mktemp("credentials"))
    cham.start()
    try:
        yield cham
    finally:
        cham.stop()


class Flow:
    """What the ordered scenario tests pass on to the next one."""

    tokens: ClassVar[dict[str, str]] = {}


# ---------------------------------------------------------------------- CLI helpers


def credentials(chamber: Chamber, command: str, *args: str, stdin: str | None = None) -> CliResult:
    return chamber.run_cli(
        "operator", "credentials", command, *args, "--signer-url", chamber.url, stdin=stdin
    )


def add(
    chamber: Chamber,
    operator: str,
    existing_id: str,
    existing: str,
    new_id: str,
    new: str,
) -> CliResult:
    return credentials(
        chamber,
        "add",
        "--operator",
        operator,
        "--existing-credential-id",
        existing_id,
        "--new-credential-id",
        new_id,
        "--passphrase-stdin",
        stdin=f"{existing}\n{new}\n",
    )


def remove(
    chamber: Chamber, operator: str, existing_id: str, existing: str, remove_id: str
) -> CliResult:
    return credentials(
        chamber,
        "remove",
        "--operator",
        operator,
        "--existing-credential-id",
        existing_id,
        "--remove-credential-id",
        remove_id,
        "--passphrase-stdin",
        stdin=f"{existing}\n",
    )


def list_ids(chamber: Chamber, operator: str) -> list[str]:
    answer = credentials(chamber, "list", "--operator", operator).json()
    assert answer["operator"] == operator
    ids: list[str] = answer["credential_ids"]
    return ids


def unseal(chamber: Chamber, operator: str, passphrase: str) -> CliResult:
    return chamber.operator(
        "unseal", "--operator", operator, "--passphrase-stdin", stdin=passphrase + "\n"
    )


def register(chamber: Chamber, operator: str, token: str, passphrase: str) -> CliResult:
    return chamber.operator(
        "register",
        "--operator",
        operator,
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--passphrase-stdin",
        stdin=passphrase + "\n",
        env={"REGISTRATION_TOKEN": token},
    )


def assert_refused(result: CliResult, status: int, message: str) -> None:
    """The signer refused: exit 1, one ``containment-chamber: the signer answered ...`` line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    prefix = f"containment-chamber: the signer answered {status}: "
    assert result.stderr.startswith(prefix), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def assert_usage_error(result: CliResult, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def refused_without_change(
    chamber: Chamber, result_of: Callable[[], CliResult], status: int, message: str
) -> CliResult:
    before = chamber.state_rows()
    result = result_of()
    assert_refused(result, status, message)
    assert chamber.state_rows() == before, "a refused request changed the stored state"
    return result


def stored_credentials(chamber: Chamber, operator: str) -> dict[str, dict[str, int]]:
    """credential id → stored Argon2 parameters, read from the state DB's ``MASTER_KEY`` row."""
    rows = [row for row in chamber.state_rows()["state"] if row[0] == RECORD_KEY]
    assert len(rows) == 1, rows
    record = json.loads(rows[0][1])
    [member] = [m for m in record["operators"]["members"] if m["name"] == operator]
    return {c["credential_id"]: c["params"] for c in member["credentials"]}


def seal_status(chamber: Chamber) -> dict[str, Any]:
    seal: dict[str, Any] = chamber.status()["seal"]
    return seal


# ---------------------------------------------------------------------- 1. the runbook flow


def test_multiple_credentials_register_add_list_unseal_remove_restart(chamber: Chamber) -> None:
    setup_token = chamber.wait_setup_token()
    init = chamber.operator(
        "init",
        "--setup-token",
        "env:SETUP_TOKEN",
        "--kms-key-arns",
        KMS_KEYS,
        "--kms-threshold",
        "2",
        "--unseal-threshold",
        "2",
        "--operators",
        ",".join(OPERATORS),
        env={"SETUP_TOKEN": setup_token},
    ).json()
    Flow.tokens = init["operator_tokens"]
    for operator in OPERATORS:
        register(chamber, operator, Flow.tokens[operator], secret(operator, "password-1")).json()
    chamber.wait_state("kms_unsealed")
    assert list_ids(chamber, "alice") == ["password-1"]

    # A second password credential, added while the KMS layer is open (kms_unsealed).
    before = stored_credentials(chamber, "alice")
    answer = add(
        chamber,
        "alice",
        "password-1",
        secret("alice", "password-1"),
        "password-2",
        secret("alice", "password-2"),
    ).json()
    assert answer == {"operator": "alice", "credential_id": "password-2"}
    after = stored_credentials(chamber, "alice")
    assert after["password-1"] == before["password-1"]
    assert after["password-2"] == ARGON2
    assert list_ids(chamber, "alice") == ["password-1", "password-2"]
    assert list_ids(chamber, "bob") == ["password-1"]
    seal = seal_status(chamber)
    assert (seal["status"], seal["shares_received"]) == ("kms_unsealed", 0)

    # Unseal with alice's SECOND passphrase, no credential id named; then bob's.
    assert unseal(chamber, "alice", secret("alice", "password-2")).json() == {
        "shares_received": 1,
        "shares_required": 2,
    }
    assert unseal(chamber, "bob", secret("bob", "password-1")).json() == {
        "status": "unsealed",
        "validators_loaded": 0,
    }

    # While unsealed (the operator bundle is closed: the signer reopens it through KMS), the old
    # credential is removed, proven by the new one.
    answer = remove(chamber, "alice", "password-2", secret("alice", "password-2"), "password-1")
    assert answer.json() == {"operator": "alice", "removed_credential_id": "password-1"}
    assert list_ids(chamber, "alice") == ["password-2"]
    assert list(stored_credentials(chamber, "alice")) == ["password-2"]
    assert seal_status(chamber)["status"] == "unsealed"

    # After a restart the new passphrase unseals and the removed one no longer does.
    chamber.restart()
    chamber.wait_state("kms_unsealed")
    refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", secret("alice", "password-1")),
        401,
        "wrong passphrase for operator 'alice'",
    )
    assert unseal(chamber, "alice", secret("alice", "password-2")).json()["shares_received"] == 1
    assert unseal(chamber, "bob", secret("bob", "password-1")).json()["status"] == "unsealed"


def test_credential_refusals_leave_the_stored_state_unchanged(chamber: Chamber) -> None:
    chamber.wait_state("unsealed", timeout=15)
    alice = secret("alice", "password-2")

    # The last credential cannot be removed (proven or not).
    result = refused_without_change(
        chamber,
        lambda: remove(chamber, "alice", "password-2", alice, "password-2"),
        409,
        "'password-2' is the last credential of operator 'alice'",
    )
    assert alice not in result.stderr
    # A wrong existing passphrase.
    result = refused_without_change(
        chamber,
        lambda: add(
            chamber,
            "alice",
            "password-2",
            WRONG_PASSPHRASE,
            "password-3",
            secret("alice", "password-3"),
        ),
        401,
        "wrong passphrase for credential 'password-2' of operator 'alice'",
    )
    assert WRONG_PASSPHRASE not in result.stderr
    # The new credential id is taken.
    refused_without_change(
        chamber,
        lambda: add(chamber, "alice", "password-2", alice, "password-2", "yet another passphrase!"),
        409,
        "operator 'alice' already has a credential 'password-2'",
    )
    # An unknown operator, for each command.
    for result_of in (
        lambda: add(chamber, "dave", "password-1", alice, "password-2", "yet another passphrase!"),
        lambda: remove(chamber, "dave", "password-1", alice, "password-2"),
        lambda: credentials(chamber, "list", "--operator", "dave"),
    ):
        refused_without_change(chamber, result_of, 400, "operator: unknown operator 'dave'")
    # A new passphrase under 16 characters.
    result = refused_without_change(
        chamber,
        lambda: add(chamber, "alice", "password-2", alice, "password-3", SHORT_PASSPHRASE),
        400,
        "passphrase too short: at least 16 characters",
    )
    assert SHORT_PASSPHRASE not in result.stderr
    # Unknown credential ids, an invalid new id.
    refused_without_change(
        chamber,
        lambda: add(chamber, "alice", "password-1", alice, "password-3", "yet another passphrase!"),
        400,
        "existing_credential_id: operator 'alice' has no credential 'password-1'",
    )
    refused_without_change(
        chamber,
        lambda: remove(chamber, "bob", "password-1", secret("bob", "password-1"), "password-9"),
        400,
        "remove_credential_id: operator 'bob' has no credential 'password-9'",
    )
    refused_without_change(
        chamber,
        lambda: add(chamber, "alice", "password-2", alice, "bad id!", "yet another passphrase!"),
        400,
        "1 to 64 characters",
    )
    assert list_ids(chamber, "alice") == ["password-2"]
    assert seal_status(chamber)["status"] == "unsealed"


def test_credential_routes_over_plain_http(chamber: Chamber) -> None:
    """Listing needs no token; add and remove are proven by the body alone; missing fields are
    400 with ``field``."""
    chamber.wait_state("unsealed", timeout=15)
    listed = chamber.http("GET", f"{CREDENTIALS_PATH}?operator=bob")
    assert listed.status == 200, listed.body
    assert listed.json()["operator"] == "bob"
    assert listed.json()["credential_ids"] == ["password-1"]
    assert [c["type"] for c in listed.json()["credentials"]] == ["passphrase"]
    missing = chamber.http("GET", CREDENTIALS_PATH)
    assert missing.status == 400 and missing.json()["field"] == "operator"

    before = chamber.state_rows()
    for method, body, field_name in (
        ("POST", {"operator": "alice"}, "existing_credential_id"),
        (
            "POST",
            {"operator": "alice", "existing_credential_id": "password-2", "new_credential_id": "x"},
            "existing_passphrase",
        ),
        (
            "DELETE",
            {"operator": "alice", "existing_credential_id": "password-2"},
            "remove_credential_id",
        ),
        ("DELETE", {"existing_credential_id": "password-2"}, "operator"),
    ):
        answer = chamber.http(method, CREDENTIALS_PATH, body)
        assert answer.status == 400, (method, body, answer.body)
        assert answer.json()["field"] == field_name, answer.body
    assert chamber.state_rows() == before

    # Since the last restart: one wrong existing passphrase (the refusals above).
    metrics = chamber.metrics()
    assert 'containment_credential_failures_total{ceremony="credential"} 1.0' in metrics


def test_add_prompts_for_both_passphrases_without_echo(chamber: Chamber) -> None:
    chamber.wait_state("unsealed", timeout=15)
    terminal = TerminalSession(
        "operator",
        "credentials",
        "add",
        "--operator",
        "bob",
        "--existing-credential-id",
        "password-1",
        "--new-credential-id",
        "password-2",
        "--signer-url",
        chamber.url,
        env=chamber.env,
    )
    terminal.expect("Existing passphrase: ")
    terminal.type_line(secret("bob", "password-1"))
    terminal.expect("New passphrase: ")
    terminal.type_line(secret("bob", "password-2"))
    terminal.expect("Repeat: ")
    terminal.type_line(secret("bob", "password-2"))
    code, screen = terminal.finish()
    chamber.transcript.append(("operator credentials add (terminal)", screen))
    assert code == 0, screen
    assert json.loads(screen[screen.index("{") :]) == {
        "operator": "bob",
        "credential_id": "password-2",
    }
    assert list_ids(chamber, "bob") == ["password-1", "password-2"]


def test_raised_argon2_parameters_apply_to_new_credentials_only(chamber: Chamber) -> None:
    chamber.wait_state("unsealed", timeout=15)
    chamber.stop()
    config = yaml.safe_load(chamber.config_path.read_text())
    config["vault"]["argon2"]["memory_kib"] = BIGGER_MEMORY_KIB
    chamber.config_path.write_text(yaml.safe_dump(config))
    bigger = {**ARGON2, "memory_kib": BIGGER_MEMORY_KIB}
    chamber.start()
    chamber.wait_state("kms_unsealed")

    # Credentials made under the old parameters still unseal (bob's second one, at a prompt).
    assert unseal(chamber, "alice", secret("alice", "password-2")).json()["shares_received"] == 1
    assert unseal(chamber, "bob", secret("bob", "password-2")).json()["status"] == "unsealed"

    answer = add(
        chamber,
        "alice",
        "password-2",
        secret("alice", "password-2"),
        "password-3",
        secret("alice", "password-3"),
    )
    assert answer.json() == {"operator": "alice", "credential_id": "password-3"}
    assert stored_credentials(chamber, "alice") == {"password-2": ARGON2, "password-3": bigger}
    assert stored_credentials(chamber, "bob") == {"password-1": ARGON2, "password-2": ARGON2}
    assert 'containment_ceremony_steps_total{step="credential_added"} 1.0' in chamber.metrics()

    chamber.restart()
    chamber.wait_state("kms_unsealed")
    assert unseal(chamber, "alice", secret("alice", "password-3")).json()["shares_received"] == 1
    assert unseal(chamber, "bob", secret("bob", "password-1")).json()["status"] == "unsealed"


def test_no_passphrase_left_the_processes(chamber: Chamber) -> None:
    chamber.metrics()
    chamber.stop()  # the server log joins the transcript
    secrets = {
        **{f"passphrase {name}": value for name, value in PASSPHRASES.items()},
        "wrong passphrase": WRONG_PASSPHRASE,
        "short passphrase": SHORT_PASSPHRASE,
        "ops token": OPS_TOKEN,
        "signing token": SIGNING_TOKEN,
        **{f"registration token of {op}": token for op, token in Flow.tokens.items()},
    }
    for name, content in chamber.kms_key_files().items():
        for i, form in enumerate(encodings(content)):
            secrets[f"KMS key file {name} (encoding {i})"] = form
    assert Flow.tokens and chamber.kms_key_files()
    assert any(where == "server log" for where, _ in chamber.transcript)
    for where, text in chamber.transcript:
        for name, value in secrets.items():
            if name.startswith("registration token") and where == "operator init stdout":
                continue  # handed to the coordinator by design
            assert value.lower() not in text.lower(), f"{name} leaked into {where}"
    for file_name, data in chamber.files_at_rest().items():
        for name, value in secrets.items():
            if name.startswith(("passphrase", "wrong", "short", "ops", "signing")):
                assert value.encode() not in data, f"{name} is stored in {file_name}"


# ---------------------------------------------------------------------- 2. the CLI alone


def test_cli_usage_errors_come_before_any_request() -> None:
    one_line = cli(
        "operator",
        "credentials",
        "add",
        "--operator",
        "alice",
        "--existing-credential-id",
        "password-1",
        "--new-credential-id",
        "password-2",
        "--passphrase-stdin",
        "--signer-url",
        NO_SIGNER,
        stdin="only the existing passphrase\n",
    )
    assert_usage_error(one_line, "reads two lines", "the new one is missing")
    assert "only the existing" not in one_line.stderr
    empty = cli(
        "operator",
        "credentials",
        "remove",
        "--operator",
        "alice",
        "--existing-credential-id",
        "password-1",
        "--remove-credential-id",
        "password-2",
        "--passphrase-stdin",
        "--signer-url",
        NO_SIGNER,
        stdin="",
    )
    assert_usage_error(empty, "no passphrase was read from standard input")
    for args in (
        ["add", "--existing-credential-id", "a", "--new-credential-id", "b", "--passphrase-stdin"],
        ["remove", "--existing-credential-id", "a", "--remove-credential-id", "b"],
        ["list"],
    ):
        result = cli(
            "operator",
            "credentials",
            *args,
            "--operator",
            "alice",
            "--signer-url",
            "http://10.1.2.3:9000",
            stdin="a passphrase that is never read\na second one, never read\n",
        )
        assert_usage_error(result, "refusing plain HTTP to 10.1.2.3", "--allow-plaintext-signer")
    unreachable = cli(
        "operator", "credentials", "list", "--operator", "alice", "--signer-url", NO_SIGNER
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("containment-chamber: cannot reach the signer at ")


def test_add_prompt_refuses_two_different_new_passphrases() -> None:
    terminal = TerminalSession(
        "operator",
        "credentials",
        "add",
        "--operator",
        "alice",
        "--existing-credential-id",
        "password-1",
        "--new-credential-id",
        "password-2",
        "--signer-url",
        NO_SIGNER,
    )
    terminal.expect("Existing passphrase: ")
    terminal.type_line("the existing passphrase here")
    terminal.expect("New passphrase: ")
    terminal.type_line("first attempt at a new one")
    terminal.expect("Repeat: ")
    terminal.type_line("second attempt at a new one")
    code, screen = terminal.finish()
    assert code == 2
    assert "the two passphrases differ" in screen
    assert "attempt at a new one" not in screen and "existing passphrase here" not in screen


def _help(app: cyclopts.App, *command: str) -> str:
    buffer = io.StringIO()
    app.help_print(list(command), console=Console(file=buffer, width=200))
    return buffer.getvalue()


def test_credentials_help_lists_the_runbook_flags() -> None:
    assert "credentials" in _help(operator_app)
    overview = _help(operator_app, "credentials")
    for command in ("add", "remove", "list"):
        assert command in overview
    common = ["--operator", "--signer-url", "--allow-plaintext-signer"]
    expected = {
        "add": [*common, "--existing-credential-id", "--new-credential-id", "--passphrase-stdin"],
        "remove": [
            *common,
            "--existing-credential-id",
            "--remove-credential-id",
            "--passphrase-stdin",
        ],
        "list": common,
    }
    for command, flags in expected.items():
        text = _help(operator_app, "credentials", command)
        for flag in flags:
            assert flag in text, (command, flag)
        assert "--auth-token" not in text
    # The credential-type flags choose the NEW credential's type (issue 6).
    add_help = _help(operator_app, "credentials", "add")
    for flag in ("--yubikey", "--secrets-manager-id", "--credential-type"):
        assert flag in add_help, flag
    assert "--passphrase-stdin" not in _help(operator_app, "credentials", "list")


# ---------------------------------------------------------------------- 3. the vault in process

SMALL_ARGON2 = kdf.Argon2Params(memory_kib=1024, iterations=1, parallelism=1)
BIGGER_ARGON2 = kdf.Argon2Params(memory_kib=2048, iterations=2, parallelism=1)
LOCAL_KEYS = ["local:unit-a", "local:unit-b"]


def pw(operator: str, credential_id: str = "password-1") -> bytes:
    return f"{operator} / {credential_id}: long enough passphrase".encode()


class Hooks(VaultHooks):
    def __init__(self) -> None:
        self.steps: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[tuple[str, str]] = []

    def ceremony_step(self, step: str, details: Any) -> None:
        self.steps.append((step, dict(details)))

    def credential_failure(self, operator: str, ceremony: str) -> None:
        self.failures.append((operator, ceremony))


class SetupTokens(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.tokens: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "setup_token" in record.__dict__:
            self.tokens.append(str(record.__dict__["setup_token"]))


class Lab:
    """One chamber's files (SQLite state, local KMS directory) and the vaults opened on them."""

    def __init__(self, root: Path, tokens: SetupTokens) -> None:
        self.root = root
        self.tokens = tokens
        self.vaults: list[Vault] = []

    def boot(
        self, argon2: kdf.Argon2Params = SMALL_ARGON2, limiter: AttemptLimiter | None = None
    ) -> Vault:
        vault = Vault(
            SQLiteStateBackend(self.root / "state.sqlite"),
            KmsSet({"local": LocalKms}, {"local": {"directory": str(self.root / "kms")}}),
            {"passphrase": PassphraseCredential},
            options=VaultOptions(argon2=argon2, kms_retry_max_seconds=0.2),
            limiter=limiter,
            hooks=Hooks(),
        )
        self.vaults.append(vault)
        vault.boot()
        return vault

    def restart(self, old: Vault, **kw: Any) -> Vault:
        old.stop()
        old.store.close()
        return self.boot(**kw)

    def close(self) -> None:
        for vault in self.vaults:
            vault.stop()
            vault.store.close()

    def init(
        self, vault: Vault, operators: tuple[str, ...] = ("alice", "bob", "carol")
    ) -> dict[str, str]:
        answer = vault.init(self.tokens.tokens[-1], LOCAL_KEYS, 2, list(operators), 2)
        tokens: dict[str, str] = answer["operator_tokens"]
        return tokens

    def ready(self) -> Vault:
        """Every operator registered (password-1), restarted: a vault in kms_unsealed."""
        vault = self.boot()
        for name, token in self.init(vault).items():
            vault.register(name, token, pw(name))
        wait_for_state(vault, states.KMS_UNSEALED)
        vault = self.restart(vault)
        assert vault.state == states.KMS_UNSEALED
        return vault


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    handler = SetupTokens()
    logger = logging.getLogger("chamber.vault")
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    created = Lab(tmp_path, handler)
    try:
        yield created
    finally:
        created.close()
        logger.removeHandler(handler)
        logger.setLevel(level)


def wait_for_state(vault: Vault, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while vault.state != state:
        assert time.monotonic() < deadline, f"still {vault.state}, waiting for {state}"
        time.sleep(0.02)


@contextmanager
def unchanged(vault: Vault) -> Iterator[None]:
    before = vault.store.get(RECORD_KEY)
    state = vault.state
    yield
    assert vault.store.get(RECORD_KEY) == before
    assert vault.state == state
    assert vault._scratch_outer is None  # the KMS-opened outer key is not kept


@contextmanager
def refused(
    cls: type[ChamberError], status: int, fragment: str, *, field_name: str | None = None
) -> Iterator[None]:
    with pytest.raises(cls) as info:
        yield
    assert info.value.status == status, info.value
    assert fragment in info.value.message, info.value.message
    if field_name is not None:
        assert info.value.field == field_name, (info.value.field, info.value.message)


def record(vault: Vault) -> VaultRecord:
    found = vault.store.get(RECORD_KEY)
    assert found is not None
    return VaultRecord.from_bytes(found[0])


def unseal_with(vault: Vault, *pairs: tuple[str, bytes]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for operator, material in pairs:
        answer = vault.unseal(operator, material)
    return answer


def test_add_in_kms_unsealed_updates_the_open_bundle(lab: Lab) -> None:
    vault = lab.ready()
    answer = vault.add_credential(
        "alice", "password-1", pw("alice"), "password-2", pw("alice", "2")
    )
    assert answer == {"operator": "alice", "credential_id": "password-2"}
    listed = vault.list_credentials("alice")
    assert listed["credential_ids"] == ["password-1", "password-2"]
    assert listed["credentials"] == [
        {"credential_id": cid, "type": "passphrase", "public": {}, "available": True}
        for cid in ("password-1", "password-2")
    ]
    assert isinstance(vault.hooks, Hooks)
    assert vault.hooks.steps[-1] == (
        "credential_added",
        {"operator": "alice", "credential_id": "password-2"},
    )
    # No restart: the bundle in memory already holds the new wrapping.
    assert unseal_with(vault, ("alice", pw("alice", "2")), ("bob", pw("bob")))["status"] == (
        "unsealed"
    )


def test_add_and_remove_while_unsealed_or_sealed_reopen_the_bundle_through_kms(lab: Lab) -> None:
    vault = lab.ready()
    unseal_with(vault, ("alice", pw("alice")), ("carol", pw("carol")))
    assert vault.state == states.UNSEALED
    master = vault.master_key
    vault.add_credential("bob", "password-1", pw("bob"), "password-2", pw("bob", "2"))
    vault.remove_credential("bob", "password-2", pw("bob", "2"), "password-1")
    assert vault.state == states.UNSEALED and vault.master_key is master
    assert vault._scratch_outer is None and vault._bundle is None and vault._outer is None
    # After an emergency seal too: nothing is unsealed by it.
    vault.seal()
    vault.add_credential("carol", "password-1", pw("carol"), "password-2", pw("carol", "2"))
    assert vault.status()["seal"]["status"] == states.SEALED and vault.master_key is None
    assert vault._scratch_outer is None

    vault = lab.restart(vault)
    with refused(Unauthorized, 401, "wrong passphrase for operator 'bob'"):
        vault.unseal("bob", pw("bob"))
    assert unseal_with(vault, ("bob", pw("bob", "2")), ("carol", pw("carol", "2")))["status"] == (
        "unsealed"
    )


def test_remove_may_be_proven_by_the_credential_it_removes(lab: Lab) -> None:
    vault = lab.ready()
    vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    answer = vault.remove_credential("alice", "password-1", pw("alice"), "password-1")
    assert answer == {"operator": "alice", "removed_credential_id": "password-1"}
    with refused(Unauthorized, 401, "wrong passphrase"):
        vault.unseal("alice", pw("alice"))
    assert unseal_with(vault, ("alice", pw("alice", "2")), ("bob", pw("bob")))["status"] == (
        "unsealed"
    )


def test_refusals_change_nothing(lab: Lab) -> None:
    vault = lab.ready()
    hooks = vault.hooks
    assert isinstance(hooks, Hooks)
    for unsealed in (False, True):  # bundle open (kms_unsealed), then closed (unsealed)
        with unchanged(vault), refused(Conflict, 409, "is the last credential"):
            vault.remove_credential("alice", "password-1", pw("alice"), "password-1")
        with unchanged(vault), refused(Unauthorized, 401, "wrong passphrase for credential"):
            vault.add_credential("alice", "password-1", pw("bob"), "password-2", pw("alice", "2"))
        with unchanged(vault), refused(Conflict, 409, "already has a credential 'password-1'"):
            vault.add_credential("alice", "password-1", pw("alice"), "password-1", pw("alice", "2"))
        with unchanged(vault), refused(BadRequest, 400, "unknown operator", field_name="operator"):
            vault.add_credential("dave", "password-1", pw("alice"), "password-2", pw("alice", "2"))
        with unchanged(vault), refused(BadRequest, 400, "unknown operator", field_name="operator"):
            vault.remove_credential("dave", "password-1", pw("alice"), "password-1")
        with refused(BadRequest, 400, "unknown operator", field_name="operator"):
            vault.list_credentials("dave")
        with unchanged(vault), refused(BadRequest, 400, "passphrase too short"):
            vault.add_credential("alice", "password-1", pw("alice"), "password-2", b"short")
        with unchanged(vault), refused(BadRequest, 400, "passphrase too short"):
            vault.add_credential("alice", "password-1", pw("alice"), "password-2", b"")
        with (
            unchanged(vault),
            refused(
                BadRequest, 400, "has no credential 'nope'", field_name="existing_credential_id"
            ),
        ):
            vault.add_credential("alice", "nope", pw("alice"), "password-2", pw("alice", "2"))
        with (
            unchanged(vault),
            refused(BadRequest, 400, "has no credential 'nope'", field_name="remove_credential_id"),
        ):
            vault.remove_credential("alice", "password-1", pw("alice"), "nope")
        with unchanged(vault), refused(BadRequest, 400, "1 to 64 characters"):
            vault.add_credential("alice", "password-1", pw("alice"), "-x", pw("alice", "2"))
        with unchanged(vault), refused(BadRequest, 400, "not installed"):
            vault.add_credential(
                "alice",
                "password-1",
                pw("alice"),
                "yubikey-1",
                pw("alice", "2"),
                credential_type="yubikey",
            )
        if not unsealed:
            unseal_with(vault, ("bob", pw("bob")), ("carol", pw("carol")))
            assert vault.state == states.UNSEALED
    assert hooks.failures == [("alice", "credential"), ("alice", "credential")]
    assert not [step for step, _ in hooks.steps if step.startswith("credential")]


def test_no_credentials_outside_unseal_mode(lab: Lab) -> None:
    vault = lab.boot()
    with refused(Conflict, 409, "only in unseal mode (state uninitialized)"):
        vault.list_credentials("alice")
    vault.init(lab.tokens.tokens[-1], LOCAL_KEYS, 2)  # KMS-only
    with unchanged(vault), refused(Conflict, 409, "only in unseal mode"):
        vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))


def test_during_registration_only_registered_operators_and_pending_shares_survive(
    lab: Lab,
) -> None:
    vault = lab.boot()
    tokens = lab.init(vault)
    vault.register("alice", tokens["alice"], pw("alice"))
    with unchanged(vault), refused(BadRequest, 400, "unknown operator 'bob'"):
        vault.add_credential("bob", "password-1", pw("bob"), "password-2", pw("bob", "2"))
    vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    assert vault.state == states.AWAITING_REGISTRATION
    assert record(vault).phase == "awaiting_registration"
    # The others' plain shares are still in the bundle: they can register.
    vault.register("bob", tokens["bob"], pw("bob"))
    vault.register("carol", tokens["carol"], pw("carol"))
    wait_for_state(vault, states.KMS_UNSEALED)
    assert unseal_with(vault, ("alice", pw("alice", "2")), ("carol", pw("carol")))["status"] == (
        "unsealed"
    )


def test_wrong_existing_passphrases_are_rate_limited(lab: Lab) -> None:
    now = [1000.0]
    limiter = AttemptLimiter(free_attempts=2, base_delay=10.0, clock=lambda: now[0])
    first = lab.ready()
    vault = lab.restart(first, limiter=limiter)
    for _ in range(3):
        with unchanged(vault), refused(Unauthorized, 401, "wrong passphrase"):
            vault.add_credential("alice", "password-1", pw("bob"), "password-2", pw("alice", "2"))
    # Locked: even the right passphrase is not evaluated.
    with unchanged(vault), pytest.raises(TooManyAttempts) as info:
        vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    assert info.value.status == 429 and "too many failed credential attempts" in info.value.message
    now[0] += 11
    vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    assert limiter.failures("alice") == 0


def test_credentials_keep_their_own_argon2_parameters(lab: Lab) -> None:
    first = lab.ready()
    vault = lab.restart(first, argon2=BIGGER_ARGON2)
    vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    operators = record(vault).operators
    assert operators is not None
    [alice] = [op for op in operators.operators if op.name == "alice"]
    assert [(c.credential_id, c.params) for c in alice.credentials] == [
        ("password-1", SMALL_ARGON2),
        ("password-2", BIGGER_ARGON2),
    ]
    assert len({c.salt for c in alice.credentials}) == 2
    vault = lab.restart(vault)  # back to the small parameters: both still open
    assert unseal_with(vault, ("alice", pw("alice")), ("bob", pw("bob")))["status"] == "unsealed"
    vault = lab.restart(vault)
    assert unseal_with(vault, ("alice", pw("alice", "2")), ("bob", pw("bob")))["status"] == (
        "unsealed"
    )


def test_add_refusals_name_the_request_field(lab: Lab) -> None:
    vault = lab.ready()
    with refused(BadRequest, 400, "passphrase too short", field_name="new_passphrase"):
        vault.add_credential("alice", "password-1", pw("alice"), "password-2", b"short")
    with refused(BadRequest, 400, "1 to 64 characters", field_name="new_credential_id"):
        vault.add_credential("alice", "password-1", pw("alice"), "bad id!", pw("alice", "2"))


def test_a_kms_failure_while_the_bundle_is_closed_is_502_and_changes_nothing(lab: Lab) -> None:
    vault = lab.ready()
    unseal_with(vault, ("alice", pw("alice")), ("bob", pw("bob")))
    key_file = lab.root / "kms" / "unit-b.key"
    hidden = key_file.rename(lab.root / "unit-b.key.away")
    with unchanged(vault), refused(KmsError, 502, "only 1 of the 2 required KMS keys"):
        vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    hidden.rename(key_file)
    vault.add_credential("alice", "password-1", pw("alice"), "password-2", pw("alice", "2"))
    assert vault.state == states.UNSEALED


def test_listing_without_a_vault_is_the_documented_404(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "server": {"listen_address": "127.0.0.1", "listen_port": 0},
            "metrics": {"enabled": False},
            "anti_slashing": {"backend": "noop"},
            "auth_policies": {"ops": {"token": OPS_TOKEN, "allowed_scopes": ["chamber_status"]}},
        }
    )
    signer = build_signer(settings, load_plugins(entry_points_enabled=False))
    try:
        client = falcon.testing.TestClient(create_falcon_app(signer))
        with_operator = client.simulate_get(CREDENTIALS_PATH, params={"operator": "alice"})
        assert with_operator.status_code == 404, with_operator.text
        without = client.simulate_get(CREDENTIALS_PATH)
        assert without.status_code == 404, without.text
        assert without.json["error"] == "key not found"
    finally:
        signer.close()
