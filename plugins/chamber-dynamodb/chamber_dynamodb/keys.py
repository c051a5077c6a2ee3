"""DynamoDB encrypted validator-key store (``key_sources.dynamodb``), shared by replicas.

Records are sealed by the core (:mod:`chamber.keys.encrypted`: AES-256-GCM under a key derived
from the master key, bound to the public key); this table only keeps them. One item per key::

    pk = "0x<pubkey hex>"   ciphertext (B), status (S: active | inactive),
                            origin (S: imported | generated), created_at (N, unix seconds),
                            backup (B, optional: age-encrypted mnemonic, never decrypted here),
                            write_id (S: random id of the put that created the item)

Every write is one single-item request, atomic by itself: ``insert`` is a ``PutItem`` per key
conditioned on ``attribute_not_exists(pk)`` (a duplicate is answered ``False``, never
overwritten), ``set_status`` / ``delete`` are conditioned on the item existing. Each put also
writes a random ``write_id`` and its condition accepts an item carrying that same id: when
botocore retries a put whose first attempt committed but whose answer was lost, the retry (the
same request) finds its own write and the key is reported written, not as a duplicate of itself;
any other put, even of an identical record, has another id and is answered ``False``. Listing is
a strongly consistent, paginated ``Scan``.

Change counter. Replicas refresh their keys every second; scanning a table of 10,000 keys that
often would cost thousands of read units per replica. So every write that changed something is
followed by ``ADD n 1`` on one extra item (``pk = "#keys-version"``), and
:meth:`DynamoDBKeyStore.change_token` reads it (one strongly consistent ``GetItem``): a replica
scans only when it moved. The counter is bumped after the key's own write, so a refresh that
reads the counter before scanning sees every write whose bump it read. A crash between the two
leaves the change unannounced until the signer's periodic full refresh (every 30 rounds). The
counter item is not a key: listing skips it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Self

from chamber.crypto.bls import BlsBackend
from chamber.errors import ConfigError, StartupError, Unavailable
from chamber.keys.encrypted import STATUSES, EncryptedKeySource, StoredKey
from chamber_dynamodb.client import (
    AWS_ERRORS,
    CLIENT_KEYS,
    aws_unavailable,
    error_code,
    make_client,
    parse_client_settings,
    parse_table_name,
)

__all__ = ["DynamoDBKeySource", "DynamoDBKeyStore"]

log = logging.getLogger("chamber.keys.dynamodb")

SECTION: Final = "key_sources.dynamodb"
SETTINGS_KEYS: Final = CLIENT_KEYS | {"table", "create_table"}
DEFAULT_TABLE: Final = "containment-keys"
#: Concurrent ``PutItem`` requests of one ``insert`` call (a bulk import of thousands of keys).
_WORKERS: Final = 8
#: "status" is a DynamoDB reserved word, so expressions name it through this placeholder.
_NAMES: Final = {"#st": "status"}
#: The change counter's item (not a public key: every key item's pk starts with "0x").
VERSION_PK: Final = "#keys-version"


def _pk(pubkey: bytes) -> str:
    return "0x" + bytes(pubkey).hex()


def _item(key: StoredKey) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": _pk(key.pubkey)},
        "ciphertext": {"B": key.ciphertext},
        "status": {"S": key.status},
        "origin": {"S": key.origin},
        "created_at": {"N": str(key.created_at)},
    }
    if key.backup is not None:
        item["backup"] = {"B": key.backup}
    return item


def _record(item: Mapping[str, Any]) -> StoredKey:
    """A :class:`StoredKey` from an item; ``ValueError``/``KeyError`` for a malformed one."""
    pk = item["pk"]["S"]
    if not pk.startswith("0x"):
        raise ValueError("pk is not 0x-prefixed hex")
    backup = item.get("backup")
    return StoredKey(
        pubkey=bytes.fromhex(pk[2:]),
        ciphertext=bytes(item["ciphertext"]["B"]),
        status=item["status"]["S"],
        origin=item["origin"]["S"],
        created_at=int(item["created_at"]["N"]),
        backup=None if backup is None else bytes(backup["B"]),
    )


class DynamoDBKeyStore:
    """:class:`chamber.keys.encrypted.EncryptedKeyStore` in a DynamoDB table (key ``pk``)."""

    def __init__(self, client: Any, table: str, *, create_table: bool = False) -> None:
        self._client = client
        self.table = table
        self._closed = False
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        try:
            if create_table:
                self._create_table()
            self._probe()
        except Unavailable as exc:
            raise StartupError(f"{SECTION}: {exc.message}") from None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        unknown = sorted(set(settings) - SETTINGS_KEYS)
        if unknown:
            raise ConfigError(
                f"{SECTION}.{unknown[0]}: unknown key for the dynamodb key store "
                f"(known: {', '.join(sorted(SETTINGS_KEYS))})",
                field=f"{SECTION}.{unknown[0]}",
            )
        table = parse_table_name(settings, SECTION, DEFAULT_TABLE)
        create = settings.get("create_table", False)
        if not isinstance(create, bool):
            raise ConfigError(f"{SECTION}.create_table: must be true or false")
        client = make_client(parse_client_settings(settings, SECTION), SECTION)
        return cls(client, table, create_table=create)

    # ------------------------------------------------------------------ set-up

    def _create_table(self) -> None:
        try:
            self._client.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
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
        """Fail at start-up, with the fix, if the table is missing or keyed differently."""
        try:
            self._client.get_item(TableName=self.table, Key={"pk": {"S": "#probe"}})
        except AWS_ERRORS as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                raise StartupError(
                    f"{SECTION}.table: the DynamoDB table {self.table} does not exist; create "
                    f"it (see the chamber-dynamodb README) or set {SECTION}.create_table: true"
                ) from None
            if code == "ValidationException":
                raise StartupError(
                    f"{SECTION}.table: the DynamoDB table {self.table} is not a key table (its "
                    "key must be a single string attribute named pk); use a table of its own"
                ) from None
            raise aws_unavailable("GetItem", self.table, exc) from None

    # ------------------------------------------------------------------ low-level calls

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        if self._closed:
            raise Unavailable("the DynamoDB key store is closed")
        try:
            return method(TableName=self.table, **kwargs)
        except AWS_ERRORS as exc:
            raise aws_unavailable(operation, self.table, exc) from None

    def _conditional(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> bool:
        """``False`` when the request's condition failed, ``True`` when it was applied."""
        if self._closed:
            raise Unavailable("the DynamoDB key store is closed")
        try:
            method(TableName=self.table, **kwargs)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_unavailable(operation, self.table, exc) from None
        return True

    def _scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page = self._call("Scan", self._client.scan, ConsistentRead=True, **kwargs, **extra)
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="dynamodb-keys")
            return self._pool

    # ------------------------------------------------------------------ the store contract

    def _put(self, key: StoredKey) -> bool:
        write_id = uuid.uuid4().hex
        return self._conditional(
            "PutItem",
            self._client.put_item,
            Item={**_item(key), "write_id": {"S": write_id}},
            ConditionExpression="attribute_not_exists(pk) OR write_id = :w",
            ExpressionAttributeValues={":w": {"S": write_id}},
        )

    def insert(self, keys: Sequence[StoredKey]) -> list[bool]:
        """One conditional ``PutItem`` per key (concurrently for a batch).

        A key repeated within the call is written once and answered ``False`` after the first.
        If AWS fails for some key, every other key is still attempted and then the first
        failure is raised: keys already written stay written (inserting them again answers
        ``False``), exactly as if they had been imported separately.
        """
        first: dict[bytes, int] = {}
        unique: list[StoredKey] = []
        for index, key in enumerate(keys):
            if key.pubkey not in first:
                first[key.pubkey] = index
                unique.append(key)
        if len(unique) <= 1:
            written = [self._put(key) for key in unique]
        else:
            futures = [self._executor().submit(self._put, key) for key in unique]
            errors = [future.exception() for future in futures]
            failure = next((error for error in errors if error is not None), None)
            if failure is not None:
                raise failure
            written = [future.result() for future in futures]
        if any(written):
            self._bump()
        by_pubkey = dict(zip((key.pubkey for key in unique), written, strict=True))
        return [
            by_pubkey[key.pubkey] and first[key.pubkey] == index for index, key in enumerate(keys)
        ]

    def list_keys(self, status: str | None = None) -> list[StoredKey]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        kwargs: dict[str, Any] = {}
        if status is not None:
            kwargs = {
                "FilterExpression": "#st = :st",
                "ExpressionAttributeNames": _NAMES,
                "ExpressionAttributeValues": {":st": {"S": status}},
            }
        records: list[StoredKey] = []
        for item in self._scan(**kwargs):
            if item.get("pk", {}).get("S") == VERSION_PK:
                continue
            try:
                records.append(_record(item))
            except (KeyError, TypeError, ValueError):
                # Not ours, or damaged: skipped and named (by pk only), never fatal for the rest.
                pk = item.get("pk", {}).get("S", "?")
                log.warning("dynamodb key store: malformed item skipped", extra={"pk": pk})
        records.sort(key=lambda record: (record.created_at, record.pubkey))
        return records

    def get(self, pubkey: bytes) -> StoredKey | None:
        response = self._call(
            "GetItem", self._client.get_item, Key={"pk": {"S": _pk(pubkey)}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        try:
            return _record(item)
        except (KeyError, TypeError, ValueError):
            raise Unavailable(
                f"DynamoDB key store: the item {_pk(pubkey)} in table {self.table} is malformed"
            ) from None

    def set_status(self, pubkey: bytes, status: str) -> bool:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        changed = self._conditional(
            "UpdateItem",
            self._client.update_item,
            Key={"pk": {"S": _pk(pubkey)}},
            UpdateExpression="SET #st = :st",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":st": {"S": status}},
        )
        if changed:
            self._bump()
        return changed

    def delete(self, pubkey: bytes) -> bool:
        deleted = self._conditional(
            "DeleteItem",
            self._client.delete_item,
            Key={"pk": {"S": _pk(pubkey)}},
            ConditionExpression="attribute_exists(pk)",
        )
        if deleted:
            self._bump()
        return deleted

    def _bump(self) -> None:
        """Announce a change to the other replicas (see the module documentation)."""
        try:
            self._call(
                "UpdateItem",
                self._client.update_item,
                Key={"pk": {"S": VERSION_PK}},
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        except Unavailable as error:
            # The write itself stands; other replicas see it at their next full refresh.
            log.warning(
                "dynamodb key store: the change counter could not be updated",
                extra={"reason": error.message},
            )

    def change_token(self) -> object:
        """The change counter (0 before the first change): a replica scans when it moved."""
        response = self._call(
            "GetItem",
            self._client.get_item,
            Key={"pk": {"S": VERSION_PK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return 0 if item is None else int(item["n"]["N"])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._client.close()


class DynamoDBKeySource(EncryptedKeySource):
    """Validator keys sealed under the master key in a DynamoDB table several replicas share."""

    name = "dynamodb"
    store: DynamoDBKeyStore

    def __init__(
        self, store: DynamoDBKeyStore, bls: BlsBackend, *, workers: int | None = None
    ) -> None:
        super().__init__(self.name, store, bls, workers=workers)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], bls: BlsBackend) -> Self:
        """``settings``: the ``key_sources.dynamodb`` section (``table``, ``create_table`` and
        the client keys ``region``, ``endpoint_url``, ``connect_timeout``, ``read_timeout``,
        ``max_attempts``)."""
        return cls(DynamoDBKeyStore.from_config(settings), bls)
