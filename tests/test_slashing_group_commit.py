"""SQLite group commit: checks decided within one batch are exactly as strict as one by one.

The writer decides each check from its cache (speculatively updated as it goes) inside one
transaction per batch. These tests hold the writer on a blocking job so that several checks land
in the same batch, then release it: conflicts between checks of one batch must be caught
exactly as if they had come one by one. A real SQLite file in a temporary directory.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chamber.errors import SlashingRefused
from chamber.slashing.sqlite import SQLiteSlashingBackend

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
    backend: SQLiteSlashingBackend, starts: list[Callable[[], Callable[[], None]]]
) -> list[BaseException | None]:
    """Queue every check while the writer is held, so they form one batch; their outcomes."""
    holding = threading.Event()
    release = threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        holding.set()
        release.wait(10)

    blocker = threading.Thread(target=lambda: backend._submit(hold))
    blocker.start()
    assert holding.wait(10)
    waiters = [start() for start in starts]  # queued behind the held job: the next batch
    with backend._cond:
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
