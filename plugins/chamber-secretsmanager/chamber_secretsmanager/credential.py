"""The ``secretsmanager`` operator credential type: the secret material is the value of an AWS
Secrets Manager secret, read by the operator CLI (``--secrets-manager-id ARN``).

Operator CLI half (``enroll`` / ``obtain``): one ``GetSecretValue`` call for the secret's full ARN
(``arn:<partition>:secretsmanager:<region>:<account-id>:secret:<name>``; the region comes from
the ARN) at a version stage (``--secrets-manager-version-stage``, default ``AWSCURRENT``). The
material is the secret's ``SecretString`` as UTF-8 bytes, or its ``SecretBinary`` bytes, byte for
byte (no trimming, no normalisation), and must be at least 16 bytes long. The public parameters
kept by the signer beside the credential are ``{"secret_arn": ARN, "version_stage": STAGE}``:
not secret, they let a later unseal find the secret again.

Which secret ``obtain`` reads (unseal, or proving an existing credential):

- with ``secret_id`` (``--secrets-manager-id``): that ARN, which must be one of the operator's
  registered Secrets Manager credentials (``candidates``) when the signer listed any, so that a
  mistyped ARN fails at once with the registered ARNs named, instead of reading an unrelated
  secret and sending it to the signer. Its stage: ``version_stage`` when given, else the stage
  stored with the newest credential of that ARN.
- without it (``--credential-type secretsmanager``, or ``--existing-credential-type``): the
  candidates in order, each at its stored stage; the first secret that can be read is used.

Server half (``validate``): the material must be at least 16 bytes.

Client: a private :class:`boto3.session.Session` (the default credential chain: environment,
profile, SSO, web identity, instance or task role), a low-level client per region with short
timeouts, botocore's own retries off and ours bounded (throttling, 5xx, connection errors and
timeouts; backoff with jitter). ``CHAMBER_SECRETSMANAGER_ENDPOINT_URL`` replaces the endpoint
for every region (a VPC interface endpoint without private DNS, or a moto server in tests).

Every failure is a :class:`chamber.errors.ChamberError` whose message names the ARN and the
condition and carries the AWS error *code* only: AWS messages can echo roles and account ids. The
secret's value never appears in an exception, a log or a ``repr``.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore import exceptions as aws  # type: ignore[import-untyped, unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]

from chamber.errors import BadRequest, ChamberError
from chamber.vault.interfaces import Enrollment

TYPE_NAME = "secretsmanager"
ENDPOINT_ENV = "CHAMBER_SECRETSMANAGER_ENDPOINT_URL"
DEFAULT_STAGE = "AWSCURRENT"
MIN_SECRET_BYTES = 16
#: Public parameter names stored with the credential.
ARN_KEY = "secret_arn"
STAGE_KEY = "version_stage"

REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
#: ``arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`` (the name usually ends
#: with the ``-XXXXXX`` suffix Secrets Manager appends; a partial ARN without it also works).
ARN = re.compile(
    r"arn:(?P<partition>aws|aws-us-gov|aws-cn):secretsmanager:"
    rf"(?P<region>{REGION}):"
    r"(?P<account>[0-9]{12}):"
    r"secret:(?P<name>[A-Za-z0-9/_+=.@-]{1,512})"
)
EXPECTED_FORM = "arn:aws:secretsmanager:<region>:<account-id>:secret:<name>"
#: Version stages: 1 to 256 printable characters without spaces.
STAGE = re.compile(r"[\x21-\x7e]{1,256}")

#: Answers that will not change by asking again, and what they mean.
DEFINITE: Mapping[str, str] = {
    "ResourceNotFoundException": "secret not found",
    "AccessDeniedException": "access denied: the caller's IAM identity may not read this secret "
    "(it needs secretsmanager:GetSecretValue on it, and kms:Decrypt on its KMS key when that is "
    "a customer-managed key)",
    "InvalidRequestException": "the secret is deleted or scheduled for deletion "
    "(aws secretsmanager restore-secret brings back one still in its recovery window)",
    "DecryptionFailure": "Secrets Manager could not decrypt the secret with its KMS key "
    "(the caller may lack kms:Decrypt on the key, or the key is disabled)",
    "InvalidParameterException": "request rejected by Secrets Manager (check the ARN and the "
    "version stage)",
    "ValidationException": "request rejected by Secrets Manager",
    "UnrecognizedClientException": "AWS credentials rejected",
    "InvalidClientTokenId": "AWS credentials rejected",
    "InvalidSignatureException": "AWS credentials rejected",
    "SignatureDoesNotMatch": "AWS credentials rejected",
    "ExpiredTokenException": "AWS credentials expired",
    "ExpiredToken": "AWS credentials expired",
}

#: Error codes worth retrying even though their HTTP status is below 500.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


class SecretsManagerError(ChamberError):
    """A secret could not be read; the message names the ARN and the condition (never the AWS
    message, never the value)."""

    status = 502
    title = "secrets manager error"

    def __init__(self, message: str, *, arn: str | None = None) -> None:
        super().__init__(message)
        self.arn = arn


def _failure(arn: str, reason: str) -> SecretsManagerError:
    return SecretsManagerError(f"Secrets Manager secret {arn}: {reason}", arn=arn)


class _Transient(Exception):
    """A failed attempt worth repeating; ``code`` is the AWS code or the exception class."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_arn(secret_id: object) -> re.Match[str]:
    """The ARN's parts, or :class:`BadRequest` naming the expected form (no network call)."""
    match = ARN.fullmatch(secret_id) if isinstance(secret_id, str) else None
    if match is None:
        shown = repr(secret_id[:200]) if isinstance(secret_id, str) else type(secret_id).__name__
        raise BadRequest(
            f"--secrets-manager-id: invalid Secrets Manager secret ARN {shown}: expected "
            f"{EXPECTED_FORM} (the full ARN: the region is taken from it)",
            field="secret_id",
        )
    return match


def check_stage(stage: object) -> str:
    if not isinstance(stage, str) or not STAGE.fullmatch(stage):
        shown = repr(stage[:64]) if isinstance(stage, str) else type(stage).__name__
        raise BadRequest(
            f"--secrets-manager-version-stage: invalid version stage {shown}: 1 to 256 printable "
            f"characters without spaces, e.g. {DEFAULT_STAGE} or AWSPREVIOUS",
            field="version_stage",
        )
    return stage


def endpoint_from_env() -> str | None:
    value = os.environ.get(ENDPOINT_ENV, "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise BadRequest(f"{ENDPOINT_ENV}: must be an http:// or https:// URL", field=ENDPOINT_ENV)
    return value


def _error_code(exc: aws.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "UnknownError")


def _status(exc: aws.ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else 0


class SecretsManagerCredential:
    """An operator credential whose material is an AWS Secrets Manager secret's value."""

    name = TYPE_NAME
    description = (
        "a secret of at least 16 bytes kept in AWS Secrets Manager, read by the CLI "
        "(--secrets-manager-id ARN; automated unseal)"
    )

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base_seconds: float = 0.2,
    ) -> None:
        #: ``None``: ``CHAMBER_SECRETSMANAGER_ENDPOINT_URL`` if set, else AWS's endpoint.
        self.endpoint_url = endpoint_url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_seconds = backoff_base_seconds
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Replaced by tests to observe the waits; ``time.sleep`` otherwise.
        self._sleep = time.sleep

    def __repr__(self) -> str:
        return f"SecretsManagerCredential(regions={sorted(self._clients)!r})"

    # ------------------------------------------------------------------ credential type

    def enroll(self, options: Mapping[str, Any]) -> Enrollment:
        """A new credential: the current value of ``options["secret_id"]`` at its stage."""
        secret_id = options.get("secret_id")
        if secret_id is None:
            raise BadRequest(
                "a secretsmanager credential needs the secret's ARN: --secrets-manager-id "
                f"{EXPECTED_FORM}",
                field="secret_id",
            )
        arn = parse_arn(secret_id).group(0)
        given_stage = options.get("version_stage")
        stage = DEFAULT_STAGE if given_stage is None else check_stage(given_stage)
        material = self.fetch(arn, stage)
        return Enrollment(material, {ARN_KEY: arn, STAGE_KEY: stage})

    def obtain(
        self, options: Mapping[str, Any], candidates: Sequence[Mapping[str, str]] = ()
    ) -> bytes:
        targets = self._targets(options, candidates)
        failures: list[SecretsManagerError] = []
        for arn, stage in targets:
            try:
                return self.fetch(arn, stage)
            except SecretsManagerError as error:
                failures.append(error)
        if len(failures) == 1:
            raise failures[0]
        raise SecretsManagerError(
            "no Secrets Manager secret of this operator could be read: "
            + "; ".join(f.message for f in failures)
        )

    def validate(self, material: bytes) -> None:
        if len(material) < MIN_SECRET_BYTES:
            raise BadRequest(
                f"secretsmanager: secret too short: at least {MIN_SECRET_BYTES} bytes",
                field="secret",
            )

    # ------------------------------------------------------------------ which secret

    def _targets(
        self, options: Mapping[str, Any], candidates: Sequence[Mapping[str, str]]
    ) -> list[tuple[str, str]]:
        """``(arn, stage)`` pairs to try, in order (see the module docstring)."""
        given_stage = options.get("version_stage")
        if given_stage is not None:
            check_stage(given_stage)
        registered: list[tuple[str, str]] = []
        for candidate in candidates:
            arn = candidate.get(ARN_KEY) if isinstance(candidate, Mapping) else None
            if not isinstance(arn, str) or ARN.fullmatch(arn) is None:
                continue  # not one of ours (or damaged): nothing we can read
            stage = candidate.get(STAGE_KEY)
            if not isinstance(stage, str) or not STAGE.fullmatch(stage):
                stage = DEFAULT_STAGE
            registered.append((arn, stage))
        secret_id = options.get("secret_id")
        if secret_id is not None:
            arn = parse_arn(secret_id).group(0)
            stages = [stage for candidate_arn, stage in registered if candidate_arn == arn]
            if registered and not stages:
                operator = options.get("operator")
                whose = f"operator {operator!r}" if isinstance(operator, str) else "the operator"
                known = ", ".join(sorted({a for a, _ in registered}))
                raise BadRequest(
                    f"--secrets-manager-id: {arn} is not a Secrets Manager credential of {whose} "
                    f"on this signer (registered: {known})",
                    field="secret_id",
                )
            return [(arn, given_stage or (stages[-1] if stages else DEFAULT_STAGE))]
        if not registered:
            raise BadRequest(
                f"no Secrets Manager secret to read: give --secrets-manager-id {EXPECTED_FORM}",
                field="secret_id",
            )
        targets: list[tuple[str, str]] = []
        for arn, stage in registered:
            target = (arn, given_stage or stage)
            if target not in targets:
                targets.append(target)
        return targets

    # ------------------------------------------------------------------ reading a secret

    def fetch(self, arn: str, stage: str = DEFAULT_STAGE) -> bytes:
        """The value of the secret ``arn`` at ``stage``, as bytes of at least 16."""
        region = parse_arn(arn)["region"]
        check_stage(stage)
        client = self._client(arn, region)
        response = self._call(arn, client, SecretId=arn, VersionStage=stage)
        text = response.get("SecretString")
        binary = response.get("SecretBinary")
        if isinstance(text, str):
            material = text.encode("utf-8")
        elif isinstance(binary, bytes | bytearray):
            material = bytes(binary)
        else:
            raise _failure(arn, f"the version at stage {stage!r} holds no value")
        if len(material) < MIN_SECRET_BYTES:
            raise _failure(
                arn,
                f"the value at stage {stage!r} is shorter than {MIN_SECRET_BYTES} bytes; "
                "use a random value of 32 bytes or more",
            )
        return material

    def _call(self, arn: str, client: Any, **params: Any) -> dict[str, Any]:
        attempts = self.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(arn, client, params)
            except _Transient as transient:
                if attempt == attempts:
                    raise _failure(
                        arn,
                        f"Secrets Manager unreachable or failing after {attempts} attempts "
                        f"({transient.code})",
                    ) from None
                self._sleep(self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _attempt(arn: str, client: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        """One request: its response, :class:`_Transient`, or a definite error.

        Exceptions are re-raised ``from None``: a chained botocore exception carries the AWS
        message (roles, account ids)."""
        try:
            response: dict[str, Any] = client.get_secret_value(**params)
            return response
        except aws.ClientError as exc:
            code = _error_code(exc)
            status = _status(exc)
        except (aws.ConnectionError, aws.HTTPClientError) as exc:  # refused, reset, timeouts, DNS
            raise _Transient(exc.__class__.__name__) from None
        except aws.NoCredentialsError:
            raise _failure(
                arn,
                "no AWS credentials found (NoCredentialsError); configure the AWS credential "
                "chain (environment, profile, SSO, web identity or an instance role)",
            ) from None
        except aws.BotoCoreError as exc:
            raise _failure(arn, f"request failed ({exc.__class__.__name__})") from None
        if code == "ResourceNotFoundException":
            stage = params.get("VersionStage", DEFAULT_STAGE)
            raise _failure(
                arn, f"secret not found, or no version of it has the stage {stage!r} ({code})"
            )
        if code in DEFINITE:
            raise _failure(arn, f"{DEFINITE[code]} ({code})")
        if code in TRANSIENT_CODES or status >= 500:
            raise _Transient(code)
        raise _failure(arn, f"request failed ({code})")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of ``base * 2**(attempt-1)``."""
        ceiling = self.backoff_base_seconds * (1 << (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _client(self, arn: str, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = self._make_client(arn, region)
                self._clients[region] = client
            return client

    def _make_client(self, arn: str, region: str) -> Any:
        endpoint = self.endpoint_url or endpoint_from_env()
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        try:
            if self._session is None:
                self._session = boto3.session.Session()
            return self._session.client(
                "secretsmanager", region_name=region, endpoint_url=endpoint, config=config
            )
        except (aws.BotoCoreError, ValueError) as exc:
            raise _failure(
                arn,
                f"cannot create a Secrets Manager client for {region} ({exc.__class__.__name__})",
            ) from None
