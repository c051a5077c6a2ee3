"""SIGKILL a signer under signing load; nothing a client received may be lost.

Threads sign blocks and attestations with rising slots / epochs over several keys (never
slashable, so every answer must be a 200) while the signer is killed with SIGKILL at a random
moment. It is then restarted on the same database and must hold a record of every signature a
client received; identical re-signs of those must still be signed (with the same signature) and
conflicting ones refused (412). Three rounds; at the end the signer is stopped and
``containment-chamber slashing check-db`` must find no problem.

SQLite (one process, the file's lock is released by the kernel on SIGKILL), and PostgreSQL when
the plugin is installed: two signers share the database and one of them is killed each round
while the other keeps signing.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import Client, SubprocessSigner
from tests.test_slashing_race import KEYS, Req, exported, recorded, shared_database, signer_config

LOAD_KEYS = 6
THREADS_PER_SIGNER = 6
ROUNDS = 3
CONFLICT = "0x" + "99" * 32


@dataclass(frozen=True)
class Received:
    req: Req
    signature: str


@dataclass
class Load:
    """Rising, never slashable requests: per key, blocks at new slots and (e - 1, e) votes."""

    next_slot: list[int] = field(default_factory=lambda: [20_000] * LOAD_KEYS)
    next_epoch: list[int] = field(default_factory=lambda: [2_000] * LOAD_KEYS)
    turn: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def next_request(self, server: int) -> Req:
        with self.lock:
            self.turn += 1
            key = self.turn % LOAD_KEYS
            if (self.turn // LOAD_KEYS) % 2:
                slot = self.next_slot[key]
                self.next_slot[key] += 1
                return Req(key, "block", slot, slot, "0x" + "22" * 32, server)
            epoch = self.next_epoch[key]
            self.next_epoch[key] += 1
            return Req(key, "attestation", epoch - 1, epoch, "0x" + "44" * 32, server)

    def worker(self, client: Client, server: int, stop: threading.Event) -> None:
        while not stop.is_set():
            req = self.next_request(server)
            try:
                resp = client.sign(KEYS[req.key].pubkey_hex, req.body())
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                return  # the signer is gone: whatever was in flight was not received
            with self.lock:
                self.statuses[resp.status] += 1
                if resp.status == 200:
                    self.received.append(Received(req, resp.body.decode()))

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@contextmanager
def running_load(load: Load, clients: list[Client]) -> Iterator[Callable[[], None]]:
    """Start the workers; yields ``stop``, which ends and joins them."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=load.worker, args=(client, server, stop), daemon=True)
        for server, client in enumerate(clients)
        for _ in range(THREADS_PER_SIGNER)
    ]
    for thread in threads:
        thread.start()

    def finish() -> None:
        stop.set()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive(), "a load thread hangs"

    try:
        yield finish
    finally:
        finish()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def sigkill(signer: SubprocessSigner) -> None:
    signer.proc.send_signal(signal.SIGKILL)
    assert signer.proc.wait(10) == -signal.SIGKILL
    signer._reader.join(5)


def verify(client: Client, received: list[Received], rng: random.Random) -> None:
    """Every received signature is recorded; re-signs succeed identically, conflicts get 412."""
    records = exported(client)
    missing = [r.req for r in received if not recorded(r.req, records)]
    assert not missing, f"{len(missing)} received signatures have no record: {missing[:5]}"
    # The most recent ones (around the kill) and a random sample of the rest.
    sample = received[-40:] + rng.sample(received[:-40], min(40, len(received[:-40])))
    for item in sample:
        req, pubkey = item.req, KEYS[item.req.key].pubkey_hex
        again = client.sign(pubkey, req.body())
        assert again.status == 200, (req, again.body)
        assert again.body.decode() == item.signature, req
        conflicting = Req(req.key, req.kind, req.source, req.target, CONFLICT, req.server)
        refused = client.sign(pubkey, conflicting.body())
        assert refused.status == 412, (conflicting, refused.status, refused.body)


def check_db(config: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chamber", "slashing", "check-db", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == {"problems": []}


def crash_rounds(config: Path, signers: int, seed: int) -> None:
    """``signers`` processes on one database; each round SIGKILLs one of them mid-load."""
    rng = random.Random(seed)
    load = Load()
    running = [SubprocessSigner(config) for _ in range(signers)]
    try:
        for signer in running:
            signer.wait_ready()
        for round_number in range(ROUNDS):
            clients = [Client(s.wait_listening()) for s in running]
            victim = round_number % signers
            target = load.count() + rng.randint(20, 200)
            with running_load(load, clients) as stop:
                wait_for(lambda t=target: load.count() >= t, "load")
                time.sleep(rng.uniform(0, 0.3))
                sigkill(running[victim])
                time.sleep(0.3)  # the other signer (if any) keeps signing meanwhile
                stop()
            with load.lock:
                # Rising, never slashable requests: only 200s (requests to the killed one fail).
                assert set(load.statuses) == {200}, load.statuses
            running[victim] = SubprocessSigner(config)
            running[victim].wait_ready()
            for signer in running:
                verify(Client(signer.wait_listening()), load.received, rng)
    finally:
        for signer in running:
            signer.stop()
    for signer in running:
        assert signer.proc.returncode == 0, signer.output()[-2000:]
    check_db(config)


def test_sqlite_signer_killed_under_load_loses_nothing(tmp_path: Path) -> None:
    section = {"backend": "sqlite", "path": str(tmp_path / "slashing.sqlite")}
    crash_rounds(signer_config(tmp_path, section, KEYS), signers=1, seed=1)


def test_postgres_signer_killed_under_load_loses_nothing(tmp_path: Path) -> None:
    with shared_database("postgres") as section:
        section["pool_size"] = 4
        crash_rounds(signer_config(tmp_path, section, KEYS), signers=2, seed=2)
