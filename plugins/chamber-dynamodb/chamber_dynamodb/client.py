"""Shared DynamoDB client construction and error mapping for every provider of this plugin.

Settings common to all providers (``region``, ``endpoint_url``, timeouts, retries) are validated
here, with errors naming ``<section>.<key>``; each provider validates its own keys on top.

The low-level client is used everywhere (the resource API is slower and hides the wire format).
botocore clients are thread-safe; each provider builds its own from a private
:class:`boto3.session.Session` (the default session is not thread-safe to create clients from).
AWS failures become :class:`chamber.errors.Unavailable` naming the operation and the table, and
carrying only the AWS error code: never a message that could echo an account, a role or a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    NoRegionError,
)

from chamber.errors import ConfigError, StartupError, Unavailable

#: Keys every DynamoDB-backed provider accepts, besides its own.
CLIENT_KEYS = frozenset(
    {"region", "endpoint_url", "connect_timeout", "read_timeout", "max_attempts"}
)

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    region: str | None = None
    endpoint_url: str | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    #: Attempts per request by botocore's "standard" retry mode (throttling, 5xx, timeouts).
    max_attempts: int = 3


def _number(settings: Mapping[str, Any], key: str, section: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
        raise ConfigError(f"{section}.{key}: must be a number of seconds between 0 and 300")
    return float(value)


def parse_client_settings(settings: Mapping[str, Any], section: str) -> ClientSettings:
    """Validate the common keys of ``settings`` (a config section called ``section``)."""
    region = settings.get("region")
    if region is not None and (not isinstance(region, str) or not region.strip()):
        raise ConfigError(f"{section}.region: must be an AWS region name such as eu-west-1")
    endpoint = settings.get("endpoint_url")
    if endpoint is not None and (
        not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{section}.endpoint_url: must be an http:// or https:// URL")
    attempts = settings.get("max_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise ConfigError(f"{section}.max_attempts: must be an integer between 1 and 20")
    return ClientSettings(
        region=region,
        endpoint_url=endpoint,
        connect_timeout=_number(settings, "connect_timeout", section, 2.0),
        read_timeout=_number(settings, "read_timeout", section, 5.0),
        max_attempts=attempts,
    )


def parse_table_name(settings: Mapping[str, Any], section: str, default: str) -> str:
    table = settings.get("table", default)
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise ConfigError(
            f"{section}.table: must be a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
        )
    return table


def make_client(settings: ClientSettings, section: str, pool_size: int = 32) -> Any:
    """A low-level DynamoDB client with explicit timeouts and bounded retries."""
    config = Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        max_pool_connections=pool_size,
        tcp_keepalive=True,
    )
    try:
        return boto3.session.Session().client(
            "dynamodb",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=config,
        )
    except NoRegionError:
        raise ConfigError(
            f"{section}.region: no AWS region configured (set it here or in AWS_REGION)"
        ) from None
    except (BotoCoreError, ValueError) as exc:
        raise StartupError(
            f"{section}: cannot create the DynamoDB client ({exc.__class__.__name__})"
        ) from None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, or the exception class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "UnknownError")
    return exc.__class__.__name__


def aws_unavailable(operation: str, table: str, exc: BaseException) -> Unavailable:
    """An AWS failure as a 503, naming the operation and the table, never credentials."""
    return Unavailable(f"DynamoDB {operation} on table {table} failed: {error_code(exc)}")


AWS_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError)
