"""SQLite vault state store: versioned compare-and-set in one local file (the built-in default).

One table, ``state(key, value, version)``. Every write is one ``BEGIN IMMEDIATE`` transaction
that reads the stored version, compares it with the expected one and writes (or not) before
``COMMIT``: the reserved lock taken by ``BEGIN IMMEDIATE`` serializes writers of every thread
and every process sharing the file (several replicas on one host may), and the busy timeout
makes a concurrent writer wait for it instead of failing. WAL with ``synchronous=FULL``: a write
is on disk when ``put`` returns.

Within a process one connection is shared behind a lock: the vault writes a handful of records
per ceremony, so per-thread connections would buy nothing but connections to track and close.

Permissions: the file is created ``0600`` (and its directory ``0700`` if missing). A file that
exists with looser permissions is tightened to ``0600`` with a warning in the log (and so are its
``-wal`` / ``-shm`` companions; SQLite creates new ones with the database file's mode); if that
is not possible (another owner), the warning says what to run instead. Tightening rather than
refusing to start: the records are encrypted under the KMS layer, but nothing is gained by
leaving them readable, and an operator who copied the file in with ``cp`` should not be stopped.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from chamber.errors import ConfigError, Conflict, StartupError, Unavailable
from chamber.files import create_private_file

log = logging.getLogger("chamber.vault.sqlite_state")

SECTION = "signer_state"
DEFAULT_PATH = "./chamber-state.sqlite"
#: Milliseconds a writer waits for another connection's (thread's or process's) transaction.
BUSY_TIMEOUT_MS = 10_000

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS state "
    "(key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL)"
)

_FIXES = {
    "SQLITE_CANTOPEN": "check that its directory exists and is writable by the signer's user",
    "SQLITE_PERM": "make the file and its directory writable by the signer's user",
    "SQLITE_READONLY": "make the file and its directory writable by the signer's user",
    "SQLITE_FULL": "free disk space on its file system",
    "SQLITE_IOERR": "check the disk and the file system it is on",
    "SQLITE_NOTADB": (
        f"it is not a SQLite database: restore it from a backup or set {SECTION}.path to "
        "another file"
    ),
    "SQLITE_CORRUPT": (
        f"the database is corrupt: restore it from a backup or set {SECTION}.path to another file"
    ),
    "SQLITE_BUSY": "another process held it locked too long; retry",
    "SQLITE_LOCKED": "another connection held it locked too long; retry",
}


def _describe(exc: sqlite3.Error) -> str:
    """SQLite's reason and a fix. SQLite's messages never echo bound parameters (values)."""
    name = getattr(exc, "sqlite_errorname", None) or exc.__class__.__name__
    base = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    fix = _FIXES.get(name) or _FIXES.get(base) or "check the file and its directory"
    return f"{exc} ({name}); {fix}"


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))[2:].rjust(4, "0")


def _tighten(path: Path) -> None:
    """Make ``path`` (and its WAL companions, if present) owner-only, with a warning."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = file.stat()
        except FileNotFoundError:
            continue
        if not stat.S_IMODE(st.st_mode) & 0o077:
            continue
        try:
            os.chmod(file, stat.S_IMODE(st.st_mode) & 0o700 | 0o600)
        except OSError:
            log.warning(
                "vault state file %s is accessible to other users (mode %s) and could not be "
                "restricted; run: chmod 600 %s",
                file,
                _mode(st),
                file,
            )
        else:
            log.warning(
                "vault state file %s was accessible to other users (mode %s); restricted to 0600",
                file,
                _mode(st),
            )


def _create_private(path: Path) -> None:
    """Create ``path`` owner-only if missing (its directory too); tighten it if it exists."""
    try:
        if create_private_file(path):
            return
        if not stat.S_ISREG(path.stat().st_mode):
            raise StartupError(
                f"{SECTION}.path: {path} is not a regular file; set it to a file path"
            )
    except OSError as exc:
        raise StartupError(
            f"{SECTION}.path: cannot create the vault state file {path} "
            f"({exc.strerror or exc.__class__.__name__}); make its directory exist and be "
            "writable by the signer's user, or choose another path"
        ) from None
    _tighten(path)


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch to WAL; returns the journal mode in force.

    The switch needs a lock that SQLite does not wait for with the busy handler: two replicas
    opening a new file at the same moment see SQLITE_BUSY at once, so wait here instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            busy = str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY")
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class SQLiteStateBackend:
    """:class:`chamber.vault.interfaces.StateBackend` on a local SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        _create_private(path)
        try:
            self._conn = sqlite3.connect(
                path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # shared behind self._lock
            )
        except sqlite3.Error as exc:
            raise StartupError(f"vault state store {path}: cannot open: {_describe(exc)}") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            mode = _enable_wal(self._conn, busy_timeout_ms / 1000)
            if mode != "wal":
                # Still correct (rollback journal), only slower; e.g. a file system without
                # shared memory support.
                log.warning("vault state store %s: WAL unavailable, journal mode %s", path, mode)
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(SCHEMA)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._conn.close()
            raise StartupError(f"vault state store {path}: cannot open: {_describe(exc)}") from None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        unknown = sorted(set(settings) - {"path"})
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key for the sqlite state store")
        path = settings.get("path", DEFAULT_PATH)
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ConfigError(f"{SECTION}.path: must be a file path")
        return cls(Path(path))

    def __repr__(self) -> str:
        return f"SQLiteStateBackend(path={str(self.path)!r})"

    # ------------------------------------------------------------------ helpers

    def _unavailable(self, operation: str, exc: sqlite3.Error) -> Unavailable:
        log.error(
            "vault state store %s: %s failed: %s",
            self.path,
            operation,
            getattr(exc, "sqlite_errorname", exc.__class__.__name__),
        )
        return Unavailable(f"vault state store {self.path}: {operation} failed: {_describe(exc)}")

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"vault state store {self.path} is closed")

    @staticmethod
    def _check_version(expected_version: int) -> None:
        if (
            isinstance(expected_version, bool)
            or not isinstance(expected_version, int)
            or expected_version < 0
        ):
            raise ValueError("expected_version must be an integer >= 0 (0 = the key is absent)")

    def _compare_and_write(
        self, operation: str, key: str, expected_version: int, value: bytes | None
    ) -> int:
        """One ``BEGIN IMMEDIATE`` transaction: compare the version, then write or delete."""
        self._check_version(expected_version)
        with self._lock:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT version FROM state WHERE key = ?", (key,)).fetchone()
                    found = 0 if row is None else int(row[0])
                    if found != expected_version:
                        conn.execute("ROLLBACK")
                        raise Conflict(
                            f"state changed concurrently: expected version {expected_version}, "
                            f"found {found} (key {key!r})"
                        )
                    if value is None:
                        conn.execute("DELETE FROM state WHERE key = ?", (key,))
                        new_version = 0
                    else:
                        new_version = found + 1
                        conn.execute(
                            "INSERT INTO state (key, value, version) VALUES (?, ?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                            "version = excluded.version",
                            (key, value, new_version),
                        )
                    conn.execute("COMMIT")
                    return new_version
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._unavailable(operation, exc) from None

    # ------------------------------------------------------------------ StateBackend

    def get(self, key: str) -> tuple[bytes, int] | None:
        with self._lock:
            self._check_open()
            try:
                row = self._conn.execute(
                    "SELECT value, version FROM state WHERE key = ?", (key,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._unavailable("get", exc) from None
        return None if row is None else (bytes(row[0]), int(row[1]))

    def put(self, key: str, value: bytes, expected_version: int) -> int:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("value must be bytes")
        return self._compare_and_write("put", key, expected_version, bytes(value))

    def delete(self, key: str, expected_version: int) -> None:
        self._compare_and_write("delete", key, expected_version, None)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error:
                log.exception("vault state store %s: close failed", self.path)
