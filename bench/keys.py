"""Key management benchmark (issue #7): real signers, real SQLite key store, real local KMS.

    python bench/keys.py [--keys 10000] [--json out.json]

One command. In a temporary directory it runs `python -m chamber server` processes with a
kms_only vault (SQLite state store, SQLite encrypted key store, three `local:` KMS keys, 2 of 3)
and measures, through the HTTP API only:

1. filling the store with ``--keys`` random raw keys (``POST /api/v1/chamber/keys/import``,
   ``raw_keys``, ``--batch`` per request), then the time from process start and from unseal to
   all keys loaded, over ``--restarts`` restarts (target: ≤ 10 s after unseal for 10,000 keys);
2. ``GET /api/v1/eth2/publicKeys`` latency with those keys, sequential and with
   ``--public-keys-clients`` concurrent clients (target: p99 ≤ 50 ms);
3. a second replica sharing the state and the key store: time from an import answered by replica
   A to the key signing on replica B (target ≤ 2 s with the 1 s refresh), and the idle CPU of a
   replica with the background refresh on (1 s) and off (0);
4. on a second, small chamber: the generation rate (``POST /api/v1/chamber/keys/generate``) for
   per_key / per_batch mnemonics with and without the age backup, and the import rate of
   EIP-2335 keystores (scrypt n = 2^18 as staking-deposit-cli writes them, and pbkdf2
   c = 2^18). Keystores are made once and cached under ``--keystore-cache``.

Exit status: 0 everything ran and every answer was the expected one; 1 an unexpected answer;
2 the benchmark could not run. Targets are reported, not enforced. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _client
import sign  # machine facts, percentiles
from _server import BenchError, ServerProcess

CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
KEYSTORE_PASSWORD = "chamber-bench-keystore-password"  # test keystores only
KEYSTORE_BATCH = 100
GENERATE_BATCH = 100
PHASES = ("load", "public_keys", "replica", "idle", "generate", "keystores")
TARGET_LOAD_S = 10.0
TARGET_PUBLIC_KEYS_P99_MS = 50.0
TARGET_PROPAGATION_S = 2.0
SCOPES = [
    "sign",
    "public_keys",
    "chamber_status",
    "chamber_keys_list",
    "chamber_keys_generate",
    "chamber_keys_write",
    "chamber_keys_delete",
]


class UnexpectedAnswer(Exception):
    """The server answered something a correct signer would not (exit status 1)."""


def random_secret() -> bytes:
    value = int.from_bytes(os.urandom(48), "big") % (CURVE_ORDER - 1) + 1
    return value.to_bytes(32, "big")


# --------------------------------------------------------------------------- HTTP


class Http:
    """One keep-alive connection to a signer, with the bench's token."""

    def __init__(self, port: int, token: str, timeout: float = 900) -> None:
        self.port, self.token, self.timeout = port, token, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, raw = self.request(method, path, body)
        if status != expect:
            raise UnexpectedAnswer(f"{method} {path}: {status} {raw[:300]!r}")
        return json.loads(raw)

    def close(self) -> None:
        self.conn.close()


def randao_body(epoch: int) -> dict[str, Any]:
    return {
        "type": "RANDAO_REVEAL",
        "fork_info": {
            "fork": {
                "previous_version": "0x" + _client.CAPELLA_VERSION.hex(),
                "current_version": "0x" + _client.DENEB_VERSION.hex(),
                "epoch": str(_client.DENEB_FORK_EPOCH),
            },
            "genesis_validators_root": "0x" + _client.MAINNET_GVR.hex(),
        },
        "randao_reveal": {"epoch": str(epoch)},
    }


# --------------------------------------------------------------------------- signer processes


def log_time(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class Replica(ServerProcess):
    """One ``python -m chamber server`` process of a chamber; its JSON log is read
    incrementally (a restarted replica appends to the same file)."""

    def __init__(self, name: str, config: Path, workdir: Path, token: str) -> None:
        super().__init__(name, config, workdir, workdir / f"{name}.log")
        self.token = token

    def http(self) -> Http:
        assert self.port is not None
        return Http(self.port, self.token)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (the worker pool)."""
        return tree_cpu(self.proc.pid)


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    parents: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                parents[int(entry.name)] = found
    total, frontier = 0.0, {root}
    while frontier:
        total += sum(parents[pid][1] for pid in frontier if pid in parents)
        frontier = {pid for pid, (ppid, _) in parents.items() if ppid in frontier}
    return total


class CpuWindow:
    """Cores used during a stretch: by the signer(s), by this process, by everything else."""

    def __init__(self, *replicas: Replica) -> None:
        self.replicas = replicas
        self.busy0, self.total0 = sign.machine_busy()
        self.server0 = sum(r.cpu_seconds() for r in replicas)
        self.self0 = _self_cpu()
        self.t0 = time.perf_counter()

    def close(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.t0
        busy1, total1 = sign.machine_busy()
        server = sum(r.cpu_seconds() for r in self.replicas) - self.server0
        client = _self_cpu() - self.self0
        tick = os.sysconf("SC_CLK_TCK")
        machine = (busy1 - self.busy0) / tick
        return {
            "seconds": elapsed,
            "server_cpu_seconds": server,
            "server_cores": server / elapsed,
            "client_cores": client / elapsed,
            "other_cores": max(0.0, machine - server - client) / elapsed,
            "machine_busy_pct": 100.0 * (busy1 - self.busy0) / max(total1 - self.total0, 1),
        }


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def noise(cpu: dict[str, float]) -> str:
    return f"(other processes {cpu['other_cores']:.2f} cores)"


# --------------------------------------------------------------------------- chambers


class Chamber:
    """One chamber's files (state, key store, KMS directory) shared by its replicas."""

    def __init__(self, root: Path, token: str, import_batch: int) -> None:
        self.root, self.token, self.import_batch = root, token, import_batch
        root.mkdir(parents=True, exist_ok=True)
        self.keys_path = root / "keys.sqlite"
        self.starts = 0

    def config(self, name: str, **keys_settings: Any) -> Path:
        chamber_keys: dict[str, Any] = {
            "import": {"max_items_per_request": self.import_batch},
            **keys_settings,
        }
        config = {
            "server": {"listen_address": "127.0.0.1", "listen_port": 0},
            "metrics": {"listen_address": "127.0.0.1", "listen_port": 0},
            "logging": {"level": "INFO", "format": "json"},
            "network": "mainnet",
            "anti_slashing": {"backend": "noop"},
            "signer_state": {"backend": "sqlite", "path": str(self.root / "state.sqlite")},
            "key_sources": {"sqlite": {"path": str(self.keys_path)}},
            "kms": {"local": {"directory": str(self.root / "kms")}},
            "chamber": {"keys": chamber_keys},
            "auth_policies": {"bench": {"token": self.token, "allowed_scopes": SCOPES}},
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, name: str, config: Path) -> Replica:
        self.starts += 1
        replica = Replica(name, config, self.root, self.token)
        replica.wait_port()
        return replica

    def init(self, replica: Replica) -> None:
        entry = replica.wait_for(
            lambda: replica.find("Setup token generated (save securely, one-time use)"),
            60,
            "setup token",
        )
        client = replica.http()
        answer = client.json(
            "POST",
            "/api/v1/chamber/init",
            {
                "setup_token": entry["setup_token"],
                "kms_key_ids": ["local:bench-a", "local:bench-b", "local:bench-c"],
                "kms_threshold": 2,
            },
        )
        client.close()
        if answer.get("status") != "unsealed":
            raise UnexpectedAnswer(f"init: {answer}")


def stop(replica: Replica) -> None:
    code = replica.stop()
    if code != 0:
        raise UnexpectedAnswer(f"{replica.name} exited with {code!r} on SIGTERM:\n{replica.tail()}")


def wait_loaded(replica: Replica, expected: int, timeout: float = 120) -> dict[str, Any]:
    """Poll ``/api/v1/chamber/status`` until ``keys.loaded`` reaches ``expected``; timings."""
    client = replica.http()

    def loaded() -> float | None:
        status, raw = client.request("GET", "/api/v1/chamber/status")
        if status == 200:
            keys = json.loads(raw).get("keys")
            if keys is not None and keys.get("loaded", 0) >= expected:
                return time.perf_counter()
        return None

    try:
        ready = replica.wait_for(loaded, timeout, f"{expected} keys loaded")
    finally:
        client.close()
    entry = replica.wait_for(
        lambda: replica.find("keys loaded", source="sqlite"), 10, "'keys loaded' log line"
    )
    listening = replica.find("signer listening")
    unsealed = replica.find("seal state changed", to_state="unsealed")
    assert listening is not None
    return {
        "start_to_listening_s": log_time(listening["ts"]) - replica.started_wall,
        "start_to_loaded_client_s": ready - replica.started,
        "start_to_loaded_log_s": log_time(entry["ts"]) - replica.started_wall,
        "unseal_to_loaded_log_s": float(entry["seconds"]),
        "start_to_unsealed_log_s": (
            None if unsealed is None else log_time(unsealed["ts"]) - replica.started_wall
        ),
        "loaded": int(entry["loaded"]),
        "failed": int(entry["failed"]),
    }


# --------------------------------------------------------------------------- phases


def fill(replica: Replica, count: int, batch: int) -> tuple[dict[str, Any], list[str]]:
    client = replica.http()
    pubkeys: list[str] = []
    durations = []
    window = CpuWindow(replica)
    started = time.perf_counter()
    for first in range(0, count, batch):
        n = min(batch, count - first)
        body = {"raw_keys": [{"secret": "0x" + random_secret().hex()} for _ in range(n)]}
        t0 = time.perf_counter()
        answer = client.json("POST", "/api/v1/chamber/keys/import", body)
        durations.append(time.perf_counter() - t0)
        results = answer["data"]
        if len(results) != n or any(r["status"] != "imported" for r in results):
            bad = [r for r in results if r["status"] != "imported"][:3]
            raise UnexpectedAnswer(f"raw import: {len(results)} results, e.g. {bad}")
        pubkeys.extend(r["pubkey"] for r in results)
        if (first + n) % (batch * 5) == 0 or first + n == count:
            print(f"    imported {first + n:,}/{count:,}", flush=True)
    elapsed = time.perf_counter() - started
    cpu = window.close()
    client.close()
    return {
        "keys": count,
        "batch": batch,
        "seconds": elapsed,
        "keys_per_second": count / elapsed,
        "request_ms_median": statistics.median(durations) * 1000,
        "cpu": cpu,
    }, pubkeys


def public_keys_latency(replica: Replica, expected: int, requests: int, clients: int) -> dict:
    path = "/api/v1/eth2/publicKeys"
    probe = replica.http()
    status, raw = probe.request("GET", path)
    if status != 200 or len(json.loads(raw)) != expected:
        raise UnexpectedAnswer(f"publicKeys: {status}, {len(raw)} bytes (expected {expected} keys)")
    for _ in range(20):
        probe.request("GET", path)  # warm-up
    body_bytes = len(raw)

    def run(client: Http, n: int, out: list[float], failures: list[int]) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            status, raw = client.request("GET", path)
            out.append(time.perf_counter() - t0)
            if status != 200 or len(raw) != body_bytes:
                failures.append(status)

    def summary(latencies: list[float], elapsed: float, cpu: dict[str, float]) -> dict[str, Any]:
        latencies.sort()
        return {
            "requests": len(latencies),
            "per_second": len(latencies) / elapsed,
            "p50_ms": sign.percentile(latencies, 0.50) * 1000,
            "p90_ms": sign.percentile(latencies, 0.90) * 1000,
            "p99_ms": sign.percentile(latencies, 0.99) * 1000,
            "max_ms": latencies[-1] * 1000,
            "cpu": cpu,
        }

    failures: list[int] = []
    sequential: list[float] = []
    window = CpuWindow(replica)
    t0 = time.perf_counter()
    run(probe, requests, sequential, failures)
    elapsed = time.perf_counter() - t0
    result = {"bytes": body_bytes, "sequential": summary(sequential, elapsed, window.close())}
    probe.close()
    conns = [replica.http() for _ in range(clients)]
    outs: list[list[float]] = [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=run, args=(conns[i], requests // clients, outs[i], failures))
        for i in range(clients)
    ]
    window = CpuWindow(replica)
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    result["concurrent"] = {
        "clients": clients,
        **summary([x for out in outs for x in out], elapsed, window.close()),
    }
    for conn in conns:
        conn.close()
    if failures:
        raise UnexpectedAnswer(f"publicKeys: {len(failures)} bad answers, e.g. {failures[:5]}")
    return result


def propagation(a: Replica, b: Replica, samples: int, interval: float) -> dict[str, Any]:
    """Import one key on A; poll B with a signing request until it signs."""
    ca, cb = a.http(), b.http()
    after_answer, after_send = [], []
    for i in range(samples):
        time.sleep(random.uniform(0, max(interval, 0.2)))  # any phase of B's refresh
        t0 = time.perf_counter()
        answer = ca.json(
            "POST",
            "/api/v1/chamber/keys/import",
            {"raw_keys": [{"secret": "0x" + random_secret().hex()}]},
        )
        t1 = time.perf_counter()
        result = answer["data"][0]
        if result["status"] != "imported":
            raise UnexpectedAnswer(f"import on A: {result}")
        pubkey = result["pubkey"]
        path = f"/api/v1/eth2/sign/{pubkey}"
        status, raw = ca.request("POST", path, randao_body(300_000 + i))
        if status != 200:
            raise UnexpectedAnswer(f"A did not sign its own import at once: {status} {raw[:200]!r}")
        deadline = time.monotonic() + 30
        while True:
            status, raw = cb.request("POST", path, randao_body(300_000 + i))
            if status == 200:
                t2 = time.perf_counter()
                break
            if status != 404 or time.monotonic() > deadline:
                raise UnexpectedAnswer(f"B: {status} {raw[:200]!r}")
            time.sleep(0.005)
        after_answer.append(t2 - t1)
        after_send.append(t2 - t0)
    ca.close()
    cb.close()
    return {
        "samples": samples,
        "after_answer_median_s": statistics.median(after_answer),
        "after_answer_max_s": max(after_answer),
        "after_request_median_s": statistics.median(after_send),
        "after_request_max_s": max(after_send),
        "all_s": [round(x, 3) for x in after_answer],
    }


def idle_cpu(replica: Replica, seconds: float) -> dict[str, float]:
    window = CpuWindow(replica)
    time.sleep(seconds)
    return window.close()


def store_read_cost(path: Path) -> dict[str, float]:
    """What one full refresh reads, in this process: every active record of the store."""
    from chamber.keys.sqlite_store import SQLiteKeyStore

    store = SQLiteKeyStore(path)
    try:
        times, tokens = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            records = store.list_keys("active")
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.change_token()
            tokens.append(time.perf_counter() - t0)
    finally:
        store.close()
    return {
        "records": len(records),
        "list_active_ms_median": statistics.median(times) * 1000,
        "change_token_us_median": statistics.median(tokens) * 1e6,
    }


def generate_rate(replica: Replica, count: int, backup: bool) -> dict[str, Any]:
    client = replica.http()
    warm = client.json("POST", "/api/v1/chamber/keys/generate", {"count": 2})  # spawns the pool
    if [r["status"] for r in warm["data"]] != ["generated"] * 2:
        raise UnexpectedAnswer(f"generate warm-up: {warm['data']}")
    window = CpuWindow(replica)
    started = time.perf_counter()
    done = 0
    mnemonic = None
    while done < count:
        n = min(GENERATE_BATCH, count - done)
        answer = client.json("POST", "/api/v1/chamber/keys/generate", {"count": n})
        results = answer["data"]
        mnemonic = answer["mnemonic"]
        if len(results) != n or any(
            r["status"] != "generated" or r["backup"] is not backup for r in results
        ):
            raise UnexpectedAnswer(f"generate: e.g. {results[:2]}")
        done += n
    elapsed = time.perf_counter() - started
    cpu = window.close()
    client.close()
    return {
        "keys": count,
        "mnemonic": mnemonic,
        "backup": backup,
        "seconds": elapsed,
        "keys_per_second": count / elapsed,
        "cpu": cpu,
    }


def _make_keystore(job: tuple[str, Path, int]) -> None:
    from chamber.crypto.bls import select_backend
    from chamber.crypto.keystore import encrypt_keystore

    kdf, path, index = job
    bls = select_backend("auto")
    secret = random_secret()
    pubkey = bls.public_key(bls.secret_key(secret))
    keystore = encrypt_keystore(
        secret,
        KEYSTORE_PASSWORD,
        kdf="scrypt" if kdf == "scrypt" else "pbkdf2",
        path=f"m/12381/3600/{index}/0/0",
        pubkey=bytes(pubkey),
        description="containment chamber bench/keys.py",
    )
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(keystore))
    partial.replace(path)


def keystores(cache: Path, kdf: str, count: int) -> list[str]:
    """``count`` keystores at the EIP-2335 default cost, made once in worker processes."""
    directory = cache / ("scrypt-n262144-r8-p1" if kdf == "scrypt" else "pbkdf2-c262144")
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"keystore-{i:05d}.json" for i in range(count)]
    missing = [(kdf, p, i) for i, p in enumerate(paths) if not p.exists()]
    if missing:
        print(
            f"    making {len(missing)} {kdf} keystores in {directory} (cached for next runs)",
            flush=True,
        )
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(_make_keystore, missing))
        print(f"    made them in {time.perf_counter() - t0:.1f} s", flush=True)
    return [p.read_text() for p in paths]


def keystore_import_rate(replica: Replica, texts: list[str], kdf: str) -> dict[str, Any]:
    client = replica.http()
    window = CpuWindow(replica)
    started = time.perf_counter()
    imported = 0
    for first in range(0, len(texts), KEYSTORE_BATCH):
        batch = texts[first : first + KEYSTORE_BATCH]
        answer = client.json(
            "POST",
            "/api/v1/chamber/keys/import",
            {"keystores": batch, "passwords": [KEYSTORE_PASSWORD] * len(batch)},
        )
        results = answer["data"]
        if len(results) != len(batch) or any(r["status"] != "imported" for r in results):
            bad = [r for r in results if r["status"] != "imported"][:3]
            raise UnexpectedAnswer(f"{kdf} keystore import: e.g. {bad}")
        imported += len(batch)
    elapsed = time.perf_counter() - started
    cpu = window.close()
    client.close()
    return {
        "kdf": kdf,
        "keystores": imported,
        "seconds": elapsed,
        "keys_per_second": imported / elapsed,
        "cpu": cpu,
    }


def warm_import_pool(replica: Replica) -> None:
    """Two cheap pbkdf2 keystores so that the worker pool is running before anything is timed."""
    from chamber.crypto.keystore import encrypt_keystore

    texts = [
        json.dumps(
            encrypt_keystore(
                random_secret(), KEYSTORE_PASSWORD, kdf="pbkdf2", kdf_params={"c": 1024}
            )
        )
        for _ in range(2)
    ]
    client = replica.http()
    answer = client.json(
        "POST",
        "/api/v1/chamber/keys/import",
        {"keystores": texts, "passwords": [KEYSTORE_PASSWORD] * 2},
    )
    client.close()
    if [r["status"] for r in answer["data"]] != ["imported"] * 2:
        raise UnexpectedAnswer(f"warm-up import: {answer}")


# --------------------------------------------------------------------------- run


def machine() -> dict[str, Any]:
    info = sign.machine_info()
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    return info


@contextlib.contextmanager
def running(replicas: list[Replica]) -> Iterator[None]:
    """Kill whatever is still running when a phase fails."""
    try:
        yield
    finally:
        for replica in replicas:
            if replica.proc.poll() is None:
                replica.stop(timeout=20)


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chamber-bench-keys-"))
    token = secrets.token_urlsafe(24)
    report: dict[str, Any] = {"machine": machine(), "config": vars(args).copy(), "notes": []}
    report["config"]["keystore_cache"] = str(args.keystore_cache)
    report["config"].pop("json", None)
    phases = set(args.phases)
    started: list[Replica] = []
    print(f"  work directory {workdir}", flush=True)
    try:
        with running(started):
            if phases & {"load", "public_keys", "replica", "idle"}:
                big(args, workdir / "big", token, phases, report, started)
            if phases & {"generate", "keystores"}:
                small(args, workdir / "small", token, phases, report, started)
    finally:
        if args.keep:
            print(f"  kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def big(
    args: argparse.Namespace,
    root: Path,
    token: str,
    phases: set[str],
    report: dict[str, Any],
    started: list[Replica],
) -> None:
    chamber = Chamber(root, token, args.batch)
    config_a = chamber.config("a")
    print(
        f"\n[1] {args.keys:,} keys into the encrypted SQLite store (raw_keys, "
        f"{args.batch} per request)",
        flush=True,
    )
    a = chamber.start("a", config_a)
    started.append(a)
    chamber.init(a)
    report["bls_backend"] = a.bls_selected
    report["fill"], _pubkeys = fill(a, args.keys, args.batch)
    f = report["fill"]
    print(
        f"    raw import: {f['keys_per_second']:,.0f} keys/s ({f['seconds']:.1f} s, median "
        f"{f['request_ms_median']:.0f} ms per {args.batch}-key request) {noise(f['cpu'])}",
        flush=True,
    )
    stop(a)

    loads = []
    for i in range(args.restarts):
        a = chamber.start("a", config_a)
        started.append(a)
        load = wait_loaded(a, args.keys)
        loads.append(load)
        start_unsealed = load["start_to_unsealed_log_s"]
        print(
            f"    restart {i + 1}: unseal -> {load['loaded']:,} keys loaded "
            f"{load['unseal_to_loaded_log_s']:.2f} s (server log); process start -> loaded "
            f"{load['start_to_loaded_client_s']:.2f} s (status poll), "
            f"{load['start_to_loaded_log_s']:.2f} s (log); start -> listening "
            f"{load['start_to_listening_s']:.2f} s"
            + ("" if start_unsealed is None else f", -> unsealed {start_unsealed:.2f} s"),
            flush=True,
        )
        if load["loaded"] != args.keys or load["failed"]:
            raise UnexpectedAnswer(f"restart {i + 1}: {load}")
        if i < args.restarts - 1:
            stop(a)
    report["load"] = {
        "restarts": loads,
        "unseal_to_loaded_median_s": statistics.median(x["unseal_to_loaded_log_s"] for x in loads),
        "start_to_loaded_median_s": statistics.median(x["start_to_loaded_client_s"] for x in loads),
    }

    if "public_keys" in phases:
        print(f"\n[2] GET /api/v1/eth2/publicKeys with {args.keys:,} keys", flush=True)
        pk = public_keys_latency(a, args.keys, args.public_keys_requests, args.public_keys_clients)
        report["public_keys"] = pk
        for label in ("sequential", "concurrent"):
            r = pk[label]
            who = "1 client" if label == "sequential" else f"{r['clients']} clients"
            print(
                f"    {who}: {r['requests']:,} requests, p50 {r['p50_ms']:.1f} ms, p90 "
                f"{r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, "
                f"{r['per_second']:,.0f}/s ({pk['bytes']:,} bytes each) {noise(r['cpu'])}",
                flush=True,
            )

    b: Replica | None = None
    if "replica" in phases or "idle" in phases:
        print("\n[3] a second replica on the same state and key store (refresh 1 s)", flush=True)
        b = chamber.start("b", chamber.config("b"))
        started.append(b)
        load_b = wait_loaded(b, args.keys)
        report["replica_load"] = load_b
        print(
            f"    replica B: unseal -> loaded {load_b['unseal_to_loaded_log_s']:.2f} s", flush=True
        )
    if "replica" in phases and b is not None:
        prop = propagation(a, b, args.replica_samples, 1.0)
        report["propagation"] = prop
        print(
            f"    import answered on A -> signs on B: median {prop['after_answer_median_s']:.2f} s"
            f", max {prop['after_answer_max_s']:.2f} s over {prop['samples']} keys "
            f"(from the import request: median {prop['after_request_median_s']:.2f} s, max "
            f"{prop['after_request_max_s']:.2f} s)",
            flush=True,
        )
    stop(a)
    if "idle" in phases and b is not None:
        total = args.keys + (args.replica_samples if "replica" in phases else 0)
        on = idle_cpu(b, args.idle_seconds)
        stop(b)
        b = chamber.start("b0", chamber.config("b0", refresh_interval_seconds=0))
        started.append(b)
        wait_loaded(b, total)
        off = idle_cpu(b, args.idle_seconds)
        stop(b)
        b = None
        cost = store_read_cost(chamber.keys_path)
        report["idle"] = {"refresh_1s": on, "refresh_off": off, "store_read": cost}
        delta = on["server_cores"] - off["server_cores"]
        print(
            f"    idle CPU over {args.idle_seconds:g} s with {total:,} keys: refresh 1 s "
            f"{on['server_cores'] * 100:.2f}% of a core, refresh off "
            f"{off['server_cores'] * 100:.2f}% -> the refresh costs {delta * 100:.2f}% of a core "
            f"{noise(on)} {noise(off)}",
            flush=True,
        )
        print(
            f"    one full read of the store ({cost['records']:,} active records, every 30th "
            f"round): {cost['list_active_ms_median']:.0f} ms; the change check of the other "
            f"rounds (PRAGMA data_version): {cost['change_token_us_median']:.0f} us",
            flush=True,
        )
    if b is not None:
        stop(b)


def small(
    args: argparse.Namespace,
    root: Path,
    token: str,
    phases: set[str],
    report: dict[str, Any],
    started: list[Replica],
) -> None:
    from pyrage import x25519

    chamber = Chamber(root, token, max(args.batch, KEYSTORE_BATCH))
    recipient = str(x25519.Identity.generate().to_public())
    replica: Replica | None = None
    print("\n[4] generation and keystore import (a second, small chamber)", flush=True)
    variants = [
        (mnemonic, backup) for mnemonic in ("per_key", "per_batch") for backup in (False, True)
    ]
    if "generate" not in phases:
        variants = variants[:1]
    report["generate"] = []
    for mnemonic, backup in variants:
        generate = {
            "enabled": True,
            "mnemonic": mnemonic,
            "backup": {"enabled": backup, "recipients": [recipient] if backup else []},
        }
        name = f"gen-{mnemonic}-{'backup' if backup else 'plain'}"
        replica = chamber.start(name, chamber.config(name, generate=generate))
        started.append(replica)
        if chamber.starts == 1:
            chamber.init(replica)
        else:
            wait_loaded(replica, 0)
        if "generate" in phases:
            g = generate_rate(replica, args.generate, backup)
            report["generate"].append(g)
            print(
                f"    generate {mnemonic:9s} backup {'on ' if backup else 'off'}: "
                f"{g['keys_per_second']:,.1f} keys/s ({g['keys']} keys, {GENERATE_BATCH} per "
                f"request, {g['seconds']:.1f} s) {noise(g['cpu'])}",
                flush=True,
            )
        if (mnemonic, backup) != variants[-1]:
            stop(replica)
    assert replica is not None
    if "keystores" in phases:
        warm_import_pool(replica)
        report["keystores"] = []
        for kdf, count in (("pbkdf2", args.pbkdf2_keystores), ("scrypt", args.scrypt_keystores)):
            if count <= 0:
                continue
            texts = keystores(args.keystore_cache, kdf, count)
            k = keystore_import_rate(replica, texts, kdf)
            report["keystores"].append(k)
            print(
                f"    import {kdf} keystores (EIP-2335 default cost): {k['keys_per_second']:,.1f}"
                f" keys/s ({k['keystores']} keystores, {KEYSTORE_BATCH} per request, "
                f"{k['seconds']:.1f} s, server {k['cpu']['server_cores']:.2f} cores) "
                f"{noise(k['cpu'])}",
                flush=True,
            )
    stop(replica)


def print_summary(report: dict[str, Any]) -> None:
    m = report["machine"]
    out = [
        "",
        "Containment Chamber key management benchmark",
        f"  machine   {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable), "
        f"{m.get('ram_gib', '?')} GiB RAM, Python {m['python']}, BLS "
        f"{report.get('bls_backend') or 'n/a'} ({m['packages'].get('blspy', '?')}), "
        f"{m['platform']}, load average before {m['load_average_before'][0]:.2f}",
    ]
    load = report.get("load")
    if load:
        ok = load["unseal_to_loaded_median_s"] <= TARGET_LOAD_S
        out.append(
            f"  load      {report['config']['keys']:,} keys: unseal -> loaded median "
            f"{load['unseal_to_loaded_median_s']:.2f} s, process start -> loaded median "
            f"{load['start_to_loaded_median_s']:.2f} s  [target <= {TARGET_LOAD_S:g} s after "
            f"unseal: {'met' if ok else 'NOT met'}]"
        )
    pk = report.get("public_keys")
    if pk:
        worst = max(pk["sequential"]["p99_ms"], pk["concurrent"]["p99_ms"])
        out.append(
            f"  publicKeys p99 {pk['sequential']['p99_ms']:.1f} ms (1 client), "
            f"{pk['concurrent']['p99_ms']:.1f} ms ({pk['concurrent']['clients']} clients)  "
            f"[target <= {TARGET_PUBLIC_KEYS_P99_MS:g} ms: "
            f"{'met' if worst <= TARGET_PUBLIC_KEYS_P99_MS else 'NOT met'}]"
        )
    prop = report.get("propagation")
    if prop:
        ok = prop["after_request_max_s"] <= TARGET_PROPAGATION_S
        out.append(
            f"  replicas  import on A -> signs on B: max {prop['after_request_max_s']:.2f} s "
            f"[target <= {TARGET_PROPAGATION_S:g} s: {'met' if ok else 'NOT met'}]"
        )
    print("\n".join(out), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Key management benchmark (issue #7) against real signer processes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--keys", type=int, default=10_000, help="keys in the encrypted store")
    p.add_argument(
        "--batch",
        type=int,
        default=1000,
        help="raw keys per import request (sets chamber.keys.import.max_items_per_request)",
    )
    p.add_argument("--restarts", type=int, default=3, help="timed restarts with the full store")
    p.add_argument("--public-keys-requests", type=int, default=2000)
    p.add_argument("--public-keys-clients", type=int, default=4)
    p.add_argument("--replica-samples", type=int, default=10, help="imports timed A -> B")
    p.add_argument(
        "--idle-seconds", type=float, default=60.0, help="idle CPU window per refresh setting"
    )
    p.add_argument("--generate", type=int, default=300, help="keys generated per variant")
    p.add_argument("--scrypt-keystores", type=int, default=200)
    p.add_argument("--pbkdf2-keystores", type=int, default=200)
    p.add_argument(
        "--keystore-cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "chamber-bench-keystores",
        help="where the generated EIP-2335 keystores are kept between runs",
    )
    p.add_argument(
        "--phases",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=list(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (load always runs with the others "
        "of the big chamber)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the machine to be idle (<10%% busy)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, stores)")
    args = p.parse_args(argv)
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"--phases: unknown {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    if args.keys < 1 or args.batch < 1 or args.restarts < 1:
        p.error("--keys, --batch and --restarts must be >= 1")
    if args.public_keys_clients < 1 or args.public_keys_requests < args.public_keys_clients:
        p.error("--public-keys-clients must be >= 1 and <= --public-keys-requests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wait_idle > 0:
        busy = sign.wait_idle(args.wait_idle)
        print(f"  machine {busy:.0%} busy when the benchmark started", flush=True)
    try:
        report = run(args)
    except BenchError as error:
        print(f"benchmark could not run: {error}", file=sys.stderr)
        return 2
    except UnexpectedAnswer as error:
        print(f"UNEXPECTED ANSWER: {error}", file=sys.stderr)
        return 1
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(2))
    sys.exit(main())
