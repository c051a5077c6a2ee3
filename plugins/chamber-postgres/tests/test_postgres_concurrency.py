"""Racing signers: threads sharing one pool, and two backends (two pools, as two signer
processes would have) sharing one database. Per conflict set exactly one message is signed;
identical re-signing is always allowed."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from chamber.slashing.interchange import find_surround
from chamber.slashing.rules import AttestationRecord, Refused
from chamber_postgres.backend import PostgresSlashingBackend
from pg_support import BackendMaker

THREADS = 16
Attempt = Callable[[PostgresSlashingBackend, int], None]


def root(n: int) -> bytes:
    return n.to_bytes(32, "big")


def race(backends: list[PostgresSlashingBackend], attempt: Attempt) -> list[str]:
    """Run ``attempt(backend, i)`` for i in 0..15 at once, spreading threads over backends."""
    outcomes: list[str] = [""] * THREADS
    barrier = threading.Barrier(THREADS)

    def run(i: int) -> None:
        barrier.wait()
        try:
            attempt(backends[i % len(backends)], i)
            outcomes[i] = "signed"
        except Refused:
            outcomes[i] = "refused"
        except BaseException as exc:  # a test failure, not an outcome
            outcomes[i] = f"error: {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [o for o in outcomes if o.startswith("error")], outcomes
    return outcomes


@pytest.fixture(params=["one pool, 16 threads", "two backends (two pools)"])
def backends(request: pytest.FixtureRequest, make_backend: BackendMaker) -> list[Any]:
    if request.param.startswith("one"):
        return [make_backend(pool_size=THREADS)]
    return [make_backend(pool_size=THREADS // 2), make_backend(pool_size=THREADS // 2)]


PK = b"\xb1" * 48


def signed_records(backend: PostgresSlashingBackend, pubkey: bytes) -> dict[str, Any]:
    (data,) = [
        d for d in backend.export_interchange()["data"] if d["pubkey"] == "0x" + pubkey.hex()
    ]
    return data  # type: ignore[no-any-return]


def test_conflicting_blocks_sign_exactly_one(backends: list[PostgresSlashingBackend]) -> None:
    # A validator never seen before: the row itself is created under the race.
    outcomes = race(backends, lambda b, i: b.check_and_record_block(PK, 100, root(i)))
    assert outcomes.count("signed") == 1, outcomes
    blocks = signed_records(backends[0], PK)["signed_blocks"]
    assert blocks == [{"slot": "100", "signing_root": "0x" + root(outcomes.index("signed")).hex()}]


def test_identical_block_is_re_signed_by_everyone(backends: list[PostgresSlashingBackend]) -> None:
    outcomes = race(backends, lambda b, _: b.check_and_record_block(PK, 7, root(7)))
    assert outcomes == ["signed"] * THREADS
    assert len(signed_records(backends[0], PK)["signed_blocks"]) == 1


def test_nested_attestations_sign_exactly_one(backends: list[PostgresSlashingBackend]) -> None:
    # (i, 100 - i): every pair surrounds, whichever comes first.
    backends[0].check_and_record_attestation(PK, 0, 1, root(1))  # existing validator this time
    outcomes = race(
        backends, lambda b, i: b.check_and_record_attestation(PK, 10 + i, 100 - i, root(i))
    )
    assert outcomes.count("signed") == 1, outcomes
    assert len(signed_records(backends[0], PK)["signed_attestations"]) == 2


def test_double_votes_sign_exactly_one(backends: list[PostgresSlashingBackend]) -> None:
    outcomes = race(backends, lambda b, i: b.check_and_record_attestation(PK, i, 50, root(i)))
    assert outcomes.count("signed") == 1, outcomes


def test_identical_attestation_is_re_signed_by_everyone(
    backends: list[PostgresSlashingBackend],
) -> None:
    outcomes = race(backends, lambda b, _: b.check_and_record_attestation(PK, 3, 4, root(4)))
    assert outcomes == ["signed"] * THREADS


def test_surrounding_and_surrounded_pairs_race(backends: list[PostgresSlashingBackend]) -> None:
    # Eight conflict sets on eight validators with history: two threads at once request
    # (25, 35) and (24, 36), which surround one another but not the stored (20, 30).
    keys = [bytes([0xC0 + k]) * 48 for k in range(8)]
    for key in keys:
        backends[0].check_and_record_attestation(key, 20, 30, root(0))

    def attempt(b: PostgresSlashingBackend, i: int) -> None:
        key = keys[i // 2]
        if i % 2:
            b.check_and_record_attestation(key, 24, 36, root(1))  # the surrounding one
        else:
            b.check_and_record_attestation(key, 25, 35, root(2))  # the surrounded one

    outcomes = race(backends, attempt)
    for k in range(8):
        pair = outcomes[2 * k : 2 * k + 2]
        assert sorted(pair) == ["refused", "signed"], (k, pair)
        assert len(signed_records(backends[0], keys[k])["signed_attestations"]) == 2


def test_random_storm_keeps_the_history_unslashable(
    backends: list[PostgresSlashingBackend],
) -> None:
    keys = [bytes([0xD0 + k]) * 48 for k in range(3)]
    signed_atts: list[tuple[bytes, int, int, bytes]] = []
    signed_blocks: list[tuple[bytes, int, bytes]] = []
    lock = threading.Lock()
    rng = random.Random(3076)
    plans = [
        [
            (rng.choice(keys), s, s + rng.randint(0, 6), root(rng.randint(0, 3)))
            for s in (rng.randint(0, 40) for _ in range(40))
        ]
        for _ in range(THREADS)
    ]

    def attempt(b: PostgresSlashingBackend, i: int) -> None:
        for key, source, target, r in plans[i]:
            try:
                if target % 3:
                    b.check_and_record_attestation(key, source, target, r)
                    with lock:
                        signed_atts.append((key, source, target, r))
                else:
                    b.check_and_record_block(key, source, r)
                    with lock:
                        signed_blocks.append((key, source, r))
            except Refused:
                continue

    race(backends, attempt)
    export = backends[-1].export_interchange()
    stored_atts = {
        (bytes.fromhex(d["pubkey"][2:]), int(a["target_epoch"])): a
        for d in export["data"]
        for a in d["signed_attestations"]
    }
    stored_blocks = {
        (bytes.fromhex(d["pubkey"][2:]), int(b["slot"])): b["signing_root"]
        for d in export["data"]
        for b in d["signed_blocks"]
    }
    # Everything reported signed is stored exactly as signed: two threads never signed two
    # different messages for one slot or target.
    for key, source, target, r in signed_atts:
        assert stored_atts[(key, target)] == {
            "source_epoch": str(source),
            "target_epoch": str(target),
            "signing_root": "0x" + r.hex(),
        }
    for key, slot, r in signed_blocks:
        assert stored_blocks[(key, slot)] == "0x" + r.hex()
    assert len(signed_atts) > 20 and len(signed_blocks) > 10
    for d in export["data"]:
        records = [
            AttestationRecord(int(a["source_epoch"]), int(a["target_epoch"]), None)
            for a in d["signed_attestations"]
        ]
        assert find_surround(records) is None
    assert backends[0].integrity_check() == []
