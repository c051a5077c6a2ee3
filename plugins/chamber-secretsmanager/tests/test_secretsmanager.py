"""The ``secretsmanager`` credential type against a moto server over real HTTP (``conftest.py``),
and against a misbehaving endpoint (closed port, dropped connections, error answers, a hang)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chamber_secretsmanager.credential import (
    ENDPOINT_ENV,
    EXPECTED_FORM,
    SecretsManagerCredential,
    SecretsManagerError,
)
from chamber_secretsmanager.plugin import chamber_credential_types
from secretsmanager_support import ACCOUNT, AWS_MESSAGE_MARKER, FakeSecretsManager

from chamber.cli import credential_types
from chamber.cli.remote import CliError
from chamber.errors import BadRequest, ChamberError
from chamber.plugins import load_plugins
from chamber.vault.interfaces import CredentialType, Enrollment

SECRET = "ci-unseal: 7d1f0c9e4b2a85f3e6d7c8b9a0f1e2d3"  # noqa: S105 (test data)
ROTATED = "ci-unseal after rotation: 0a1b2c3d4e5f60718293a4b5"
BINARY = bytes(range(256))[::-1][:40] + b"\x00\xff\xfe"


@pytest.fixture
def credential(endpoint_env: str) -> SecretsManagerCredential:
    """The type as the CLI builds it: no arguments, endpoint from the environment."""
    return SecretsManagerCredential()


@pytest.fixture
def fast() -> Iterator[Callable[[str], SecretsManagerCredential]]:
    """``fast(url)``: a credential on another endpoint with small timeouts and no real waits."""
    waits: list[float] = []

    def make(url: str) -> SecretsManagerCredential:
        cred = SecretsManagerCredential(
            endpoint_url=url, connect_timeout=0.5, read_timeout=0.5, max_attempts=3
        )
        cred._sleep = waits.append
        return cred

    yield make


def missing_arn(region: str = "us-east-1") -> str:
    return f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:chamber/never-created-AbCdEf"


def assert_clear(error: ChamberError, arn: str, *fragments: str) -> None:
    assert arn in error.message, error.message
    for fragment in fragments:
        assert fragment in error.message, error.message
    assert AWS_MESSAGE_MARKER not in error.message
    # No chained botocore exception (it would carry the AWS message).
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def assert_no_secret(error: BaseException, *values: str | bytes) -> None:
    text = f"{error} {error!r} {getattr(error, 'message', '')}"
    for value in values:
        raw = value.encode() if isinstance(value, str) else value
        for form in (raw.hex(), base64.b64encode(raw).decode()):
            assert form not in text
        if isinstance(value, str):
            assert value not in text


# ---------------------------------------------------------------------- the plugin


def test_the_plugin_provides_the_type_by_its_entry_point() -> None:
    assert chamber_credential_types() == {"secretsmanager": SecretsManagerCredential}
    providers = load_plugins().providers("chamber_credential_types")
    provider = providers["secretsmanager"]
    assert provider.cls is SecretsManagerCredential
    assert provider.plugin == "chamber_secretsmanager"
    instance: CredentialType = SecretsManagerCredential()
    assert instance.name == "secretsmanager" and "Secrets Manager" in instance.description


# ---------------------------------------------------------------------- round trips


def test_enroll_then_obtain_round_trip(
    credential: SecretsManagerCredential, new_secret: Callable[..., str]
) -> None:
    arn = new_secret(SECRET)
    enrolled = credential.enroll({"secret_id": arn, "stdin": False, "operator": "alice"})
    assert enrolled.material == SECRET.encode()
    assert dict(enrolled.public) == {"secret_arn": arn, "version_stage": "AWSCURRENT"}
    assert SECRET not in repr(enrolled) and SECRET not in repr(credential)
    credential.validate(enrolled.material)
    # Unseal with the ARN named (the CLI's --secrets-manager-id) ...
    assert credential.obtain({"secret_id": arn}, [enrolled.public]) == SECRET.encode()
    # ... or without it: the signer's candidates say which secret to read.
    assert credential.obtain({}, [enrolled.public]) == SECRET.encode()
    # A fresh instance (a new CLI process) reads the same bytes.
    assert SecretsManagerCredential().obtain({"secret_id": arn}, []) == SECRET.encode()


def test_a_text_secret_is_its_utf8_bytes_unchanged(
    credential: SecretsManagerCredential, new_secret: Callable[..., str]
) -> None:
    text = "  Grüße, ключ 🔑 with spaces and a newline\n"
    arn = new_secret(text)
    assert credential.enroll({"secret_id": arn}).material == text.encode("utf-8")


def test_a_binary_secret_round_trips_byte_for_byte(
    credential: SecretsManagerCredential, new_secret: Callable[..., str]
) -> None:
    arn = new_secret(BINARY)
    enrolled = credential.enroll({"secret_id": arn})
    assert enrolled.material == BINARY
    with pytest.raises(UnicodeDecodeError):
        BINARY.decode("utf-8")
    assert credential.obtain({}, [enrolled.public]) == BINARY


def test_the_region_comes_from_the_arn(
    credential: SecretsManagerCredential, new_secret: Callable[..., str]
) -> None:
    """moto keeps one backend per region: a client in any other region would not find it."""
    arn = new_secret(SECRET, region="eu-west-1")
    assert ":eu-west-1:" in arn
    assert credential.enroll({"secret_id": arn}).material == SECRET.encode()
    assert sorted(credential._clients) == ["eu-west-1"]
    wrong_region = arn.replace(":eu-west-1:", ":ap-southeast-2:")
    with pytest.raises(SecretsManagerError) as info:
        credential.enroll({"secret_id": wrong_region})
    assert_clear(info.value, wrong_region, "secret not found")


def test_version_stages_after_a_rotation(
    credential: SecretsManagerCredential,
    new_secret: Callable[..., str],
    sm_admin: Callable[..., Any],
) -> None:
    arn = new_secret(SECRET)
    current = credential.enroll({"secret_id": arn})
    sm_admin().put_secret_value(SecretId=arn, SecretString=ROTATED)  # AWSCURRENT moves on

    # The default stage now reads the new value: the old credential no longer matches it.
    assert credential.obtain({}, [current.public]) == ROTATED.encode()
    # AWSPREVIOUS still holds the value the credential was enrolled with.
    previous = {"secret_id": arn, "version_stage": "AWSPREVIOUS"}
    assert credential.obtain(previous, [current.public]) == SECRET.encode()

    # Enrolled at a stage: the stage is stored, and used when the unseal names none.
    pinned = credential.enroll(previous)
    assert dict(pinned.public) == {"secret_arn": arn, "version_stage": "AWSPREVIOUS"}
    assert pinned.material == SECRET.encode()
    assert credential.obtain({"secret_id": arn}, [pinned.public]) == SECRET.encode()
    assert credential.obtain({}, [pinned.public]) == SECRET.encode()
    # A stage named on the command line wins over the stored one.
    assert credential.obtain({"version_stage": "AWSCURRENT"}, [pinned.public]) == (ROTATED.encode())

    # A custom stage label (a rotation procedure's staging label).
    sm_admin().put_secret_value(
        SecretId=arn, SecretString="the next one, long enough!!", VersionStages=["CHAMBER_NEXT"]
    )
    assert credential.enroll({"secret_id": arn, "version_stage": "CHAMBER_NEXT"}).material == (
        b"the next one, long enough!!"
    )
    # A stage no version carries.
    with pytest.raises(SecretsManagerError) as info:
        credential.enroll({"secret_id": arn, "version_stage": "NO_SUCH_STAGE"})
    assert_clear(info.value, arn, "no version of it has the stage 'NO_SUCH_STAGE'")


# ---------------------------------------------------------------------- which secret


def test_a_named_arn_must_be_one_of_the_operators_credentials(
    fast: Callable[[str], SecretsManagerCredential], closed_port: int
) -> None:
    # No endpoint answers: the refusals below come before any request.
    credential = fast(f"http://127.0.0.1:{closed_port}")
    registered = {
        "secret_arn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci/alice-Qw3rTy",
        "version_stage": "AWSCURRENT",
    }
    other = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci/bob-AsDfGh"
    with pytest.raises(BadRequest) as info:
        credential.obtain({"secret_id": other, "operator": "alice"}, [registered])
    message = info.value.message
    assert "is not a Secrets Manager credential of operator 'alice'" in message
    assert other in message and registered["secret_arn"] in message
    with pytest.raises(BadRequest, match="give --secrets-manager-id"):
        credential.obtain({}, [])
    with pytest.raises(BadRequest, match="give --secrets-manager-id"):
        credential.obtain({}, [{"credential_id": "x"}, {"secret_arn": "not an arn"}])


def test_without_an_arn_the_first_readable_candidate_is_used(
    credential: SecretsManagerCredential,
    new_secret: Callable[..., str],
    deny: Callable[[str], None],
) -> None:
    denied, readable = new_secret(SECRET), new_secret(ROTATED)
    deny(denied)
    candidates = [
        {"secret_arn": denied, "version_stage": "AWSCURRENT"},
        {"secret_arn": readable, "version_stage": "AWSCURRENT"},
    ]
    assert credential.obtain({}, candidates) == ROTATED.encode()
    deny(readable)
    with pytest.raises(SecretsManagerError) as info:
        credential.obtain({}, candidates)
    message = info.value.message
    assert message.startswith("no Secrets Manager secret of this operator could be read")
    assert denied in message and readable in message and "access denied" in message
    assert AWS_MESSAGE_MARKER not in message


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "my-secret",
        "chamber/ci-unseal",
        f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:parameter:ci",
        "arn:aws:secretsmanager:us-east-1:12345:secret:ci-AbCdEf",
        f"arn:aws:secretsmanager:US-EAST-1:{ACCOUNT}:secret:ci-AbCdEf",
        f"arn:aws:secretsmanager::{ACCOUNT}:secret:ci-AbCdEf",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci AbCdEf",
        f" arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci-AbCdEf",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci-AbCdEf\n",
    ],
)
def test_a_malformed_arn_is_refused_before_any_request(
    bad: str, fast: Callable[[str], SecretsManagerCredential], closed_port: int
) -> None:
    credential = fast(f"http://127.0.0.1:{closed_port}")
    for call in (
        lambda: credential.enroll({"secret_id": bad}),
        lambda: credential.obtain({"secret_id": bad}, []),
    ):
        with pytest.raises(BadRequest) as info:
            call()
        assert "invalid Secrets Manager secret ARN" in info.value.message
        assert EXPECTED_FORM in info.value.message
        assert info.value.field == "secret_id"
    assert credential._clients == {}


def test_missing_options_and_bad_stages_are_clear(
    fast: Callable[[str], SecretsManagerCredential], closed_port: int
) -> None:
    credential = fast(f"http://127.0.0.1:{closed_port}")
    with pytest.raises(BadRequest, match="needs the secret's ARN: --secrets-manager-id"):
        credential.enroll({"stdin": False})
    arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci-AbCdEf"
    for stage in ("", "two words", "x" * 257):
        with pytest.raises(BadRequest, match="invalid version stage"):
            credential.enroll({"secret_id": arn, "version_stage": stage})
        with pytest.raises(BadRequest, match="invalid version stage"):
            credential.obtain({"version_stage": stage}, [{"secret_arn": arn}])
    assert credential._clients == {}


def test_a_missing_secret(credential: SecretsManagerCredential) -> None:
    arn = missing_arn()
    with pytest.raises(SecretsManagerError) as info:
        credential.enroll({"secret_id": arn})
    assert_clear(info.value, arn, "secret not found", "(ResourceNotFoundException)")
    assert info.value.status == 502 and info.value.arn == arn


def test_a_secret_scheduled_for_deletion_then_restored(
    credential: SecretsManagerCredential,
    new_secret: Callable[..., str],
    sm_admin: Callable[..., Any],
) -> None:
    arn = new_secret(SECRET)
    enrolled = credential.enroll({"secret_id": arn})
    sm_admin().delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    for call in (
        lambda: credential.enroll({"secret_id": arn}),
        lambda: credential.obtain({"secret_id": arn}, [enrolled.public]),
    ):
        with pytest.raises(SecretsManagerError) as info:
            call()
        assert_clear(
            info.value,
            arn,
            "the secret is deleted or scheduled for deletion",
            "restore-secret",
            "(InvalidRequestException)",
        )
        assert_no_secret(info.value, SECRET)
    sm_admin().restore_secret(SecretId=arn)
    assert credential.obtain({}, [enrolled.public]) == SECRET.encode()


def test_a_force_deleted_secret_is_not_found(
    credential: SecretsManagerCredential,
    new_secret: Callable[..., str],
    sm_admin: Callable[..., Any],
) -> None:
    arn = new_secret(SECRET)
    enrolled = credential.enroll({"secret_id": arn})
    sm_admin().delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    with pytest.raises(SecretsManagerError) as info:
        credential.obtain({}, [enrolled.public])
    assert_clear(info.value, arn, "secret not found", "(ResourceNotFoundException)")


def test_access_denied_names_the_arn_never_the_aws_message(
    credential: SecretsManagerCredential,
    new_secret: Callable[..., str],
    deny: Callable[[str], None],
) -> None:
    arn = new_secret(SECRET)
    deny(arn)
    with pytest.raises(SecretsManagerError) as info:
        credential.enroll({"secret_id": arn})
    assert_clear(
        info.value,
        arn,
        "access denied: the caller's IAM identity may not read this secret",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        "(AccessDeniedException)",
    )
    assert_no_secret(info.value, SECRET)


def test_a_value_under_16_bytes_is_refused_on_both_sides(
    credential: SecretsManagerCredential, new_secret: Callable[..., str]
) -> None:
    short = "fifteen bytes.."
    arn = new_secret(short)
    with pytest.raises(SecretsManagerError) as info:
        credential.enroll({"secret_id": arn})
    assert_clear(info.value, arn, "shorter than 16 bytes")
    assert short not in info.value.message
    # The server's half.
    with pytest.raises(BadRequest, match="secret too short: at least 16 bytes"):
        credential.validate(b"x" * 15)
    with pytest.raises(BadRequest, match="secret too short"):
        credential.validate(b"")
    credential.validate(b"\x00" * 16)
    credential.validate(BINARY)


def test_no_aws_credentials(
    credential: SecretsManagerCredential,
    new_secret: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    arn = new_secret(SECRET)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(SecretsManagerError) as info:
        SecretsManagerCredential().enroll({"secret_id": arn})
    assert_clear(info.value, arn, "no AWS credentials found (NoCredentialsError)")


def test_a_bad_endpoint_variable_is_clear(
    new_secret: Callable[..., str], monkeypatch: pytest.MonkeyPatch, endpoint_env: str
) -> None:
    arn = new_secret(SECRET)
    monkeypatch.setenv(ENDPOINT_ENV, "127.0.0.1:4566")
    with pytest.raises(BadRequest, match=f"{ENDPOINT_ENV}: must be an http:// or https:// URL"):
        SecretsManagerCredential().enroll({"secret_id": arn})


# ---------------------------------------------------------------------- the endpoint misbehaves

ARN_ON_FAKE = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci/alice-Qw3rTy"


def test_an_unreachable_endpoint_fails_in_bounded_time(closed_port: int, endpoint_env: str) -> None:
    """Through the environment variable, with the CLI's defaults (real backoff waits)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENDPOINT_ENV, f"http://127.0.0.1:{closed_port}")
        credential = SecretsManagerCredential()
        started = time.monotonic()
        with pytest.raises(SecretsManagerError) as info:
            credential.obtain({"secret_id": ARN_ON_FAKE}, [])
        elapsed = time.monotonic() - started
    assert_clear(
        info.value,
        ARN_ON_FAKE,
        "Secrets Manager unreachable or failing after 3 attempts (EndpointConnectionError)",
    )
    assert elapsed < 10, elapsed


def test_dropped_connections_are_retried_a_bounded_number_of_times(
    fake_sm: FakeSecretsManager, fast: Callable[[str], SecretsManagerCredential]
) -> None:
    credential = fast(fake_sm.url)
    with pytest.raises(SecretsManagerError) as info:
        credential.obtain({"secret_id": ARN_ON_FAKE}, [])
    assert_clear(info.value, ARN_ON_FAKE, "after 3 attempts")
    assert fake_sm.requests == 3  # ours, not botocore's (its retries are off)


def test_a_hanging_endpoint_times_out(
    fake_sm: FakeSecretsManager, fast: Callable[[str], SecretsManagerCredential]
) -> None:
    fake_sm.status, fake_sm.code, fake_sm.delay = 200, "", 3.0
    credential = fast(fake_sm.url)
    credential.max_attempts = 2
    started = time.monotonic()
    with pytest.raises(SecretsManagerError) as info:
        credential.obtain({"secret_id": ARN_ON_FAKE}, [])
    assert_clear(info.value, ARN_ON_FAKE, "after 2 attempts (ReadTimeoutError)")
    assert time.monotonic() - started < 2.5
    assert fake_sm.requests == 2


@pytest.mark.parametrize(
    ("status", "code", "requests", "fragment"),
    [
        (400, "ThrottlingException", 3, "after 3 attempts (ThrottlingException)"),
        (500, "InternalServiceError", 3, "after 3 attempts (InternalServiceError)"),
        (503, "SomethingNew", 3, "after 3 attempts (SomethingNew)"),
        (400, "DecryptionFailure", 1, "could not decrypt the secret with its KMS key"),
        (400, "AccessDeniedException", 1, "access denied"),
        (400, "ResourceNotFoundException", 1, "secret not found"),
        (400, "InvalidRequestException", 1, "deleted or scheduled for deletion"),
        (400, "UnrecognizedClientException", 1, "AWS credentials rejected"),
        (400, "ExpiredTokenException", 1, "AWS credentials expired"),
        (400, "SomethingElse", 1, "request failed (SomethingElse)"),
    ],
)
def test_error_answers(
    status: int,
    code: str,
    requests: int,
    fragment: str,
    fake_sm: FakeSecretsManager,
    fast: Callable[[str], SecretsManagerCredential],
) -> None:
    fake_sm.status, fake_sm.code = status, code
    credential = fast(fake_sm.url)
    with pytest.raises(SecretsManagerError) as info:
        credential.enroll({"secret_id": ARN_ON_FAKE})
    assert_clear(info.value, ARN_ON_FAKE, fragment)
    assert fake_sm.requests == requests


# ---------------------------------------------------------------------- through the CLI's wrapper


def test_the_cli_wrapper_shows_the_message_and_names_the_plugin(
    endpoint_env: str,
    new_secret: Callable[..., str],
    deny: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credential_types, "_cache", None)  # load the installed types afresh
    arn = new_secret(SECRET)
    choice = credential_types.choose(secrets_manager_id=arn)
    assert choice.name == "secretsmanager" and choice.options["secret_id"] == arn
    enrolled = credential_types.enroll(choice, timeout=30)
    assert isinstance(enrolled, Enrollment) and enrolled.material == SECRET.encode()
    assert credential_types.material_fields("secretsmanager", enrolled.material) == {
        "secret": base64.b64encode(SECRET.encode()).decode()
    }
    deny(arn)
    with pytest.raises(CliError) as info:
        credential_types.obtain(choice, [dict(enrolled.public)], timeout=30)
    assert info.value.code == 1
    assert info.value.message.startswith(
        "credential type 'secretsmanager' (plugin chamber-secretsmanager): "
        f"Secrets Manager secret {arn}: access denied"
    )
    assert AWS_MESSAGE_MARKER not in info.value.message
