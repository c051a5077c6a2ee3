"""PostgreSQL slashing protection: several signer instances share one database safely.

The rules are :mod:`chamber.slashing.rules` and the interchange logic
:mod:`chamber.slashing.interchange`; this module only fetches facts and stores decisions, with the
same schema, floors, maxima and prune / watermark semantics as the SQLite reference backend.

Safety across processes: every write to a validator's history (signing, import, prune, watermark)
happens in a transaction that first takes that validator's row lock
(``SELECT … FOR UPDATE`` after ``INSERT … ON CONFLICT DO NOTHING`` creates the row). The facts
(floors, maxima, the record at the same slot / target, surround candidates) are read by a
*later* statement of the same ``READ COMMITTED`` transaction, so they are fresh as of the moment
the lock was granted: whatever the previous lock holder (in this process or another) committed is
seen. Two signers can therefore never both decide to sign conflicting messages. The primary keys
``(validator_id, slot)`` and ``(validator_id, target)`` are a second line of defence.

Latency: a recorded check is two round trips in pipeline mode:

1. ``BEGIN``; create the validator row if missing; lock it; fetch validator row + same slot /
   target record + surround candidates (one statement) — sent together, one flush;
2. the insert (and the maxima update) + ``COMMIT`` — sent together; ``COMMIT`` returns once the
   record is durable (``synchronous_commit`` is never ``off`` on our connections).

The surround candidates are fetched with index range scans that are empty on the EIP-3076 fast
path (``source >= max_source`` and ``target > max_target``), so fetching them in the same
statement costs no round trip and almost no work; :func:`attestation_fast_path` is still
consulted, exactly as in the SQLite backend. Dry runs (``check_*``) are one statement.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from chamber.config import resolve_secret
from chamber.errors import BadRequest, ConfigError, StartupError, Unavailable
from chamber.slashing import ImportReport, PruneReport
from chamber.slashing.interchange import (
    MergeResult,
    ValidatorHistory,
    check_network,
    export_document,
    group_by_validator,
    merge_history,
    parse_interchange,
)
from chamber.slashing.rules import (
    MAX_STORED,
    AttestationRecord,
    BlockRecord,
    Floors,
    Refused,
    attestation_fast_path,
    decide_attestation,
    decide_block,
    require_storable,
    watermark_floors,
)

log = logging.getLogger("chamber_postgres")

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

#: Version of the newest migration below; a database with a newer one is refused at start-up.
SCHEMA_VERSION = 1
#: ``pg_advisory_xact_lock`` key serialising migrations of every instance (b"chamber-" as int64).
MIGRATION_LOCK_KEY = int.from_bytes(b"chamber-", "big")
#: A busy pool counts as healthy while the database answered this recently (seconds).
HEALTHY_BUSY_SECONDS = 10.0
#: Rows per statement when an import writes records.
WRITE_CHUNK = 10_000

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "validators, blocks, attestations",
        (
            """
            CREATE TABLE validators (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                pubkey BYTEA NOT NULL UNIQUE,
                import_block_floor BIGINT,
                import_source_floor BIGINT,
                import_target_floor BIGINT,
                hard_block_floor BIGINT,
                hard_source_floor BIGINT,
                hard_target_floor BIGINT,
                max_source BIGINT,
                max_target BIGINT
            ) WITH (fillfactor = 50)
            """,
            """
            CREATE TABLE blocks (
                validator_id BIGINT NOT NULL REFERENCES validators (id),
                slot BIGINT NOT NULL CHECK (slot >= 0),
                signing_root BYTEA,
                PRIMARY KEY (validator_id, slot)
            )
            """,
            """
            CREATE TABLE attestations (
                validator_id BIGINT NOT NULL REFERENCES validators (id),
                source BIGINT NOT NULL CHECK (source >= 0),
                target BIGINT NOT NULL CHECK (target >= 0),
                signing_root BYTEA,
                PRIMARY KEY (validator_id, target)
            )
            """,
            "CREATE INDEX attestations_by_source ON attestations (validator_id, source)",
        ),
    ),
)

_VALIDATOR_COLUMNS = (
    "v.id, v.import_block_floor, v.import_source_floor, v.import_target_floor, "
    "v.hard_block_floor, v.hard_source_floor, v.hard_target_floor, v.max_source, v.max_target"
)
_N_VALIDATOR_COLUMNS = 9
# (fillfactor 50 above: every recorded attestation updates its validator's maxima; free room on
# the page keeps those updates HOT, so the row does not wander and no index entry is written.)

# Creates the row only when missing: no sequence value is consumed on the common path.
_ENSURE_VALIDATOR = (
    "INSERT INTO validators (pubkey) SELECT %(pubkey)s::bytea "
    "WHERE NOT EXISTS (SELECT 1 FROM validators WHERE pubkey = %(pubkey)s::bytea) "
    "ON CONFLICT (pubkey) DO NOTHING"
)
_LOCK_VALIDATOR = "SELECT id FROM validators WHERE pubkey = %(pubkey)s::bytea FOR UPDATE"

# One statement: validator row and the record at the same slot.
_BLOCK_FACTS = (
    f"SELECT {_VALIDATOR_COLUMNS}, b.slot IS NOT NULL, b.signing_root "  # noqa: S608 (constants)
    "FROM validators v "
    "LEFT JOIN blocks b ON b.validator_id = v.id AND b.slot = %(slot)s::bigint "
    "WHERE v.pubkey = %(pubkey)s::bytea"
)

# One statement: validator row, the record at the same target, one surrounding and one surrounded
# candidate. ``source + 0`` / ``target + 0`` keep each candidate search on the index whose range
# is empty on the fast path (target > max_target: nothing above; source >= max_source: nothing
# above), whatever plan a prepared statement ends up with.
_ATTESTATION_FACTS = (
    f"SELECT {_VALIDATOR_COLUMNS}, s.target IS NOT NULL, s.source, s.signing_root, "  # noqa: S608
    "o.source, o.target, o.signing_root, i.source, i.target, i.signing_root "
    "FROM validators v "
    "LEFT JOIN attestations s ON s.validator_id = v.id AND s.target = %(target)s::bigint "
    "LEFT JOIN LATERAL (SELECT a.source, a.target, a.signing_root FROM attestations a "
    "  WHERE a.validator_id = v.id AND a.target > %(target)s::bigint "
    "  AND a.source + 0 < %(source)s::bigint LIMIT 1) o ON true "
    "LEFT JOIN LATERAL (SELECT a.source, a.target, a.signing_root FROM attestations a "
    "  WHERE a.validator_id = v.id AND a.source > %(source)s::bigint "
    "  AND a.target + 0 < %(target)s::bigint LIMIT 1) i ON true "
    "WHERE v.pubkey = %(pubkey)s::bytea"
)

_INSERT_BLOCK = (
    "INSERT INTO blocks (validator_id, slot, signing_root) "
    "VALUES (%(id)s::bigint, %(slot)s::bigint, %(root)s::bytea)"
)
_INSERT_ATTESTATION = (
    "INSERT INTO attestations (validator_id, source, target, signing_root) "
    "VALUES (%(id)s::bigint, %(source)s::bigint, %(target)s::bigint, %(root)s::bytea)"
)
_RAISE_MAXIMA = (
    "UPDATE validators SET max_source = GREATEST(max_source, %(source)s::bigint), "
    "max_target = GREATEST(max_target, %(target)s::bigint) WHERE id = %(id)s::bigint"
)

_SET_WATERMARK = (
    "INSERT INTO validators (pubkey, hard_block_floor, hard_source_floor, hard_target_floor) "
    "VALUES (%(pubkey)s::bytea, %(block)s::bigint, %(source)s::bigint, %(target)s::bigint) "
    "ON CONFLICT (pubkey) DO UPDATE SET "
    "hard_block_floor = GREATEST(validators.hard_block_floor, EXCLUDED.hard_block_floor), "
    "hard_source_floor = GREATEST(validators.hard_source_floor, EXCLUDED.hard_source_floor), "
    "hard_target_floor = GREATEST(validators.hard_target_floor, EXCLUDED.hard_target_floor)"
)

# Validators with something to prune, read without locks (re-decided under the lock). min / max
# per validator are index probes on the primary keys: no scan of the history.
_PRUNE_CANDIDATES = (
    "SELECT v.id FROM validators v "
    "CROSS JOIN LATERAL (SELECT min(slot) AS low, max(slot) AS high "
    "  FROM blocks WHERE validator_id = v.id) b "
    "CROSS JOIN LATERAL (SELECT min(target) AS low, max(target) AS high "
    "  FROM attestations WHERE validator_id = v.id) a "
    "WHERE b.low < b.high - %(span)s::bigint OR a.low < a.high - %(keep)s::bigint "
    "ORDER BY v.id"
)
_PRUNE_MAXIMA = (
    "SELECT (SELECT max(slot) FROM blocks WHERE validator_id = %(id)s::bigint), "
    "(SELECT max(target) FROM attestations WHERE validator_id = %(id)s::bigint)"
)
# Deletes below the cutoffs and raises the hard floors by what was deleted (SQLite semantics).
_PRUNE_ONE = (
    "WITH db AS (DELETE FROM blocks WHERE validator_id = %(id)s::bigint "
    "  AND slot < %(block_cutoff)s::bigint RETURNING 1), "
    "da AS (DELETE FROM attestations WHERE validator_id = %(id)s::bigint "
    "  AND target < %(target_cutoff)s::bigint RETURNING source), "
    "c AS (SELECT (SELECT count(*) FROM db) AS blocks, (SELECT count(*) FROM da) AS atts, "
    "  (SELECT max(source) FROM da) AS max_source), "
    "u AS (UPDATE validators v SET "
    "  hard_block_floor = CASE WHEN c.blocks > 0 "
    "    THEN GREATEST(v.hard_block_floor, %(block_cutoff)s::bigint) ELSE v.hard_block_floor END, "
    "  hard_target_floor = CASE WHEN c.atts > 0 "
    "    THEN GREATEST(v.hard_target_floor, %(target_cutoff)s::bigint) "
    "    ELSE v.hard_target_floor END, "
    "  hard_source_floor = GREATEST(v.hard_source_floor, c.max_source) "
    "  FROM c WHERE v.id = %(id)s::bigint) "
    "SELECT blocks, atts FROM c"
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SETTINGS = frozenset(
    {"url", "pool_size", "schema", "pool_timeout", "connect_timeout", "statement_timeout"}
)


# ----------------------------------------------------------------------------- helpers


def _max(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _chunks(items: Sequence[T], size: int = WRITE_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


def _validator(row: Sequence[Any]) -> _Validator:
    return _Validator(*row[:_N_VALIDATOR_COLUMNS])


@dataclass(frozen=True, slots=True)
class _AttestationFacts:
    validator: _Validator | None
    same_target: AttestationRecord | None
    surrounding: AttestationRecord | None
    surrounded: AttestationRecord | None


def _attestation_facts(row: Sequence[Any] | None, target: int) -> _AttestationFacts:
    if row is None:
        return _AttestationFacts(None, None, None, None)
    n = _N_VALIDATOR_COLUMNS
    found, s_source, s_root, o_source, o_target, o_root, i_source, i_target, i_root = row[n:]
    return _AttestationFacts(
        _validator(row),
        AttestationRecord(s_source, target, s_root) if found else None,
        AttestationRecord(o_source, o_target, o_root) if o_target is not None else None,
        AttestationRecord(i_source, i_target, i_root) if i_target is not None else None,
    )


@dataclass(frozen=True)
class _Settings:
    #: Secret: the full libpq connection string, password included (kept out of ``repr``).
    conninfo: str = field(repr=False)
    password: str | None = field(repr=False)
    schema: str
    pool_size: int
    pool_timeout: float
    connect_timeout: int
    statement_timeout: float
    #: ``postgresql://user@host:port/dbname``: safe to log (never a password).
    where: str


def _number(
    settings: Mapping[str, Any], key: str, default: float, *, integer: bool, low: float, high: float
) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"anti_slashing.{key}: must be a number")
    if integer and not isinstance(value, int):
        raise ConfigError(f"anti_slashing.{key}: must be an integer")
    if not low <= value <= high:
        raise ConfigError(f"anti_slashing.{key}: must be between {low:g} and {high:g}")
    return value


def _parse_settings(settings: Mapping[str, Any]) -> _Settings:
    # ``backend`` belongs to the core's section; tolerate it if a caller passes it along.
    unknown = sorted(set(settings) - _SETTINGS - {"backend"})
    if unknown:
        raise ConfigError(f"anti_slashing.{unknown[0]}: unknown key for the postgres backend")
    if "url" not in settings:
        raise ConfigError(
            "anti_slashing.url: required for the postgres backend "
            "(postgresql://user@host:5432/dbname, or env:VARIABLE)"
        )
    try:
        raw = resolve_secret(settings["url"])
    except ValueError as exc:
        raise ConfigError(f"anti_slashing.url: {exc}") from None
    if hasattr(raw, "get_secret_value"):
        raw = raw.get_secret_value()
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("anti_slashing.url: must be a PostgreSQL connection URL")
    try:
        params = conninfo_to_dict(raw.strip())
    except psycopg.Error:
        # The libpq message may quote the string, password included: never show it.
        raise ConfigError(
            "anti_slashing.url: not a valid PostgreSQL connection URL "
            "(postgresql://user:password@host:5432/dbname)"
        ) from None

    schema = settings.get("schema", "chamber_slashing")
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            "anti_slashing.schema: must be a lower-case SQL identifier "
            "(letters, digits, underscores; at most 63 characters)"
        )
    pool_size = int(_number(settings, "pool_size", 16, integer=True, low=1, high=1000))
    pool_timeout = _number(settings, "pool_timeout", 5.0, integer=False, low=0.1, high=600)
    connect_timeout = int(_number(settings, "connect_timeout", 10, integer=True, low=2, high=600))
    statement_timeout = _number(
        settings, "statement_timeout", 10.0, integer=False, low=0.1, high=3600
    )

    password = params.get("password")
    params.setdefault("connect_timeout", connect_timeout)
    params.setdefault("application_name", "containment-chamber")
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user") or "(default user)"
    dbname = params.get("dbname") or "(default database)"
    return _Settings(
        conninfo=make_conninfo("", **params),
        password=None if password is None else str(password),
        schema=schema,
        pool_size=pool_size,
        pool_timeout=pool_timeout,
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        where=f"postgresql://{user}@{host}:{port}/{dbname} (schema {schema})",
    )


# ----------------------------------------------------------------------------- backend


class PostgresSlashingBackend:
    """EIP-3076 slashing protection in PostgreSQL; see the module docstring."""

    name = "postgres"
    keeps_full_history = True

    def __init__(self, settings: _Settings, genesis_validators_root: bytes) -> None:
        self.gvr = genesis_validators_root
        self._settings = settings
        self.where = settings.where
        self._closed = False
        self._close_lock = threading.Lock()
        self._last_answer = 0.0  # monotonic time the database last answered an operation
        self._migrate()
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            settings.conninfo,
            kwargs={"autocommit": True},
            min_size=settings.pool_size,
            max_size=settings.pool_size,
            open=False,
            configure=self._configure,
            timeout=settings.pool_timeout,
            name="chamber-slashing",
        )
        try:
            self._pool.open(wait=True, timeout=max(settings.connect_timeout, 5))
        except PoolTimeout:
            self._pool.close()
            raise StartupError(
                f"anti_slashing.url: could not open {settings.pool_size} connections to "
                f"{self.where} in time (anti_slashing.pool_size; the server's max_connections?)"
            ) from None
        log.info(
            "postgres slashing protection ready",
            extra={"database": self.where, "pool_size": settings.pool_size},
        )

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], genesis_validators_root: bytes) -> Self:
        return cls(_parse_settings(settings), genesis_validators_root)

    # ------------------------------------------------------------------ messages

    def _redact(self, text: str) -> str:
        for secret in (self._settings.conninfo, self._settings.password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _describe(self, exc: BaseException) -> str:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sqlstate = getattr(exc, "sqlstate", None)
        code = f" [{sqlstate}]" if sqlstate else ""
        return self._redact(f"{type(exc).__name__}{code}: {first}")

    # ------------------------------------------------------------------ set-up

    def _connect(self) -> Conn:
        try:
            conn: Conn = psycopg.connect(self._settings.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StartupError(
                f"anti_slashing.url: cannot connect to {self.where}: {self._describe(exc)}"
            ) from None
        return conn

    def _configure(self, conn: Conn) -> None:
        """Every pooled connection: our schema only, timeouts, never an asynchronous commit."""
        conn.execute(
            "SELECT set_config('search_path', %s, false), "
            "set_config('statement_timeout', %s, false), "
            "set_config('lock_timeout', %s, false), "
            "set_config('idle_in_transaction_session_timeout', '60s', false), "
            "set_config('synchronous_commit', CASE current_setting('synchronous_commit') "
            "WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END, false)",
            (
                sql.Identifier(self._settings.schema).as_string(conn),
                f"{int(self._settings.statement_timeout * 1000)}ms",
                f"{int(self._settings.statement_timeout * 1000)}ms",
            ),
        )

    def _migrate(self) -> None:
        """Create or upgrade the schema; pin the genesis validators root. Safe to race."""
        schema = sql.Identifier(self._settings.schema)
        conn = self._connect()
        try:
            with conn.transaction():
                # Every instance serialises here, so two starting together do not race.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                exists = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._settings.schema,)
                ).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
                table = conn.execute(
                    "SELECT to_regclass(%s)", (f'"{self._settings.schema}".schema_migrations',)
                ).fetchone()
                if table is None or table[0] is None:
                    conn.execute(
                        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, "
                        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                    conn.execute(
                        "CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                    )
                row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
                current = (row[0] if row is not None else None) or 0
                if current > SCHEMA_VERSION:
                    raise StartupError(
                        f"the slashing database {self.where} has schema version {current}, "
                        f"newer than this chamber-postgres supports ({SCHEMA_VERSION}); "
                        "upgrade chamber-postgres"
                    )
                for version, description, statements in MIGRATIONS:
                    if version <= current:
                        continue
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                        (version, description),
                    )
                    log.info(
                        "slashing database migrated",
                        extra={"database": self.where, "schema_version": version},
                    )
                gvr = "0x" + self.gvr.hex()
                stored = conn.execute(
                    "SELECT value FROM metadata WHERE key = 'genesis_validators_root'"
                ).fetchone()
                if stored is None:
                    conn.execute(
                        "INSERT INTO metadata VALUES ('genesis_validators_root', %s)", (gvr,)
                    )
                elif stored[0] != gvr:
                    raise StartupError(
                        f"the slashing database {self.where} protects genesis validators root "
                        f"{stored[0]}, but the configured network's is {gvr}; use the database "
                        "(or anti_slashing.schema) of this network"
                    )
        except psycopg.Error as exc:
            raise StartupError(
                f"the slashing database {self.where} could not be prepared: {self._describe(exc)}"
            ) from None
        finally:
            conn.close()

    # ------------------------------------------------------------------ connection handling

    def _run(self, operation: str, fn: Callable[[Conn], T], consequence: str = "") -> T:
        """Run ``fn`` on a pooled connection; database failures become ``Unavailable``.

        A connection found broken (server restart, failover) is retried once on a fresh one
        after the pool checked its idle connections. Retrying is safe: each operation is
        idempotent (a check that did commit is an identical re-sign the second time).
        """
        if self._closed:
            raise Unavailable("slashing protection is shutting down")
        for attempt in (1, 2):
            broken = False
            try:
                with self._pool.connection() as conn:
                    try:
                        result = fn(conn)
                        self._last_answer = time.monotonic()
                        return result
                    except Refused:
                        self._last_answer = time.monotonic()
                        raise
                    except BaseException:
                        broken = conn.broken
                        if not broken and (
                            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                        ):
                            with contextlib.suppress(psycopg.Error):
                                conn.execute("ROLLBACK")
                        raise
            except PoolTimeout:
                raise Unavailable(
                    f"slashing protection database: no connection within "
                    f"{self._settings.pool_timeout:g}s (all {self._settings.pool_size} in use, or "
                    f"{self.where} unreachable){consequence and '; ' + consequence}"
                ) from None
            except psycopg.Error as exc:
                if broken and attempt == 1:
                    log.warning(
                        "slashing database connection lost; retrying on a fresh connection",
                        extra={"database": self.where, "error": self._describe(exc)},
                    )
                    with contextlib.suppress(psycopg.Error):
                        self._pool.check()
                    continue
                log.error(
                    "slashing database error",
                    extra={
                        "database": self.where,
                        "operation": operation,
                        "error": self._describe(exc),
                    },
                )
                raise Unavailable(
                    f"slashing protection database error during {operation} "
                    f"({self._describe(exc)}){consequence and '; ' + consequence}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ signing path

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        require_storable("slot", slot)
        self._run(
            "block check",
            lambda conn: self._block(conn, pubkey, slot, signing_root),
            "nothing was signed",
        )

    def _block(self, conn: Conn, pubkey: bytes, slot: int, root: bytes) -> None:
        params = {"pubkey": pubkey, "slot": slot}
        with conn.pipeline():
            # Round trip 1: create + lock the validator row, then read the facts.
            conn.execute("BEGIN")
            conn.execute(_ENSURE_VALIDATOR, params)
            conn.execute(_LOCK_VALIDATOR, params)
            row = conn.execute(_BLOCK_FACTS, params).fetchone()
            if row is None:  # pragma: no cover - the row was created and locked just above
                raise psycopg.DataError("validator row vanished under its lock")
            validator = _validator(row)
            found, stored_root = row[_N_VALIDATOR_COLUMNS:]
            existing = BlockRecord(slot, stored_root) if found else None
            try:
                new = decide_block(slot, root, existing, validator.floors)
            except Refused:
                conn.execute("ROLLBACK")
                raise
            # Round trip 2: write + COMMIT (sent on leaving the pipeline).
            if new:
                conn.execute(_INSERT_BLOCK, {"id": validator.id, "slot": slot, "root": root})
            conn.execute("COMMIT")

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        require_storable("source_epoch", source_epoch)
        require_storable("target_epoch", target_epoch)
        self._run(
            "attestation check",
            lambda conn: self._attestation(conn, pubkey, source_epoch, target_epoch, signing_root),
            "nothing was signed",
        )

    def _decide_attestation(
        self, source: int, target: int, root: bytes, facts: _AttestationFacts
    ) -> bool:
        validator = facts.validator
        if validator is None:
            return decide_attestation(source, target, root, None, None, None, Floors())
        surrounding, surrounded = facts.surrounding, facts.surrounded
        if attestation_fast_path(source, target, validator.max_source, validator.max_target) and (
            surrounding is not None or surrounded is not None
        ):
            # Cannot happen while max_source / max_target are right; if they are not, the
            # stored history wins over the shortcut (integrity_check reports it).
            log.error(
                "slashing database maxima are stale: a stored attestation lies beyond "
                "max_source / max_target",
                extra={"validator_id": validator.id},
            )
        return decide_attestation(
            source, target, root, facts.same_target, surrounding, surrounded, validator.floors
        )

    def _attestation(
        self, conn: Conn, pubkey: bytes, source: int, target: int, root: bytes
    ) -> None:
        params = {"pubkey": pubkey, "source": source, "target": target}
        with conn.pipeline():
            # Round trip 1: create + lock the validator row, then read the facts.
            conn.execute("BEGIN")
            conn.execute(_ENSURE_VALIDATOR, params)
            conn.execute(_LOCK_VALIDATOR, params)
            facts = _attestation_facts(conn.execute(_ATTESTATION_FACTS, params).fetchone(), target)
            if facts.validator is None:  # pragma: no cover - created and locked just above
                raise psycopg.DataError("validator row vanished under its lock")
            try:
                new = self._decide_attestation(source, target, root, facts)
            except Refused:
                conn.execute("ROLLBACK")
                raise
            # Round trip 2: write + COMMIT (sent on leaving the pipeline).
            if new:
                write = {"id": facts.validator.id, "source": source, "target": target}
                conn.execute(_INSERT_ATTESTATION, {**write, "root": root})
                conn.execute(_RAISE_MAXIMA, write)
            conn.execute("COMMIT")

    def check_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        require_storable("slot", slot)

        def check(conn: Conn) -> None:
            row = conn.execute(_BLOCK_FACTS, {"pubkey": pubkey, "slot": slot}).fetchone()
            existing = None
            floors = Floors()
            if row is not None:
                floors = _validator(row).floors
                found, stored_root = row[_N_VALIDATOR_COLUMNS:]
                existing = BlockRecord(slot, stored_root) if found else None
            decide_block(slot, signing_root, existing, floors)

        self._run("block dry run", check, "nothing was decided")

    def check_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        require_storable("source_epoch", source_epoch)
        require_storable("target_epoch", target_epoch)

        def check(conn: Conn) -> None:
            params = {"pubkey": pubkey, "source": source_epoch, "target": target_epoch}
            facts = _attestation_facts(
                conn.execute(_ATTESTATION_FACTS, params).fetchone(), target_epoch
            )
            self._decide_attestation(source_epoch, target_epoch, signing_root, facts)

        self._run("attestation dry run", check, "nothing was decided")

    # ------------------------------------------------------------------ interchange

    def import_interchange(self, document: bytes | Mapping[str, Any]) -> ImportReport:
        interchange = parse_interchange(document)
        check_network(interchange, self.gvr)
        grouped = group_by_validator(interchange)
        if not grouped:
            return ImportReport(0, 0, 0)
        return self._run(
            "interchange import",
            lambda conn: self._import(conn, grouped),
            "nothing was imported",
        )

    def _import(self, conn: Conn, grouped: Mapping[bytes, ValidatorHistory]) -> ImportReport:
        pubkeys = sorted(grouped)  # one lock order for every importer: no deadlock between them
        with conn.pipeline():
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO validators (pubkey) SELECT p FROM unnest(%(keys)s::bytea[]) AS p "
                "WHERE NOT EXISTS (SELECT 1 FROM validators v WHERE v.pubkey = p) ORDER BY p "
                "ON CONFLICT (pubkey) DO NOTHING",
                {"keys": pubkeys},
            )
            locked = conn.execute(
                f"SELECT v.pubkey, {_VALIDATOR_COLUMNS} FROM validators v "  # noqa: S608
                "WHERE v.pubkey = ANY(%(keys)s::bytea[]) ORDER BY v.pubkey FOR UPDATE",
                {"keys": pubkeys},
            )
            # Read after the locks are granted: fresh as of then.
            blocks = conn.execute(
                "SELECT b.validator_id, b.slot, b.signing_root FROM blocks b "
                "JOIN validators v ON v.id = b.validator_id "
                "WHERE v.pubkey = ANY(%(keys)s::bytea[])",
                {"keys": pubkeys},
            )
            atts = conn.execute(
                "SELECT a.validator_id, a.source, a.target, a.signing_root FROM attestations a "
                "JOIN validators v ON v.id = a.validator_id "
                "WHERE v.pubkey = ANY(%(keys)s::bytea[])",
                {"keys": pubkeys},
            )
            # Round trip 1 ends here: locks granted, history read.
            validators = {bytes(row[0]): _validator(row[1:]) for row in locked.fetchall()}
            stored_blocks: dict[int, list[BlockRecord]] = {}
            for vid, slot, root in blocks.fetchall():
                stored_blocks.setdefault(vid, []).append(BlockRecord(slot, root))
            stored_atts: dict[int, list[AttestationRecord]] = {}
            for vid, source, target, root in atts.fetchall():
                stored_atts.setdefault(vid, []).append(AttestationRecord(source, target, root))

            merges: list[tuple[_Validator, MergeResult, ValidatorHistory]] = []
            try:
                for pubkey in pubkeys:
                    validator = validators[pubkey]
                    history = grouped[pubkey]
                    merge = merge_history(
                        history,
                        stored_blocks.get(validator.id, ()),
                        stored_atts.get(validator.id, ()),
                    )
                    merges.append((validator, merge, history))
            except BaseException:
                conn.execute("ROLLBACK")  # sent when the pipeline closes
                raise

            block_rows = [(v.id, b.slot, b.signing_root) for v, m, _ in merges for b in m.blocks]
            att_rows = [
                (v.id, a.source, a.target, a.signing_root)
                for v, m, _ in merges
                for a in m.attestations
            ]
            floor_rows = [
                (
                    v.id,
                    _min(v.import_block_floor, m.min_slot),
                    _min(v.import_source_floor, m.min_source),
                    _min(v.import_target_floor, m.min_target),
                    _max(v.max_source, *(a.source for a in h.attestations)),
                    _max(v.max_target, *(a.target for a in h.attestations)),
                )
                for v, m, h in merges
            ]
            # Round trip 2: every write and the COMMIT, sent together.
            for block_chunk in _chunks(block_rows):
                ids, slots, roots = zip(*block_chunk, strict=True)
                conn.execute(
                    "INSERT INTO blocks (validator_id, slot, signing_root) "
                    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[]) "
                    "ON CONFLICT (validator_id, slot) "
                    "DO UPDATE SET signing_root = EXCLUDED.signing_root",
                    (list(ids), list(slots), list(roots)),
                )
            for att_chunk in _chunks(att_rows):
                ids, sources, targets, roots = zip(*att_chunk, strict=True)
                conn.execute(
                    "INSERT INTO attestations (validator_id, source, target, signing_root) "
                    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bytea[]) "
                    "ON CONFLICT (validator_id, target) "
                    "DO UPDATE SET signing_root = EXCLUDED.signing_root",
                    (list(ids), list(sources), list(targets), list(roots)),
                )
            for floor_chunk in _chunks(floor_rows):
                columns = [list(column) for column in zip(*floor_chunk, strict=True)]
                conn.execute(
                    "UPDATE validators v SET import_block_floor = u.ibf, "
                    "import_source_floor = u.isf, import_target_floor = u.itf, "
                    "max_source = u.ms, max_target = u.mt "
                    "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
                    "%s::bigint[], %s::bigint[]) AS u(id, ibf, isf, itf, ms, mt) "
                    "WHERE v.id = u.id",
                    columns,
                )
            conn.execute("COMMIT")
        return ImportReport(len(grouped), len(block_rows), len(att_rows))

    def export_interchange(self, pubkeys: Sequence[bytes] | None = None) -> dict[str, Any]:
        histories = self._run("interchange export", lambda c: self._read_all(c, pubkeys))
        return export_document(self.gvr, histories)

    def _read_all(self, conn: Conn, pubkeys: Sequence[bytes] | None) -> list[ValidatorHistory]:
        if pubkeys is None:
            which = "TRUE"
            params: dict[str, Any] = {}
        else:
            which = "v.pubkey = ANY(%(keys)s::bytea[])"
            params = {"keys": [bytes(p) for p in pubkeys]}
        with conn.pipeline():
            # One consistent snapshot for the three reads, one round trip.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            vcur = conn.execute(
                f"SELECT v.id, v.pubkey FROM validators v WHERE {which} ORDER BY v.pubkey",  # noqa: S608
                params,
            )
            bcur = conn.execute(
                "SELECT b.validator_id, b.slot, b.signing_root FROM blocks b "  # noqa: S608
                f"JOIN validators v ON v.id = b.validator_id WHERE {which} "
                "ORDER BY b.validator_id, b.slot",
                params,
            )
            acur = conn.execute(
                "SELECT a.validator_id, a.source, a.target, a.signing_root "  # noqa: S608
                f"FROM attestations a JOIN validators v ON v.id = a.validator_id WHERE {which} "
                "ORDER BY a.validator_id, a.target",
                params,
            )
            conn.execute("COMMIT")
        # Leaving the pipeline sent everything with one Sync; the results are all here.
        validators = vcur.fetchall()
        blocks: dict[int, list[BlockRecord]] = {}
        for vid, slot, root in bcur.fetchall():
            blocks.setdefault(vid, []).append(BlockRecord(slot, root))
        atts: dict[int, list[AttestationRecord]] = {}
        for vid, source, target, root in acur.fetchall():
            atts.setdefault(vid, []).append(AttestationRecord(source, target, root))
        by_key = {
            bytes(pubkey): ValidatorHistory(
                bytes(pubkey), tuple(blocks.get(vid, ())), tuple(atts.get(vid, ()))
            )
            for vid, pubkey in validators
        }
        if pubkeys is None:
            return list(by_key.values())
        return [by_key[bytes(p)] for p in pubkeys if bytes(p) in by_key]

    # ------------------------------------------------------------------ operations

    def prune(self, keep_epochs: int, slots_per_epoch: int = 32) -> PruneReport:
        """Per validator, in its own short transaction under its row lock (signing elsewhere
        goes on); deleted history keeps protecting through the raised hard floors."""
        if keep_epochs < 0:
            raise BadRequest("keep_epochs: must not be negative", field="keep_epochs")
        # Beyond MAX_STORED nothing can be below the cutoff: clamp so BIGINT never overflows.
        span = min(keep_epochs * slots_per_epoch, MAX_STORED)
        keep = min(keep_epochs, MAX_STORED)

        def candidates(conn: Conn) -> list[int]:
            rows = conn.execute(_PRUNE_CANDIDATES, {"span": span, "keep": keep}).fetchall()
            return [row[0] for row in rows]

        blocks_deleted = atts_deleted = 0
        for vid in self._run("prune", candidates, "nothing was pruned"):
            deleted = self._run("prune", partial(self._prune_one, vid=vid, span=span, keep=keep))
            blocks_deleted += deleted[0]
            atts_deleted += deleted[1]
        return PruneReport(blocks_deleted, atts_deleted)

    @staticmethod
    def _prune_one(conn: Conn, vid: int, span: int, keep: int) -> tuple[int, int]:
        with conn.pipeline():
            conn.execute("BEGIN")
            conn.execute("SELECT 1 FROM validators WHERE id = %s::bigint FOR UPDATE", (vid,))
            row = conn.execute(_PRUNE_MAXIMA, {"id": vid}).fetchone()
            max_slot, max_target = row if row is not None else (None, None)
            counts = conn.execute(
                _PRUNE_ONE,
                {
                    "id": vid,
                    "block_cutoff": None if max_slot is None else max_slot - span,
                    "target_cutoff": None if max_target is None else max_target - keep,
                },
            )
            conn.execute("COMMIT")
        result = counts.fetchone()  # round trip 2 was the Sync on leaving the pipeline
        assert result is not None
        return int(result[0]), int(result[1])

    def set_watermark(
        self,
        pubkey: bytes,
        *,
        block_slot: int | None = None,
        source_epoch: int | None = None,
        target_epoch: int | None = None,
    ) -> None:
        floors = watermark_floors(block_slot, source_epoch, target_epoch)
        params = {
            "pubkey": pubkey,
            "block": floors.block_floor,
            "source": floors.source_floor,
            "target": floors.target_floor,
        }

        def apply(conn: Conn) -> None:
            conn.execute(_SET_WATERMARK, params)

        self._run("set watermark", apply, "the watermark was not changed")

    def healthy(self) -> bool:
        """``SELECT 1`` on a pooled connection. When every connection is busy, healthy if the
        database answered within the last few seconds (a saturated signer is not a dead one)."""
        if self._closed:
            return False
        try:
            with self._pool.connection(timeout=min(self._settings.pool_timeout, 1.0)) as conn:
                conn.execute("SELECT 1")
        except PoolTimeout:
            return time.monotonic() - self._last_answer < HEALTHY_BUSY_SECONDS
        except psycopg.Error:
            return False
        self._last_answer = time.monotonic()
        return True

    def integrity_check(self) -> list[str]:
        return self._run("integrity check", self._integrity)

    def _integrity(self, conn: Conn) -> list[str]:
        problems: list[str] = []
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        version = row[0] if row is not None else None
        if version != SCHEMA_VERSION:
            problems.append(f"schema version is {version}, expected {SCHEMA_VERSION}")
        row = conn.execute(
            "SELECT value FROM metadata WHERE key = 'genesis_validators_root'"
        ).fetchone()
        if row is None or row[0] != "0x" + self.gvr.hex():
            problems.append(
                f"genesis validators root is {row[0] if row else 'missing'}, "
                f"expected 0x{self.gvr.hex()}"
            )
        stale = conn.execute(
            "SELECT count(*) FILTER (WHERE coalesce(v.max_target, -1) < m.max_target), "
            "count(*) FILTER (WHERE coalesce(v.max_source, -1) < m.max_source) "
            "FROM validators v JOIN (SELECT validator_id, max(target) AS max_target, "
            "max(source) AS max_source FROM attestations GROUP BY validator_id) m "
            "ON m.validator_id = v.id"
        ).fetchone()
        if stale is not None and stale[0]:
            problems.append(f"{stale[0]} validator(s) with max_target below a stored target")
        if stale is not None and stale[1]:
            problems.append(f"{stale[1]} validator(s) with max_source below a stored source")
        invalid = conn.execute(
            "SELECT i.indexrelid::regclass::text FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid "
            "WHERE c.relnamespace = %s::regnamespace AND NOT (i.indisvalid AND i.indisready)",
            (self._settings.schema,),
        ).fetchall()
        problems += [f"index {name} is not valid (rebuild it with REINDEX)" for (name,) in invalid]
        for setting in ("fsync", "full_page_writes"):
            value = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
            if value is not None and value[0] == "off":
                problems.append(
                    f"the server runs with {setting}=off: committed records may be lost in a crash"
                )
        return problems

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()
