"""Where a signature's CPU goes, with and without HTTP, in one command.

    python bench/overhead.py [--clients 32] [--duration 6] [--requests 4000] [--json out.json]

1. **In-process** (no HTTP): the signer's real WSGI app (the gate, Falcon, auth, pydantic
   parsing, SSZ, slashing protection, signing, metrics) called directly, one thread, with the
   attestation requests ``bench/sign.py`` sends: CPU per request with noop and with SQLite
   protection (one request at a time, so every SQLite check is its own batch and fsync); a bare
   BLS sign of the same backend; and the key registry's per-request hold on its own.
2. **The HTTP floor**: a bare WSGI app under waitress with the server's worker-thread count, in
   its own process, driven by ``bench/sign.py``'s load generator at ``--clients`` keep-alive
   connections: answers/s and server CPU per answer for an app that answers at once and for one
   that also signs one BLS message (no Falcon, no parsing, no protection). What a full signer
   can reach on this machine is bounded by the second.

Numbers only, no targets. Exit status 0, or 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _client
import sign  # keys, config, machine facts, raw sign rate
from _server import BenchError, context_switches, process_cpu

ANSWER = b'{"signature":"0x' + b"ab" * 96 + b'"}'


# --------------------------------------------------------------------------- in-process


def _signer_app(workdir: Path, slashing: str, keys: int) -> tuple[Any, Any, list[str], str]:
    """The real app over ``keys`` file-raw keys: (signer, WSGI app, pubkeys, token)."""
    from chamber.api.app import create_app
    from chamber.config import load_settings
    from chamber.plugins import load_plugins
    from chamber.signer import build_signer

    backend = sign.select_backend("auto")
    keys_dir = workdir / f"keys-{slashing}"
    keys_dir.mkdir()
    pubkeys = []
    for i in range(keys):
        secret = sign.key_secret(i)
        pubkeys.append("0x" + backend.public_key(backend.secret_key(secret)).hex())
        (keys_dir / f"key-{i}.yaml").write_text(
            yaml.safe_dump({"type": "file-raw", "privateKey": "0x" + secret.hex()})
        )
    token = secrets.token_hex(24)
    args = argparse.Namespace(
        max_concurrent_requests=None,
        threads=None,
        slashing=slashing,
        slashing_url=None,
        bls_backend="auto",
        set=[],
    )
    config = sign.build_config(args, keys_dir, token)
    config["logging"]["level"] = "WARNING"
    config["metrics"]["enabled"] = False
    if slashing == "sqlite":
        config["anti_slashing"]["path"] = str(workdir / "slashing.sqlite")
    config_path = workdir / f"config-{slashing}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    signer = build_signer(load_settings(config_path, environ={}), load_plugins())
    signer.load_keys()
    return signer, create_app(signer), pubkeys, token


def _environs(pubkeys: list[str], token: str, count: int) -> list[dict[str, Any]]:
    """WSGI environs of ``count`` attestation requests (rising epochs per key)."""
    states = [_client.KeyState(i, key, "127.0.0.1", token) for i, key in enumerate(pubkeys)]
    environs = []
    for n in range(count):
        raw, _ = states[n % len(states)].request(_client.ATTESTATION)
        head, _, body = raw.partition(b"\r\n\r\n")
        environs.append(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": head.split(b" ")[1].decode(),
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "9000",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_AUTHORIZATION": f"Bearer {token}",
                "HTTP_ACCEPT": "application/json",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
            }
        )
    return environs


def in_process(workdir: Path, slashing: str, requests: int) -> dict[str, float]:
    signer, app, pubkeys, token = _signer_app(workdir, slashing, 32)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        statuses.append(status)

    try:
        # One rising sequence per key: the first 200 requests warm up, the rest are measured.
        environs = _environs(pubkeys, token, 200 + requests)
        warm, measured = environs[:200], environs[200:]
        for environ in warm:
            b"".join(app(environ, start_response))
        statuses.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for environ in measured:
            b"".join(app(environ, start_response))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        signer.close()
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise BenchError(f"in-process {slashing}: {len(bad)} answers not 200, e.g. {bad[0]}")
    return {"cpu_us": cpu / requests * 1e6, "wall_us": wall / requests * 1e6}


def bare_sign_us(requests: int) -> float:
    backend = sign.select_backend("auto")
    sk = backend.secret_key(sign.key_secret(0))
    messages = [hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(requests)]
    cpu0 = time.process_time()
    for message in messages:
        backend.sign(sk, message)
    return (time.process_time() - cpu0) / requests * 1e6


def registry_hold_us() -> float:
    from chamber.keys import KeyRegistry

    registry = KeyRegistry()

    def hold() -> None:
        with registry.signing("0x" + "ab" * 48):
            pass

    number = 100_000
    return min(timeit.repeat(hold, number=number, repeat=3)) / number * 1e6


# --------------------------------------------------------------------------- HTTP floor


def serve_bare(mode: str, threads: int) -> None:
    """Child process: a bare WSGI app under waitress; prints its port, serves until killed."""
    import logging

    from waitress.server import create_server

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    backend = sign.select_backend("auto")
    sk = backend.secret_key(sign.key_secret(0))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if mode == "sign":
            backend.sign(sk, hashlib.sha256(body).digest())
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))],
        )
        return [ANSWER]

    server = create_server(app, host="127.0.0.1", port=0, threads=threads)
    print(server.effective_port, flush=True)
    server.run()


def http_floor(mode: str, threads: int, clients: int, duration: float) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", mode, "--threads", str(threads)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise BenchError(f"the bare {mode} server did not start (exit {proc.poll()})")
        port = int(line)
        keys = [
            _client.KeyState(i, "0x" + "11" * 48, f"127.0.0.1:{port}", "t") for i in range(clients)
        ]
        loader = _client.LoadGenerator(("127.0.0.1", port), keys, clients, [_client.ATTESTATION])
        marks: dict[str, tuple[float, float, int]] = {}

        def on_window(phase: str) -> None:
            pid = proc.pid
            marks[phase] = (time.perf_counter(), sum(process_cpu(pid)), sum(context_switches(pid)))

        result = loader.run(1.0, duration, on_window)
        answered = sum(1 for t in result.done_at if result.window_start <= t < result.window_end)
        (t0, c0, s0), (t1, c1, s1) = marks["start"], marks["end"]
        if result.failures:
            raise BenchError(f"bare {mode} server: failures {dict(result.failures)}")
        return {
            "answers_per_second": answered / (t1 - t0),
            "server_cores": (c1 - c0) / (t1 - t0),
            "server_cpu_us_per_answer": (c1 - c0) / max(answered, 1) * 1e6,
            "context_switches_per_answer": (s1 - s0) / max(answered, 1),
        }
    finally:
        proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="CPU per signature with and without HTTP, and the bare HTTP floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--clients", type=int, default=32, help="connections for the HTTP floor")
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds per HTTP run")
    p.add_argument("--requests", type=int, default=4000, help="in-process requests per backend")
    p.add_argument("--rounds", type=int, default=2, help="repetitions of every measurement")
    p.add_argument("--threads", type=int, default=None, help="waitress threads (server default)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--serve-bare", choices=["answer", "sign"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from chamber.config import ServerConfig

    threads = args.threads or ServerConfig().worker_threads
    if args.serve_bare:
        serve_bare(args.serve_bare, threads)
        return 0
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    try:
        with tempfile.TemporaryDirectory(prefix="chamber-overhead-") as tmp:
            for number in range(args.rounds):
                print(f"round {number + 1}/{args.rounds} ...", flush=True)
                work = Path(tmp) / f"round-{number}"
                work.mkdir()
                add("bare BLS sign, CPU us", bare_sign_us(args.requests))
                add("registry hold, us", registry_hold_us())
                for backend in ("noop", "sqlite"):
                    got = in_process(work, backend, args.requests)
                    add(f"in-process {backend}, CPU us per request", got["cpu_us"])
                    add(f"in-process {backend}, wall us per request", got["wall_us"])
                for mode in ("answer", "sign"):
                    got = http_floor(mode, threads, args.clients, args.duration)
                    add(f"bare waitress app ({mode}), answers/s", got["answers_per_second"])
                    add(
                        f"bare waitress app ({mode}), server CPU us per answer",
                        got["server_cpu_us_per_answer"],
                    )
                    add(
                        f"bare waitress app ({mode}), context switches per answer",
                        got["context_switches_per_answer"],
                    )
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    machine = sign.machine_info()
    print(
        f"\nWhere a signature's CPU goes ({machine['cpu_model']}, {machine['cpus_usable']} usable "
        f"cores, Python {machine['python']}; waitress threads {threads}, {args.clients} clients)"
    )
    width = max(len(name) for name in rows)
    for name, values in rows.items():
        shown = " / ".join(f"{v:,.1f}" for v in values)
        print(f"  {name:{width}s}  median {statistics.median(values):9,.1f}   ({shown})")
    if args.json is not None:
        report = {
            "benchmark": "chamber-overhead",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine,
            "threads": threads,
            "clients": args.clients,
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
