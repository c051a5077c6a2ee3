"""The built-in SQLite vault state store: the StateBackend contract, races, files, errors."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from chamber.errors import ConfigError, StartupError, Unavailable
from chamber.plugins import load_plugins
from chamber.vault.interfaces import StateBackend
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests import state_contract
from tests.support import REPO_ROOT


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "chamber-state.sqlite"


@pytest.fixture
def backend(path: Path) -> Iterator[SQLiteStateBackend]:
    store = SQLiteStateBackend.from_config({"path": str(path)})
    yield store
    store.close()


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# ------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("check", state_contract.CHECKS, ids=state_contract.CHECK_IDS)
def test_contract(backend: SQLiteStateBackend, check: Callable[[StateBackend], None]) -> None:
    check(backend)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=state_contract.operations())
def test_against_a_dict_model(
    backend: SQLiteStateBackend, ops: list[state_contract.Operation]
) -> None:
    state_contract.run_model(backend, ops)


def test_records_survive_reopening(path: Path) -> None:
    first = SQLiteStateBackend.from_config({"path": str(path)})
    first.put("vault/root", state_contract.SECRET, 0)
    first.put("vault/root", state_contract.SECRET + b"!", 1)
    first.close()
    second = SQLiteStateBackend.from_config({"path": str(path)})
    assert second.get("vault/root") == (state_contract.SECRET + b"!", 2)
    second.close()


def test_table_layout_and_durability_settings(backend: SQLiteStateBackend, path: Path) -> None:
    backend.put("k", b"\x01\x02", 0)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT key, value, version FROM state").fetchall() == [
            ("k", b"\x01\x02", 1)
        ]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    # synchronous is per connection: the backend's own.
    assert backend._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_close(backend: SQLiteStateBackend) -> None:
    backend.put("k", b"v", 0)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(Unavailable, match="closed"):
        backend.get("k")
    with pytest.raises(Unavailable, match="closed"):
        backend.put("k", b"w", 1)


# ------------------------------------------------------------------------------ races


@pytest.mark.parametrize("instances", ["one shared", "one per thread"])
def test_thread_race_exactly_one_wins(path: Path, instances: str) -> None:
    first = SQLiteStateBackend(path)
    second = first if instances == "one shared" else SQLiteStateBackend(path)
    try:
        state_contract.race([first, second], rounds=50)
    finally:
        first.close()
        second.close()


def test_many_threads_one_backend(backend: SQLiteStateBackend) -> None:
    state_contract.race([backend] * 6, rounds=20)


_CHILD = r"""
import json, sys, time
from pathlib import Path
from chamber.errors import Conflict
from chamber.vault.sqlite_state import SQLiteStateBackend

TICK = 0.01
path, me, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = SQLiteStateBackend(Path(path))
print("ready", flush=True)
start = float(sys.stdin.readline())
won = {"create": [], "update": []}
for i in range(rounds):
    for n, (step, expected) in enumerate((("create", 0), ("update", 1))):
        # Both processes wake at the same instants (the wall clock is shared), so every
        # step is a real race rather than one process running ahead of the other.
        time.sleep(max(0.0, start + (2 * i + n) * TICK - time.time()))
        try:
            backend.put(f"race/{i}", f"{me}:{step}".encode(), expected)
            won[step].append(i)
        except Conflict:
            pass
backend.close()
print(json.dumps(won), flush=True)
"""


def test_process_race_exactly_one_wins(path: Path) -> None:
    """Two processes open the same new file at once, then race creates and updates."""
    rounds = 100
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), name, str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("a", "b")
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line == "ready\n", child.stderr.read() if child.stderr else line
        start = time.time() + 0.2
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start}\n")
            child.stdin.flush()
        results = {}
        for name, child in zip("ab", children, strict=True):
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results[name] = json.loads(out)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    store = SQLiteStateBackend(path)
    try:
        for step in ("create", "update"):
            a, b = set(results["a"][step]), set(results["b"][step])
            assert not a & b, f"both processes won {step} of {sorted(a & b)[:5]}"
            assert a | b == set(range(rounds)), f"nobody won {step} of some keys"
        for i in range(rounds):
            winner = "a" if i in results["a"]["update"] else "b"
            assert store.get(f"race/{i}") == (f"{winner}:update".encode(), 2)
    finally:
        store.close()
    # Not a correctness condition, a check that the test raced at all (about 50/50 here).
    for name in "ab":
        assert results[name]["create"] or results[name]["update"], f"{name} never won"


def _open_and_write(
    path: Path, barrier: threading.Barrier, errors: list[Exception], me: int
) -> None:
    barrier.wait()
    try:
        store = SQLiteStateBackend(path)
        store.put(f"k{me}", b"v", 0)
        store.close()
    except Exception as exc:
        errors.append(exc)


def test_replicas_opening_a_new_file_at_once(tmp_path: Path) -> None:
    """Switching a new file to WAL takes a lock SQLite's busy handler does not wait for; the
    backend waits itself, so replicas started together do not fail."""
    for trial in range(20):
        path = tmp_path / f"new-{trial}.sqlite"
        barrier = threading.Barrier(4)
        errors: list[Exception] = []
        threads = [
            threading.Thread(target=_open_and_write, args=(path, barrier, errors, i))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors


def test_a_writer_waits_for_another_connection(backend: SQLiteStateBackend, path: Path) -> None:
    """A transaction held elsewhere (another process, say) delays a put; it does not fail it."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO state VALUES ('k', x'00', 1)")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        start = time.monotonic()
        state_contract.expect_conflict(lambda: backend.put("k", b"mine", 0), expected=0, found=1)
        assert time.monotonic() - start >= 0.4
        assert backend.put("k", b"mine", 1) == 2
    finally:
        release.join()
        other.close()


def test_lock_held_too_long_is_unavailable(path: Path) -> None:
    store = SQLiteStateBackend(path, busy_timeout_ms=200)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Unavailable) as info:
            store.put("k", state_contract.SECRET, 0)
        assert str(path) in info.value.message
        assert "locked" in info.value.message and "retry" in info.value.message
        assert "SECRET" not in info.value.message
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.put("k", b"v", 0) == 1  # usable again once the lock is gone
    store.close()


# ------------------------------------------------------------------------------ files


def test_new_file_is_owner_only(backend: SQLiteStateBackend, path: Path) -> None:
    backend.put("k", b"v", 0)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    for companion in ("-wal", "-shm"):
        extra = path.with_name(path.name + companion)
        if extra.exists():
            assert _mode(extra) == 0o600, companion


def test_loose_permissions_are_tightened_with_a_warning(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = SQLiteStateBackend(path)
    first.put("k", b"v", 0)
    first.close()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="chamber.vault.sqlite_state"):
        store = SQLiteStateBackend(path)
    assert _mode(path) == 0o600
    assert any("0644" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert store.get("k") == (b"v", 1)
    store.close()


def test_unopenable_location_is_a_startup_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StartupError) as info:
        SQLiteStateBackend.from_config({"path": str(not_a_dir / "state.sqlite")})
    assert str(not_a_dir / "state.sqlite") in info.value.message
    assert "signer_state.path" in info.value.message

    with pytest.raises(StartupError, match="not a regular file"):
        SQLiteStateBackend.from_config({"path": str(tmp_path)})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_a_startup_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StartupError, match="writable"):
            SQLiteStateBackend.from_config({"path": str(locked / "state.sqlite")})
    finally:
        locked.chmod(0o700)


def test_put_on_an_unwritable_database_is_unavailable(path: Path) -> None:
    """Stands in for a file that became read-only (or a read-only mount) after start-up."""
    store = SQLiteStateBackend(path)
    store.put("k", b"v", 0)
    store._conn.close()
    store._conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    with pytest.raises(Unavailable) as info:
        store.put("k", state_contract.SECRET, 1)
    message = info.value.message
    assert str(path) in message and "readonly" in message and "writable" in message
    assert "SECRET" not in message
    assert store.get("k") == (b"v", 1)
    store.close()


def test_corrupt_file_is_a_startup_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StartupError) as info:
        SQLiteStateBackend.from_config({"path": str(path)})
    assert str(path) in info.value.message
    assert "not a database" in info.value.message and "backup" in info.value.message


# ------------------------------------------------------------------------------ configuration


def test_unknown_key_names_the_setting(path: Path) -> None:
    with pytest.raises(ConfigError, match=r"signer_state\.journal"):
        SQLiteStateBackend.from_config({"path": str(path), "journal": "delete"})


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_bad_path(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"signer_state\.path"):
        SQLiteStateBackend.from_config({"path": bad})


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStateBackend.from_config({})
    store.put("k", b"v", 0)
    store.close()
    assert _mode(tmp_path / "chamber-state.sqlite") == 0o600


def test_registered_as_builtin_plugin() -> None:
    provider = load_plugins(entry_points_enabled=False).providers("chamber_state_backends")
    assert provider["sqlite"].cls is SQLiteStateBackend
    assert provider["sqlite"].plugin == "sqlite_state"


def test_repr_names_the_file_only(backend: SQLiteStateBackend, path: Path) -> None:
    backend.put("k", state_contract.SECRET, 0)
    assert repr(backend) == f"SQLiteStateBackend(path={str(path)!r})"
