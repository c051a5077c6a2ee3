"""Per-check latency of the DynamoDB slashing backend against a local moto server.

    .venv/bin/python plugins/chamber-dynamodb/bench/latency.py [--n 300]

Measures, one request at a time: block, attestation on the fast path (GetItem +
TransactWriteItems), attestation off the fast path (GetItem + Query + TransactWriteItems),
identical re-sign (reads only), refusal, and dry runs. moto is a Python server on loopback: the
numbers show the request count and client overhead, not DynamoDB's service latency (single-digit
milliseconds per request in-region). moto copies the whole table on every transaction, so each
phase uses a fresh, small table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from chamber_dynamodb.slashing import DynamoDBSlashingBackend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from chamber.slashing.rules import Refused

GVR = bytes(32)


class Quiet(MotoRequestHandler):  # type: ignore[misc]
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def start_moto() -> str:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def backend(endpoint: str) -> DynamoDBSlashingBackend:
    return DynamoDBSlashingBackend.from_config(
        {
            "table": f"bench-{uuid.uuid4().hex[:8]}",
            "region": "us-east-1",
            "endpoint_url": endpoint,
            "create_table": True,
        },
        GVR,
    )


def measure(name: str, calls: list[Callable[[], None]]) -> None:
    times = []
    for call in calls:
        start = time.perf_counter()
        with contextlib.suppress(Refused):
            call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"{name:<56} median {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    n = parser.parse_args().n
    endpoint = start_moto()
    pk = b"\xa1" * 48
    r = bytes(32)

    b = backend(endpoint)
    measure("block (GetItem + Transact)", [
        lambda s=s: b.check_and_record_block(pk, s, r) for s in range(n)
    ])
    measure("block dry run (2 x GetItem)", [
        lambda s=s: b.check_block(pk, s + n, r) for s in range(n)
    ])
    measure("block identical re-sign (GetItem + cancelled Transact)", [
        lambda s=s: b.check_and_record_block(pk, s, r) for s in range(n)
    ])
    b.close()

    b = backend(endpoint)
    measure("attestation fast path (GetItem + Transact)", [
        lambda t=t: b.check_and_record_attestation(pk, t - 1, t, r) for t in range(1, n + 1)
    ])
    measure("attestation re-sign (GetItem + Query)", [
        lambda: b.check_and_record_attestation(pk, n - 1, n, r) for _ in range(n)
    ])
    measure("attestation double vote (GetItem + Query)", [
        lambda: b.check_and_record_attestation(pk, n - 1, n, b"\x01" * 32) for _ in range(n)
    ])
    measure("attestation dry run, fast path (2 x GetItem)", [
        lambda t=t: b.check_attestation(pk, n, n + t, r) for t in range(1, n + 1)
    ])
    b.close()

    b = backend(endpoint)
    b.check_and_record_attestation(pk, 0, 10 * n, r)  # every later target is below max_target
    measure("attestation off fast path (GetItem + Query + Transact)", [
        lambda t=t: b.check_and_record_attestation(pk, 0, t, r) for t in range(1, n + 1)
    ])
    b.close()


if __name__ == "__main__":
    main()
