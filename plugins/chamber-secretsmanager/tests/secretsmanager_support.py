"""Constants and small types shared by the chamber-secretsmanager tests and their conftest
(a conftest is not a module to import from: several exist under the same name)."""

from __future__ import annotations

from dataclasses import dataclass

#: moto's default account.
ACCOUNT = "123456789012"
LEAKY_ROLE = "arn:aws:iam::123456789012:role/do-not-echo-this-role"
#: What the moto server and the fake endpoint put in error messages: never to be repeated.
AWS_MESSAGE_MARKER = "do-not-echo-this-role"
#: moto accepts any credentials; nothing may come from the developer's own.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
ENDPOINT_ENV = "CHAMBER_SECRETSMANAGER_ENDPOINT_URL"
#: ARNs (or names) whose GetSecretValue the conftest's moto server refuses with
#: AccessDeniedException (the ``deny`` fixture adds to it for one test).
DENIED: set[str] = set()


@dataclass
class FakeSecretsManager:
    """What the fake endpoint does with every request, and how many it saw."""

    url: str
    #: ``None``: read the request and close the connection without answering; otherwise the
    #: HTTP status of the answer, whose body carries the AWS error ``code``.
    status: int | None = None
    code: str = ""
    #: Seconds to wait before doing the above (longer than the client's read timeout: a hang).
    delay: float = 0.0
    requests: int = 0
