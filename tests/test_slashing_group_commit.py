"""SQLite group commit: checks decided within one batch are exactly as strict as one by one.

The batch's leader decides each check from its cache (speculatively updated as it goes) and
writes the batch's new records in one multi-row insert, committed once. These tests hold the
leader on a blocking job so that several checks land in the same batch, then release it:
conflicts between checks of one batch must be caught exactly as if they had come one by one, a
failed write must fail the whole batch and leave nothing behind, and the leadership must pass
on so that no request waits forever. A real SQLite file in a temporary directory.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chamber.errors import SlashingRefused, Unavailable
from chamber.slashing.sqlite import LEADER_SWITCH_INTERVAL, SQLiteSlashingBackend

GVR = b"\x42" * 32
A = b"\xaa" * 48
B = b"\xbb" * 48


def root(n: int) -> bytes:
    return n.to_bytes(32, "big")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SQLiteSlashingBackend]:
    opened = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    try:
        yield opened
    finally:
        opened.close()


def one_batch(
    backend: SQLiteSlashingBackend,
    starts: list[Callable[[], Callable[[], None]]],
    keep_cache: bool = False,
) -> list[BaseException | None]:
    """Queue every check while the leader is held, so they form one batch; their outcomes.

    The holding job is a bulk job, after which the leader drops its cache (the batch then reads
    every validator afresh), unless ``keep_cache``."""
    holding = threading.Event()
    release = threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        holding.set()
        release.wait(10)

    blocker = threading.Thread(target=lambda: backend._submit(hold, single=keep_cache))
    blocker.start()
    assert holding.wait(10)
    waiters = [start() for start in starts]  # queued behind the held job: the next batch
    with backend._mutex:
        assert len(backend._queue) == len(starts)
    release.set()
    blocker.join(10)
    outcomes: list[BaseException | None] = []
    for wait in waiters:
        try:
            wait()
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)
    return outcomes


def rows(backend: SQLiteSlashingBackend, table: str) -> list[tuple[Any, ...]]:
    query = f"SELECT * FROM {table} ORDER BY 1, 2"
    return backend._read(lambda conn: conn.execute(query).fetchall())


def test_double_vote_within_one_batch_is_refused(backend: SQLiteSlashingBackend) -> None:
    backend.check_and_record_attestation(A, 1, 2, root(2))  # A is known and cached
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_attestation(A, 2, 3, root(3)),
            lambda: backend.begin_attestation(A, 2, 3, root(99)),  # same target, other root
            lambda: backend.begin_attestation(A, 2, 3, root(3)),  # identical again: fine
            lambda: backend.begin_attestation(B, 0, 3, root(3)),  # another validator: fine
        ],
    )
    assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None
    assert isinstance(outcomes[1], SlashingRefused)
    targets = [(r[1], r[2], r[3]) for r in rows(backend, "attestations")]
    assert (2, 3, root(3)) in targets and (2, 3, root(99)) not in targets
    assert len(targets) == 3  # A's 1->2 and 2->3, B's 0->3


def test_surrounds_within_one_batch_are_refused(backend: SQLiteSlashingBackend) -> None:
    backend.check_and_record_attestation(A, 10, 11, root(11))
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_attestation(A, 12, 15, root(15)),
            lambda: backend.begin_attestation(A, 11, 16, root(16)),  # surrounds 12->15
            lambda: backend.begin_attestation(A, 13, 14, root(14)),  # surrounded by 12->15
            lambda: backend.begin_attestation(A, 15, 17, root(17)),  # fine
        ],
    )
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], SlashingRefused)
    assert isinstance(outcomes[2], SlashingRefused)
    assert [(r[1], r[2]) for r in rows(backend, "attestations")] == [(10, 11), (12, 15), (15, 17)]


def test_double_proposal_within_one_batch_is_refused(backend: SQLiteSlashingBackend) -> None:
    backend.check_and_record_block(A, 5, root(5))
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_block(A, 6, root(6)),
            lambda: backend.begin_block(A, 6, root(60)),  # same slot, other root
            lambda: backend.begin_block(A, 6, root(6)),  # identical: fine
            lambda: backend.begin_block(A, 4, root(4)),  # below the highest: allowed (no floor)
            lambda: backend.begin_block(A, 4, root(40)),  # ... but now slot 4 is taken
            lambda: backend.begin_block(A, 7, root(7)),
        ],
    )
    assert [o is None for o in outcomes] == [True, False, True, True, False, True]
    assert [(r[1], r[2]) for r in rows(backend, "blocks")] == [
        (4, root(4)),
        (5, root(5)),
        (6, root(6)),
        (7, root(7)),
    ]


def test_a_new_validator_first_seen_twice_in_one_batch(backend: SQLiteSlashingBackend) -> None:
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_attestation(B, 1, 2, root(2)),
            lambda: backend.begin_attestation(B, 1, 2, root(3)),
            lambda: backend.begin_block(B, 9, root(9)),
        ],
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], SlashingRefused)
    assert len(backend._read(lambda c: c.execute("SELECT id FROM validators").fetchall())) == 1


class CountingConnection:
    """The write connection, recording the first word of every statement the backend runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.seen: list[str] = []

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.seen.append(sql.split()[0].upper())
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def write_statements(backend: SQLiteSlashingBackend) -> list[str]:
    """Record the statements the backend runs on its write connection from now on."""
    counting = CountingConnection(backend._conn)
    backend._conn = counting  # type: ignore[assignment]
    return counting.seen


def test_a_batch_on_the_fast_path_is_one_insert_and_one_commit(
    backend: SQLiteSlashingBackend, tmp_path: Path
) -> None:
    """The steady state (known validators, rising epochs) costs one SQLite statement per
    batch: the multi-row insert in autocommit, durable by itself (synchronous=FULL)."""
    backend.check_and_record_attestation(A, 1, 2, root(2))
    backend.check_and_record_attestation(B, 1, 2, root(2))
    seen = write_statements(backend)
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_attestation(A, 2, 3, root(3)),
            lambda: backend.begin_attestation(B, 2, 3, root(3)),
            lambda: backend.begin_attestation(A, 3, 4, root(4)),
        ],
        keep_cache=True,
    )
    assert outcomes == [None, None, None]
    assert seen == ["INSERT"]
    backend.close()
    reopened = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    try:
        assert len(rows(reopened, "attestations")) == 5
        assert reopened.integrity_check() == []
    finally:
        reopened.close()


def test_a_batch_that_must_read_is_one_transaction(backend: SQLiteSlashingBackend) -> None:
    backend.check_and_record_attestation(A, 1, 2, root(2))
    seen = write_statements(backend)
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_attestation(A, 2, 3, root(3)),
            lambda: backend.begin_attestation(A, 1, 2, root(2)),  # identical again: reads
            lambda: backend.begin_attestation(A, 3, 4, root(4)),
        ],
        keep_cache=True,
    )
    assert outcomes == [None, None, None]
    assert seen == ["BEGIN", "INSERT", "SELECT", "SELECT", "SELECT", "INSERT", "COMMIT"]
    assert [(r[1], r[2]) for r in rows(backend, "attestations")] == [(1, 2), (2, 3), (3, 4)]


@pytest.mark.parametrize("must_read", [False, True], ids=["autocommit", "transaction"])
def test_a_failed_write_fails_the_whole_batch_and_keeps_nothing(
    backend: SQLiteSlashingBackend, must_read: bool
) -> None:
    backend.check_and_record_attestation(A, 1, 2, root(2))
    backend.check_and_record_attestation(B, 1, 2, root(2))
    backend.check_and_record_block(A, 1, root(1))
    # The disk "fails" for one record of the batch: the whole multi-row insert aborts.
    backend._conn.execute(
        "CREATE TEMP TRIGGER injected BEFORE INSERT ON attestations WHEN NEW.target = 13 "
        "BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"
    )
    starts = [
        lambda: backend.begin_attestation(A, 2, 3, root(3)),
        lambda: backend.begin_attestation(B, 12, 13, root(13)),
        lambda: backend.begin_block(A, 2, root(2)),
    ]
    if must_read:
        starts.append(lambda: backend.begin_attestation(A, 1, 2, root(2)))  # identical: reads
    outcomes = one_batch(backend, starts)
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert [(r[1], r[2]) for r in rows(backend, "attestations")] == [(1, 2), (1, 2)]
    assert [r[1] for r in rows(backend, "blocks")] == [1]
    assert backend.integrity_check() == []
    # Nothing was remembered either: once the disk is back, the same requests are fine.
    backend._conn.execute("DROP TRIGGER injected")
    backend.check_and_record_attestation(A, 2, 3, root(3))
    backend.check_and_record_attestation(B, 12, 13, root(13))
    backend.check_and_record_block(A, 2, root(2))
    with pytest.raises(SlashingRefused):
        backend.check_and_record_attestation(A, 2, 3, root(33))
    assert len(rows(backend, "attestations")) == 4


def test_leadership_passes_on_and_nobody_waits_forever(backend: SQLiteSlashingBackend) -> None:
    """Many requesters, each queueing a check, "signing" (sleeping) and then waiting: every
    check is answered, every record is written, and no thread hangs."""
    validators = [bytes([n]) * 48 for n in range(16)]
    failures: list[BaseException] = []

    def requester(pubkey: bytes) -> None:
        try:
            for epoch in range(1, 61):
                wait = backend.begin_attestation(pubkey, epoch - 1, epoch, root(epoch))
                time.sleep(0.0002 * (epoch % 3))
                wait()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=requester, args=(v,)) for v in validators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a requester waits forever"
    assert failures == []
    assert len(rows(backend, "attestations")) == 16 * 60
    assert backend.integrity_check() == []


def test_close_writes_what_was_queued_and_then_refuses(tmp_path: Path) -> None:
    backend = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    holding, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        holding.set()
        release.wait(10)

    blocker = threading.Thread(target=lambda: backend._submit(hold))
    blocker.start()
    assert holding.wait(10)
    wait = backend.begin_attestation(A, 1, 2, root(2))  # queued; its requester still "signs"
    release.set()
    blocker.join(10)
    backend.close()  # nobody leads the queued check: close writes it
    wait()  # durable, not lost
    with pytest.raises(Unavailable):
        backend.begin_attestation(A, 2, 3, root(3))
    reopened = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    try:
        assert [(r[1], r[2]) for r in rows(reopened, "attestations")] == [(1, 2)]
    finally:
        reopened.close()


def test_a_failed_read_fails_the_whole_batch(backend: SQLiteSlashingBackend) -> None:
    """A database error in any check fails every check of its batch, including those decided
    before it (SQLite may have rolled their rows back with the transaction)."""
    backend.check_and_record_attestation(A, 1, 2, root(2))
    backend.check_and_record_block(A, 10, root(10))
    denied = sqlite3.SQLITE_DENY

    def authorizer(action: int, table: str | None, *rest: object) -> int:
        return denied if action == sqlite3.SQLITE_READ and table == "blocks" else sqlite3.SQLITE_OK

    backend._conn.set_authorizer(authorizer)
    outcomes = one_batch(
        backend,
        [
            lambda: backend.begin_attestation(A, 2, 3, root(3)),  # fast path, decided first
            lambda: backend.begin_block(A, 5, root(5)),  # below the highest slot: must read
            lambda: backend.begin_attestation(B, 0, 1, root(1)),
        ],
        keep_cache=True,
    )
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    backend._conn.set_authorizer(None)
    assert [(r[1], r[2]) for r in rows(backend, "attestations")] == [(1, 2)]
    assert [r[1] for r in rows(backend, "blocks")] == [10]
    backend.check_and_record_attestation(A, 2, 3, root(3))  # fine once reads work again
    backend.check_and_record_block(A, 5, root(5))


def test_the_switch_interval_is_short_only_while_a_batch_is_written(
    backend: SQLiteSlashingBackend,
) -> None:
    """The leader lowers the interpreter's switch interval for its batch (so that it gets the
    GIL back promptly after the fsync) and restores it afterwards, also when the batch fails."""
    original = sys.getswitchinterval()
    assert original > LEADER_SWITCH_INTERVAL
    seen: list[float] = []

    def look(conn: sqlite3.Connection) -> None:
        seen.append(sys.getswitchinterval())

    backend._submit(look)
    assert seen == [LEADER_SWITCH_INTERVAL]
    assert sys.getswitchinterval() == original

    def fail(conn: sqlite3.Connection) -> None:
        seen.append(sys.getswitchinterval())
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        backend._submit(fail)
    assert seen[-1] == LEADER_SWITCH_INTERVAL
    assert sys.getswitchinterval() == original


def test_two_backends_leading_at_once_restore_the_switch_interval(tmp_path: Path) -> None:
    """Leaderships of two databases that overlap, the first one ending first: the interval stays
    short while either leads and is back to what it was after both, not stuck short."""
    original = sys.getswitchinterval()
    backends = [SQLiteSlashingBackend(tmp_path / f"{n}.sqlite", GVR) for n in ("one", "two")]
    holding = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]
    inside: list[float] = []

    def leader(n: int) -> threading.Thread:
        def hold(conn: sqlite3.Connection) -> None:
            inside.append(sys.getswitchinterval())
            holding[n].set()
            release[n].wait(10)

        thread = threading.Thread(target=lambda: backends[n]._submit(hold))
        thread.start()
        assert holding[n].wait(10)
        return thread

    try:
        first, second = leader(0), leader(1)
        assert inside == [LEADER_SWITCH_INTERVAL, LEADER_SWITCH_INTERVAL]
        release[0].set()
        first.join(10)
        assert sys.getswitchinterval() == LEADER_SWITCH_INTERVAL  # the second still leads
        release[1].set()
        second.join(10)
        assert sys.getswitchinterval() == original
    finally:
        for event in release:
            event.set()
        for backend in backends:
            backend.close()
