"""SQLite slashing protection: the embedded default (one signer process per database file).

Durability: WAL with ``synchronous=FULL``, so ``COMMIT`` returns only after the write-ahead log
is on disk, and a signature is never returned before its record is durable.

Group commit, leader style (no writer thread): a requester that queues a check while no batch is
being written, or waits for a check that nobody is writing, becomes the leader. It takes
everything queued at that moment, decides each check from its cache of the validators' state,
writes the batch's new records in one multi-row ``INSERT`` (inside a ``BEGIN IMMEDIATE``
transaction when the batch also had to read or write anything else) and commits once: one fsync
for the batch. Then it wakes the batch's waiters and hands the leadership to a requester already
waiting on the next batch. Requests that queue while a batch is being written go on (a signing
request computes its signature meanwhile) and, once signed, find their check durable or sleep
until it is.

Why this shape (measured, see docs/performance.md): every thread hand-off (a wake-up, a wait for
the GIL) costs tens of microseconds of CPU on a loaded machine, and every SQLite call releases
and re-takes the GIL. A dedicated writer thread with one statement per check cost ~40 % of the
signing rate; a steady-state batch here is one SQLite call, and a request whose check is durable
by the time it has signed does not sleep at all.

While a batch is being written the interpreter's switch interval is lowered to
:data:`LEADER_SWITCH_INTERVAL` (and restored when the leadership ends): after its fsync the
leader needs the GIL back to publish the outcomes, and every waiter of the batch sleeps until it
has it. With Python's default 5 ms a busy request thread could keep it that long; measured, this
raised the SQLite rate from a median 74-78 % to 84-88 % of noop (docs/performance.md).

Later checks in a batch see earlier ones (the cache, and pending rows are written before any
read), so a batch is exactly as strict as one by one. A failed statement or commit fails every
check of the batch (no signature for any), and the cache is dropped.

One process per file: an exclusive ``flock`` on ``<path>.lock`` stops a second signer (or an
offline ``slashing`` command while the signer runs) with a clear error, because the rules assume
a single writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from chamber.errors import BadRequest, ConfigError, StartupError, Unavailable
from chamber.files import create_private_file
from chamber.slashing import ImportReport, PruneReport
from chamber.slashing.interchange import (
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

log = logging.getLogger("chamber.slashing.sqlite")

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS validators (
    id INTEGER PRIMARY KEY,
    pubkey BLOB NOT NULL UNIQUE,
    import_block_floor INTEGER,
    import_source_floor INTEGER,
    import_target_floor INTEGER,
    hard_block_floor INTEGER,
    hard_source_floor INTEGER,
    hard_target_floor INTEGER,
    max_source INTEGER,
    max_target INTEGER
);
CREATE TABLE IF NOT EXISTS blocks (
    validator_id INTEGER NOT NULL REFERENCES validators(id),
    slot INTEGER NOT NULL,
    signing_root BLOB,
    PRIMARY KEY (validator_id, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attestations (
    validator_id INTEGER NOT NULL REFERENCES validators(id),
    source INTEGER NOT NULL,
    target INTEGER NOT NULL,
    signing_root BLOB,
    PRIMARY KEY (validator_id, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attestations_by_source ON attestations (validator_id, source);
"""
#: Keeps the validator's maxima in the same statement as the insert, so a signing check is one
#: atomic statement and needs no savepoint.
MAXIMA_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS attestations_maxima AFTER INSERT ON attestations BEGIN
    UPDATE validators
    SET max_source = max(coalesce(max_source, NEW.source), NEW.source),
        max_target = max(coalesce(max_target, NEW.target), NEW.target)
    WHERE id = NEW.validator_id;
END
"""

#: The interpreter's switch interval while a batch is being written (see the module docstring).
LEADER_SWITCH_INTERVAL = 0.0005


class _ShortSwitchInterval:
    """Process-wide: the switch interval is short while any backend's leader writes a batch,
    and back to what it was when the last of them is done (backends may lead concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved = 0.0

    def enter(self) -> None:
        with self._lock:
            if self._active == 0:
                self._saved = sys.getswitchinterval()
                if self._saved > LEADER_SWITCH_INTERVAL:
                    sys.setswitchinterval(LEADER_SWITCH_INTERVAL)
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                sys.setswitchinterval(self._saved)


_SHORT_SWITCH_INTERVAL = _ShortSwitchInterval()
#: Rows per multi-row INSERT (4 parameters each, well under SQLite's 32,766).
_CHUNK = 1000
#: A multi-row INSERT: the statement's start and one row's placeholders.
_INSERT_BLOCKS = ("INSERT INTO blocks VALUES ", "(?, ?, ?)")
_INSERT_ATTESTATIONS = ("INSERT INTO attestations VALUES ", "(?, ?, ?, ?)")

_SELECT_VALIDATOR = (
    "SELECT id, import_block_floor, import_source_floor, import_target_floor, "
    "hard_block_floor, hard_source_floor, hard_target_floor, max_source, max_target "
    "FROM validators WHERE pubkey = ?"
)


def _max(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


@dataclass(frozen=True, slots=True)
class _Validator:
    id: int
    import_block_floor: int | None
    import_source_floor: int | None
    import_target_floor: int | None
    hard_block_floor: int | None
    hard_source_floor: int | None
    hard_target_floor: int | None
    max_source: int | None
    max_target: int | None

    @property
    def floors(self) -> Floors:
        return Floors(
            _max(self.import_block_floor, self.hard_block_floor),
            _max(self.import_source_floor, self.hard_source_floor),
            _max(self.import_target_floor, self.hard_target_floor),
        )


@dataclass(slots=True)
class _Cached:
    """The leaders' view of one validator: authoritative because only the batch's leader (one at
    a time) of the only process (flock) changes the database. Speculatively updated as checks
    run; dropped whole when a batch fails or a multi-statement job (import, prune, watermark)
    ran."""

    id: int | None
    floors: Floors
    max_source: int | None
    max_target: int | None
    max_slot: int | None


class _Job:
    __slots__ = ("done", "error", "fn", "gate", "result", "single_statement")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], single_statement: bool) -> None:
        #: Checks write at most one record (queued for the batch's multi-row insert): no
        #: savepoint.
        self.single_statement = single_statement
        self.fn = fn
        #: Set (under the backend's mutex) once ``result`` / ``error`` are final.
        self.done = False
        #: A held lock while the requester sleeps; released to wake it (done, or lead next).
        self.gate: threading.Lock | None = None
        self.result: Any = None
        self.error: BaseException | None = None


class _BatchFailed(Exception):
    """Writing the batch's pending rows failed: the whole batch must fail."""


class SQLiteSlashingBackend:
    name = "sqlite"
    keeps_full_history = True

    def __init__(self, path: Path, genesis_validators_root: bytes) -> None:
        self.path = path
        self.gvr = genesis_validators_root
        create_private_file(path)
        self._lock_file = self._take_lock(path)
        self._conn = self._connect()
        self._migrate()
        self._reader = self._connect()
        self._reader_lock = threading.Lock()
        self._mutex = threading.Lock()  # guards _queue, _leading, _closing and jobs' done / gate
        self._queue: list[_Job] = []
        self._leading = False
        self._closing = False
        self._cache: dict[bytes, _Cached] = {}
        self._pending_blocks: list[tuple[int, int, bytes]] = []
        self._pending_attestations: list[tuple[int, int, int, bytes]] = []

    # ------------------------------------------------------------------ set-up

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], genesis_validators_root: bytes) -> Self:
        unknown = sorted(set(settings) - {"path"})
        if unknown:
            raise ConfigError(f"anti_slashing.{unknown[0]}: unknown key for the sqlite backend")
        path = settings.get("path", "./slashing_protection.sqlite")
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ConfigError("anti_slashing.path: must be a file path")
        return cls(Path(path), genesis_validators_root)

    @staticmethod
    def _take_lock(path: Path) -> int:
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartupError(
                f"the slashing database {path} is in use by another process (a running signer?); "
                "stop it, or use the running signer's API for slashing operations"
            ) from None
        return fd

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Not executescript(): it would COMMIT the transaction first.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(MAXIMA_TRIGGER)
            rows = dict(conn.execute("SELECT key, value FROM metadata").fetchall())
            stored = rows.get("genesis_validators_root")
            if stored is None:
                conn.execute(
                    "INSERT INTO metadata VALUES ('genesis_validators_root', ?), "
                    "('schema_version', ?)",
                    ("0x" + self.gvr.hex(), SCHEMA_VERSION),
                )
            elif stored != "0x" + self.gvr.hex():
                raise StartupError(
                    f"the slashing database {self.path} protects genesis validators root "
                    f"{stored}, but the configured network's is 0x{self.gvr.hex()}; use the "
                    "database of this network"
                )
            elif rows.get("schema_version") != SCHEMA_VERSION:
                raise StartupError(
                    f"the slashing database {self.path} has schema version "
                    f"{rows.get('schema_version')}; this signer needs {SCHEMA_VERSION}"
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ group commit

    def _enqueue(self, fn: Callable[[sqlite3.Connection], Any], single: bool) -> _Job:
        """Queue a job; when no batch is being written, write one now (this job included)."""
        job = _Job(fn, single)
        with self._mutex:
            if self._closing:
                raise Unavailable("slashing protection is shutting down")
            self._queue.append(job)
            batch = None
            if not self._leading:
                self._leading = True
                batch, self._queue = self._queue, []
        if batch is not None:
            self._lead(batch)
        return job

    def _wait(self, job: _Job) -> Any:
        """Wait for the job's durable outcome, leading a batch when nobody else is."""
        while True:
            gate = batch = None
            with self._mutex:
                if job.done:
                    break
                if self._leading:
                    gate = job.gate = threading.Lock()
                    gate.acquire()
                else:
                    # Not done and nobody leads: the job is still queued; lead its batch.
                    self._leading = True
                    batch, self._queue = self._queue, []
            if gate is not None:
                gate.acquire()  # released by the leader: done, or our turn to lead
            elif batch is not None:
                self._lead(batch)
        if job.error is not None:
            raise job.error
        return job.result

    def _lead(self, batch: list[_Job]) -> None:
        """Write ``batch`` (the caller holds the leadership), then publish the outcomes, wake
        the batch's waiters and pass the leadership on."""
        written = False
        _SHORT_SWITCH_INTERVAL.enter()
        try:
            self._execute(batch)
            written = True
        finally:
            with self._mutex:
                for job in batch:
                    if not written and job.error is None:  # never "done" without its record
                        job.error = Unavailable("slashing protection failed; nothing was signed")
                    job.done = True
                    if job.gate is not None:
                        job.gate.release()
                        job.gate = None
                self._leading = False
                _SHORT_SWITCH_INTERVAL.leave()
                for job in self._queue:  # hand over to a requester already waiting
                    if job.gate is not None:
                        job.gate.release()
                        job.gate = None
                        break

    def _submit(self, fn: Callable[[sqlite3.Connection], Any], single: bool = False) -> Any:
        return self._wait(self._enqueue(fn, single))

    def begin_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> Callable[[], None]:
        """Queue a check-and-record (writing the batch now when nobody else is); the returned
        callable waits for its durable outcome.

        Lets the caller compute the signature while others' batches commit; the signature may be
        released only after the callable returned (it raises ``Refused`` like the sync call).
        """
        job = self._enqueue(lambda conn: self._record_block(conn, pubkey, slot, signing_root), True)
        return lambda: self._wait(job)

    def begin_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> Callable[[], None]:
        """Like :meth:`begin_block`, for an attestation."""
        job = self._enqueue(
            lambda conn: self._record_attestation(
                conn, pubkey, source_epoch, target_epoch, signing_root
            ),
            True,
        )
        return lambda: self._wait(job)

    def _execute(self, batch: list[_Job]) -> None:
        """Run one batch (the leader only) and make it durable in one commit. Sets each job's
        outcome. The transaction starts at the batch's first statement, so a batch of checks on
        the fast path costs one multi-row ``INSERT`` in autocommit: one SQLite call, one fsync."""
        conn = self._conn
        try:
            for job in batch:
                if job.single_statement:
                    try:
                        job.result = job.fn(conn)
                    except (sqlite3.Error, _BatchFailed):
                        # The whole batch fails: SQLite may have rolled the transaction back
                        # (earlier checks' rows with it) and carried on in autocommit.
                        raise
                    except Exception as exc:  # a refusal or a bad value: this check only
                        job.error = exc
                    continue
                self._before_read(conn)
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    job.error = exc
                conn.execute("RELEASE job")
                self._cache.clear()  # floors or records changed in bulk
            self._commit(conn)
        except (sqlite3.Error, _BatchFailed):
            log.exception("slashing database transaction failed")
            self._abort(conn, batch)
        except BaseException:
            self._abort(conn, batch)
            raise

    def _commit(self, conn: sqlite3.Connection) -> None:
        blocks, attestations = self._pending_blocks, self._pending_attestations
        if not conn.in_transaction:
            if not blocks and not attestations:
                return  # nothing read, nothing to write
            if len(blocks) + len(attestations) <= _CHUNK and not (blocks and attestations):
                self._flush(conn)  # one statement: atomic and durable by itself
                return
            conn.execute("BEGIN IMMEDIATE")
        self._flush(conn)
        conn.execute("COMMIT")

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")

    def _before_read(self, conn: sqlite3.Connection) -> None:
        """Before the leader reads or writes anything but the batch's final insert: be inside
        the batch's transaction, and let reads see the records the batch already decided."""
        self._begin(conn)
        self._flush(conn)

    def _abort(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        self._pending_blocks.clear()
        self._pending_attestations.clear()
        self._cache.clear()  # it saw writes that are now gone
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("slashing database rollback failed")
        failure = Unavailable("slashing protection database error; nothing was signed")
        for job in batch:
            job.error = failure

    def _flush(self, conn: sqlite3.Connection) -> None:
        """Write the rows the batch's checks decided so far: one statement per table per
        ``_CHUNK`` rows. Any failure fails the whole batch (earlier checks rely on it)."""
        try:
            for (insert, marks), rows in (
                (_INSERT_BLOCKS, self._pending_blocks),
                (_INSERT_ATTESTATIONS, self._pending_attestations),
            ):
                while rows:
                    chunk = rows[:_CHUNK]
                    del rows[:_CHUNK]
                    conn.execute(
                        insert + ", ".join([marks] * len(chunk)),
                        [value for row in chunk for value in row],
                    )
        except sqlite3.Error as exc:
            self._pending_blocks.clear()
            self._pending_attestations.clear()
            raise _BatchFailed("writing the batch's records failed") from exc

    # ------------------------------------------------------------------ rows

    def _validator(
        self, conn: sqlite3.Connection, pubkey: bytes, create: bool
    ) -> _Validator | None:
        row = conn.execute(_SELECT_VALIDATOR, (pubkey,)).fetchone()
        if row is None:
            if not create:
                return None
            cursor = conn.execute("INSERT INTO validators (pubkey) VALUES (?)", (pubkey,))
            assert cursor.lastrowid is not None
            return _Validator(cursor.lastrowid, *([None] * 8))
        return _Validator(*row)

    def _cached(self, conn: sqlite3.Connection, pubkey: bytes) -> _Cached:
        """The validator's state for the leader. A validator never seen has ``id`` None: its
        row is created only when a record is written, so a refusal leaves nothing behind."""
        cached = self._cache.get(pubkey)
        if cached is None:
            self._before_read(conn)
            validator = self._validator(conn, pubkey, create=False)
            if validator is None:
                cached = _Cached(None, Floors(), None, None, None)
            else:
                max_slot = conn.execute(
                    "SELECT max(slot) FROM blocks WHERE validator_id = ?", (validator.id,)
                ).fetchone()[0]
                cached = _Cached(
                    validator.id,
                    validator.floors,
                    validator.max_source,
                    validator.max_target,
                    max_slot,
                )
            self._cache[pubkey] = cached
        return cached

    def _validator_id(self, conn: sqlite3.Connection, pubkey: bytes, cached: _Cached) -> int:
        if cached.id is None:
            self._before_read(conn)
            cursor = conn.execute("INSERT INTO validators (pubkey) VALUES (?)", (pubkey,))
            assert cursor.lastrowid is not None
            cached.id = cursor.lastrowid
        return cached.id

    def _record_block(
        self, conn: sqlite3.Connection, pubkey: bytes, slot: int, root: bytes
    ) -> None:
        """Leader: check a block and queue its record for the batch's insert."""
        require_storable("slot", slot)
        v = self._cached(conn, pubkey)
        existing = None
        if v.id is not None and v.max_slot is not None and slot <= v.max_slot:
            # (above the highest recorded slot nothing can be at this slot)
            self._before_read(conn)
            row = conn.execute(
                "SELECT signing_root FROM blocks WHERE validator_id = ? AND slot = ?",
                (v.id, slot),
            ).fetchone()
            existing = BlockRecord(slot, row[0]) if row is not None else None
        if decide_block(slot, root, existing, v.floors):
            self._pending_blocks.append((self._validator_id(conn, pubkey, v), slot, root))
            v.max_slot = slot if v.max_slot is None else max(v.max_slot, slot)

    def _record_attestation(
        self, conn: sqlite3.Connection, pubkey: bytes, source: int, target: int, root: bytes
    ) -> None:
        """Leader: check an attestation and queue its record for the batch's insert (the
        trigger keeps the maxima in the same statement)."""
        require_storable("source_epoch", source)
        require_storable("target_epoch", target)
        v = self._cached(conn, pubkey)
        same = surrounding = surrounded = None
        if v.id is not None and not attestation_fast_path(
            source, target, v.max_source, v.max_target
        ):
            # Off the fast path a record may exist at this target or around it. (On it, target
            # exceeds every stored target, so neither can.)
            self._before_read(conn)
            same, surrounding, surrounded = self._neighbours(conn, v.id, source, target)
        if decide_attestation(source, target, root, same, surrounding, surrounded, v.floors):
            self._pending_attestations.append(
                (self._validator_id(conn, pubkey, v), source, target, root)
            )
            v.max_source = source if v.max_source is None else max(v.max_source, source)
            v.max_target = target if v.max_target is None else max(v.max_target, target)

    @staticmethod
    def _neighbours(
        conn: sqlite3.Connection, vid: int, source: int, target: int
    ) -> tuple[AttestationRecord | None, AttestationRecord | None, AttestationRecord | None]:
        row = conn.execute(
            "SELECT source, signing_root FROM attestations WHERE validator_id = ? AND target = ?",
            (vid, target),
        ).fetchone()
        same = AttestationRecord(row[0], target, row[1]) if row is not None else None
        outer = conn.execute(
            "SELECT source, target, signing_root FROM attestations "
            "WHERE validator_id = ? AND source < ? AND target > ? LIMIT 1",
            (vid, source, target),
        ).fetchone()
        inner = conn.execute(
            "SELECT source, target, signing_root FROM attestations "
            "WHERE validator_id = ? AND source > ? AND target < ? LIMIT 1",
            (vid, source, target),
        ).fetchone()
        return (
            same,
            AttestationRecord(*outer) if outer is not None else None,
            AttestationRecord(*inner) if inner is not None else None,
        )

    def _block(self, conn: sqlite3.Connection, pubkey: bytes, slot: int, root: bytes) -> None:
        """Dry run on the reader connection: decide from the database, record nothing."""
        require_storable("slot", slot)
        validator = self._validator(conn, pubkey, create=False)
        existing = None
        floors = Floors()
        if validator is not None:
            floors = validator.floors
            row = conn.execute(
                "SELECT signing_root FROM blocks WHERE validator_id = ? AND slot = ?",
                (validator.id, slot),
            ).fetchone()
            existing = BlockRecord(slot, row[0]) if row is not None else None
        decide_block(slot, root, existing, floors)

    def _attestation(
        self, conn: sqlite3.Connection, pubkey: bytes, source: int, target: int, root: bytes
    ) -> None:
        """Dry run on the reader connection: decide from the database, record nothing."""
        require_storable("source_epoch", source)
        require_storable("target_epoch", target)
        validator = self._validator(conn, pubkey, create=False)
        same = surrounding = surrounded = None
        floors = Floors()
        if validator is not None:
            floors = validator.floors
            same, surrounding, surrounded = self._neighbours(conn, validator.id, source, target)
        decide_attestation(source, target, root, same, surrounding, surrounded, floors)

    # ------------------------------------------------------------------ signing path

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        self._submit(lambda conn: self._record_block(conn, pubkey, slot, signing_root), single=True)

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        self._submit(
            lambda conn: self._record_attestation(
                conn, pubkey, source_epoch, target_epoch, signing_root
            ),
            single=True,
        )

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._reader_lock:
            conn = self._reader
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

    def check_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        self._read(lambda conn: self._block(conn, pubkey, slot, signing_root))

    def check_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        self._read(
            lambda conn: self._attestation(conn, pubkey, source_epoch, target_epoch, signing_root)
        )

    # ------------------------------------------------------------------ interchange

    def import_interchange(self, document: bytes | Mapping[str, Any]) -> ImportReport:
        interchange = parse_interchange(document)
        check_network(interchange, self.gvr)
        grouped = group_by_validator(interchange)
        result: ImportReport = self._submit(lambda conn: self._import(conn, grouped))
        return result

    def _import(
        self, conn: sqlite3.Connection, grouped: Mapping[bytes, ValidatorHistory]
    ) -> ImportReport:
        blocks_written = atts_written = 0
        for pubkey, history in grouped.items():
            validator = self._validator(conn, pubkey, create=True)
            assert validator is not None
            stored_blocks = [
                BlockRecord(*row)
                for row in conn.execute(
                    "SELECT slot, signing_root FROM blocks WHERE validator_id = ?",
                    (validator.id,),
                )
            ]
            stored_atts = [
                AttestationRecord(*row)
                for row in conn.execute(
                    "SELECT source, target, signing_root FROM attestations WHERE validator_id = ?",
                    (validator.id,),
                )
            ]
            merge = merge_history(history, stored_blocks, stored_atts)
            conn.executemany(
                "INSERT INTO blocks VALUES (?, ?, ?) ON CONFLICT (validator_id, slot) "
                "DO UPDATE SET signing_root = excluded.signing_root",
                [(validator.id, b.slot, b.signing_root) for b in merge.blocks],
            )
            conn.executemany(
                "INSERT INTO attestations VALUES (?, ?, ?, ?) ON CONFLICT (validator_id, target) "
                "DO UPDATE SET signing_root = excluded.signing_root",
                [(validator.id, a.source, a.target, a.signing_root) for a in merge.attestations],
            )
            all_sources = [a.source for a in history.attestations]
            all_targets = [a.target for a in history.attestations]
            conn.execute(
                "UPDATE validators SET import_block_floor = ?, import_source_floor = ?, "
                "import_target_floor = ?, max_source = ?, max_target = ? WHERE id = ?",
                (
                    _min(validator.import_block_floor, merge.min_slot),
                    _min(validator.import_source_floor, merge.min_source),
                    _min(validator.import_target_floor, merge.min_target),
                    _max(validator.max_source, *all_sources),
                    _max(validator.max_target, *all_targets),
                    validator.id,
                ),
            )
            blocks_written += len(merge.blocks)
            atts_written += len(merge.attestations)
        return ImportReport(len(grouped), blocks_written, atts_written)

    def export_interchange(self, pubkeys: Sequence[bytes] | None = None) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> list[ValidatorHistory]:
            if pubkeys is None:
                rows = conn.execute("SELECT id, pubkey FROM validators ORDER BY pubkey").fetchall()
            else:
                rows = []
                for pubkey in pubkeys:
                    row = conn.execute(
                        "SELECT id, pubkey FROM validators WHERE pubkey = ?", (pubkey,)
                    ).fetchone()
                    if row is not None:
                        rows.append(row)
            histories = []
            for vid, pubkey in rows:
                blocks = tuple(
                    BlockRecord(*r)
                    for r in conn.execute(
                        "SELECT slot, signing_root FROM blocks WHERE validator_id = ? "
                        "ORDER BY slot",
                        (vid,),
                    )
                )
                atts = tuple(
                    AttestationRecord(*r)
                    for r in conn.execute(
                        "SELECT source, target, signing_root FROM attestations "
                        "WHERE validator_id = ? ORDER BY target",
                        (vid,),
                    )
                )
                histories.append(ValidatorHistory(bytes(pubkey), blocks, atts))
            return histories

        histories: list[ValidatorHistory] = self._read(read)
        return export_document(self.gvr, histories)

    # ------------------------------------------------------------------ operations

    def prune(self, keep_epochs: int, slots_per_epoch: int = 32) -> PruneReport:
        if keep_epochs < 0:
            raise BadRequest("keep_epochs: must not be negative", field="keep_epochs")

        def prune(conn: sqlite3.Connection) -> PruneReport:
            blocks_deleted = atts_deleted = 0
            for (vid,) in conn.execute("SELECT id FROM validators").fetchall():
                max_slot = conn.execute(
                    "SELECT max(slot) FROM blocks WHERE validator_id = ?", (vid,)
                ).fetchone()[0]
                if max_slot is not None:
                    cutoff = max_slot - keep_epochs * slots_per_epoch
                    deleted = conn.execute(
                        "DELETE FROM blocks WHERE validator_id = ? AND slot < ?", (vid, cutoff)
                    ).rowcount
                    if deleted:
                        blocks_deleted += deleted
                        conn.execute(
                            "UPDATE validators SET hard_block_floor = "
                            "max(coalesce(hard_block_floor, ?), ?) WHERE id = ?",
                            (cutoff, cutoff, vid),
                        )
                max_target = conn.execute(
                    "SELECT max(target) FROM attestations WHERE validator_id = ?", (vid,)
                ).fetchone()[0]
                if max_target is not None:
                    cutoff = max_target - keep_epochs
                    max_source = conn.execute(
                        "SELECT max(source) FROM attestations WHERE validator_id = ? "
                        "AND target < ?",
                        (vid, cutoff),
                    ).fetchone()[0]
                    if max_source is not None:
                        atts_deleted += conn.execute(
                            "DELETE FROM attestations WHERE validator_id = ? AND target < ?",
                            (vid, cutoff),
                        ).rowcount
                        conn.execute(
                            "UPDATE validators SET "
                            "hard_target_floor = max(coalesce(hard_target_floor, ?), ?), "
                            "hard_source_floor = max(coalesce(hard_source_floor, ?), ?) "
                            "WHERE id = ?",
                            (cutoff, cutoff, max_source, max_source, vid),
                        )
            return PruneReport(blocks_deleted, atts_deleted)

        report: PruneReport = self._submit(prune)
        return report

    def set_watermark(
        self,
        pubkey: bytes,
        *,
        block_slot: int | None = None,
        source_epoch: int | None = None,
        target_epoch: int | None = None,
    ) -> None:
        floors = watermark_floors(block_slot, source_epoch, target_epoch)

        def apply(conn: sqlite3.Connection) -> None:
            validator = self._validator(conn, pubkey, create=True)
            assert validator is not None
            conn.execute(
                "UPDATE validators SET hard_block_floor = ?, hard_source_floor = ?, "
                "hard_target_floor = ? WHERE id = ?",
                (
                    _max(validator.hard_block_floor, floors.block_floor),
                    _max(validator.hard_source_floor, floors.source_floor),
                    _max(validator.hard_target_floor, floors.target_floor),
                    validator.id,
                ),
            )

        self._submit(apply)

    def healthy(self) -> bool:
        try:
            self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        except sqlite3.Error:
            return False
        return True

    def integrity_check(self) -> list[str]:
        def check(conn: sqlite3.Connection) -> list[str]:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
            problems += [
                f"foreign key violation in {row[0]}"
                for row in conn.execute("PRAGMA foreign_key_check")
            ]
            stale = conn.execute(
                "SELECT count(*) FROM validators v WHERE "
                "coalesce(v.max_target, -1) < coalesce("
                "(SELECT max(target) FROM attestations a WHERE a.validator_id = v.id), -1)"
            ).fetchone()[0]
            if stale:
                problems.append(f"{stale} validator(s) with max_target below a stored target")
            return problems

        result: list[str] = self._read(check)
        return result

    def close(self) -> None:
        """Refuse new checks, write those already queued (leading their batch when no
        requester does), then close the database. A second call does nothing."""
        deadline = time.monotonic() + 30
        with self._mutex:
            if self._closing:
                return
            self._closing = True
        while time.monotonic() < deadline:
            with self._mutex:
                if self._leading:
                    batch = None
                elif self._queue:
                    self._leading = True
                    batch, self._queue = self._queue, []
                else:
                    break
            if batch is None:
                time.sleep(0.005)  # a requester is writing a batch
            else:
                self._lead(batch)
        self._conn.close()
        self._reader.close()
        os.close(self._lock_file)
