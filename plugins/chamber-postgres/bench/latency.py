"""Per-check latency of the PostgreSQL slashing backend, and its round trips.

    .venv/bin/python plugins/chamber-postgres/bench/latency.py [--url URL] [--checks N]

Measures, on a fresh schema that is dropped afterwards:

- one thread: recorded block / attestation checks (fast path), dry runs;
- 16 threads on 16 validators (one pool of 16), and 16 threads on one validator (they queue on
  its row lock);
- round trips: the same checks through a proxy adding a fixed one-way delay.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chamber_postgres.backend import PostgresSlashingBackend
from pg_delay_proxy import DelayProxy

GVR = bytes(32)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"mean {statistics.fmean(ordered) * 1000:6.3f} ms  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms"


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def single_thread(backend: PostgresSlashingBackend, n: int) -> None:
    key = os.urandom(48)
    backend.check_and_record_block(key, 0, bytes(32))
    blocks = [
        timed(lambda s=s: backend.check_and_record_block(key, s, bytes(32))) for s in range(1, n)
    ]
    atts = [
        timed(lambda e=e: backend.check_and_record_attestation(key, e, e + 1, bytes(32)))
        for e in range(n)
    ]
    dry = [
        timed(lambda e=e: backend.check_attestation(key, e + n, e + n + 1, bytes(32)))
        for e in range(n)
    ]
    print(f"  block (recorded)        {percentiles(blocks)}")
    print(f"  attestation (recorded)  {percentiles(atts)}")
    print(f"  attestation (dry run)   {percentiles(dry)}")


def threaded(backend: PostgresSlashingBackend, n: int, threads: int, same_key: bool) -> None:
    keys = [os.urandom(48)] * threads if same_key else [os.urandom(48) for _ in range(threads)]
    samples: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        barrier.wait()
        key = keys[i]
        for e in range(n):
            epoch = e * threads + i if same_key else e
            started = time.perf_counter()
            backend.check_and_record_attestation(key, epoch, epoch + 1, bytes(32))
            samples[i].append(time.perf_counter() - started)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    flat = [x for s in samples for x in s]
    label = "one validator" if same_key else f"{threads} validators"
    print(
        f"  {threads} threads, {label:14s} {percentiles(flat)}  {len(flat) / elapsed:6.0f} checks/s"
    )


def baseline(url: str, n: int) -> None:
    """What the server costs without us: one round trip, and one durable commit."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_baseline (x BIGINT)")
        ping = [timed(lambda: conn.execute("SELECT 1").fetchone()) for _ in range(n)]
        # A regular (WAL-logged) table: every autocommit INSERT waits for its fsync.
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (x BIGINT)")
        commit = [
            timed(lambda: conn.execute("INSERT INTO bench_commit VALUES (1)")) for _ in range(n)
        ]
        conn.execute("DROP TABLE bench_commit")
    print(f"  SELECT 1 (1 round trip)  {percentiles(ping)}")
    print(f"  INSERT + durable COMMIT  {percentiles(commit)}")


def round_trips(url: str, schema: str, delay: float) -> None:
    params = conninfo_to_dict(url)
    with DelayProxy(
        str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432), delay
    ) as proxy:
        params.update(host="127.0.0.1", port=proxy.port)
        backend = PostgresSlashingBackend.from_config(
            {"url": make_conninfo("", **params), "schema": schema, "pool_size": 1}, GVR
        )
        try:
            key = os.urandom(48)
            backend.check_and_record_attestation(key, 0, 1, bytes(32))
            rtt = 2 * delay
            cases: dict[str, Callable[[int], object]] = {
                "check_and_record_block": lambda i: backend.check_and_record_block(
                    key, i, bytes(32)
                ),
                "check_and_record_attestation": lambda i: backend.check_and_record_attestation(
                    key, i, i + 1, bytes(32)
                ),
                "check_attestation (dry run)": lambda i: backend.check_attestation(
                    key, i + 100, i + 101, bytes(32)
                ),
            }
            print(f"  proxy adding {delay * 1000:.0f} ms each way (RTT {rtt * 1000:.0f} ms):")
            for name, call in cases.items():
                best = min(timed(lambda i=i, c=call: c(i)) for i in range(2, 7))  # type: ignore[misc]
                print(f"    {name:30s} {best * 1000:7.1f} ms = {best / rtt:4.2f} round trips")
        finally:
            backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "CHAMBER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    args = parser.parse_args()
    schema = "cc_bench_" + uuid.uuid4().hex[:12]
    backend = PostgresSlashingBackend.from_config(
        {"url": args.url, "schema": schema, "pool_size": 16}, GVR
    )
    try:
        print(f"PostgreSQL {backend.where}, {args.checks} checks per series")
        print("baseline (the server alone, one thread):")
        baseline(args.url, args.checks // 4)
        print("one thread:")
        single_thread(backend, args.checks)
        print("concurrent (attestations, fast path):")
        threaded(backend, args.checks // 8, 16, same_key=False)
        threaded(backend, args.checks // 8, 16, same_key=True)
        print("round trips:")
        round_trips(args.url, schema, args.delay_ms / 1000)
    finally:
        backend.close()
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
