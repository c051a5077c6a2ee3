"""AwsKms against a real moto KMS server over HTTP, and against endpoints that fail on purpose."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from chamber_aws_kms.kms import EXPECTED_FORM, AwsKms

from chamber.errors import BadRequest, ConfigError, KmsError

#: moto's account; the fake servers' error messages name a role (see conftest) never to repeat.
ACCOUNT = "123456789012"
LEAKED = "do-not-echo"

SHARE = b"PLAINTEXT-SHARE-\x01\x02\x03-do-not-leak"
CONTEXT = {"chamber": "test-chamber", "share_index": "1"}

NewKey = Callable[..., str]
FakeKms = Any  # conftest.FakeKms (not imported: conftest is not a module to import from)


@pytest.fixture
def kms(moto_endpoint: str) -> AwsKms:
    return AwsKms.from_config({"endpoint_url": moto_endpoint, "backoff_base_seconds": 0.01})


def _timed_sleeps(kms: AwsKms) -> list[float]:
    """Record the backoff waits of ``kms`` (still really waiting)."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    kms._sleep = sleep
    return waits


def _assert_clean(err: KmsError, key_id: str) -> None:
    """Names the key, and carries no plaintext, no AWS message, no chained botocore error."""
    text = str(err)
    assert err.key_id == key_id
    assert key_id in text
    for secret in (SHARE.decode("latin-1"), SHARE.hex(), "PLAINTEXT-SHARE", LEAKED, "role/"):
        assert secret not in text
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


# --------------------------------------------------------------------------- happy paths


def test_round_trip(kms: AwsKms, new_key: NewKey) -> None:
    arn = new_key()
    kms.validate_key_id(arn)
    ciphertext = kms.encrypt(arn, SHARE, CONTEXT)
    assert SHARE not in ciphertext
    assert kms.decrypt(arn, ciphertext, CONTEXT) == SHARE
    assert kms.encrypt(arn, SHARE, CONTEXT) != ciphertext  # fresh randomness every time


def test_alias_arn_round_trip(kms: AwsKms, new_key: NewKey, kms_admin: Any) -> None:
    arn = new_key()
    alias = f"alias/chamber-{uuid.uuid4().hex[:8]}"
    kms_admin("us-east-1").create_alias(AliasName=alias, TargetKeyId=arn)
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:{alias}"
    ciphertext = kms.encrypt(alias_arn, SHARE, CONTEXT)
    assert kms.decrypt(alias_arn, ciphertext, CONTEXT) == SHARE
    assert kms.decrypt(arn, ciphertext, CONTEXT) == SHARE


def test_region_comes_from_the_arn(kms: AwsKms, new_key: NewKey, kms_admin: Any) -> None:
    us, eu = new_key("us-east-1"), new_key("eu-west-1")
    assert ":us-east-1:" in us and ":eu-west-1:" in eu
    us_blob = kms.encrypt(us, SHARE, CONTEXT)
    eu_blob = kms.encrypt(eu, SHARE, CONTEXT)
    assert kms.decrypt(us, us_blob, CONTEXT) == SHARE
    assert kms.decrypt(eu, eu_blob, CONTEXT) == SHARE
    # The eu ciphertext really went to eu-west-1: only that region can open it.
    assert (
        kms_admin("eu-west-1").decrypt(CiphertextBlob=eu_blob, EncryptionContext=CONTEXT)[
            "Plaintext"
        ]
        == SHARE
    )
    # The same key id under another region's ARN is another (unknown) key.
    with pytest.raises(KmsError, match="key not found"):
        kms.encrypt(eu.replace(":eu-west-1:", ":us-east-1:"), SHARE, CONTEXT)
    assert {r: c.meta.region_name for r, c in kms._clients.items()} == {
        "us-east-1": "us-east-1",
        "eu-west-1": "eu-west-1",
    }


def test_endpoint_per_region(moto_endpoint: str, new_key: NewKey) -> None:
    kms = AwsKms.from_config({"endpoint_url": {"ap-southeast-2": moto_endpoint}})
    arn = new_key("ap-southeast-2")
    assert kms.decrypt(arn, kms.encrypt(arn, SHARE, CONTEXT), CONTEXT) == SHARE


def test_concurrent_use_creates_one_client_per_region(moto_endpoint: str, new_key: NewKey) -> None:
    kms = AwsKms.from_config({"endpoint_url": moto_endpoint})
    keys = [new_key("us-east-1"), new_key("eu-west-1"), new_key("us-west-2")]
    failures: list[BaseException] = []
    seen: dict[str, set[int]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(9)

    def work(arn: str) -> None:
        try:
            barrier.wait()
            blob = kms.encrypt(arn, SHARE, CONTEXT)
            assert kms.decrypt(arn, blob, CONTEXT) == SHARE
            region = arn.split(":")[3]
            with lock:
                seen.setdefault(region, set()).add(id(kms._clients[region]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(keys[i % 3],)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures
    assert {region: len(ids) for region, ids in seen.items()} == {
        "us-east-1": 1,
        "eu-west-1": 1,
        "us-west-2": 1,
    }


def test_transient_failures_are_retried_then_succeed(kms: AwsKms, new_key: NewKey) -> None:
    """Two throttled answers, then the real server: the caller sees only the result."""
    arn = new_key()
    waits = _timed_sleeps(kms)
    client = kms._client(arn, "us-east-1")
    sent: list[int] = []

    class Raw:
        def stream(self) -> list[bytes]:
            return [b'{"__type":"ThrottlingException","message":"slow down"}']

    def throttle_twice(request: Any, **kwargs: Any) -> AWSResponse | None:
        sent.append(1)
        if len(sent) <= 2:
            return AWSResponse(request.url, 400, {}, Raw())
        return None

    client.meta.events.register("before-send.kms.Encrypt", throttle_twice)
    try:
        ciphertext = kms.encrypt(arn, SHARE, CONTEXT)
    finally:
        client.meta.events.unregister("before-send.kms.Encrypt", throttle_twice)
    assert len(sent) == 3
    assert len(waits) == 2 and waits[1] > waits[0] / 2
    assert kms.decrypt(arn, ciphertext, CONTEXT) == SHARE


# --------------------------------------------------------------------------- definite failures


def test_wrong_context_is_a_kms_error(kms: AwsKms, new_key: NewKey) -> None:
    arn = new_key()
    ciphertext = kms.encrypt(arn, SHARE, CONTEXT)
    for context in ({**CONTEXT, "share_index": "2"}, {"chamber": "test-chamber"}, {}):
        with pytest.raises(KmsError, match="ciphertext or encryption context does not match") as e:
            kms.decrypt(arn, ciphertext, context)
        _assert_clean(e.value, arn)


def test_tampered_ciphertext_is_a_kms_error(kms: AwsKms, new_key: NewKey) -> None:
    arn = new_key()
    ciphertext = bytearray(kms.encrypt(arn, SHARE, CONTEXT))
    ciphertext[-1] ^= 1
    with pytest.raises(KmsError, match="does not match") as e:
        kms.decrypt(arn, bytes(ciphertext), CONTEXT)
    _assert_clean(e.value, arn)


def test_ciphertext_of_another_key_is_a_kms_error(kms: AwsKms, new_key: NewKey) -> None:
    first, second = new_key(), new_key()
    ciphertext = kms.encrypt(first, SHARE, CONTEXT)
    with pytest.raises(KmsError) as e:  # AWS: IncorrectKeyException; moto: AccessDeniedException
        kms.decrypt(second, ciphertext, CONTEXT)
    _assert_clean(e.value, second)


def test_disabled_key_fails_at_once(moto_endpoint: str, new_key: NewKey, kms_admin: Any) -> None:
    # A long backoff: a single retry would take at least one second.
    kms = AwsKms.from_config(
        {"endpoint_url": moto_endpoint, "backoff_base_seconds": 2.0, "max_attempts": 4}
    )
    waits = _timed_sleeps(kms)
    arn = new_key()
    ciphertext = kms.encrypt(arn, SHARE, CONTEXT)
    kms_admin("us-east-1").disable_key(KeyId=arn.rsplit("/", 1)[1])  # moto wants the bare id
    for call in (
        lambda: kms.encrypt(arn, SHARE, CONTEXT),
        lambda: kms.decrypt(arn, ciphertext, CONTEXT),
    ):
        started = time.monotonic()
        with pytest.raises(KmsError, match="key is disabled") as e:
            call()
        assert time.monotonic() - started < 1.0
        _assert_clean(e.value, arn)
    assert waits == []
    kms_admin("us-east-1").enable_key(KeyId=arn.rsplit("/", 1)[1])
    assert kms.decrypt(arn, ciphertext, CONTEXT) == SHARE


def test_key_pending_deletion(kms: AwsKms, new_key: NewKey, kms_admin: Any) -> None:
    arn = new_key()
    kms_admin("us-east-1").schedule_key_deletion(KeyId=arn.rsplit("/", 1)[1], PendingWindowInDays=7)
    with pytest.raises(KmsError, match="not usable in its current state") as e:
        kms.encrypt(arn, SHARE, CONTEXT)
    _assert_clean(e.value, arn)


def test_unknown_key(kms: AwsKms, new_key: NewKey) -> None:
    new_key()  # the region exists on the server
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    waits = _timed_sleeps(kms)
    with pytest.raises(KmsError, match="key not found") as e:
        kms.encrypt(arn, SHARE, CONTEXT)
    _assert_clean(e.value, arn)
    assert "NotFoundException" in str(e.value)
    assert waits == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("AccessDeniedException", "access denied"),
        ("DisabledException", "key is disabled"),
        ("NotFoundException", "key not found"),
        ("InvalidCiphertextException", "ciphertext or encryption context does not match"),
        ("IncorrectKeyException", "ciphertext or encryption context does not match"),
        ("KMSInvalidStateException", "key is not usable in its current state"),
        ("UnrecognizedClientException", "AWS credentials rejected"),
        ("SomethingNewException", "request failed"),
    ],
)
def test_definite_errors_are_not_retried(fake_kms: FakeKms, code: str, reason: str) -> None:
    fake_kms.status, fake_kms.code = 400, code
    kms = AwsKms.from_config({"endpoint_url": fake_kms.url, "backoff_base_seconds": 0.01})
    arn = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{uuid.uuid4()}"
    with pytest.raises(KmsError) as e:
        kms.decrypt(arn, b"ciphertext", CONTEXT)
    assert fake_kms.requests == 1
    assert e.value.reason.startswith(reason)
    assert e.value.reason.endswith(f"({code})")
    _assert_clean(e.value, arn)


# --------------------------------------------------------------------------- transient failures


def test_closed_port_is_unreachable_after_max_attempts(closed_port: int) -> None:
    kms = AwsKms.from_config(
        {
            "endpoint_url": f"http://127.0.0.1:{closed_port}",
            "max_attempts": 3,
            "backoff_base_seconds": 0.1,
        }
    )
    waits = _timed_sleeps(kms)
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(KmsError) as e:
        kms.encrypt(arn, SHARE, CONTEXT)
    elapsed = time.monotonic() - started
    assert e.value.reason == "unreachable after 3 attempts (EndpointConnectionError)"
    _assert_clean(e.value, arn)
    assert len(waits) == 2  # three attempts, two waits between them
    assert 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2
    assert sum(waits) <= elapsed < 3.0


def test_dropped_connections_are_retried_up_to_max_attempts(fake_kms: FakeKms) -> None:
    kms = AwsKms.from_config({"endpoint_url": fake_kms.url, "backoff_base_seconds": 0.05})
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(KmsError, match=r"unreachable after 4 attempts \(\w+Error\)") as e:
        kms.decrypt(arn, b"ciphertext", CONTEXT)
    assert time.monotonic() - started < 5.0
    assert fake_kms.requests == 4  # ours, with botocore's own retries off
    _assert_clean(e.value, arn)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "KMSInternalException"),
        (503, "DependencyTimeoutException"),
        (502, "BadGateway"),
        (400, "ThrottlingException"),
    ],
)
def test_throttling_and_5xx_are_retried(fake_kms: FakeKms, status: int, code: str) -> None:
    fake_kms.status, fake_kms.code = status, code
    kms = AwsKms.from_config(
        {"endpoint_url": fake_kms.url, "max_attempts": 3, "backoff_base_seconds": 0.01}
    )
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    with pytest.raises(KmsError) as e:
        kms.encrypt(arn, SHARE, CONTEXT)
    assert e.value.reason == f"unreachable after 3 attempts ({code})"
    assert fake_kms.requests == 3
    _assert_clean(e.value, arn)


def test_read_timeout_is_retried_within_a_bounded_time(fake_kms: FakeKms) -> None:
    fake_kms.delay = 1.0  # never answers within the read timeout
    kms = AwsKms.from_config(
        {
            "endpoint_url": fake_kms.url,
            "max_attempts": 2,
            "read_timeout": 0.2,
            "backoff_base_seconds": 0.01,
        }
    )
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(KmsError) as e:
        kms.encrypt(arn, SHARE, CONTEXT)
    assert time.monotonic() - started < 2.0
    assert e.value.reason == "unreachable after 2 attempts (ReadTimeoutError)"
    assert fake_kms.requests == 2


# --------------------------------------------------------------------------- key ids


GOOD_ARNS = [
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f"arn:aws:kms:eu-central-2:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    f"arn:aws:kms:ap-southeast-2:{ACCOUNT}:alias/chamber/share-1",
    f"arn:aws-us-gov:kms:us-gov-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:alias/chamber_1",
]

BAD_ARNS = [
    "",
    "local:dev",
    "1234abcd-12ab-34cd-56ef-1234567890ab",  # a bare key id
    "alias/chamber",  # a bare alias name
    "arn:aws:kms:us-east-1:1234:key/1234abcd-12ab-34cd-56ef-1234567890ab",  # short account
    f"arn:aws:kms::{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",  # no region
    f"arn:aws:kms:US-EAST-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/",  # no key id
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/not-a-key-id",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:1234abcd-12ab-34cd-56ef-1234567890ab",  # no key/
    f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/has space",
    f"arn:aws:s3:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f"arn:aws-iso:kms:us-iso-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f" arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab\n",
]


@pytest.mark.parametrize("arn", GOOD_ARNS)
def test_valid_arns(arn: str) -> None:
    AwsKms().validate_key_id(arn)
    assert AwsKms.handles(arn)


@pytest.mark.parametrize("arn", BAD_ARNS)
def test_malformed_arns_are_bad_requests_naming_the_expected_form(arn: str) -> None:
    with pytest.raises(BadRequest) as e:
        AwsKms().validate_key_id(arn)
    assert e.value.field == "kms_key_ids"
    assert e.value.message.startswith(f"invalid KMS ARN: expected {EXPECTED_FORM}, got ")
    assert e.value.message.endswith(arn[:200])


def test_malformed_arn_is_rejected_before_any_request(fake_kms: FakeKms) -> None:
    kms = AwsKms.from_config({"endpoint_url": fake_kms.url})
    with pytest.raises(BadRequest, match="invalid KMS ARN"):
        kms.encrypt(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/oops", SHARE, CONTEXT)
    assert fake_kms.requests == 0


def test_long_malformed_arn_is_truncated() -> None:
    arn = "arn:aws:kms:" + "x" * 5000
    with pytest.raises(BadRequest) as e:
        AwsKms().validate_key_id(arn)
    assert e.value.message.endswith("got " + arn[:200])


@pytest.mark.parametrize(
    ("key_id", "handled"),
    [
        (GOOD_ARNS[0], True),
        ("arn:aws:kms:garbage", True),  # handled, then rejected by validate_key_id
        ("arn:aws-cn:kms:cn-north-1:x", True),
        ("arn:aws:dynamodb:us-east-1:123456789012:table/t", False),
        ("local:dev", False),
        ("", False),
    ],
)
def test_handles(key_id: str, handled: bool) -> None:
    assert AwsKms.handles(key_id) is handled


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"region": "us-east-1"}, "kms.aws.region"),
        ({"endpoint_url": "127.0.0.1:4566"}, "kms.aws.endpoint_url"),
        ({"endpoint_url": {"Europe": "http://x"}}, "kms.aws.endpoint_url"),
        ({"endpoint_url": {"eu-west-1": "ftp://x"}}, "kms.aws.endpoint_url.eu-west-1"),
        ({"connect_timeout": 0}, "kms.aws.connect_timeout"),
        ({"read_timeout": "5"}, "kms.aws.read_timeout"),
        ({"max_attempts": 0}, "kms.aws.max_attempts"),
        ({"max_attempts": True}, "kms.aws.max_attempts"),
        ({"backoff_base_seconds": -1}, "kms.aws.backoff_base_seconds"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        AwsKms.from_config(settings)
    assert e.value.message.startswith(path + ":")


def test_defaults() -> None:
    s = AwsKms.from_config({}).settings
    assert (s.endpoint_url, s.connect_timeout, s.read_timeout) == (None, 2.0, 5.0)
    assert (s.max_attempts, s.backoff_base_seconds) == (4, 0.2)


def test_plugin_is_found_through_its_entry_point() -> None:
    from chamber.plugins import load_plugins
    from chamber.vault.local_kms import LocalKms

    providers = load_plugins().providers("chamber_kms_providers")
    assert providers["aws-kms"].cls is AwsKms
    assert providers["aws-kms"].plugin == "chamber_aws_kms"
    assert providers["local"].cls is LocalKms
