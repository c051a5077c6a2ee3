"""The embedded encrypted key store: one SQLite file (``key_sources.sqlite``).

Durability: WAL with ``synchronous=FULL``, so a ``COMMIT`` returns only once the write-ahead log
is on disk. An ``insert`` call is one ``BEGIN IMMEDIATE`` transaction of ``INSERT OR IGNORE``
statements (one fsync for a whole batch, which matters when importing thousands of keys); each
row's own change count says whether it was written. A crash (even ``SIGKILL``) before the commit
leaves none of the batch, after it all of it: a row is never half-written. A failing batch (disk
full, I/O error) raises and writes nothing.

Several processes may share the file (a running signer and an offline ``keys`` command, say):
WAL lets readers run beside the single writer, and writers wait up to ``busy_timeout`` for each
other. Within a process one connection is shared under a lock; every operation is short.

The file and its directory are created readable by the owner only (``0600`` / ``0700``); SQLite
gives the ``-wal`` and ``-shm`` files the database file's permissions.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Self

from chamber.crypto.bls import BlsBackend
from chamber.errors import ConfigError, StartupError, Unavailable
from chamber.files import create_private_file
from chamber.keys.encrypted import STATUSES, EncryptedKeySource, StoredKey

__all__ = ["SQLiteKeySource", "SQLiteKeyStore"]

log = logging.getLogger("chamber.keys.sqlite")

SECTION: Final = "key_sources.sqlite"
DEFAULT_PATH: Final = "./chamber-keys.sqlite"
SCHEMA_VERSION: Final = 1
#: Milliseconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS: Final = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS validator_keys (
    pubkey BLOB PRIMARY KEY CHECK (length(pubkey) = 48),
    ciphertext BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    origin TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    backup BLOB
)
"""
_SELECT = "SELECT pubkey, ciphertext, status, origin, created_at, backup FROM validator_keys"
_INSERT = (
    "INSERT OR IGNORE INTO validator_keys (pubkey, ciphertext, status, origin, created_at, backup)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _record(row: tuple[Any, ...]) -> StoredKey:
    pubkey, ciphertext, status, origin, created_at, backup = row
    return StoredKey(
        pubkey=bytes(pubkey),
        ciphertext=bytes(ciphertext),
        status=status,
        origin=origin,
        created_at=int(created_at),
        backup=None if backup is None else bytes(backup),
    )


class SQLiteKeyStore:
    """:class:`chamber.keys.encrypted.EncryptedKeyStore` in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            create_private_file(self.path)
            self._conn: sqlite3.Connection | None = self._connect()
            self._migrate()
        except Unavailable as exc:  # an SQLite error, already worded
            raise StartupError(f"{SECTION}.path: {exc.message}") from None
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(
                f"{SECTION}.path: cannot open the key store {self.path}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _migrate(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StartupError(
                    f"{SECTION}.path: the key store {self.path} has schema version {version}; "
                    f"this signer understands up to {SCHEMA_VERSION} (upgrade the signer)"
                )
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise Unavailable("the SQLite key store is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                # sqlite3 messages name the problem (locked, disk I/O), never row contents.
                raise Unavailable(f"SQLite key store {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ the store contract

    def insert(self, keys: Sequence[StoredKey]) -> list[bool]:
        if not keys:
            return []
        results: list[bool] = []
        with self._transaction() as conn:
            for key in keys:
                cursor = conn.execute(
                    _INSERT,
                    (
                        key.pubkey,
                        key.ciphertext,
                        key.status,
                        key.origin,
                        key.created_at,
                        key.backup,
                    ),
                )
                results.append(cursor.rowcount == 1)
        return results

    def list_keys(self, status: str | None = None) -> list[StoredKey]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        with self._connection() as conn:
            if status is None:
                rows = conn.execute(_SELECT + " ORDER BY rowid").fetchall()
            else:
                rows = conn.execute(
                    _SELECT + " WHERE status = ? ORDER BY rowid",
                    (status,),
                ).fetchall()
        return [_record(row) for row in rows]

    def get(self, pubkey: bytes) -> StoredKey | None:
        with self._connection() as conn:
            row = conn.execute(_SELECT + " WHERE pubkey = ?", (bytes(pubkey),)).fetchone()
        return None if row is None else _record(row)

    def set_status(self, pubkey: bytes, status: str) -> bool:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE validator_keys SET status = ? WHERE pubkey = ?", (status, bytes(pubkey))
            )
            return cursor.rowcount == 1

    def delete(self, pubkey: bytes) -> bool:
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM validator_keys WHERE pubkey = ?", (bytes(pubkey),))
            return cursor.rowcount == 1

    def change_token(self) -> object:
        """Changes whenever another connection (another process) committed to the file since
        the last call on this store: ``PRAGMA data_version``. This store's own writes do not
        change it; the signer applies those itself."""
        with self._connection() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SQLiteKeySource(EncryptedKeySource):
    """Validator keys sealed under the master key in a local SQLite file."""

    name = "sqlite"
    store: SQLiteKeyStore

    def __init__(
        self, store: SQLiteKeyStore, bls: BlsBackend, *, workers: int | None = None
    ) -> None:
        super().__init__(self.name, store, bls, workers=workers)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], bls: BlsBackend) -> Self:
        """``settings``: the ``key_sources.sqlite`` section; ``path`` (default
        ``./chamber-keys.sqlite``)."""
        unknown = sorted(set(settings) - {"path"})
        if unknown:
            raise ConfigError(
                f"{SECTION}.{unknown[0]}: unknown key for the sqlite key store (known: path)",
                field=f"{SECTION}.{unknown[0]}",
            )
        path = settings.get("path", DEFAULT_PATH)
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ConfigError(f"{SECTION}.path: must be a file path", field=f"{SECTION}.path")
        return cls(SQLiteKeyStore(path), bls)
