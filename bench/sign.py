"""Signing throughput benchmark: the real server under N keep-alive clients, in one command.

    python bench/sign.py [--clients 16] [--duration 20] [--keys 32] [--slashing noop]
                         [--bls-backend auto] [--json out.json]

Starts ``python -m chamber server`` on a random loopback port with deterministic raw keys in a
temporary directory, measures the raw single-thread BLS sign rate of the same backend, drives a
BLOCK_V2 / ATTESTATION / RANDAO_REVEAL mix and reports signatures/s, latency percentiles and
"the figure" (signatures/s / raw single-thread sign rate). See bench/README.md.

Exit status: 0 all answers were 200 and the server exited 0 on SIGTERM; 1 some answer was not
200 (or a signature did not verify); 2 the benchmark could not run; 3 the server did not exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from chamber.errors import ChamberError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _client
from _server import BenchError, ServerProcess, context_switches, process_cpu

REPO_ROOT = Path(__file__).resolve().parents[1]
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
KEY_SEED = "chamber-bench"
TARGET_RATE = 2000.0
TARGET_FIGURE = 0.70


# --------------------------------------------------------------------------- keys and config


def key_secret(index: int, seed: str = KEY_SEED) -> bytes:
    """Deterministic secret key #index (same derivation as tests/harness.py ``make_keys``)."""
    value = int.from_bytes(hashlib.sha256(f"{seed}-{index}".encode()).digest(), "big")
    return (value % (CURVE_ORDER - 1) + 1).to_bytes(32, "big")


def select_backend(name: str) -> Any:
    """The BLS backend object the server picks for ``bls.backend: name``."""
    from chamber.crypto import bls
    from chamber.plugins import load_plugins

    providers = load_plugins().providers("chamber_bls_backends")
    return bls.select_backend(name, {n: p.cls for n, p in providers.items()})


def parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def build_config(args: argparse.Namespace, keys_dir: Path, token: str) -> dict[str, Any]:
    server: dict[str, Any] = {"listen_address": "127.0.0.1", "listen_port": 0}
    if args.max_concurrent_requests is not None:
        server["max_concurrent_requests"] = args.max_concurrent_requests
    if args.threads is not None:
        server["threads"] = args.threads
    anti_slashing: dict[str, Any] = {"backend": args.slashing}
    if args.slashing_url:
        anti_slashing["url"] = args.slashing_url
    config: dict[str, Any] = {
        "server": server,
        "metrics": {"listen_address": "127.0.0.1", "listen_port": 0},
        "logging": {"level": "INFO", "format": "json"},
        "network": "mainnet",
        "bls": {"backend": args.bls_backend},
        "key_sources": {"filesystem": {"paths": [str(keys_dir)]}},
        "anti_slashing": anti_slashing,
        "auth_policies": {
            "bench": {"token": token, "allowed_scopes": ["sign", "public_keys"]},
        },
    }
    for item in args.set:
        dotted, sep, raw = item.partition("=")
        if not sep or not dotted:
            raise BenchError(f"--set {item!r}: expected KEY.PATH=VALUE")
        set_path(config, dotted.strip(), parse_value(raw))
    return config


# --------------------------------------------------------------------------- raw BLS rate


def raw_sign_rate(backend: Any, secret: bytes, seconds: float, threads: int = 1) -> float:
    """Signatures/s of ``backend.sign`` over distinct 32-byte messages, on ``threads`` threads
    at once (1: the single-thread rate "the figure" divides by; more: whether the backend
    releases the GIL, i.e. whether one server process can sign on several cores)."""
    sk = backend.secret_key(secret)
    sign = backend.sign
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def loop(slot: int) -> None:
        messages = [
            hashlib.sha256(bytes([slot]) + i.to_bytes(4, "little")).digest() for i in range(256)
        ]
        for message in messages[:8]:
            sign(sk, message)
        start.wait()
        count = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for message in messages[:32]:
                sign(sk, message)
            count += 32
            messages.append(messages.pop(0))
        counts[slot] = count

    workers = [threading.Thread(target=loop, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- server process


class Server(ServerProcess):
    def __init__(self, config_path: Path, workdir: Path) -> None:
        super().__init__("server", config_path, workdir, workdir / "server.log")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.wait_port(timeout)
        url = f"http://127.0.0.1:{self.port}/healthcheck"

        def healthy() -> bool:
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError),
                urllib.request.urlopen(url, timeout=5) as resp,
            ):
                return bool(resp.status == 200)
            time.sleep(0.1)
            return False

        self.wait_for(healthy, max(1.0, deadline - time.monotonic()), "/healthcheck 200")

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server process so far."""
        return process_cpu(self.proc.pid)

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return 0

    def signed_count(self) -> dict[str, float] | None:
        """Signed requests by type from the server's own metrics (a cross-check)."""
        if self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
            ) as resp:
                text = resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if (
                line.startswith("containment_signing_requests_total{")
                and 'outcome="signed"' in line
            ):
                labels, value = line.rsplit(" ", 1)
                operation = labels.split('operation="', 1)[1].split('"', 1)[0]
                counts[operation] = counts.get(operation, 0) + float(value)
        return counts


# --------------------------------------------------------------------------- machine facts


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    versions = {}
    for dist in ("blspy", "milagro-bls-binding", "py-ecc", "waitress", "falcon", "orjson"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            or None
        )
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "load_average_before": list(os.getloadavg()),
    }


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def wait_idle(limit: float, threshold: float = 0.10) -> float:
    """Wait up to ``limit`` s for a 2 s stretch with under ``threshold`` of the CPUs busy.

    Returns the busy share of the last stretch looked at.
    """
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = machine_busy()
        time.sleep(2)
        b1, t1 = machine_busy()
        busy = (b1 - b0) / max(t1 - t0, 1)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


# --------------------------------------------------------------------------- report


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise(result: _client.LoadResult, duration: float) -> dict[str, Any]:
    start, end = result.window_start, result.window_end
    per_type = [0, 0, 0]
    failed = 0
    latencies: list[float] = []
    for t, lat, kind in zip(result.done_at, result.latency, result.kinds, strict=True):
        if start <= t < end:
            if kind & _client.FAILED:
                failed += 1
                continue
            per_type[kind] += 1
            latencies.append(lat)
    latencies.sort()
    total = sum(per_type)
    ms = 1000.0
    return {
        "signatures_in_window": total,
        "failed_in_window": failed,
        "responses_total": len(result.done_at),
        "requests_sent": result.sent,
        "signatures_per_second": total / duration,
        "by_type_per_second": {
            _client.TYPES[i]: per_type[i] / duration for i in range(len(_client.TYPES))
        },
        "latency_ms": {
            "p50": percentile(latencies, 0.50) * ms,
            "p90": percentile(latencies, 0.90) * ms,
            "p99": percentile(latencies, 0.99) * ms,
            "max": (latencies[-1] if latencies else math.nan) * ms,
            "mean": (sum(latencies) / len(latencies) if latencies else math.nan) * ms,
        },
    }


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def print_report(report: dict[str, Any]) -> None:
    m, c, r, cpu = report["machine"], report["config"], report["results"], report["cpu"]
    raw = report["raw_bls"]
    speedup = raw["parallel"] / raw["before"]
    lat = r["latency_ms"]
    by_type = ", ".join(f"{k} {fmt(v, 1)}" for k, v in r["by_type_per_second"].items())
    out = [
        "",
        "Containment Chamber signing benchmark",
        f"  machine      {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable), "
        f"Python {m['python']}, {m['platform']}",
        f"  server       waitress threads {c['waitress_threads']}, max_concurrent_requests "
        f"{c['max_concurrent_requests']}, BLS {c['bls_backend']}, slashing "
        f"{c['slashing_backend']}, {c['keys']} keys",
        f"  load         {c['clients']} clients over HTTP/1.1 keep-alive, mix "
        f"{':'.join(_client.TYPES)} = {c['mix']}, warm-up {c['warmup_s']:g} s (excluded), "
        f"measured {c['duration_s']:g} s",
        "",
        f"  signatures/s      {fmt(r['signatures_per_second'], 1)}   ({by_type})",
        f"  latency (ms)      p50 {lat['p50']:.2f}   p90 {lat['p90']:.2f}   "
        f"p99 {lat['p99']:.2f}   max {lat['max']:.2f}",
        f"  raw BLS sign/s    {fmt(raw['before'])} before, {fmt(raw['after'])} after "
        f"(1 thread, {raw['backend']}); reference {fmt(raw['reference'])}",
        f"                    {fmt(raw['parallel'])} on {raw['parallel_threads']} threads at once "
        f"({speedup:.2f}x one thread: the backend "
        f"{'releases' if speedup > 1.5 else 'holds'} the GIL)",
        f"  THE FIGURE        {report['figure']:.3f}   (signatures/s / raw single-thread sign "
        f"rate; on {m['cpus_usable']} cores the ceiling is ~{m['cpus_usable']})",
    ]
    if cpu:
        out.append(
            f"  CPU               server {cpu['server_cores']:.2f} cores "
            f"({cpu['server_user_cores']:.2f} user + {cpu['server_system_cores']:.2f} sys) = "
            f"{fmt(cpu['server_us_per_signature'])} us per signature "
            f"(a raw sign is {fmt(cpu['raw_sign_us'])} us)\n"
            f"                    bench client {cpu['client_cores']:.2f} cores, other processes "
            f"{cpu['other_cores']:.2f} cores, machine {cpu['machine_busy_pct']:.0f}% busy; "
            f"server threads {cpu['server_threads']}, "
            f"{cpu['context_switches_per_signature']:.1f} context switches per signature "
            f"({cpu['context_switches_main_thread_per_signature']:.1f} in the I/O thread)"
        )
    failures = report["failures"]
    if failures["by_status"]:
        out.append(
            "  NON-200           "
            + ", ".join(f"{k}: {v}" for k, v in sorted(failures["by_status"].items()))
        )
        out.extend(f"                    e.g. {e}" for e in failures["examples"])
    else:
        out.append(f"  responses         {fmt(r['responses_total'])} in total, all 200")
    if failures["bad_signatures"]:
        out.append(
            f"  BAD SIGNATURES    {failures['bad_signatures']} sampled answers did not verify"
        )
    else:
        out.append(f"  signatures        {report['verified_samples']} sampled answers verified")
    if report["server_signed"] is not None:
        out.append(f"  server counted    {fmt(sum(report['server_signed'].values()))} signed")
    for note in report["notes"]:
        out.append(f"  note              {note}")
    t = report["targets"]
    out.append(
        f"  targets           >= {fmt(TARGET_RATE)} signatures/s: "
        f"{'PASS' if t['rate_ok'] else 'MISS'};  figure >= {TARGET_FIGURE:.2f}: "
        f"{'PASS' if t['figure_ok'] else 'MISS'}"
    )
    exit_status = report["server_exit"]
    out.append(
        "  server exit       "
        + ("0 after SIGTERM" if exit_status == 0 else f"NOT CLEAN: {exit_status!r}")
    )
    print("\n".join(out), flush=True)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the signing path of a real containment-chamber server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--keys", type=int, default=32, help="validator keys (>= --clients)")
    p.add_argument("--mix", default="1:4:1", help="BLOCK_V2:ATTESTATION:RANDAO_REVEAL weights")
    p.add_argument("--slashing", default="noop", help="anti_slashing.backend")
    p.add_argument("--slashing-url", default=None, help="anti_slashing.url (e.g. postgres)")
    p.add_argument("--bls-backend", default="auto", help="bls.backend")
    p.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=None,
        help="server.max_concurrent_requests (default: the server's)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="server.threads, waitress worker threads (default: the server's)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="any other setting, value parsed as YAML (repeatable), "
        "e.g. --set anti_slashing.path=/tmp/s.db",
    )
    p.add_argument(
        "--raw-seconds",
        type=float,
        default=3.0,
        help="seconds for each raw BLS sign-rate measurement",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the machine to be idle (<10%% busy)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (keys, config, log)")
    p.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="OUT",
        help="record the server with py-spy during the measured window "
        "(speedscope JSON if OUT ends in .json, collapsed stacks if .txt, "
        "else a flame graph SVG)",
    )
    args = p.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--clients must be >= 1, --duration > 0, --warmup >= 0")
    if args.keys < args.clients:
        p.error(
            "--keys must be >= --clients: each key is driven by one connection so that its "
            "slots and epochs reach the server in rising order"
        )
    try:
        weights = [int(w) for w in args.mix.split(":")]
    except ValueError:
        weights = []
    if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) == 0:
        p.error("--mix must be three non-negative integers like 1:4:1")
    args.weights = weights
    return args


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="chamber-bench-"))
    server: Server | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        backend = select_backend(args.bls_backend)
        keys_dir = workdir / "keys"
        keys_dir.mkdir()
        pubkeys = []
        for i in range(args.keys):
            secret = key_secret(i)
            pubkeys.append("0x" + backend.public_key(backend.secret_key(secret)).hex())
            (keys_dir / f"key-{i}.yaml").write_text(
                yaml.safe_dump({"type": "file-raw", "privateKey": "0x" + secret.hex()})
            )
        token = secrets.token_hex(24)
        config = build_config(args, keys_dir, token)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        from chamber.config import load_settings

        try:
            settings = load_settings(config_path, environ={})
        except ChamberError as error:
            raise BenchError(f"bad configuration: {error.message}") from None
        notes: list[str] = []
        if args.wait_idle > 0:
            busy = wait_idle(args.wait_idle)
            if busy >= 0.10:
                notes.append(f"the machine was still {busy:.0%} busy after --wait-idle")
        machine = machine_info()

        server = Server(config_path, workdir)
        server.wait_ready(timeout=120)
        server_bls = server.listening.get("bls_backend") or server.bls_selected
        if server_bls is not None and server_bls != backend.name:
            notes.append(
                f"server uses BLS backend {server_bls!r} but the raw rate was measured "
                f"with {backend.name!r}"
            )

        raw_before = raw_sign_rate(backend, key_secret(0), args.raw_seconds)
        parallel_threads = max(2, int(machine["cpus_usable"]))
        raw_parallel = raw_sign_rate(
            backend, key_secret(0), args.raw_seconds, threads=parallel_threads
        )

        keys = [
            _client.KeyState(i, pubkeys[i], f"127.0.0.1:{server.port}", token)
            for i in range(args.keys)
        ]
        loader = _client.LoadGenerator(
            ("127.0.0.1", server.port), keys, args.clients, _client.mix_pattern(args.weights)
        )
        snapshots: dict[
            str,
            tuple[float, tuple[float, float], float, tuple[int, int], tuple[int, tuple[int, int]]],
        ] = {}
        running_server = server

        def on_window(phase: str) -> None:
            nonlocal spy
            snapshots[phase] = (
                time.perf_counter(),
                running_server.cpu_seconds(),
                time.process_time(),
                machine_busy(),
                (running_server.threads(), context_switches(running_server.proc.pid)),
            )
            if phase == "start" and args.py_spy is not None:
                try:
                    spy = start_py_spy(args.py_spy, running_server.proc.pid, args.duration)
                except OSError as error:
                    notes.append(f"py-spy could not start: {error}")

        print(
            f"raw BLS sign rate ({backend.name}, 1 thread): {raw_before:,.0f}/s; driving "
            f"{args.clients} clients for {args.warmup:g} + {args.duration:g} s ...",
            flush=True,
        )
        try:
            result = loader.run(args.warmup, args.duration, on_window)
        except OSError as error:
            raise BenchError(f"load generation failed: {error}\n{server.tail()}") from None
        if args.py_spy is not None:
            notes.append("py-spy was sampling the server during the window (costs some CPU)")
        if spy is not None:
            try:
                spy.wait(args.duration + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                notes.append("py-spy did not finish")
        server_signed = server.signed_count()
        raw_after = raw_sign_rate(backend, key_secret(0), args.raw_seconds)
        server_exit = server.stop()
        if server_exit != 0:
            notes.append(f"server log tail:\n{server.tail(15)}")

        bad_signatures = 0
        for key_index, _kind, root, body in result.samples:
            try:
                signature = bytes.fromhex(json.loads(body)["signature"][2:])
                ok = backend.verify(bytes.fromhex(pubkeys[key_index][2:]), root, signature)
            except (ValueError, KeyError, TypeError):
                ok = False
            bad_signatures += not ok

        summary = summarise(result, args.duration)
        reference = max(raw_before, raw_after)
        figure = summary["signatures_per_second"] / reference
        if "start" in snapshots and "end" in snapshots:
            t0, (u0, k0), c0, (b0, tot0), (_, (m0, w0)) = snapshots["start"]
            t1, (u1, k1), c1, (b1, tot1), (threads, (m1, w1)) = snapshots["end"]
            signed = max(summary["signatures_in_window"], 1)
            elapsed = t1 - t0
            server_cpu = (u1 - u0) + (k1 - k0)
            answers = summary["signatures_in_window"] + summary["failed_in_window"]
            cpu = {
                "server_cores": server_cpu / elapsed,
                "server_user_cores": (u1 - u0) / elapsed,
                "server_system_cores": (k1 - k0) / elapsed,
                "server_us_per_signature": (
                    server_cpu / max(summary["signatures_in_window"], 1) * 1e6
                ),
                "raw_sign_us": 1e6 / reference,
                "client_cores": (c1 - c0) / elapsed,
                "client_us_per_request": (c1 - c0) / max(answers, 1) * 1e6,
                "machine_busy_pct": 100.0 * (b1 - b0) / max(tot1 - tot0, 1),
                "server_threads": threads,
                "context_switches_per_signature": ((m1 - m0) + (w1 - w0)) / signed,
                "context_switches_main_thread_per_signature": (m1 - m0) / signed,
            }
            busy_cores = (b1 - b0) / os.sysconf("SC_CLK_TCK") / elapsed
            cpu["other_cores"] = max(0.0, busy_cores - cpu["server_cores"] - cpu["client_cores"])
            if cpu["other_cores"] > 0.15:
                notes.append(
                    f"other processes used {cpu['other_cores']:.2f} cores during the measured "
                    "window: the figures are depressed by that contention"
                )
        else:
            cpu = {}
        by_status = dict(result.failures)
        report: dict[str, Any] = {
            "benchmark": "chamber-sign",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "machine": machine,
            "config": {
                "clients": args.clients,
                "keys": args.keys,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "mix": args.mix,
                "bls_backend": server_bls or backend.name,
                "bls_backend_requested": args.bls_backend,
                "slashing_backend": args.slashing,
                "max_concurrent_requests": settings.server.max_concurrent_requests,
                "waitress_threads": settings.server.worker_threads,
                "overrides": args.set,
            },
            "results": summary,
            "raw_bls": {
                "backend": backend.name,
                "before": raw_before,
                "after": raw_after,
                "reference": reference,
                "parallel": raw_parallel,
                "parallel_threads": parallel_threads,
                "seconds_each": args.raw_seconds,
            },
            "figure": figure,
            "cpu": cpu,
            "targets": {
                "rate": TARGET_RATE,
                "rate_ok": summary["signatures_per_second"] >= TARGET_RATE,
                "figure": TARGET_FIGURE,
                "figure_ok": figure >= TARGET_FIGURE,
            },
            "failures": {
                "by_status": by_status,
                "examples": result.failure_examples,
                "bad_signatures": bad_signatures,
                "reconnects": result.reconnects,
            },
            "verified_samples": len(result.samples) - bad_signatures,
            "server_signed": server_signed,
            "server_exit": server_exit,
            "notes": notes,
        }
        if args.py_spy is not None:
            report["py_spy"] = str(args.py_spy)
        print_report(report)
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            print(f"  json              {args.json}")
        if args.keep:
            print(f"  temp dir          {workdir}")
        if by_status or bad_signatures:
            return 1
        if server_exit != 0:
            return 3
        return 0
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def start_py_spy(out: Path, pid: int, duration: float) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    fmt_name = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(duration))),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            fmt_name,
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through run(), which stops the server and cleans up


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return run(args)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except ChamberError as error:
        print(f"bench: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
