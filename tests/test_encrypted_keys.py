"""Encrypted validator-key stores: the shared contract on SQLite, plus what is SQLite's own.

The contract checks live in :mod:`tests.encrypted_store_contract` (the DynamoDB plugin runs the
same ones). Here, additionally: the file's permissions, configuration errors, two processes on
one file, a SIGKILL in the middle of imports, and a load of 2,000 keys (timed and printed).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chamber.builtin import sqlite_keys
from chamber.crypto.bls import BlsBackend, BlspyBackend
from chamber.errors import ConfigError, StartupError, Unavailable
from chamber.keys import KeyRegistry
from chamber.keys.encrypted import StoredKey, decrypt_secret, encrypt_secret
from chamber.keys.sqlite_store import SQLiteKeySource, SQLiteKeyStore
from chamber.plugins import BUILTIN_MODULES
from tests.encrypted_store_contract import (
    CONTRACT_CHECKS,
    MASTER,
    MESSAGE,
    Check,
    check_no_secret_in_logs,
    pubkey_of,
    secret,
    secrets_,
)
from tests.support import REPO_ROOT


@pytest.fixture(scope="module")
def bls() -> BlsBackend:
    return BlspyBackend()


@pytest.fixture
def open_source(tmp_path: Path, bls: BlsBackend) -> Iterator[Callable[..., SQLiteKeySource]]:
    opened: list[SQLiteKeySource] = []

    def open_(path: Path | None = None) -> SQLiteKeySource:
        source = SQLiteKeySource.from_config({"path": str(path or tmp_path / "keys.sqlite")}, bls)
        opened.append(source)
        return source

    yield open_
    for source in opened:
        source.close()


@pytest.fixture
def source(open_source: Callable[..., SQLiteKeySource]) -> SQLiteKeySource:
    return open_source()


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
def test_contract(check: Check, source: SQLiteKeySource, bls: BlsBackend) -> None:
    check(source, bls)


def test_no_secret_in_logs(
    source: SQLiteKeySource, bls: BlsBackend, caplog: pytest.LogCaptureFixture
) -> None:
    check_no_secret_in_logs(source, bls, caplog)


# ----------------------------------------------------------------------------- records


def test_stored_key_repr_and_validation() -> None:
    record = StoredKey(b"\xaa" * 48, b"\x01secret-ciphertext", backup=b"age-backup")
    text = repr(record)
    assert "0x" + "aa" * 48 in text
    assert "secret-ciphertext" not in text and "age-backup" not in text
    assert "ciphertext" not in text
    for bad in (
        {"pubkey": b"\xaa" * 47},
        {"ciphertext": b""},
        {"status": "deleted"},
        {"origin": "elsewhere"},
        {"created_at": True},
    ):
        fields = {"pubkey": b"\xaa" * 48, "ciphertext": b"\x01", **bad}
        with pytest.raises(ValueError):
            StoredKey(**fields)  # type: ignore[arg-type]


def test_encrypt_secret_is_bound_to_master_and_pubkey(bls: BlsBackend) -> None:
    raw = secret(0)
    pub = pubkey_of(bls, raw)
    blob = encrypt_secret(MASTER, pub, raw)
    assert raw not in blob
    assert encrypt_secret(MASTER, pub, raw) != blob  # fresh nonce every time
    assert decrypt_secret(bytearray(MASTER), pub, blob) == raw


# ----------------------------------------------------------------------------- the SQLite file


def test_file_is_private_and_wal(tmp_path: Path, bls: BlsBackend) -> None:
    path = tmp_path / "new-dir" / "keys.sqlite"
    source = SQLiteKeySource.from_config({"path": str(path)}, bls)
    try:
        source.import_secret(MASTER, secret(0))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if sidecar.exists():
                assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            columns = [row[1] for row in conn.execute("PRAGMA table_info(validator_keys)")]
        assert columns == ["pubkey", "ciphertext", "status", "origin", "created_at", "backup"]
    finally:
        source.close()


def test_config_errors(tmp_path: Path, bls: BlsBackend) -> None:
    with pytest.raises(ConfigError, match=r"key_sources\.sqlite\.paths") as caught:
        SQLiteKeySource.from_config({"paths": ["x"]}, bls)
    assert caught.value.field == "key_sources.sqlite.paths"
    with pytest.raises(ConfigError, match=r"key_sources\.sqlite\.path"):
        SQLiteKeySource.from_config({"path": 7}, bls)
    with pytest.raises(StartupError, match=r"key_sources\.sqlite\.path"):
        SQLiteKeySource.from_config({"path": str(tmp_path)}, bls)  # a directory
    garbage = tmp_path / "not-a-database.sqlite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(StartupError, match=r"key_sources\.sqlite\.path"):
        SQLiteKeySource.from_config({"path": str(garbage)}, bls)


def test_default_path(tmp_path: Path, bls: BlsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = SQLiteKeySource.from_config({}, bls)
    source.close()
    assert (tmp_path / "chamber-keys.sqlite").is_file()


def test_newer_schema_refused(tmp_path: Path, bls: BlsBackend) -> None:
    path = tmp_path / "keys.sqlite"
    SQLiteKeyStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=2")
    with pytest.raises(StartupError, match="schema version 2"):
        SQLiteKeyStore(path)


def test_closed_store_is_unavailable(source: SQLiteKeySource) -> None:
    source.close()
    source.close()  # idempotent
    with pytest.raises(Unavailable):
        source.load(MASTER)
    with pytest.raises(Unavailable):
        source.store.get(b"\x00" * 48)


def test_registered_as_builtin_plugin() -> None:
    assert "chamber.builtin.sqlite_keys" in BUILTIN_MODULES
    assert sqlite_keys.chamber_key_sources() == {"sqlite": SQLiteKeySource}
    assert SQLiteKeySource.requires_unseal is True


def test_loaded_keys_fill_the_registry(source: SQLiteKeySource, bls: BlsBackend) -> None:
    for raw in secrets_(3, "registry"):
        source.import_secret(MASTER, raw)
    registry = KeyRegistry()
    registry.replace_source(source.name, source.load(MASTER).keys)
    assert registry.count_by_source() == {"sqlite": 3}
    registry.replace_source(source.name, [])  # what sealing does
    assert len(registry) == 0


def test_two_stores_share_one_file(tmp_path: Path, bls: BlsBackend) -> None:
    """Another process's (here: connection's) writes are seen; racing inserts of one key give
    exactly one True."""
    path = tmp_path / "shared.sqlite"
    first, second = SQLiteKeyStore(path), SQLiteKeyStore(path)
    try:
        raws = secrets_(16, "shared")
        records = [
            StoredKey(pubkey_of(bls, raw), encrypt_secret(MASTER, pubkey_of(bls, raw), raw))
            for raw in raws
        ]
        answers: list[list[bool]] = []
        lock = threading.Lock()

        def insert(store: SQLiteKeyStore) -> None:
            for record in records:
                (answer,) = store.insert([record])
                with lock:
                    answers.append([answer])

        threads = [threading.Thread(target=insert, args=(s,)) for s in (first, second) * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(a[0] for a in answers) == len(records)
        assert len(second.list_keys()) == len(records)
        assert first.delete(records[0].pubkey)
        assert second.get(records[0].pubkey) is None
        assert first.set_status(records[1].pubkey, "inactive")
        stored = second.get(records[1].pubkey)
        assert stored is not None and stored.status == "inactive"
    finally:
        first.close()
        second.close()


# ----------------------------------------------------------------------------- crash consistency

_CHILD = r"""
import sys, time
from chamber.crypto.bls import BlspyBackend
from chamber.keys.encrypted import StoredKey, encrypt_secret
from chamber.keys.sqlite_store import SQLiteKeySource
from tests.encrypted_store_contract import MASTER, secret

path, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
bls = BlspyBackend()
source = SQLiteKeySource.from_config({"path": path}, bls)
index = 0
while index < count:
    if index % 50 < 25:  # single imports: one transaction each
        source.import_secret(MASTER, secret(index, seed))
        print("single", index, flush=True)
        index += 1
    else:  # batches of 5: one transaction for the five
        records = []
        for i in range(index, index + 5):
            raw = secret(i, seed)
            pub = bls.public_key(bls.secret_key(raw))
            records.append(StoredKey(pub, encrypt_secret(MASTER, pub, raw), backup=b"b" * 64))
        source.store.insert(records)
        print("batch", index, index + 4, flush=True)
        index += 5
"""


def test_sigkill_during_imports_leaves_whole_records(tmp_path: Path, bls: BlsBackend) -> None:
    """Kill importing processes at random moments: every record present opens and matches its
    public key, batches are all-or-nothing, and everything reported committed is there."""
    path = tmp_path / "crash.sqlite"
    rng = random.Random(20240601)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    expected: dict[bytes, tuple[str, int]] = {}
    committed: set[bytes] = set()
    for round_ in range(3):
        seed = f"crash-{round_}"
        count = 400
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), seed, str(count)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO_ROOT,
            text=True,
        )
        assert child.stdout is not None
        kill_after = rng.randrange(40, 200)
        reported: list[str] = []
        for line in child.stdout:
            reported.append(line)
            if len(reported) >= kill_after:
                time.sleep(rng.uniform(0, 0.01))
                break
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert child.returncode == -signal.SIGKILL, "the importer finished before the kill"
        for i in range(count):
            raw = secret(i, seed)
            expected[pubkey_of(bls, raw)] = (seed, i)
        for line in reported:
            _kind, *numbers = line.split()
            first, last = int(numbers[0]), int(numbers[-1])
            for i in range(first, last + 1):
                committed.add(pubkey_of(bls, secret(i, seed)))

    source = SQLiteKeySource.from_config({"path": str(path)}, bls)
    try:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        result = source.load(MASTER)
        assert result.errors == []
        present = {key.pubkey for key in result.keys}
        assert committed <= present
        assert present <= set(expected)
        for key in result.keys:
            assert bls.verify(key.pubkey, MESSAGE, bls.sign(key.secret, MESSAGE))
        # Batches (indices 25-49 of each 50, in fives) are all present or all absent.
        by_seed: dict[str, set[int]] = {}
        for pub in present:
            seed, i = expected[pub]
            by_seed.setdefault(seed, set()).add(i)
        for indices in by_seed.values():
            for start in (i for i in range(0, 400, 5) if i % 50 >= 25):
                members = {start + j in indices for j in range(5)}
                assert len(members) == 1, f"batch {start} is partly stored"
        print(f"\ncrash test: {len(committed)} reported committed, {len(present)} stored")
    finally:
        source.close()


# ----------------------------------------------------------------------------- load time


def test_load_2000_keys(tmp_path: Path, bls: BlsBackend) -> None:
    count = 2000
    raws = secrets_(count, "bulk")
    pubkeys = [pubkey_of(bls, raw) for raw in raws]
    source = SQLiteKeySource.from_config({"path": str(tmp_path / "bulk.sqlite")}, bls)
    try:
        records = [
            StoredKey(pub, encrypt_secret(MASTER, pub, raw))
            for pub, raw in zip(pubkeys, raws, strict=True)
        ]
        started = time.perf_counter()
        assert source.store.insert(records) == [True] * count
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        result = source.load(MASTER)
        loaded = time.perf_counter() - started
        print(f"\n{count} keys: insert (one transaction) {inserted:.3f}s, load {loaded:.3f}s")
        assert result.errors == []
        assert [key.pubkey for key in result.keys] == pubkeys
        for key in result.keys[:: count // 10]:
            assert bls.verify(key.pubkey, MESSAGE, bls.sign(key.secret, MESSAGE))
    finally:
        source.close()
