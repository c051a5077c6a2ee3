"""AWS KMS provider (``aws-kms``): wraps the vault's Shamir shares with symmetric KMS keys.

A key id is a full KMS key or alias ARN; the ARN's region chooses the endpoint, so one chamber
can hold shares under keys in several regions (and accounts). One low-level client per region,
created lazily from a private :class:`boto3.session.Session` (the default session is not safe to
create clients from concurrently); botocore clients themselves are thread-safe.

Retries are ours, not botocore's (its retries are turned off): throttling, 5xx answers and
connection or timeout errors are retried with exponential backoff and jitter up to
``max_attempts``; a definite answer (disabled key, access denied, unknown key, wrong ciphertext
or context) fails at once. Every failure is a :class:`chamber.errors.KmsError` naming the key id
and carrying the AWS error *code* only: AWS messages can echo ARNs, roles and account ids, and
none of it ever reaches a log. Plaintext never reaches an exception or a log.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore import exceptions as aws  # type: ignore[import-untyped, unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]

from chamber.errors import BadRequest, ConfigError, KmsError

SECTION = "kms.aws"
PARTITIONS = ("aws", "aws-us-gov", "aws-cn")
PREFIXES = tuple(f"arn:{partition}:kms:" for partition in PARTITIONS)

REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"

#: ``arn:<partition>:kms:<region>:<account>:key/<key id>`` or ``...:alias/<alias name>``.
ARN = re.compile(
    r"arn:(?P<partition>aws|aws-us-gov|aws-cn):kms:"
    rf"(?P<region>{REGION}):"
    r"(?P<account>[0-9]{12}):"
    r"(?:key/(?:mrk-[0-9a-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
    r"[0-9A-Fa-f]{12})|alias/[A-Za-z0-9/_-]{1,250})"
)

EXPECTED_FORM = "arn:aws:kms:<region>:<account-id>:key/<key-id>"

#: Answers that will not change by asking again, and what they mean.
DEFINITE: Mapping[str, str] = {
    "DisabledException": "key is disabled",
    "AccessDeniedException": "access denied",
    "NotFoundException": "key not found",
    "InvalidCiphertextException": "ciphertext or encryption context does not match",
    "IncorrectKeyException": "ciphertext or encryption context does not match "
    "(encrypted under another key)",
    "KMSInvalidStateException": "key is not usable in its current state "
    "(pending deletion, pending import or unavailable)",
    "InvalidKeyUsageException": "key cannot be used to encrypt and decrypt "
    "(not a symmetric ENCRYPT_DECRYPT key)",
    "UnrecognizedClientException": "AWS credentials rejected",
    "InvalidSignatureException": "AWS credentials rejected",
    "ExpiredTokenException": "AWS credentials expired",
    "ValidationException": "request rejected by KMS",
}

#: Error codes worth retrying even though their HTTP status is below 500.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)

SETTINGS = frozenset(
    {"endpoint_url", "connect_timeout", "read_timeout", "max_attempts", "backoff_base_seconds"}
)


@dataclass(frozen=True, slots=True)
class AwsKmsSettings:
    #: One URL for every region (moto, tests) or ``region -> URL`` (VPC endpoints without
    #: private DNS); regions not in the mapping use the public AWS endpoint.
    endpoint_url: str | Mapping[str, str] | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    #: Attempts per operation (ours: botocore's own retries are off).
    max_attempts: int = 4
    #: First backoff; doubled after every failed attempt, with jitter.
    backoff_base_seconds: float = 0.2

    def endpoint_for(self, region: str) -> str | None:
        if isinstance(self.endpoint_url, Mapping):
            return self.endpoint_url.get(region)
        return self.endpoint_url


class _Transient(Exception):
    """A failed attempt worth repeating; ``code`` is the AWS code or the exception class."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _url(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{SECTION}.{key}: must be an http:// or https:// URL")
    return value


def _seconds(settings: Mapping[str, Any], key: str, default: float, upper: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= upper:
        raise ConfigError(f"{SECTION}.{key}: must be a number of seconds above 0, at most {upper}")
    return float(value)


def parse_settings(settings: Mapping[str, Any]) -> AwsKmsSettings:
    """Validate the ``kms.aws`` section; errors name ``kms.aws.<key>``."""
    for key in settings:
        if key not in SETTINGS:
            raise ConfigError(
                f"{SECTION}.{key}: unknown setting (known: {', '.join(sorted(SETTINGS))})"
            )
    endpoint: str | dict[str, str] | None = None
    raw_endpoint = settings.get("endpoint_url")
    if isinstance(raw_endpoint, Mapping):
        endpoint = {}
        for region, url in raw_endpoint.items():
            if not isinstance(region, str) or not re.fullmatch(REGION, region):
                raise ConfigError(
                    f"{SECTION}.endpoint_url: keys must be AWS region names such as eu-west-1"
                )
            endpoint[region] = _url(url, f"endpoint_url.{region}")
    elif raw_endpoint is not None:
        endpoint = _url(raw_endpoint, "endpoint_url")
    attempts = settings.get("max_attempts", 4)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise ConfigError(f"{SECTION}.max_attempts: must be an integer between 1 and 10")
    return AwsKmsSettings(
        endpoint_url=endpoint,
        connect_timeout=_seconds(settings, "connect_timeout", 2.0, 60.0),
        read_timeout=_seconds(settings, "read_timeout", 5.0, 60.0),
        max_attempts=attempts,
        backoff_base_seconds=_seconds(settings, "backoff_base_seconds", 0.2, 5.0),
    )


def parse_arn(key_id: str) -> re.Match[str]:
    """The ARN's parts, or :class:`BadRequest` naming the expected form."""
    match = ARN.fullmatch(key_id) if isinstance(key_id, str) else None
    if match is None:
        shown = key_id[:200] if isinstance(key_id, str) else type(key_id).__name__
        raise BadRequest(
            f"invalid KMS ARN: expected {EXPECTED_FORM}, got {shown}", field="kms_key_ids"
        )
    return match


def _error_code(exc: aws.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "UnknownError")


def _status(exc: aws.ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else 0


class AwsKms:
    """KMS key ids that are AWS KMS key or alias ARNs (``arn:aws:kms:…``)."""

    name = "aws-kms"

    def __init__(self, settings: AwsKmsSettings | None = None) -> None:
        self.settings = settings or AwsKmsSettings()
        self._session = boto3.session.Session()
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Replaced by tests to observe the waits; ``time.sleep`` otherwise.
        self._sleep = time.sleep

    def __repr__(self) -> str:
        return f"AwsKms(regions={sorted(self._clients)!r})"

    # ------------------------------------------------------------------ provider contract

    @classmethod
    def handles(cls, key_id: str) -> bool:
        return isinstance(key_id, str) and key_id.startswith(PREFIXES)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        return cls(parse_settings(settings))

    def validate_key_id(self, key_id: str) -> None:
        parse_arn(key_id)

    def encrypt(self, key_id: str, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        response = self._call(
            key_id,
            "encrypt",
            KeyId=key_id,
            Plaintext=bytes(plaintext),
            EncryptionContext=dict(context),
        )
        return bytes(response["CiphertextBlob"])

    def decrypt(self, key_id: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        response = self._call(
            key_id,
            "decrypt",
            CiphertextBlob=bytes(ciphertext),
            KeyId=key_id,
            EncryptionContext=dict(context),
        )
        return bytes(response["Plaintext"])

    # ------------------------------------------------------------------ calls and retries

    def _call(self, key_id: str, operation: str, **params: Any) -> dict[str, Any]:
        region = parse_arn(key_id)["region"]
        client = self._client(key_id, region)
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(key_id, client, operation, params)
            except _Transient as transient:
                if attempt == attempts:
                    raise KmsError(
                        key_id, f"unreachable after {attempts} attempts ({transient.code})"
                    ) from None
                self._sleep(self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _attempt(
        key_id: str, client: Any, operation: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One request: its response, :class:`_Transient`, or a definite :class:`KmsError`.

        Exceptions are re-raised ``from None``: a chained botocore exception carries the AWS
        message (ARNs, roles) and, for some errors, the request parameters.
        """
        try:
            response: dict[str, Any] = getattr(client, operation)(**params)
            return response
        except aws.ClientError as exc:
            code = _error_code(exc)
            status = _status(exc)
        except (aws.ConnectionError, aws.HTTPClientError) as exc:  # refused, reset, timeouts, DNS
            raise _Transient(exc.__class__.__name__) from None
        except aws.NoCredentialsError:
            raise KmsError(key_id, "no AWS credentials found (NoCredentialsError)") from None
        except aws.BotoCoreError as exc:
            raise KmsError(key_id, f"request failed ({exc.__class__.__name__})") from None
        if code in DEFINITE:
            raise KmsError(key_id, f"{DEFINITE[code]} ({code})")
        if code in TRANSIENT_CODES or status >= 500:
            raise _Transient(code)
        raise KmsError(key_id, f"request failed ({code})")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of ``base * 2**(attempt-1)``."""
        ceiling = self.settings.backoff_base_seconds * (1 << (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _client(self, key_id: str, region: str) -> Any:
        client = self._clients.get(region)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = self._make_client(key_id, region)
                self._clients[region] = client
            return client

    def _make_client(self, key_id: str, region: str) -> Any:
        config = Config(
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
            tcp_keepalive=True,
        )
        try:
            return self._session.client(
                "kms",
                region_name=region,
                endpoint_url=self.settings.endpoint_for(region),
                config=config,
            )
        except (aws.BotoCoreError, ValueError) as exc:
            raise KmsError(
                key_id, f"cannot create a KMS client for {region} ({exc.__class__.__name__})"
            ) from None
