"""Database latency is signing latency: count the round trips of each operation.

The backend talks to PostgreSQL through a proxy that delays every packet by ``DELAY`` in each
direction, so ``n`` round trips cost about ``2·n·DELAY``. A recorded check must stay at two
round trips (lock + facts, then write + COMMIT), a dry run at one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chamber.slashing.rules import Refused
from chamber_postgres.backend import PostgresSlashingBackend
from pg_delay_proxy import DelayProxy
from pg_support import GVR, BackendMaker

DELAY = 0.025  # one way: a round trip costs 50 ms
PK = b"\xf1" * 48


@pytest.fixture
def slow(pg_url: str, make_backend: BackendMaker) -> Iterator[PostgresSlashingBackend]:
    params = conninfo_to_dict(pg_url)
    host = str(params.get("host") or "127.0.0.1")
    with DelayProxy(host, int(params.get("port") or 5432), DELAY) as proxy:
        params.update(host="127.0.0.1", port=proxy.port)
        yield make_backend(url=make_conninfo("", **params), pool_size=1)


def round_trips(call: Callable[[], object]) -> float:
    """Best of three, in round trips."""
    best = min(_timed(call) for _ in range(3))
    return best / (2 * DELAY)


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    with contextlib.suppress(Refused):
        call()
    return time.perf_counter() - started


def test_round_trips_per_operation(slow: PostgresSlashingBackend) -> None:
    slow.check_and_record_block(PK, 1, bytes(32))
    slow.check_and_record_attestation(PK, 1, 2, bytes(32))
    counter = iter(range(10, 10_000))

    def new_block() -> None:
        slow.check_and_record_block(PK, next(counter), bytes(32))

    def new_attestation() -> None:
        epoch = next(counter)
        slow.check_and_record_attestation(PK, epoch, epoch + 1, bytes(32))

    def late_attestation() -> None:  # off the fast path (target below the newest), not slashable
        epoch = next(counter)
        slow.check_and_record_attestation(PK, 2, 3 + epoch % 5, bytes([epoch % 256]) * 32)

    document = json.dumps(
        {
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": "0x" + GVR.hex(),
            },
            "data": [
                {"pubkey": "0x" + bytes([k]).hex() * 48, "signed_blocks": [{"slot": str(k)}]}
                for k in range(1, 40)
            ],
        }
    ).encode()
    expected = {
        "check_and_record_block (new)": (new_block, 2),
        "check_and_record_block (identical re-sign)": (
            lambda: slow.check_and_record_block(PK, 1, bytes(32)),
            2,
        ),
        "check_and_record_block (refused)": (
            lambda: slow.check_and_record_block(PK, 1, b"\x01" * 32),
            2,
        ),
        "check_and_record_attestation (new, fast path)": (new_attestation, 2),
        "check_and_record_attestation (off the fast path)": (late_attestation, 2),
        "check_and_record_attestation (refused)": (
            lambda: slow.check_and_record_attestation(PK, 0, 10_000_000, bytes(32)),
            2,
        ),
        "check_block (dry run)": (lambda: slow.check_block(PK, 5, bytes(32)), 1),
        "check_attestation (dry run)": (lambda: slow.check_attestation(PK, 1, 2, bytes(32)), 1),
        "set_watermark": (lambda: slow.set_watermark(PK, block_slot=0), 1),
        "export_interchange": (slow.export_interchange, 1),
        "import_interchange (39 validators)": (lambda: slow.import_interchange(document), 2),
        "healthy": (slow.healthy, 1),
    }
    measured = {name: round_trips(call) for name, (call, _) in expected.items()}
    report = ", ".join(f"{name}: {value:.2f}" for name, value in measured.items())
    for name, (_, trips) in expected.items():
        # Within half a round trip of the expected count (local work is far below 25 ms).
        assert trips - 0.5 < measured[name] < trips + 0.5, f"{name}: {report}"


def test_prune_round_trips(slow: PostgresSlashingBackend) -> None:
    for slot in range(0, 320, 32):
        slow.check_and_record_block(PK, slot, bytes(32))
    # One statement finds the validators with something to prune, then two per validator.
    assert 2.5 < _timed(lambda: slow.prune(keep_epochs=1)) / (2 * DELAY) < 3.5
    assert 0.5 < _timed(lambda: slow.prune(keep_epochs=1)) / (2 * DELAY) < 1.5  # nothing left
