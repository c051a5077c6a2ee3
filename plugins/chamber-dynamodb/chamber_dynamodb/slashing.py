"""DynamoDB slashing protection (EIP-3076), safe for several signer replicas sharing one table.

Semantics are exactly those of :mod:`chamber.slashing.sqlite` (the reference): decisions come
from :mod:`chamber.slashing.rules`, imports from :func:`merge_history`; import floors are the
minimum over imports, hard floors (prune, set-watermark) are only raised, the effective floor is
the larger of both; an attestation with ``source >= max_source`` and ``target > max_target`` takes
the fast path.

Layout (one table, string keys ``pk`` / ``sk``)::

    pk = "#meta"        sk = "#meta"      gvr, schema_version
    pk = "v#<pubkey>"   sk = "w"          the watermark item: version, import_*_floor,
                                          hard_*_floor, max_source, max_target, max_slot,
                                          inv_min_target
    pk = "v#<pubkey>"   sk = "b#<slot>"   slot, root (binary; absent = imported without one)
    pk = "v#<pubkey>"   sk = "a#<target>" source, target, root (idem)

Numbers in sort keys are zero-padded to 20 digits, so keys sort numerically.

Concurrency: every write to a validator's items goes through one ``TransactWriteItems`` that also
updates the watermark item on the condition that its ``version`` is still the one read, and bumps
it. Reads take the watermark first (``GetItem``, strongly consistent), then anything else; so a
transaction that commits proves nothing in the validator's partition changed since its decision
was made (optimistic concurrency, serializable per validator). A cancelled transaction is re-read
and re-decided (bounded, with jitter): a conflicting record that appeared meanwhile becomes a
refusal through the rules. New records are put with ``attribute_not_exists`` as a second guard,
returning the existing record on failure, which decides a double proposal / vote at once.

Fast path: an attestation above ``max_source`` / ``max_target`` costs one ``GetItem`` and one
transaction: no record can share its target (``max_target`` covers every stored target) and none
can surround or be surrounded. Off the fast path, one ``Query`` over the attestation items from
``min(source + 1, target, inv_min_target)`` upwards finds the same-target, a surrounding and a
surrounded record: a record with ``source <= target`` surrounded by (s, t) has a target above s;
``inv_min_target`` (the lowest target of a stored record with source > target, which only imports
can bring) covers the others.

Imports: everything is validated first (parse, network, :func:`merge_history` against the stored
items of every validator), and a file slashable against itself or the table writes nothing. Then
the writes go out in transactions of at most 100 items, each one updating (conditioned on its
version) the watermark item of every validator it touches; small validators share a transaction,
a validator with more than 99 new records spans several. Records go first, import floors last,
and ``max_*`` with the first write, so every intermediate state protects at least as much as the
one before. If a concurrent signing for the same validator lands between the validation and the
writes, the cancelled transaction's validators are re-read and re-merged; only when that
signing makes the import slashable does it stop with :class:`ImportRejected`, after part of it
was written (this window, between validation and the last transaction, is the only way an import
can be partial; the message says so).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Self, TypeVar

from chamber.errors import BadRequest, ConfigError, StartupError, Unavailable
from chamber.slashing import ImportReport, PruneReport
from chamber.slashing.interchange import (
    ImportRejected,
    ValidatorHistory,
    check_network,
    export_document,
    group_by_validator,
    merge_history,
    parse_interchange,
)
from chamber.slashing.rules import (
    AttestationRecord,
    BlockRecord,
    Floors,
    attestation_fast_path,
    decide_attestation,
    decide_block,
    require_storable,
    watermark_floors,
)
from chamber_dynamodb.client import (
    AWS_ERRORS,
    CLIENT_KEYS,
    aws_unavailable,
    error_code,
    make_client,
    parse_client_settings,
    parse_table_name,
)

log = logging.getLogger("chamber.slashing.dynamodb")

SECTION = "anti_slashing"
SETTINGS_KEYS = CLIENT_KEYS | {"table", "create_table"}
SCHEMA_VERSION = "1"

META_PK = "#meta"
WATERMARK_SK = "w"
_DIGITS = 20
_TOP = "9" * _DIGITS

#: DynamoDB's limit of items per transaction.
TRANSACTION_ITEMS = 100
#: Attempts of one decision against concurrent writers before giving up (503, nothing signed).
MAX_ATTEMPTS = 64
#: Cancelled transactions an import or prune tolerates before giving up.
MAX_BULK_CONFLICTS = 32
#: Cancellation reasons worth re-reading and retrying; any other is a failure.
_RETRYABLE = frozenset(
    {
        "None",
        "ConditionalCheckFailed",
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)
_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


# ------------------------------------------------------------------------------ encoding


def _pk(pubkey: bytes) -> str:
    return "v#" + pubkey.hex()


def _block_sk(slot: int) -> str:
    return f"b#{slot:0{_DIGITS}d}"


def _att_sk(target: int) -> str:
    return f"a#{target:0{_DIGITS}d}"


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _int(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None else int(value["N"])


def _root(item: Mapping[str, Any]) -> bytes | None:
    value = item.get("root")
    return None if value is None else bytes(value["B"])


def _max(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _block_item(pk: str, block: BlockRecord) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": _s(pk), "sk": _s(_block_sk(block.slot)), "slot": _n(block.slot)}
    if block.signing_root is not None:
        item["root"] = {"B": block.signing_root}
    return item


def _att_item(pk: str, att: AttestationRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": _s(pk),
        "sk": _s(_att_sk(att.target)),
        "source": _n(att.source),
        "target": _n(att.target),
    }
    if att.signing_root is not None:
        item["root"] = {"B": att.signing_root}
    return item


def _block_record(item: Mapping[str, Any]) -> BlockRecord:
    slot = _int(item, "slot")
    assert slot is not None
    return BlockRecord(slot, _root(item))


def _att_record(item: Mapping[str, Any]) -> AttestationRecord:
    source, target = _int(item, "source"), _int(item, "target")
    assert source is not None and target is not None
    return AttestationRecord(source, target, _root(item))


_WATERMARK_FIELDS = (
    "import_block_floor",
    "import_source_floor",
    "import_target_floor",
    "hard_block_floor",
    "hard_source_floor",
    "hard_target_floor",
    "max_source",
    "max_target",
    "max_slot",
    "inv_min_target",
)


@dataclass(frozen=True, slots=True)
class _Watermark:
    """The watermark item of one validator; ``version`` 0 = the item does not exist."""

    version: int = 0
    import_block_floor: int | None = None
    import_source_floor: int | None = None
    import_target_floor: int | None = None
    hard_block_floor: int | None = None
    hard_source_floor: int | None = None
    hard_target_floor: int | None = None
    max_source: int | None = None
    max_target: int | None = None
    max_slot: int | None = None
    #: Lowest target of a stored attestation with source > target (only imports bring those).
    inv_min_target: int | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> _Watermark:
        if item is None:
            return cls()
        values = {name: _int(item, name) for name in _WATERMARK_FIELDS}
        return cls(_int(item, "version") or 0, **values)

    @property
    def floors(self) -> Floors:
        return Floors(
            _max(self.import_block_floor, self.hard_block_floor),
            _max(self.import_source_floor, self.hard_source_floor),
            _max(self.import_target_floor, self.hard_target_floor),
        )

    def same_values(self, other: _Watermark) -> bool:
        return replace(self, version=0) == replace(other, version=0)




class _Cancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__(", ".join(str(r.get("Code")) for r in reasons))
        self.reasons = reasons

    def record_conflict(self, index: int) -> dict[str, Any] | None:
        """The existing item when operation ``index`` failed its condition (else None)."""
        if index < len(self.reasons):
            reason = self.reasons[index]
            if reason.get("Code") == "ConditionalCheckFailed":
                item: dict[str, Any] = reason.get("Item") or {}
                return item
        return None


@dataclass
class _Plan:
    """What an import still has to write for one validator."""

    pubkey: bytes
    history: ValidatorHistory
    current: _Watermark
    final: _Watermark
    blocks: list[BlockRecord]
    attestations: list[AttestationRecord]

    @property
    def pending(self) -> int:
        return len(self.blocks) + len(self.attestations)

    @property
    def needs_write(self) -> bool:
        return bool(self.pending) or self.current.version == 0 or not self.current.same_values(
            self.final
        )


@dataclass
class _Piece:
    plan: _Plan
    blocks: list[BlockRecord] = field(default_factory=list)
    attestations: list[AttestationRecord] = field(default_factory=list)
    after: _Watermark = field(default_factory=_Watermark)


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 10))))


# ------------------------------------------------------------------------------ the backend


class DynamoDBSlashingBackend:
    name = "dynamodb"
    keeps_full_history = True

    def __init__(
        self,
        client: Any,
        table: str,
        genesis_validators_root: bytes,
        *,
        create_table: bool = False,
    ) -> None:
        self._client = client
        self.table = table
        self.gvr = genesis_validators_root
        self._closed = False
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        try:
            if create_table:
                self._create_table()
            self._pin_network()
        except Unavailable as exc:
            raise StartupError(f"{SECTION}: {exc.message}") from None

    # ------------------------------------------------------------------ set-up

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], genesis_validators_root: bytes) -> Self:
        unknown = sorted(set(settings) - SETTINGS_KEYS)
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key for the dynamodb backend")
        table = parse_table_name(settings, SECTION, "containment-slashing")
        create = settings.get("create_table", False)
        if not isinstance(create, bool):
            raise ConfigError(f"{SECTION}.create_table: must be true or false")
        client = make_client(parse_client_settings(settings, SECTION), SECTION)
        return cls(client, table, genesis_validators_root, create_table=create)

    def _create_table(self) -> None:
        try:
            self._client.create_table(
                TableName=self.table,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
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

    def _pin_network(self) -> None:
        """Record the genesis validators root in a new table; refuse another network's table."""
        key = {"pk": _s(META_PK), "sk": _s(META_PK)}
        for _ in range(3):
            try:
                found = self._client.get_item(
                    TableName=self.table, Key=key, ConsistentRead=True
                ).get("Item")
            except AWS_ERRORS as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    raise StartupError(
                        f"{SECTION}.table: the DynamoDB table {self.table} does not exist; "
                        f"create it (see the chamber-dynamodb README) or set "
                        f"{SECTION}.create_table: true"
                    ) from None
                raise aws_unavailable("GetItem", self.table, exc) from None
            if found is None:
                try:
                    self._client.put_item(
                        TableName=self.table,
                        Item={
                            **key,
                            "gvr": _s("0x" + self.gvr.hex()),
                            "schema_version": _s(SCHEMA_VERSION),
                        },
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                    return
                except AWS_ERRORS as exc:
                    if error_code(exc) == "ConditionalCheckFailedException":
                        continue  # another replica pinned it first: read what it wrote
                    raise aws_unavailable("PutItem", self.table, exc) from None
            stored = found.get("gvr", {}).get("S")
            if stored != "0x" + self.gvr.hex():
                raise StartupError(
                    f"the DynamoDB slashing table {self.table} protects genesis validators root "
                    f"{stored}, but the configured network's is 0x{self.gvr.hex()}; use the "
                    "table of this network"
                )
            version = found.get("schema_version", {}).get("S")
            if version != SCHEMA_VERSION:
                raise StartupError(
                    f"the DynamoDB slashing table {self.table} has schema version {version}; "
                    f"this signer needs {SCHEMA_VERSION}"
                )
            return
        raise StartupError(f"{SECTION}: could not read the metadata item of table {self.table}")

    # ------------------------------------------------------------------ low-level calls

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        if self._closed:
            raise Unavailable("slashing protection is shutting down")
        try:
            return method(TableName=self.table, **kwargs)
        except AWS_ERRORS as exc:
            raise aws_unavailable(operation, self.table, exc) from None

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._call(
            "GetItem",
            self._client.get_item,
            Key={"pk": _s(pk), "sk": _s(sk)},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _query(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page = self._call(
                operation, self._client.query, ConsistentRead=True, **kwargs, **extra
            )
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page = self._call("Scan", self._client.scan, ConsistentRead=True, **kwargs, **extra)
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _transact(self, items: list[dict[str, Any]]) -> None:
        if self._closed:
            raise Unavailable("slashing protection is shutting down")
        for item in items:
            next(iter(item.values()))["TableName"] = self.table
        try:
            # The token makes botocore's own retries (after a timeout, say) idempotent: a
            # transaction that committed but whose answer was lost is not applied twice.
            self._client.transact_write_items(
                TransactItems=items, ClientRequestToken=uuid.uuid4().hex
            )
        except AWS_ERRORS as exc:
            code = error_code(exc)
            if code == "TransactionCanceledException":
                reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
                codes = {str(r.get("Code")) for r in reasons}
                if codes <= _RETRYABLE:
                    raise _Cancelled(reasons) from None
            elif code in ("TransactionConflictException", "TransactionInProgressException"):
                raise _Cancelled([]) from None  # re-read and decide again
            raise aws_unavailable("TransactWriteItems", self.table, exc) from None

    def _watermark(self, pk: str) -> _Watermark:
        return _Watermark.from_item(self._get(pk, WATERMARK_SK))

    @staticmethod
    def _watermark_update(pk: str, old: _Watermark, new: _Watermark) -> dict[str, Any]:
        """Write ``new``'s values, on the condition that the item is still at ``old.version``."""
        names = {"#v": "version"}
        values: dict[str, Any] = {":nv": _n(old.version + 1)}
        sets = ["#v = :nv"]
        for i, name in enumerate(_WATERMARK_FIELDS):
            value = getattr(new, name)
            if value is not None:
                names[f"#f{i}"] = name
                values[f":f{i}"] = _n(value)
                sets.append(f"#f{i} = :f{i}")
        if old.version == 0:
            condition = "attribute_not_exists(pk)"
        else:
            condition = "#v = :ov"
            values[":ov"] = _n(old.version)
        return {
            "Update": {
                "Key": {"pk": _s(pk), "sk": _s(WATERMARK_SK)},
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    @staticmethod
    def _put_new(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items``, in parallel for more than one; results in order."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="slashing-dynamodb")
            pool = self._pool
        return list(pool.map(fn, items))

    # ------------------------------------------------------------------ blocks

    def _block_record_existing(self, pk: str, slot: int) -> BlockRecord | None:
        item = self._get(pk, _block_sk(slot))
        return None if item is None else _block_record(item)

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        require_storable("slot", slot)
        pk = _pk(pubkey)
        for attempt in range(MAX_ATTEMPTS):
            wm = self._watermark(pk)
            floors = wm.floors
            existing = None
            if floors.block_floor is not None and slot < floors.block_floor:
                # Refused unless it re-signs a record kept below the floor: look it up.
                existing = self._block_record_existing(pk, slot)
            if not decide_block(slot, signing_root, existing, floors):
                return
            new = replace(wm, max_slot=_max(wm.max_slot, slot))
            try:
                self._transact(
                    [
                        self._watermark_update(pk, wm, new),
                        self._put_new(_block_item(pk, BlockRecord(slot, signing_root))),
                    ]
                )
                return
            except _Cancelled as cancelled:
                item = cancelled.record_conflict(1)
                if item is not None:
                    # A block at this slot exists: the rules decide on it alone.
                    found = _block_record(item) if item else self._block_record_existing(pk, slot)
                    if found is not None:
                        decide_block(slot, signing_root, found, floors)
                        return
                log.debug("block write for %s lost a race; retrying", pk)
                _backoff(attempt)
        raise self._contention(pubkey)

    def check_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        require_storable("slot", slot)
        pk = _pk(pubkey)
        wm = self._watermark(pk)
        existing = self._block_record_existing(pk, slot) if wm.version else None
        decide_block(slot, signing_root, existing, wm.floors)

    # ------------------------------------------------------------------ attestations

    def _attestation_facts(
        self, pk: str, wm: _Watermark, source: int, target: int
    ) -> tuple[AttestationRecord | None, AttestationRecord | None, AttestationRecord | None]:
        """(same target, surrounding, surrounded) for (source, target) given the watermark."""
        if (
            wm.version == 0
            or source > target  # refused by the rules whatever is stored
            or attestation_fast_path(source, target, wm.max_source, wm.max_target)
        ):
            return None, None, None
        low = _min(source + 1, target, wm.inv_min_target)
        assert low is not None
        same = surrounding = surrounded = None
        for item in self._query(
            "Query (surround check)",
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            FilterExpression="#t = :t OR (#t > :t AND #s < :s) OR (#t < :t AND #s > :s)",
            ProjectionExpression="#s, #t, #r",
            ExpressionAttributeNames={"#s": "source", "#t": "target", "#r": "root"},
            ExpressionAttributeValues={
                ":pk": _s(pk),
                ":lo": _s(_att_sk(low)),
                ":hi": _s("a#" + _TOP),
                ":s": _n(source),
                ":t": _n(target),
            },
        ):
            record = _att_record(item)
            if record.target == target:
                same = record
            elif record.target > target:
                surrounding = surrounding or record
            else:
                surrounded = surrounded or record
        return same, surrounding, surrounded

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        source, target = source_epoch, target_epoch
        require_storable("source_epoch", source)
        require_storable("target_epoch", target)
        pk = _pk(pubkey)
        for attempt in range(MAX_ATTEMPTS):
            wm = self._watermark(pk)
            floors = wm.floors
            facts = self._attestation_facts(pk, wm, source, target)
            if not decide_attestation(source, target, signing_root, *facts, floors):
                return
            new = replace(
                wm,
                max_source=_max(wm.max_source, source),
                max_target=_max(wm.max_target, target),
            )
            record = AttestationRecord(source, target, signing_root)
            try:
                self._transact(
                    [self._watermark_update(pk, wm, new), self._put_new(_att_item(pk, record))]
                )
                return
            except _Cancelled as cancelled:
                item = cancelled.record_conflict(1)
                if item is not None:
                    # A record with this target exists: the rules decide on it alone.
                    if not item:
                        item = self._get(pk, _att_sk(target)) or {}
                    if item:
                        decide_attestation(
                            source, target, signing_root, _att_record(item), None, None, floors
                        )
                        return
                log.debug("attestation write for %s lost a race; retrying", pk)
                _backoff(attempt)
        raise self._contention(pubkey)

    def check_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        source, target = source_epoch, target_epoch
        require_storable("source_epoch", source)
        require_storable("target_epoch", target)
        pk = _pk(pubkey)
        wm = self._watermark(pk)
        same, surrounding, surrounded = self._attestation_facts(pk, wm, source, target)
        if same is None and wm.version and source <= target:
            # Fast path: guaranteed absent by max_target; read it anyway, a dry run is cheap.
            item = self._get(pk, _att_sk(target))
            same = None if item is None else _att_record(item)
        decide_attestation(source, target, signing_root, same, surrounding, surrounded, wm.floors)

    def _contention(self, pubkey: bytes) -> Unavailable:
        return Unavailable(
            f"slashing protection: too many concurrent writes for validator 0x{pubkey.hex()}; "
            "nothing was signed"
        )

    # ------------------------------------------------------------------ histories

    def _load(self, pubkey: bytes) -> tuple[_Watermark, list[BlockRecord], list[AttestationRecord]]:
        """The watermark (read first), then every record of one validator."""
        pk = _pk(pubkey)
        wm = self._watermark(pk)
        blocks: list[BlockRecord] = []
        atts: list[AttestationRecord] = []
        if wm.version == 0:
            return wm, blocks, atts
        for item in self._query(
            "Query (history)",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(pk)},
        ):
            sk = item["sk"]["S"]
            if sk.startswith("b#"):
                blocks.append(_block_record(item))
            elif sk.startswith("a#"):
                atts.append(_att_record(item))
        return wm, blocks, atts

    def _validators(self) -> list[bytes]:
        """Every validator with a watermark item, by public key."""
        found = [
            bytes.fromhex(item["pk"]["S"][2:])
            for item in self._scan(
                FilterExpression="sk = :w",
                ProjectionExpression="pk",
                ExpressionAttributeValues={":w": _s(WATERMARK_SK)},
            )
            if item["pk"]["S"].startswith("v#")
        ]
        return sorted(found)

    # ------------------------------------------------------------------ import

    def _plan(self, history: ValidatorHistory) -> _Plan:
        wm, blocks, atts = self._load(history.pubkey)
        merge = merge_history(history, blocks, atts)
        final = replace(
            wm,
            import_block_floor=_min(wm.import_block_floor, merge.min_slot),
            import_source_floor=_min(wm.import_source_floor, merge.min_source),
            import_target_floor=_min(wm.import_target_floor, merge.min_target),
            max_source=_max(wm.max_source, *(a.source for a in history.attestations)),
            max_target=_max(wm.max_target, *(a.target for a in history.attestations)),
            max_slot=_max(wm.max_slot, *(b.slot for b in history.blocks)),
            inv_min_target=_min(
                wm.inv_min_target, *(a.target for a in history.attestations if a.source > a.target)
            ),
        )
        return _Plan(history.pubkey, history, wm, final, merge.blocks, merge.attestations)

    def import_interchange(self, document: bytes | Mapping[str, Any]) -> ImportReport:
        interchange = parse_interchange(document)
        check_network(interchange, self.gvr)
        grouped = group_by_validator(interchange)
        # Validate everything before writing anything.
        plans = self._map(self._plan, list(grouped.values()))
        blocks_written, atts_written = self._write_import(plans)
        return ImportReport(len(grouped), blocks_written, atts_written)

    @staticmethod
    def _next_transaction(pending: Iterable[_Plan]) -> list[_Piece]:
        """Pack the next transaction: whole validators while they fit, a big one alone."""
        pieces: list[_Piece] = []
        used = 0
        for plan in pending:
            room = TRANSACTION_ITEMS - used - 1  # records that fit beside its watermark update
            if room < 0 or (plan.pending > room and pieces):
                break
            take = min(plan.pending, room)
            blocks = plan.blocks[:take]
            atts = plan.attestations[: take - len(blocks)]
            last = take == plan.pending
            # max_* cover the whole import from the first write (conservative: more slow
            # paths, never fewer checks); import floors only once every record is written.
            after = (
                plan.final
                if last
                else replace(
                    plan.final,
                    import_block_floor=plan.current.import_block_floor,
                    import_source_floor=plan.current.import_source_floor,
                    import_target_floor=plan.current.import_target_floor,
                )
            )
            pieces.append(_Piece(plan, blocks, atts, after))
            used += take + 1
        return pieces

    def _write_import(self, plans: list[_Plan]) -> tuple[int, int]:
        pending = [plan for plan in plans if plan.needs_write]
        blocks_written = atts_written = conflicts = 0
        while pending:
            pieces = self._next_transaction(pending)
            items: list[dict[str, Any]] = []
            for piece in pieces:
                pk = _pk(piece.plan.pubkey)
                items.append(self._watermark_update(pk, piece.plan.current, piece.after))
                items += [{"Put": {"Item": _block_item(pk, b)}} for b in piece.blocks]
                items += [{"Put": {"Item": _att_item(pk, a)}} for a in piece.attestations]
            try:
                self._transact(items)
            except _Cancelled:
                conflicts += 1
                if conflicts > MAX_BULK_CONFLICTS:
                    raise Unavailable(
                        "interchange import: too many concurrent writes; "
                        f"{blocks_written + atts_written} record(s) were written before stopping"
                    ) from None
                _backoff(conflicts)
                replanned: dict[bytes, _Plan] = {}
                for piece in pieces:
                    try:
                        replanned[piece.plan.pubkey] = self._plan(piece.plan.history)
                    except ImportRejected as rejected:
                        written = blocks_written + atts_written
                        if not written:
                            raise
                        reason = rejected.message.removesuffix(", nothing was imported")
                        raise ImportRejected(
                            f"{reason}; a concurrent signing for this validator landed while "
                            f"the import was being written: {written} record(s) of the file "
                            "were already written (and keep protecting), the rest was not"
                        ) from None
                pending = [replanned.get(p.pubkey, p) for p in pending]
                pending = [plan for plan in pending if plan.needs_write]
                continue
            for piece in pieces:
                plan = piece.plan
                plan.current = replace(piece.after, version=plan.current.version + 1)
                plan.blocks = plan.blocks[len(piece.blocks) :]
                plan.attestations = plan.attestations[len(piece.attestations) :]
                blocks_written += len(piece.blocks)
                atts_written += len(piece.attestations)
            pending = [plan for plan in pending if plan.needs_write]
        return blocks_written, atts_written

    # ------------------------------------------------------------------ export

    def export_interchange(self, pubkeys: Sequence[bytes] | None = None) -> dict[str, Any]:
        wanted = self._validators() if pubkeys is None else list(pubkeys)
        loaded = self._map(self._load, wanted)
        histories = [
            ValidatorHistory(
                pubkey,
                tuple(sorted(blocks, key=lambda b: b.slot)),
                tuple(sorted(atts, key=lambda a: a.target)),
            )
            for pubkey, (wm, blocks, atts) in zip(wanted, loaded, strict=True)
            if wm.version
        ]
        return export_document(self.gvr, histories)

    # ------------------------------------------------------------------ operations

    def prune(self, keep_epochs: int, slots_per_epoch: int = 32) -> PruneReport:
        if keep_epochs < 0:
            raise BadRequest("keep_epochs: must not be negative", field="keep_epochs")
        counts = self._map(
            lambda pubkey: self._prune_one(pubkey, keep_epochs, slots_per_epoch),
            self._validators(),
        )
        return PruneReport(sum(b for b, _ in counts), sum(a for _, a in counts))

    def _prune_one(self, pubkey: bytes, keep_epochs: int, slots_per_epoch: int) -> tuple[int, int]:
        """Raise the floors first, then delete, 99 records per transaction."""
        pk = _pk(pubkey)
        blocks_deleted = atts_deleted = conflicts = 0
        while True:
            wm, blocks, atts = self._load(pubkey)
            new = wm
            doomed_blocks: list[int] = []
            doomed_atts: list[int] = []
            if blocks:
                cutoff = max(b.slot for b in blocks) - keep_epochs * slots_per_epoch
                doomed_blocks = [b.slot for b in blocks if b.slot < cutoff]
                if doomed_blocks:
                    new = replace(new, hard_block_floor=_max(new.hard_block_floor, cutoff))
            if atts:
                cutoff = max(a.target for a in atts) - keep_epochs
                doomed = [a for a in atts if a.target < cutoff]
                if doomed:
                    doomed_atts = [a.target for a in doomed]
                    new = replace(
                        new,
                        hard_target_floor=_max(new.hard_target_floor, cutoff),
                        hard_source_floor=_max(new.hard_source_floor, *(a.source for a in doomed)),
                    )
            keys = [_block_sk(s) for s in doomed_blocks] + [_att_sk(t) for t in doomed_atts]
            if not keys:
                return blocks_deleted, atts_deleted
            try:
                for start in range(0, len(keys), TRANSACTION_ITEMS - 1):
                    chunk = keys[start : start + TRANSACTION_ITEMS - 1]
                    self._transact(
                        [self._watermark_update(pk, wm, new)]
                        + [{"Delete": {"Key": {"pk": _s(pk), "sk": _s(sk)}}} for sk in chunk]
                    )
                    wm = replace(new, version=wm.version + 1)
                    blocks_deleted += sum(1 for sk in chunk if sk.startswith("b#"))
                    atts_deleted += sum(1 for sk in chunk if sk.startswith("a#"))
                return blocks_deleted, atts_deleted
            except _Cancelled:
                conflicts += 1
                if conflicts > MAX_BULK_CONFLICTS:
                    raise Unavailable(
                        f"prune: too many concurrent writes for validator 0x{pubkey.hex()}"
                    ) from None
                _backoff(conflicts)  # re-read and recompute: floors only ever go up

    def set_watermark(
        self,
        pubkey: bytes,
        *,
        block_slot: int | None = None,
        source_epoch: int | None = None,
        target_epoch: int | None = None,
    ) -> None:
        floors = watermark_floors(block_slot, source_epoch, target_epoch)
        pk = _pk(pubkey)
        for attempt in range(MAX_ATTEMPTS):
            wm = self._watermark(pk)
            new = replace(
                wm,
                hard_block_floor=_max(wm.hard_block_floor, floors.block_floor),
                hard_source_floor=_max(wm.hard_source_floor, floors.source_floor),
                hard_target_floor=_max(wm.hard_target_floor, floors.target_floor),
            )
            try:
                self._transact([self._watermark_update(pk, wm, new)])
                return
            except _Cancelled:
                _backoff(attempt)
        raise self._contention(pubkey)

    def healthy(self) -> bool:
        if self._closed:
            return False
        try:
            item = self._client.get_item(
                TableName=self.table, Key={"pk": _s(META_PK), "sk": _s(META_PK)}
            ).get("Item")
        except Exception:
            return False
        return item is not None and item.get("gvr", {}).get("S") == "0x" + self.gvr.hex()

    def integrity_check(self) -> list[str]:
        problems: list[str] = []
        partitions: dict[str, list[dict[str, Any]]] = {}
        meta = None
        for item in self._scan():
            pk = item.get("pk", {}).get("S", "")
            if pk == META_PK:
                meta = item
            else:
                partitions.setdefault(pk, []).append(item)
        if meta is None:
            problems.append("the metadata item (genesis validators root) is missing")
        elif meta.get("gvr", {}).get("S") != "0x" + self.gvr.hex():
            problems.append(f"the metadata item names another network: {meta.get('gvr')}")
        for pk, items in sorted(partitions.items()):
            problems += _check_partition(pk, items)
        return problems

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()


def _check_partition(pk: str, items: list[dict[str, Any]]) -> list[str]:
    """Problems of one validator's items: format, and the invariants the fast path relies on."""
    problems: list[str] = []
    try:
        pubkey = bytes.fromhex(pk[2:]) if pk.startswith("v#") else b""
    except ValueError:
        pubkey = b""
    if len(pubkey) != 48:
        return [f"item(s) with an unexpected partition key {pk!r}"]
    who = "0x" + pubkey.hex()
    wm: _Watermark | None = None
    blocks: list[BlockRecord] = []
    atts: list[AttestationRecord] = []
    for item in items:
        sk = item.get("sk", {}).get("S", "")
        try:
            if sk == WATERMARK_SK:
                wm = _Watermark.from_item(item)
                if not wm.version:
                    problems.append(f"validator {who}: watermark item without a version")
                continue
            root = _root(item)
            if root is not None and len(root) != 32:
                problems.append(f"validator {who}: item {sk} has a {len(root)}-byte signing root")
            if sk.startswith("b#"):
                block = _block_record(item)
                if sk != _block_sk(block.slot):
                    problems.append(f"validator {who}: item {sk} holds slot {block.slot}")
                blocks.append(block)
            elif sk.startswith("a#"):
                att = _att_record(item)
                if sk != _att_sk(att.target):
                    problems.append(f"validator {who}: item {sk} holds target {att.target}")
                atts.append(att)
            else:
                problems.append(f"validator {who}: unexpected item {sk!r}")
        except (KeyError, TypeError, ValueError, AssertionError):
            problems.append(f"validator {who}: malformed item {sk!r}")
    if wm is None:
        problems.append(f"validator {who}: records without a watermark item")
        return problems
    top_target = _max(*(a.target for a in atts))
    top_source = _max(*(a.source for a in atts))
    top_slot = _max(*(b.slot for b in blocks))
    inverted = _min(*(a.target for a in atts if a.source > a.target))
    if top_target is not None and (wm.max_target is None or wm.max_target < top_target):
        problems.append(f"validator {who}: max_target below a stored target ({top_target})")
    if top_source is not None and (wm.max_source is None or wm.max_source < top_source):
        problems.append(f"validator {who}: max_source below a stored source ({top_source})")
    if top_slot is not None and (wm.max_slot is None or wm.max_slot < top_slot):
        problems.append(f"validator {who}: max_slot below a stored slot ({top_slot})")
    if inverted is not None and (wm.inv_min_target is None or wm.inv_min_target > inverted):
        problems.append(
            f"validator {who}: inv_min_target above the target of a stored attestation "
            f"with source after target ({inverted})"
        )
    return problems
