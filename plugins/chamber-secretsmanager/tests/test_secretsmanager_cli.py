"""Automated unseal from AWS Secrets Manager, end to end: a real signer process (SQLite state,
local file KMS; ``tests/vault_support.py``) driven by the real CLI (``containment-chamber
operator ...`` as subprocesses), which reads the operators' secrets from the conftest's moto
server over HTTP (``CHAMBER_SECRETSMANAGER_ENDPOINT_URL``).

The tests share one signer and run in file order, each starting by checking the state it needs.
Every refusal is checked for its one-line message and for leaving the stored state (every row of
the state database) unchanged; the last test searches everything that left the processes, and
the files at rest, for the secrets.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from secretsmanager_support import ACCOUNT, AWS_MESSAGE_MARKER, DENIED, ENDPOINT_ENV

from tests.vault_support import Chamber, CliResult, encodings

pytest.importorskip("moto", reason="install plugins/chamber-secretsmanager[test]")

OPERATORS = ("alice", "bob")
KMS_KEYS = "local:sm-a,local:sm-b"
#: alice's CI secret (a SecretString) and bob's (a SecretBinary): random per run.
ALICE_SECRET = "alice-ci-" + secrets.token_hex(24)
ALICE_ROTATED = "alice-ci-rotated-" + secrets.token_hex(24)
BOB_SECRET = os.urandom(32)
BOB_PASSPHRASE = "bob's passphrase for the secrets manager runbook"  # noqa: S105 (test data)
ALICE_PASSPHRASE = "alice adds a passphrase, proven by her secret"  # noqa: S105 (test data)
PREFIX = "containment-chamber: credential type 'secretsmanager' (plugin chamber-secretsmanager): "
NEVER_CREATED = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:chamber/never-created-AbCdEf"


class Flow:
    """What the ordered tests pass on to the next one."""

    arns: ClassVar[dict[str, str]] = {}


@pytest.fixture(scope="module")
def admin(moto_endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client(
        "secretsmanager", region_name="eu-west-1", endpoint_url=moto_endpoint
    )


@pytest.fixture(scope="module")
def chamber(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, admin: Any
) -> Iterator[Chamber]:
    suffix = secrets.token_hex(4)
    Flow.arns = {
        "alice": admin.create_secret(Name=f"ci/alice-{suffix}", SecretString=ALICE_SECRET)["ARN"],
        "bob": admin.create_secret(Name=f"ci/bob-{suffix}", SecretBinary=BOB_SECRET)["ARN"],
        "spare": admin.create_secret(Name=f"ci/spare-{suffix}", SecretString="s" * 32)["ARN"],
    }
    cham = Chamber(tmp_path_factory.mktemp("secretsmanager"))
    cham.env[ENDPOINT_ENV] = moto_endpoint
    cham.start()
    try:
        yield cham
    finally:
        cham.stop()


# ---------------------------------------------------------------------- CLI helpers


def sm_flags(arn: str, stage: str | None) -> list[str]:
    flags = ["--secrets-manager-id", arn]
    if stage is not None:
        flags += ["--secrets-manager-version-stage", stage]
    return flags


def sm_register(
    chamber: Chamber, operator: str, token: str, arn: str, stage: str | None = None
) -> CliResult:
    return chamber.operator(
        "register",
        "--operator",
        operator,
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--credential-id",
        f"sm-{operator}",
        *sm_flags(arn, stage),
        env={"REGISTRATION_TOKEN": token},
    )


def sm_unseal(chamber: Chamber, operator: str, arn: str, stage: str | None = None) -> CliResult:
    """Automated unseal: nothing on standard input, so a prompt would fail the command."""
    return chamber.operator("unseal", "--operator", operator, *sm_flags(arn, stage), stdin="")


def sm_add(chamber: Chamber, arn: str, new_id: str = "sm-bob") -> CliResult:
    """bob adds a Secrets Manager credential, proven by his passphrase."""
    return chamber.run_cli(
        "operator",
        "credentials",
        "add",
        "--signer-url",
        chamber.url,
        "--operator",
        "bob",
        "--existing-credential-id",
        "password-1",
        "--new-credential-id",
        new_id,
        "--passphrase-stdin",
        *sm_flags(arn, None),
        stdin=BOB_PASSPHRASE + "\n",
    )


def listing(chamber: Chamber, operator: str) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.run_cli(
        "operator", "credentials", "list", "--signer-url", chamber.url, "--operator", operator
    ).json()
    return answer


def seal(chamber: Chamber) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.status()["seal"]
    return answer


def plugin_refused(
    chamber: Chamber, result_of: Callable[[], CliResult], arn: str, reason: str
) -> CliResult:
    """The plugin refused on the operator's machine: exit 1, one clear line naming the plugin,
    the ARN and the condition; no AWS message; nothing stored changed."""
    before, state = chamber.state_rows(), seal(chamber)
    result = result_of()
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(PREFIX + f"Secrets Manager secret {arn}: "), result.stderr
    assert reason in result.stderr, result.stderr
    assert AWS_MESSAGE_MARKER not in result.stderr
    assert chamber.state_rows() == before, "a refused command changed the stored state"
    assert seal(chamber) == state
    return result


# ---------------------------------------------------------------- 1. register, restart, unseal


def test_register_with_a_secret_then_unseal_automatically_after_a_restart(
    chamber: Chamber, admin: Any, deny: Callable[[str], None]
) -> None:
    setup_token = chamber.wait_setup_token()
    tokens = chamber.operator(
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
    ).json()["operator_tokens"]
    alice = Flow.arns["alice"]

    # Refused on alice's machine before anything is sent: the token still works afterwards.
    plugin_refused(
        chamber,
        lambda: sm_register(chamber, "alice", tokens["alice"], NEVER_CREATED),
        NEVER_CREATED,
        "secret not found, or no version of it has the stage 'AWSCURRENT' "
        "(ResourceNotFoundException)",
    )
    deny(alice)
    plugin_refused(
        chamber,
        lambda: sm_register(chamber, "alice", tokens["alice"], alice),
        alice,
        "access denied: the caller's IAM identity may not read this secret",
    )
    spare = Flow.arns["spare"]
    admin.delete_secret(SecretId=spare, RecoveryWindowInDays=7)
    plugin_refused(
        chamber,
        lambda: sm_register(chamber, "alice", tokens["alice"], spare),
        spare,
        "the secret is deleted or scheduled for deletion",
    )
    admin.restore_secret(SecretId=spare)
    malformed = chamber.operator(
        "register",
        "--operator",
        "alice",
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--secrets-manager-id",
        "ci/alice",
        env={"REGISTRATION_TOKEN": tokens["alice"]},
    )
    assert malformed.returncode == 1 and "invalid Secrets Manager secret ARN 'ci/alice'" in (
        malformed.stderr
    )
    assert seal(chamber)["status"] == "awaiting_registration"

    DENIED.discard(alice)
    sm_register(chamber, "alice", tokens["alice"], alice).json()
    chamber.operator(
        "register",
        "--operator",
        "bob",
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--passphrase-stdin",
        stdin=BOB_PASSPHRASE + "\n",
        env={"REGISTRATION_TOKEN": tokens["bob"]},
    ).json()
    chamber.wait_state("kms_unsealed")
    assert listing(chamber, "alice")["credentials"] == [
        {
            "credential_id": "sm-alice",
            "type": "secretsmanager",
            "public": {"secret_arn": alice, "version_stage": "AWSCURRENT"},
            "available": True,
        }
    ]

    chamber.restart()
    chamber.wait_state("kms_unsealed")
    result = sm_unseal(chamber, "alice", alice)
    assert result.json() == {"shares_received": 1, "shares_required": 2}
    assert result.stderr == ""
    answer = chamber.operator(
        "unseal", "--operator", "bob", "--passphrase-stdin", stdin=BOB_PASSPHRASE + "\n"
    ).json()
    assert answer["status"] == "unsealed"


# ---------------------------------------------------------------------- 2. credentials add


def test_credentials_add_a_secret_with_the_existing_passphrase(
    chamber: Chamber, admin: Any, deny: Callable[[str], None]
) -> None:
    chamber.wait_state("unsealed", timeout=15)
    bob = Flow.arns["bob"]

    plugin_refused(
        chamber, lambda: sm_add(chamber, NEVER_CREATED), NEVER_CREATED, "secret not found"
    )
    deny(bob)
    plugin_refused(chamber, lambda: sm_add(chamber, bob), bob, "access denied")
    spare = Flow.arns["spare"]
    admin.delete_secret(SecretId=spare, RecoveryWindowInDays=7)
    plugin_refused(
        chamber,
        lambda: sm_add(chamber, spare),
        spare,
        "the secret is deleted or scheduled for deletion",
    )
    admin.restore_secret(SecretId=spare)

    DENIED.discard(bob)
    assert sm_add(chamber, bob).json() == {"operator": "bob", "credential_id": "sm-bob"}
    assert [
        (c["credential_id"], c["type"], c["public"]) for c in listing(chamber, "bob")["credentials"]
    ] == [
        ("password-1", "passphrase", {}),
        ("sm-bob", "secretsmanager", {"secret_arn": bob, "version_stage": "AWSCURRENT"}),
    ]

    # alice adds a passphrase, proven by her Secrets Manager credential (read by the plugin).
    answer = chamber.run_cli(
        "operator",
        "credentials",
        "add",
        "--signer-url",
        chamber.url,
        "--operator",
        "alice",
        "--existing-credential-type",
        "secretsmanager",
        "--existing-credential-id",
        "sm-alice",
        "--new-credential-id",
        "password-1",
        "--passphrase-stdin",
        stdin=ALICE_PASSPHRASE + "\n",
    ).json()
    assert answer == {"operator": "alice", "credential_id": "password-1"}

    # After a restart both operators unseal from Secrets Manager alone: no passphrase typed.
    chamber.restart()
    chamber.wait_state("kms_unsealed")
    assert sm_unseal(chamber, "bob", bob).json()["shares_received"] == 1
    assert sm_unseal(chamber, "alice", Flow.arns["alice"]).json()["status"] == "unsealed"


# ---------------------------------------------------------------------- 3. unseal refusals


def test_unseal_refusals_leave_the_stored_state_unchanged(
    chamber: Chamber, admin: Any, deny: Callable[[str], None]
) -> None:
    chamber.wait_state("unsealed", timeout=15)
    chamber.restart()
    chamber.wait_state("kms_unsealed")
    alice, bob, spare = Flow.arns["alice"], Flow.arns["bob"], Flow.arns["spare"]

    deny(alice)
    plugin_refused(
        chamber,
        lambda: sm_unseal(chamber, "alice", alice),
        alice,
        "access denied: the caller's IAM identity may not read this secret "
        "(it needs secretsmanager:GetSecretValue",
    )
    DENIED.discard(alice)

    admin.delete_secret(SecretId=alice, RecoveryWindowInDays=7)
    plugin_refused(
        chamber,
        lambda: sm_unseal(chamber, "alice", alice),
        alice,
        "the secret is deleted or scheduled for deletion (aws secretsmanager restore-secret",
    )
    admin.restore_secret(SecretId=alice)

    # An ARN that is not one of alice's credentials: refused before any request to AWS.
    before = chamber.state_rows()
    result = sm_unseal(chamber, "alice", spare)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        PREFIX + f"--secrets-manager-id: {spare} is not a Secrets Manager credential of "
        f"operator 'alice' on this signer (registered: {alice})\n"
    )
    assert chamber.state_rows() == before

    # The secret was rotated (AWSCURRENT moved on): the signer refuses the new value; the
    # previous version still unseals, named by its stage.
    admin.put_secret_value(SecretId=alice, SecretString=ALICE_ROTATED)
    before = chamber.state_rows()
    wrong = sm_unseal(chamber, "alice", alice)
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("containment-chamber: the signer answered 401: ")
    assert "operator 'alice': no registered credential of this operator matches" in wrong.stderr
    assert chamber.state_rows() == before
    assert seal(chamber)["shares_received"] == 0
    assert sm_unseal(chamber, "alice", alice, "AWSPREVIOUS").json()["shares_received"] == 1

    # A registered secret deleted for good: not found.
    admin.delete_secret(SecretId=bob, ForceDeleteWithoutRecovery=True)
    plugin_refused(
        chamber,
        lambda: sm_unseal(chamber, "bob", bob),
        bob,
        "secret not found, or no version of it has the stage 'AWSCURRENT' "
        "(ResourceNotFoundException)",
    )
    assert seal(chamber)["shares_received"] == 1
    # bob still has his passphrase.
    answer = chamber.operator(
        "unseal", "--operator", "bob", "--passphrase-stdin", stdin=BOB_PASSPHRASE + "\n"
    ).json()
    assert answer["status"] == "unsealed"


def test_no_secret_left_the_processes_or_reached_the_disk(chamber: Chamber) -> None:
    texts = [text for _, text in chamber.transcript]
    texts += chamber.server_log_lines()
    at_rest = chamber.files_at_rest()
    forms: dict[str, str] = {}
    for name, value in (
        ("alice's secret", ALICE_SECRET.encode()),
        ("alice's rotated secret", ALICE_ROTATED.encode()),
        ("bob's secret", BOB_SECRET),
        ("bob's passphrase", BOB_PASSPHRASE.encode()),
        ("alice's passphrase", ALICE_PASSPHRASE.encode()),
    ):
        for i, form in enumerate([value.decode("latin-1"), *encodings(value)]):
            forms[f"{name} (encoding {i})"] = form
    for name, form in forms.items():
        for text in texts:
            assert form not in text, f"{name} leaked"
        for file_name, data in at_rest.items():
            assert form.encode("latin-1") not in data, f"{name} stored in {file_name}"
    for text in texts:
        assert AWS_MESSAGE_MARKER not in text
