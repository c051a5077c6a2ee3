"""The :class:`chamber.vault.interfaces.StateBackend` contract, as checks any store must pass.

Shared by the SQLite tests here and the DynamoDB plugin's tests. Every check takes an open
backend and uses keys of its own (a random prefix), so checks can share one store.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest
from hypothesis import strategies as st

from chamber.errors import Conflict
from chamber.vault.interfaces import StateBackend

#: Looks like key material: must never appear in an exception message.
SECRET = b"\x8fSECRET-share-material\x00\xff" * 4


def fresh_key(label: str = "k") -> str:
    return f"test/{label}/{uuid.uuid4().hex}"


def expect_conflict(action: Callable[[], object], expected: int, found: int) -> Conflict:
    with pytest.raises(Conflict) as info:
        action()
    message = info.value.message
    assert message.startswith(
        f"state changed concurrently: expected version {expected}, found {found}"
    ), message
    return info.value


# ------------------------------------------------------------------------------ semantics


def check_get_put_delete(backend: StateBackend) -> None:
    key = fresh_key()
    assert backend.get(key) is None
    assert backend.put(key, b"one", 0) == 1
    assert backend.get(key) == (b"one", 1)
    assert backend.put(key, b"two", 1) == 2
    assert backend.get(key) == (b"two", 2)
    backend.delete(key, 2)
    assert backend.get(key) is None
    # Absent again: a new record starts over at version 1.
    assert backend.put(key, b"three", 0) == 1
    assert backend.get(key) == (b"three", 1)


def check_values_are_bytes_exactly(backend: StateBackend) -> None:
    for value in (b"", b"\x00", bytes(range(256)), SECRET, b"\xff" * 4096):
        key = fresh_key("bytes")
        backend.put(key, value, 0)
        got = backend.get(key)
        assert got is not None
        assert type(got[0]) is bytes and got[0] == value and got[1] == 1


def check_keys_are_independent(backend: StateBackend) -> None:
    a, b = fresh_key("a"), fresh_key("b")
    backend.put(a, b"A", 0)
    assert backend.get(b) is None
    backend.put(b, b"B", 0)
    backend.put(a, b"A2", 1)
    backend.delete(b, 1)
    assert backend.get(a) == (b"A2", 2)
    assert backend.get(b) is None


def check_put_conflict_changes_nothing(backend: StateBackend) -> None:
    key = fresh_key()
    expect_conflict(lambda: backend.put(key, b"x", 1), expected=1, found=0)
    expect_conflict(lambda: backend.put(key, b"x", 7), expected=7, found=0)
    assert backend.get(key) is None

    backend.put(key, SECRET, 0)
    backend.put(key, SECRET + b"2", 1)
    for wrong in (0, 1, 3, 99):
        conflict = expect_conflict(
            partial(backend.put, key, b"intruder", wrong), expected=wrong, found=2
        )
        assert "intruder" not in str(conflict) and "SECRET" not in str(conflict)
        stored = backend.get(key)
        assert stored is not None
        assert stored[0] == SECRET + b"2"  # byte for byte
        assert stored[1] == 2


def check_delete_conflict_changes_nothing(backend: StateBackend) -> None:
    key = fresh_key()
    expect_conflict(lambda: backend.delete(key, 1), expected=1, found=0)
    backend.put(key, SECRET, 0)
    for wrong in (0, 2, 5):
        conflict = expect_conflict(partial(backend.delete, key, wrong), expected=wrong, found=1)
        assert "SECRET" not in str(conflict)
        assert backend.get(key) == (SECRET, 1)
    backend.delete(key, 1)
    assert backend.get(key) is None
    expect_conflict(lambda: backend.delete(key, 1), expected=1, found=0)


def check_delete_absent_with_zero(backend: StateBackend) -> None:
    """``delete(key, 0)``: the condition "absent" holds, so it succeeds and changes nothing."""
    key = fresh_key()
    backend.delete(key, 0)
    assert backend.get(key) is None
    backend.put(key, b"v", 0)
    expect_conflict(lambda: backend.delete(key, 0), expected=0, found=1)
    assert backend.get(key) == (b"v", 1)


def check_versions_strictly_increase(backend: StateBackend) -> None:
    key = fresh_key()
    versions = [backend.put(key, b"v0", 0)]
    for i in range(1, 25):
        versions.append(backend.put(key, f"v{i}".encode(), versions[-1]))
    assert versions == list(range(1, 26))
    assert backend.get(key) == (b"v24", 25)


def check_bad_expected_version(backend: StateBackend) -> None:
    key = fresh_key()
    for bad in (-1, True, 1.0, "1", None):
        with pytest.raises((ValueError, TypeError)):
            backend.put(key, b"v", bad)  # type: ignore[arg-type]
    assert backend.get(key) is None


CHECKS: Sequence[Callable[[StateBackend], None]] = (
    check_get_put_delete,
    check_values_are_bytes_exactly,
    check_keys_are_independent,
    check_put_conflict_changes_nothing,
    check_delete_conflict_changes_nothing,
    check_delete_absent_with_zero,
    check_versions_strictly_increase,
    check_bad_expected_version,
)
CHECK_IDS = [check.__name__.removeprefix("check_") for check in CHECKS]


# ------------------------------------------------------------------------------ races


def race(backends: Sequence[StateBackend], rounds: int, timeout: float = 60.0) -> None:
    """One thread per backend (instances may repeat); each round, on a fresh key, every thread
    creates it (``expected_version`` 0) and then every thread updates it from version 1.
    Exactly one wins each step; the others get Conflict; the stored value is the winner's."""
    n = len(backends)
    barrier = threading.Barrier(n, timeout=timeout)
    keys = [fresh_key("race") for _ in range(rounds)]
    # outcomes[step][round][thread] = True (won) / False (Conflict) / the unexpected exception
    outcomes: list[list[list[Any]]] = [[[None] * n for _ in range(rounds)] for _ in range(2)]

    def contender(me: int) -> None:
        backend = backends[me]
        for r, key in enumerate(keys):
            for step, expected in enumerate((0, 1)):
                barrier.wait()
                try:
                    backend.put(key, f"{me}:{step}".encode(), expected)
                    outcomes[step][r][me] = True
                except Conflict:
                    outcomes[step][r][me] = False
                except Exception as exc:  # reported below, with the round
                    outcomes[step][r][me] = exc
                barrier.wait()  # the step is decided before anyone moves on

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a racing thread hung"
    for r, key in enumerate(keys):
        winners = []
        for step in range(2):
            results = outcomes[step][r]
            assert all(isinstance(x, bool) for x in results), (r, step, results)
            assert results.count(True) == 1, f"round {r} step {step}: {results}"
            winners.append(results.index(True))
        assert backends[0].get(key) == (f"{winners[1]}:1".encode(), 2)


# ------------------------------------------------------------------------------ model


#: (operation, key index, value, expected version: None = the right one, else this number)
Operation = tuple[str, int, bytes, int | None]


def operations() -> st.SearchStrategy[list[Operation]]:
    op = st.tuples(
        st.sampled_from(["put", "put", "delete", "get"]),
        st.integers(0, 2),
        st.binary(max_size=16),
        st.one_of(st.none(), st.none(), st.integers(0, 4)),
    )
    return st.lists(op, max_size=25)


def run_model(backend: StateBackend, ops: Sequence[Operation]) -> None:
    """Apply ``ops`` to the backend and to a dict; every answer and the end state must agree."""
    keys = [fresh_key(f"model{i}") for i in range(3)]
    model: dict[str, tuple[bytes, int]] = {}
    for name, index, value, chosen in ops:
        key = keys[index]
        current = model[key][1] if key in model else 0
        expected = current if chosen is None else chosen
        if name == "get":
            assert backend.get(key) == model.get(key)
        elif expected != current:
            action: Callable[[], object] = (
                partial(backend.put, key, value, expected)
                if name == "put"
                else partial(backend.delete, key, expected)
            )
            expect_conflict(action, expected=expected, found=current)
        elif name == "put":
            assert backend.put(key, value, expected) == current + 1
            model[key] = (value, current + 1)
        else:
            backend.delete(key, expected)
            model.pop(key, None)
    for key in keys:
        assert backend.get(key) == model.get(key)
