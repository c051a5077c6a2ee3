"""The seal / unseal runbook, command for command: real signer processes, the real CLI.

Each scenario owns one signer (SQLite state and key store, local file KMS, small Argon2id) that
it restarts as the runbook does. Refusals are checked for their status and message and for
leaving the stored state byte-identical. Every log line, CLI output, HTTP answer and metrics page
of the scenarios is then searched for secrets.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cyclopts
import pytest
from py_ecc.bls import G2ProofOfPossession as reference_bls
from rich.console import Console

from chamber.cli.keys import keys_app
from chamber.cli.operator import operator_app
from chamber.crypto.keystore import encrypt_keystore
from tests import bodies
from tests.harness import MAINNET_GVR, make_keys
from tests.ssz_oracle import oracle_domain, oracle_signing_root
from tests.vault_support import (
    OPS_TOKEN,
    SETUP_LOG_MESSAGE,
    SIGNING_TOKEN,
    Chamber,
    CliResult,
    TerminalSession,
    cli,
    encodings,
)

OPERATORS = ("alice", "bob", "carol")
PASSPHRASES = {
    "alice": "alice: correct horse battery staple",
    "bob": "bob's passphrase, long enough 42",
    "carol": "carol-types-this-one-at-the-prompt",
}
KMS_KEYS = "local:runbook-a,local:runbook-b,local:runbook-c"
KEYSTORE_PASSWORD = "keystore-password-for-the-runbook"
KEY = make_keys(1, seed="vault-runbook")[0]
DENEB = bytes.fromhex("04000000")


@pytest.fixture(scope="module")
def keystore_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keystore = encrypt_keystore(
        KEY.secret.to_bytes(32, "big"),
        KEYSTORE_PASSWORD,
        kdf="pbkdf2",
        kdf_params={"c": 1024},  # fast; the import path is what is tested
        pubkey=KEY.pubkey,
        path="m/12381/3600/0/0/0",
    )
    path = tmp_path_factory.mktemp("keystores") / "keystore-m_12381_3600_0_0_0.json"
    path.write_text(json.dumps(keystore))
    return path


def _chamber(root: Path) -> Iterator[Chamber]:
    chamber = Chamber(root)
    chamber.start()
    try:
        yield chamber
    finally:
        chamber.stop()


@pytest.fixture(scope="module")
def unseal_chamber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chamber]:
    yield from _chamber(tmp_path_factory.mktemp("unseal-mode"))


@pytest.fixture(scope="module")
def kms_only_chamber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chamber]:
    yield from _chamber(tmp_path_factory.mktemp("kms-only"))


@pytest.fixture(scope="module")
def refusals_chamber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chamber]:
    yield from _chamber(tmp_path_factory.mktemp("refusals"))


# ---------------------------------------------------------------------- helpers


def randao_root(body: dict[str, Any]) -> bytes:
    """The RANDAO signing root, computed by the independent SSZ oracle (Deneb fork)."""
    epoch = int(body["randao_reveal"]["epoch"])
    object_root = epoch.to_bytes(8, "little") + bytes(24)
    domain = oracle_domain("randao", DENEB, bytes.fromhex(MAINNET_GVR[2:]))
    return oracle_signing_root(object_root, domain)


def assert_signs(chamber: Chamber, epoch: int) -> bytes:
    body = bodies.randao(epoch)
    response = chamber.sign(KEY.pubkey_hex, body)
    assert response.status == 200, response.body
    signature = bytes.fromhex(response.json()["signature"][2:])
    assert reference_bls.Verify(KEY.pubkey, randao_root(body), signature)
    return signature


def assert_sealed_for_signing(chamber: Chamber) -> None:
    response = chamber.sign(KEY.pubkey_hex, bodies.randao())
    assert response.status == 503, response.body
    assert "sealed" in response.json()["message"]
    assert response.headers["Retry-After"]


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


def init_unseal_mode(chamber: Chamber, setup_token: str) -> dict[str, str]:
    result = chamber.operator(
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
    )
    answer = result.json()
    assert answer["status"] == "awaiting_registration"
    tokens: dict[str, str] = answer["operator_tokens"]
    assert sorted(tokens) == sorted(OPERATORS)
    assert all(token.startswith("cc-reg-") for token in tokens.values())
    assert len(set(tokens.values())) == len(OPERATORS)
    # The coordinator is reminded to hand the tokens out; the tokens go to stdout only.
    assert "secure channel" in result.stderr
    assert not any(token in result.stderr for token in tokens.values())
    return tokens


def register(chamber: Chamber, operator: str, token: str, passphrase: str) -> CliResult:
    return chamber.operator(
        "register",
        "--operator",
        operator,
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--credential-id",
        "password-1",
        "--passphrase-stdin",
        stdin=passphrase + "\n",
        env={"REGISTRATION_TOKEN": token},
    )


def unseal(chamber: Chamber, operator: str, passphrase: str) -> CliResult:
    return chamber.operator(
        "unseal", "--operator", operator, "--passphrase-stdin", stdin=passphrase + "\n"
    )


def status_cli(chamber: Chamber) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.operator("status", "--auth-token", "env:CC_AUTH_TOKEN").json()
    return answer


def import_key(chamber: Chamber, keystore: Path) -> CliResult:
    return chamber.run_cli(
        "keys",
        "import",
        str(keystore),
        "--signer-url",
        chamber.url,
        "--auth-token",
        "env:CC_AUTH_TOKEN",
        "--password-stdin",
        stdin=KEYSTORE_PASSWORD + "\n",
    )


def assert_no_secret_leaked(chamber: Chamber, extra: dict[str, str] | None = None) -> None:
    """No secret in any log line, CLI output, HTTP answer or metrics page of ``chamber``, nor in
    the databases it wrote; the setup tokens only in their own log lines.

    The master key and the shares never leave the process, so they are checked through what
    would reveal them: the KMS key files (in any usual encoding) and the decrypted validator
    key. The registration tokens are, by design, in the answer of ``operator init``.
    """
    secrets = {
        "ops auth token": OPS_TOKEN,
        "signing auth token": SIGNING_TOKEN,
        "keystore password": KEYSTORE_PASSWORD,
        "validator secret key": KEY.secret_hex[2:],
        **{f"passphrase of {op}": passphrase for op, passphrase in PASSPHRASES.items()},
        **(extra or {}),
    }
    for name, content in chamber.kms_key_files().items():
        for i, form in enumerate(encodings(content)):
            secrets[f"KMS key file {name} (encoding {i})"] = form
    assert any(name.startswith("KMS key file") for name in secrets), "no KMS key file found"
    setup_tokens = chamber.setup_tokens()
    assert setup_tokens

    registration_tokens = {n: s for n, s in secrets.items() if n.startswith("registration token")}
    for where, text in chamber.transcript:
        lowered = text.lower()
        for name, secret in secrets.items():
            if name in registration_tokens and where == "operator init stdout":
                continue  # handed to the ceremony coordinator, as the runbook shows
            assert secret.lower() not in lowered, f"{name} leaked into {where}"
        if where != "server log":
            for token in setup_tokens:
                assert token not in text, f"a setup token leaked into {where}"

    lines = chamber.server_log_lines()
    for token in setup_tokens:
        carriers = [line for line in lines if token in line]
        assert len(carriers) == 1, carriers
        entry = json.loads(carriers[0])
        assert (entry["message"], entry["level"]) == (SETUP_LOG_MESSAGE, "WARNING")

    at_rest = chamber.files_at_rest()
    raw_secrets = {name: secret.encode() for name, secret in secrets.items()}
    raw_secrets["validator secret key (raw)"] = KEY.secret.to_bytes(32, "big")
    raw_secrets.update(
        {f"KMS key file {name} (raw)": data for name, data in chamber.kms_key_files().items()}
    )
    raw_secrets.update({f"setup token {i}": t.encode() for i, t in enumerate(setup_tokens)})
    for file_name, data in at_rest.items():
        for name, raw in raw_secrets.items():
            assert raw not in data, f"{name} is stored in {file_name}"


# ---------------------------------------------------------------------- 1. unseal mode


def test_unseal_mode_first_boot_restart_unseal_seal(
    unseal_chamber: Chamber, keystore_file: Path
) -> None:
    chamber = unseal_chamber
    setup_token = chamber.wait_setup_token()
    assert setup_token.startswith("cc-setup-")

    # Step 2: uninitialized.
    assert status_cli(chamber) == {"seal": {"status": "uninitialized"}, "keys": None}

    # Step 3: init with three KMS keys (2 of 3) and three operators (2 of 3).
    tokens = init_unseal_mode(chamber, setup_token)
    assert len(chamber.kms_key_files()) == 3
    assert chamber.wait_state("awaiting_registration")["seal"]["remaining"] == 3

    # Step 5: each operator registers; alice and bob through stdin, carol at a real prompt
    # (asked twice, never echoed).
    assert register(chamber, "alice", tokens["alice"], PASSPHRASES["alice"]).json() == {
        "registered": 1,
        "remaining": 2,
    }
    assert register(chamber, "bob", tokens["bob"], PASSPHRASES["bob"]).json() == {
        "registered": 2,
        "remaining": 1,
    }
    terminal = TerminalSession(
        "operator",
        "register",
        "--operator",
        "carol",
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--signer-url",
        chamber.url,
        env={**chamber.env, "REGISTRATION_TOKEN": tokens["carol"]},
    )
    terminal.expect("New passphrase for carol: ")
    terminal.type_line(PASSPHRASES["carol"])
    terminal.expect("Repeat: ")
    terminal.type_line(PASSPHRASES["carol"])
    code, screen = terminal.finish()
    chamber.transcript.append(("operator register (terminal)", screen))
    assert code == 0, screen
    # Step 6: all registered → sealed; the signer then opens the KMS layer by itself.
    assert json.loads(screen[screen.index("{") :]) == {
        "registered": 3,
        "remaining": 0,
        "status": "sealed",
    }
    assert PASSPHRASES["carol"] not in screen
    chamber.wait_state("kms_unsealed")
    assert_sealed_for_signing(chamber)

    # Restart: KMS unseal happens automatically; operators are needed for the rest.
    chamber.restart()
    seal = chamber.wait_state("kms_unsealed")["seal"]
    assert (seal["shares_received"], seal["shares_required"]) == (0, 2)
    assert status_cli(chamber)["seal"]["status"] == "kms_unsealed"
    assert_sealed_for_signing(chamber)

    # A partial unseal can be reset; then two operators, in any order, unseal.
    assert unseal(chamber, "carol", PASSPHRASES["carol"]).json() == {
        "shares_received": 1,
        "shares_required": 2,
    }
    reset = chamber.operator("unseal-reset", "--auth-token", "env:CC_AUTH_TOKEN")
    assert reset.json() == {"shares_received": 0, "shares_required": 2}
    assert unseal(chamber, "alice", PASSPHRASES["alice"]).json() == {
        "shares_received": 1,
        "shares_required": 2,
    }
    assert unseal(chamber, "bob", PASSPHRASES["bob"]).json() == {
        "status": "unsealed",
        "validators_loaded": 0,
    }
    assert status_cli(chamber)["keys"] == {"loaded": 0}

    # A validator key is imported into the encrypted store and signs.
    imported = import_key(chamber, keystore_file).json()
    assert imported == {
        "data": [{"file": str(keystore_file), "status": "imported", "pubkey": KEY.pubkey_hex}]
    }
    signature = assert_signs(chamber, bodies.BASE_EPOCH)
    chamber.metrics()

    # Emergency seal: signing stops at once.
    assert chamber.operator("seal", "--auth-token", "env:CC_AUTH_TOKEN").json() == {
        "status": "sealed"
    }
    assert_sealed_for_signing(chamber)
    assert status_cli(chamber) == {
        "seal": {
            "status": "sealed",
            "mode": "unseal",
            "kms": {"threshold": 2, "keys": 3},
            "operators": {"threshold": 2, "names": list(OPERATORS), "registered": 3},
        },
        "keys": None,
    }
    chamber.metrics()

    # To resume: restart (KMS unseal) and the operator ceremony; the stored key is back.
    chamber.restart()
    chamber.wait_state("kms_unsealed")
    assert_sealed_for_signing(chamber)
    assert unseal(chamber, "bob", PASSPHRASES["bob"]).json()["shares_received"] == 1
    assert unseal(chamber, "carol", PASSPHRASES["carol"]).json() == {
        "status": "unsealed",
        "validators_loaded": 1,
    }
    assert assert_signs(chamber, bodies.BASE_EPOCH) == signature
    chamber.metrics()
    chamber.stop()

    assert_no_secret_leaked(
        chamber, {f"registration token of {op}": token for op, token in tokens.items()}
    )
    # Registration tokens appear only where init handed them out.
    assert sum(tokens["alice"] in text for _, text in chamber.transcript) == 1


# ---------------------------------------------------------------------- 2. KMS-only mode


def test_kms_only_mode_unseals_itself_after_restart(
    kms_only_chamber: Chamber, keystore_file: Path
) -> None:
    chamber = kms_only_chamber
    setup_token = chamber.wait_setup_token()
    assert status_cli(chamber) == {"seal": {"status": "uninitialized"}, "keys": None}

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

    assert import_key(chamber, keystore_file).json()["data"][0]["status"] == "imported"
    again = import_key(chamber, keystore_file)  # idempotent: a duplicate is not an error
    assert again.json()["data"][0]["status"] == "duplicate"
    signature = assert_signs(chamber, bodies.BASE_EPOCH + 1)
    chamber.metrics()

    chamber.restart()
    answer = chamber.wait_state("unsealed")
    assert answer["seal"]["mode"] == "kms_only"
    assert answer["keys"] == {"loaded": 1}
    assert assert_signs(chamber, bodies.BASE_EPOCH + 1) == signature
    # The restart logged no setup token: the chamber is initialized.
    assert chamber.setup_tokens() == [setup_token]
    chamber.metrics()
    chamber.stop()

    assert_no_secret_leaked(chamber)


# ---------------------------------------------------------------------- 3. refusals
#
# One signer walks through the states; each test refuses what its state must refuse. The tests
# run in file order, and each starts by checking (or reaching) the state it needs.


class Refusals:
    """What the refusal tests pass on to the next one."""

    tokens: ClassVar[dict[str, str]] = {}
    registered: ClassVar[set[str]] = set()


def state_is(chamber: Chamber, state: str) -> None:
    """The chamber is (or shortly becomes) in ``state``; the refusal tests run in file order."""
    chamber.wait_state(state, timeout=15)


def refused_without_change(
    chamber: Chamber, result_of: Any, status: int, message: str
) -> CliResult:
    before = chamber.state_rows()
    result: CliResult = result_of()
    assert_refused(result, status, message)
    assert chamber.state_rows() == before, "a refused request changed the stored state"
    return result


def test_refusals_while_uninitialized(refusals_chamber: Chamber) -> None:
    chamber = refusals_chamber
    state_is(chamber, "uninitialized")
    chamber.wait_setup_token()
    assert chamber.state_rows() == {"state": []}

    refused_without_change(
        chamber,
        lambda: chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            KMS_KEYS,
            "--kms-threshold",
            "2",
            env={"SETUP_TOKEN": "cc-setup-" + "A" * 43},
        ),
        401,
        "invalid setup token",
    )
    refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", PASSPHRASES["alice"]),
        409,
        "cannot unseal in state uninitialized",
    )
    refused_without_change(
        chamber,
        lambda: chamber.operator("seal", "--auth-token", "env:CC_AUTH_TOKEN"),
        409,
        "nothing to seal (state uninitialized)",
    )
    state_is(chamber, "uninitialized")


def test_init_reset_starts_over_with_a_new_setup_token(refusals_chamber: Chamber) -> None:
    chamber = refusals_chamber
    state_is(chamber, "uninitialized")
    first = chamber.wait_setup_token()
    count = len(chamber.setup_tokens())
    init_unseal_mode(chamber, first)
    [(_, record, _)] = chamber.state_rows()["state"]

    answer = chamber.operator(
        "init-reset", "--setup-token", "env:SETUP_TOKEN", env={"SETUP_TOKEN": first}
    ).json()
    assert answer == {"status": "uninitialized"}
    # The initialization is gone from the store (a tombstone may remain, never the record).
    assert all(row[1] != record for row in chamber.state_rows()["state"])
    second = chamber.wait_setup_token(count + 1)
    assert second != first
    # ... and stays gone across a restart, which logs a fresh setup token.
    chamber.restart()
    state_is(chamber, "uninitialized")
    third = chamber.wait_setup_token(count + 2)
    assert third not in (first, second)
    # The old token died with the reset.
    refused_without_change(
        chamber,
        lambda: chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            KMS_KEYS,
            "--kms-threshold",
            "2",
            env={"SETUP_TOKEN": first},
        ),
        401,
        "invalid setup token",
    )


def test_refusals_during_registration(refusals_chamber: Chamber) -> None:
    chamber = refusals_chamber
    state_is(chamber, "uninitialized")
    setup_token = chamber.wait_setup_token()
    Refusals.tokens = init_unseal_mode(chamber, setup_token)
    tokens = Refusals.tokens

    # A second init, with the right token, is refused: already initialized.
    refused_without_change(
        chamber,
        lambda: chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            KMS_KEYS,
            "--kms-threshold",
            "2",
            env={"SETUP_TOKEN": setup_token},
        ),
        409,
        "already initialized",
    )
    # A passphrase under 16 characters; the token stays valid.
    refused_without_change(
        chamber,
        lambda: register(chamber, "bob", tokens["bob"], "fifteen chars.."),
        400,
        "passphrase too short",
    )
    # Someone else's token.
    refused_without_change(
        chamber,
        lambda: register(chamber, "bob", tokens["carol"], PASSPHRASES["bob"]),
        401,
        "invalid registration token for operator 'bob'",
    )
    assert register(chamber, "alice", tokens["alice"], PASSPHRASES["alice"]).json() == {
        "registered": 1,
        "remaining": 2,
    }
    Refusals.registered.add("alice")
    # A registration token works once.
    refused_without_change(
        chamber,
        lambda: register(chamber, "alice", tokens["alice"], "another passphrase, 16+ chars"),
        409,
        "already registered",
    )
    # Nothing to unseal while operators register.
    refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", PASSPHRASES["alice"]),
        409,
        "cannot unseal in state awaiting_registration",
    )
    state_is(chamber, "awaiting_registration")


def test_refusals_while_kms_unsealed(refusals_chamber: Chamber) -> None:
    chamber = refusals_chamber
    state_is(chamber, "awaiting_registration")
    for operator in OPERATORS:
        if operator not in Refusals.registered:
            register(chamber, operator, Refusals.tokens[operator], PASSPHRASES[operator]).json()
            Refusals.registered.add(operator)
    state_is(chamber, "kms_unsealed")

    # Registration is over: every registration token is refused now.
    refused_without_change(
        chamber,
        lambda: register(chamber, "bob", Refusals.tokens["bob"], PASSPHRASES["bob"]),
        409,
        "no registration is in progress",
    )
    result = refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", PASSPHRASES["bob"]),
        401,
        "wrong passphrase for operator 'alice'",
    )
    assert PASSPHRASES["bob"] not in result.stderr
    # A trailing space is a different passphrase.
    refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", PASSPHRASES["alice"] + " "),
        401,
        "wrong passphrase",
    )
    seal = chamber.wait_state("kms_unsealed")["seal"]
    assert seal["shares_received"] == 0  # refused attempts add no share


def test_refusals_once_unsealed(refusals_chamber: Chamber) -> None:
    chamber = refusals_chamber
    state_is(chamber, "kms_unsealed")
    unseal(chamber, "alice", PASSPHRASES["alice"]).json()
    assert unseal(chamber, "carol", PASSPHRASES["carol"]).json()["status"] == "unsealed"

    refused_without_change(
        chamber,
        lambda: unseal(chamber, "bob", PASSPHRASES["bob"]),
        409,
        "cannot unseal in state unsealed",
    )
    refused_without_change(
        chamber,
        lambda: chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            KMS_KEYS,
            "--kms-threshold",
            "2",
            env={"SETUP_TOKEN": chamber.setup_tokens()[-1]},
        ),
        409,
        "already initialized",
    )
    refused_without_change(
        chamber,
        lambda: chamber.operator("unseal-reset", "--auth-token", "env:CC_AUTH_TOKEN"),
        409,
        "no unseal is in progress",
    )
    # An auth token without the chamber_seal scope cannot seal.
    refused_without_change(
        chamber,
        lambda: chamber.operator("seal", "--auth-token", "env:SIGNING_TOKEN"),
        403,
        "policy 'signing-client' does not grant scope 'chamber_seal'",
    )
    state_is(chamber, "unsealed")
    chamber.metrics()
    assert_no_secret_leaked(
        chamber,
        {
            **{f"registration token of {op}": token for op, token in Refusals.tokens.items()},
            "refused short passphrase": "fifteen chars..",
            "refused second passphrase": "another passphrase, 16+ chars",
        },
    )


# ---------------------------------------------------------------------- 5. the CLI alone

NO_SIGNER = "http://127.0.0.1:1"


def test_literal_secrets_are_refused_with_a_pointer_to_env_var() -> None:
    for args in (
        ["operator", "status", "--auth-token", "abc"],
        ["operator", "seal", "--auth-token", "abc"],
        ["operator", "init-reset", "--setup-token", "cc-setup-abc"],
        ["operator", "register", "--operator", "alice", "--registration-token", "cc-reg-abc"],
        ["keys", "import", "x.json", "--auth-token", "abc", "--password-stdin"],
    ):
        result = cli(*args, "--signer-url", NO_SIGNER)
        assert_usage_error(result, "env:VAR", "visible to every process")
        assert "abc" not in result.stderr


def test_plain_http_to_another_host_needs_allow_plaintext_signer() -> None:
    result = cli(
        "operator",
        "status",
        "--auth-token",
        "env:CC_TEST_TOKEN",
        "--signer-url",
        "http://10.1.2.3:9000",
        env={"CC_TEST_TOKEN": "some-token-0123456789"},
    )
    assert_usage_error(result, "refusing plain HTTP to 10.1.2.3", "--allow-plaintext-signer")
    result = cli(
        "operator",
        "unseal",
        "--operator",
        "alice",
        "--passphrase-stdin",
        "--signer-url",
        "http://10.1.2.3:9000",
        stdin="a passphrase that is never read\n",
    )
    assert_usage_error(result, "--allow-plaintext-signer")


def test_cli_usage_errors_and_unreachable_signer() -> None:
    unset = cli("operator", "status", "--auth-token", "env:CC_SURELY_UNSET_VARIABLE")
    assert_usage_error(unset, "CC_SURELY_UNSET_VARIABLE is not set")
    both = cli(
        "operator",
        "register",
        "--operator",
        "alice",
        "--registration-token",
        "-",
        "--passphrase-stdin",
        "--signer-url",
        NO_SIGNER,
        stdin="cc-reg-x\nsome passphrase here\n",
    )
    assert_usage_error(both, "would both read standard input")
    empty = cli(
        "operator",
        "unseal",
        "--operator",
        "alice",
        "--passphrase-stdin",
        "--signer-url",
        NO_SIGNER,
        stdin="",
    )
    assert_usage_error(empty, "no passphrase was read from standard input")
    missing = cli("operator", "seal")
    assert missing.returncode == 2 and "--auth-token" in missing.stderr
    unreachable = cli(
        "operator",
        "status",
        "--auth-token",
        "-",
        "--signer-url",
        NO_SIGNER,
        stdin="token-from-stdin-0123456789\n",
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("containment-chamber: cannot reach the signer at ")
    assert "Traceback" not in unreachable.stderr
    assert "token-from-stdin" not in unreachable.stderr


def test_register_prompt_asks_twice_and_refuses_a_mismatch() -> None:
    terminal = TerminalSession(
        "operator",
        "register",
        "--operator",
        "alice",
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--signer-url",
        NO_SIGNER,
        env={"REGISTRATION_TOKEN": "cc-reg-test"},
    )
    terminal.expect("New passphrase for alice: ")
    terminal.type_line("first attempt at a passphrase")
    terminal.expect("Repeat: ")
    terminal.type_line("second attempt at a passphrase")
    code, screen = terminal.finish()
    assert code == 2
    assert "the two passphrases differ" in screen
    assert "attempt at a passphrase" not in screen  # no echo


HELP_FLAGS = {
    "status": ["--auth-token", "--signer-url", "--allow-plaintext-signer"],
    "init": [
        "--setup-token",
        "--kms-key-arns",
        "--kms-threshold",
        "--unseal-threshold",
        "--operators",
        "--signer-url",
    ],
    "init-reset": ["--setup-token", "--signer-url"],
    "register": [
        "--operator",
        "--registration-token",
        "--credential-id",
        "--passphrase-stdin",
        "--signer-url",
    ],
    "unseal": ["--operator", "--passphrase-stdin", "--signer-url"],
    "unseal-reset": ["--auth-token", "--signer-url"],
    "seal": ["--auth-token", "--signer-url", "--allow-plaintext-signer"],
}


def test_operator_help_lists_the_runbook_commands_and_flags() -> None:
    overview = cli("operator", "--help")  # registered in the real command line
    assert overview.returncode == 0
    for command in HELP_FLAGS:
        assert command in overview.stdout
    for command, flags in HELP_FLAGS.items():  # in process: one interpreter start is enough
        text = help_text(operator_app, command)
        for flag in flags:
            assert flag in text, (command, flag)
    text = help_text(keys_app, "import")
    for flag in ("--signer-url", "--auth-token", "--password-file", "--password-stdin", "--store"):
        assert flag in text


def help_text(app: cyclopts.App, command: str) -> str:
    buffer = io.StringIO()
    app.help_print([command], console=Console(file=buffer, width=200))
    return buffer.getvalue()


def test_keys_import_reports_each_file_and_fails_on_errors(
    tmp_path: Path, keystore_file: Path
) -> None:
    """Against a signer without a vault-ready state: a per-file error result is exit 1, and a
    signer refusal is reported on one line (no traceback)."""
    chamber = Chamber(tmp_path / "import")
    chamber.start()
    try:
        chamber.wait_setup_token()
        refused = import_key(chamber, keystore_file)
        assert_refused(refused, 503, "signer is sealed (state uninitialized)")
        chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            "local:k",
            "--kms-threshold",
            "1",
            env={"SETUP_TOKEN": chamber.setup_tokens()[-1]},
        ).json()
        broken = tmp_path / "broken.json"
        broken.write_text("{}")
        password_file = tmp_path / "password.txt"
        password_file.write_text(KEYSTORE_PASSWORD + "\n")
        result = chamber.run_cli(
            "keys",
            "import",
            str(keystore_file),
            str(broken),
            "--signer-url",
            chamber.url,
            "--auth-token",
            "env:CC_AUTH_TOKEN",
            "--password-file",
            str(password_file),
        )
        assert result.returncode == 1
        data = json.loads(result.stdout)["data"]
        assert [(r["file"], r["status"]) for r in data] == [
            (str(keystore_file), "imported"),
            (str(broken), "error"),
        ]
        wrong = chamber.run_cli(
            "keys",
            "import",
            str(keystore_file),
            "--signer-url",
            chamber.url,
            "--auth-token",
            "env:CC_AUTH_TOKEN",
            "--password-stdin",
            stdin="not the password\n",
        )
        assert wrong.returncode == 1
        assert json.loads(wrong.stdout)["data"][0]["status"] == "error"
        assert "checksum" in json.loads(wrong.stdout)["data"][0]["message"]
    finally:
        chamber.stop()
    assert_no_secret_leaked(chamber)
