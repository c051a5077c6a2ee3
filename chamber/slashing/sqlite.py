"""SQLite slashing protection: the embedded default (one signer process per database file).

Durability: WAL with ``synchronous=FULL``, so ``COMMIT`` returns only after the write-ahead log
is on disk, and a signature is never returned before its record is durable.

Group commit: one writer thread owns the write connection. Requests queue their check; the
writer takes everything waiting at that moment, runs each check in its own savepoint inside one
``BEGIN IMMEDIATE`` transaction, commits once (one fsync for the batch), then wakes the
requesters. Later checks in a batch see earlier ones, so the batch is exactly as strict as
one-by-one. A failed commit fails every check of the batch (no signature for any).

One process per file: an exclusive ``flock`` on ``<path>.lock`` stops a second signer (or an
offline ``slashing`` command while the signer runs) with a clear error, because the rules assume
a single writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
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
    """The writer's view of one validator: authoritative because only the writer thread of the
    only process (flock) changes the database. Speculatively updated as checks run; dropped
    whole when a transaction fails or a multi-statement job (import, prune, watermark) ran."""

    id: int | None
    floors: Floors
    max_source: int | None
    max_target: int | None
    max_slot: int | None


class _Job:
    __slots__ = ("done", "error", "fn", "result", "single_statement")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], single_statement: bool) -> None:
        #: Checks write at most one record (one statement, atomic by itself): no savepoint.
        self.single_statement = single_statement
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None



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
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._closing = False
        self._cache: dict[bytes, _Cached] = {}
        self._writer = threading.Thread(target=self._run, name="slashing-writer", daemon=True)
        self._writer.start()

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
        job = _Job(fn, single)
        with self._cond:
            if self._closing:
                raise Unavailable("slashing protection is shutting down")
            self._queue.append(job)
            self._cond.notify()
        return job

    @staticmethod
    def _wait(job: _Job) -> Any:
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _submit(self, fn: Callable[[sqlite3.Connection], Any], single: bool = False) -> Any:
        return self._wait(self._enqueue(fn, single))

    def begin_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> Callable[[], None]:
        """Queue a check-and-record; the returned callable waits for its durable outcome.

        Lets the caller compute the signature while the batch commits; the signature may be
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

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            self._execute(batch)

    def _execute(self, batch: list[_Job]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.single_statement:
                    try:
                        job.result = job.fn(conn)
                    except sqlite3.Error:
                        log.exception("slashing database statement failed")
                        job.error = Unavailable("slashing protection database error; not signed")
                    except BaseException as exc:
                        job.error = exc
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    job.error = exc
                conn.execute("RELEASE job")
                self._cache.clear()  # floors or records changed in bulk
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("slashing database transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._cache.clear()  # it saw writes that are now gone
            failure = Unavailable("slashing protection database error; nothing was signed")
            for job in batch:
                job.error = failure
        finally:
            for job in batch:
                job.done.set()

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
        """The validator's state for the writer. A validator never seen has ``id`` None: its
        row is created only when a record is written, so a refusal leaves nothing behind."""
        cached = self._cache.get(pubkey)
        if cached is None:
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
            cursor = conn.execute("INSERT INTO validators (pubkey) VALUES (?)", (pubkey,))
            assert cursor.lastrowid is not None
            cached.id = cursor.lastrowid
        return cached.id

    def _record_block(
        self, conn: sqlite3.Connection, pubkey: bytes, slot: int, root: bytes
    ) -> None:
        """Writer: check and record a block (one write at most)."""
        require_storable("slot", slot)
        v = self._cached(conn, pubkey)
        existing = None
        if v.id is not None and v.max_slot is not None and slot <= v.max_slot:
            # (above the highest recorded slot nothing can be at this slot)
            row = conn.execute(
                "SELECT signing_root FROM blocks WHERE validator_id = ? AND slot = ?",
                (v.id, slot),
            ).fetchone()
            existing = BlockRecord(slot, row[0]) if row is not None else None
        if decide_block(slot, root, existing, v.floors):
            vid = self._validator_id(conn, pubkey, v)
            conn.execute("INSERT INTO blocks VALUES (?, ?, ?)", (vid, slot, root))
            v.max_slot = slot if v.max_slot is None else max(v.max_slot, slot)

    def _record_attestation(
        self, conn: sqlite3.Connection, pubkey: bytes, source: int, target: int, root: bytes
    ) -> None:
        """Writer: check and record an attestation (one write at most; the trigger keeps the
        maxima in the same statement)."""
        require_storable("source_epoch", source)
        require_storable("target_epoch", target)
        v = self._cached(conn, pubkey)
        same = surrounding = surrounded = None
        if v.id is not None and not attestation_fast_path(
            source, target, v.max_source, v.max_target
        ):
            # Off the fast path a record may exist at this target or around it. (On it, target
            # exceeds every stored target, so neither can.)
            same, surrounding, surrounded = self._neighbours(conn, v.id, source, target)
        if decide_attestation(source, target, root, same, surrounding, surrounded, v.floors):
            vid = self._validator_id(conn, pubkey, v)
            conn.execute(
                "INSERT INTO attestations VALUES (?, ?, ?, ?)", (vid, source, target, root)
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
        return self._writer.is_alive()

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
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._writer.join(30)
        self._conn.close()
        self._reader.close()
        os.close(self._lock_file)
