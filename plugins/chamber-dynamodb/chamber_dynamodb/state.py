"""DynamoDB vault state store: versioned compare-and-set shared by every signer replica.

Implements :class:`chamber.vault.interfaces.StateBackend` on one table with the string partition
key ``key``; an item is ``{"key": S, "value": B, "version": N}``. ``put`` writes
``version = expected + 1`` on the condition ``attribute_not_exists(#k)`` (expected 0) or
``#v = :expected``; ``delete`` is conditioned the same way; ``get`` reads strongly consistently.
A failed condition is :class:`chamber.errors.Conflict` and writes nothing: DynamoDB evaluates the
condition and the write atomically, so two replicas can never both initialise the vault.

Each write is a one-item ``TransactWriteItems`` rather than a ``PutItem`` / ``DeleteItem``, for
its ``ClientRequestToken``: botocore retries a request whose answer was lost (a timeout after the
write committed), and a plain conditional write would then fail its own condition and report a
Conflict although it won. With the token, DynamoDB answers the retry with the first attempt's
success. (No IAM action of its own: the operation is authorized as ``PutItem`` / ``DeleteItem``.)
A transaction cancelled because another transaction held the item at that moment
(``TransactionConflict``) wrote nothing and is tried again, a few times, before a 503.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any, Self

from chamber.errors import ConfigError, Conflict, StartupError, Unavailable
from chamber_dynamodb.client import (
    AWS_ERRORS,
    CLIENT_KEYS,
    aws_unavailable,
    error_code,
    make_client,
    parse_client_settings,
    parse_table_name,
)

log = logging.getLogger("chamber.vault.dynamodb_state")

SECTION = "signer_state"
SETTINGS_KEYS = CLIENT_KEYS | {"table", "create_table"}
#: Attempts of one write cancelled by a concurrent transaction on the same item.
MAX_ATTEMPTS = 8
#: Read at start-up to prove the table exists and is reachable (any key would do).
_PROBE_KEY = "#chamber-startup-probe"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _condition(expected_version: int) -> dict[str, Any]:
    if expected_version == 0:
        return {
            "ConditionExpression": "attribute_not_exists(#k)",
            "ExpressionAttributeNames": {"#k": "key"},
        }
    return {
        "ConditionExpression": "#v = :expected",
        "ExpressionAttributeNames": {"#v": "version"},
        "ExpressionAttributeValues": {":expected": _n(expected_version)},
    }


def _check_version(expected_version: int) -> None:
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise ValueError("expected_version must be an integer >= 0 (0 = the key is absent)")


class DynamoDBStateBackend:
    """:class:`chamber.vault.interfaces.StateBackend` on a DynamoDB table."""

    name = "dynamodb"

    def __init__(self, client: Any, table: str, *, create_table: bool = False) -> None:
        self._client = client
        self.table = table
        self._closed = False
        try:
            if create_table:
                self._create_table()
            self._probe()
        except Unavailable as exc:
            client.close()
            raise StartupError(f"{SECTION}: {exc.message}") from None
        except StartupError:
            client.close()
            raise

    # ------------------------------------------------------------------ set-up

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        unknown = sorted(set(settings) - SETTINGS_KEYS)
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key for the dynamodb state store")
        if "table" not in settings:
            raise ConfigError(
                f"{SECTION}.table: required for the dynamodb state store (a DynamoDB table name)"
            )
        table = parse_table_name(settings, SECTION, "")
        create = settings.get("create_table", False)
        if not isinstance(create, bool):
            raise ConfigError(f"{SECTION}.create_table: must be true or false")
        client = make_client(parse_client_settings(settings, SECTION), SECTION, pool_size=8)
        return cls(client, table, create_table=create)

    def __repr__(self) -> str:
        return f"DynamoDBStateBackend(table={self.table!r})"

    def _create_table(self) -> None:
        try:
            self._client.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except AWS_ERRORS as exc:
            if error_code(exc) != "ResourceInUseException":  # it exists already: fine
                raise aws_unavailable("CreateTable", self.table, exc) from None
        try:
            self._client.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        except AWS_ERRORS as exc:
            raise aws_unavailable("DescribeTable", self.table, exc) from None

    def _probe(self) -> None:
        try:
            self._client.get_item(
                TableName=self.table,
                Key={"key": _s(_PROBE_KEY)},
                ConsistentRead=True,
                ProjectionExpression="#k",
                ExpressionAttributeNames={"#k": "key"},
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise StartupError(
                    f"{SECTION}.table: the DynamoDB table {self.table} does not exist; create it "
                    f"(partition key 'key' of type S, see the chamber-dynamodb README) or set "
                    f"{SECTION}.create_table: true"
                ) from None
            raise aws_unavailable("GetItem", self.table, exc) from None

    # ------------------------------------------------------------------ StateBackend

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"vault state store (DynamoDB table {self.table}) is closed")

    def get(self, key: str) -> tuple[bytes, int] | None:
        self._check_open()
        try:
            item = self._client.get_item(
                TableName=self.table, Key={"key": _s(key)}, ConsistentRead=True
            ).get("Item")
        except AWS_ERRORS as exc:
            raise aws_unavailable("GetItem", self.table, exc) from None
        if item is None:
            return None
        return bytes(item["value"]["B"]), int(item["version"]["N"])

    def put(self, key: str, value: bytes, expected_version: int) -> int:
        _check_version(expected_version)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("value must be bytes")
        new_version = expected_version + 1
        item = {"key": _s(key), "value": {"B": bytes(value)}, "version": _n(new_version)}
        put = {"Put": {"Item": item, **_condition(expected_version)}}
        self._write(key, expected_version, put, written=item)
        return new_version

    def delete(self, key: str, expected_version: int) -> None:
        _check_version(expected_version)
        delete = {"Delete": {"Key": {"key": _s(key)}, **_condition(expected_version)}}
        self._write(key, expected_version, delete, written=None)

    def _write(
        self,
        key: str,
        expected_version: int,
        operation: dict[str, Any],
        written: dict[str, Any] | None,
    ) -> None:
        """One conditional write as a one-item transaction; Conflict if the condition fails.

        ``written`` is the item a put writes: after an attempt that was still in progress when
        it was answered (and so may have committed), finding exactly that item is our success.
        """
        body = next(iter(operation.values()))
        body["TableName"] = self.table
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        maybe_committed = False
        for attempt in range(MAX_ATTEMPTS):
            self._check_open()
            try:
                # A fresh token per attempt of ours; botocore's own retries of one attempt
                # reuse it, which is what makes them idempotent.
                self._client.transact_write_items(
                    TransactItems=[operation], ClientRequestToken=uuid.uuid4().hex
                )
                return
            except AWS_ERRORS as exc:
                code = error_code(exc)
                reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
                if code == "TransactionCanceledException" and reasons:
                    reason = reasons[0]
                    if reason.get("Code") == "ConditionalCheckFailed":
                        old = reason.get("Item") or {}
                        if maybe_committed and written is not None and old == written:
                            return
                        found = int(old["version"]["N"]) if "version" in old else 0
                        raise Conflict(
                            f"state changed concurrently: expected version {expected_version}, "
                            f"found {found} (key {key!r})"
                        ) from None
                    if reason.get("Code") not in ("TransactionConflict", "ThrottlingError"):
                        raise aws_unavailable("TransactWriteItems", self.table, exc) from None
                elif code == "TransactionInProgressException":
                    maybe_committed = True
                elif code != "TransactionConflictException":
                    raise aws_unavailable("TransactWriteItems", self.table, exc) from None
                if attempt + 1 == MAX_ATTEMPTS:
                    raise aws_unavailable("TransactWriteItems", self.table, exc) from None
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
