"""Slashing-protection cost, in one command: the same attestation load against noop, SQLite
and (when a URL is given) PostgreSQL, back to back, and each one's rate as a share of noop's.

    python bench/slashing.py [--clients 32] [--duration 15] [--rounds 3] [--threads N]
                             [--postgres-url postgresql://…]

Each round runs every backend once, back to back (in reverse order every other round), so a
round's shares compare runs made seconds apart; the machine's speed drifts between minutes (a
shared VM), so a share is only meaningful within its round. With several rounds the verdict uses
the median share.

Targets checked (issue 3): SQLite at 32 clients >= 1,800 attestation signatures/s and >= 80% of
the noop rate measured in the same round. Exit 1 when a target is missed or a run failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SQLITE_RATE_TARGET = 1800.0
SQLITE_SHARE_TARGET = 0.80


def run(backend: str, args: argparse.Namespace, out: Path, extra: list[str]) -> dict[str, Any]:
    command = [
        sys.executable, str(HERE / "sign.py"), "--clients", str(args.clients),
        "--keys", str(max(args.clients, 32)), "--duration", str(args.duration),
        "--mix", "0:1:0", "--slashing", backend, "--json", str(out), *extra,
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    print(f"== {backend}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, check=False)
    if not out.exists():
        raise SystemExit(f"bench/sign.py failed for {backend} (exit {done.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    result["exit_code"] = done.returncode
    return result


def one_round(args: argparse.Namespace, tmp: Path, number: int) -> dict[str, Any]:
    """Every backend once. Even rounds run them in reverse order, so a machine that speeds up or
    slows down during a round favours no backend over several rounds."""
    plans: dict[str, list[str]] = {
        "noop": [],
        "sqlite": ["--set", f"anti_slashing.path={tmp}/bench-{number}.sqlite"],
    }
    if args.postgres_url:
        plans["postgres"] = ["--slashing-url", args.postgres_url]
    order = list(plans) if number % 2 else list(reversed(plans))
    done = {name: run(name, args, tmp / f"{name}-{number}.json", plans[name]) for name in order}
    runs = {name: done[name] for name in plans}
    noop_rate = runs["noop"]["results"]["signatures_per_second"]
    backends: dict[str, Any] = {}
    for name, result in runs.items():
        rate = result["results"]["signatures_per_second"]
        latency = result["results"]["latency_ms"]
        backends[name] = {"rate": rate, "share_of_noop": rate / noop_rate if noop_rate else 0.0,
                          "p50_ms": latency["p50"], "p99_ms": latency["p99"],
                          "server_us_per_signature":
                              result.get("cpu", {}).get("server_us_per_signature"),
                          "context_switches_per_signature":
                              result.get("cpu", {}).get("context_switches_per_signature"),
                          "all_200": result["exit_code"] == 0}
    return {"backends": backends, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every backend back to back; the verdict takes medians")
    parser.add_argument("--threads", type=int, default=None,
                        help="server.threads for every run (default: the server's)")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(args, Path(tmp), n) for n in range(1, args.rounds + 1)]

    print(f"\nattestation signatures/s at {args.clients} clients"
          + (f", {args.threads} server threads" if args.threads else ""))
    for number, result in enumerate(rounds, 1):
        for name, b in result["backends"].items():
            print(f"  round {number}  {name:9s} {b['rate']:9,.1f}/s  {b['share_of_noop']:6.1%} of "
                  f"noop   p50 {b['p50_ms']:.2f} ms   p99 {b['p99_ms']:.2f} ms   server "
                  f"{b['server_us_per_signature'] or 0:,.0f} us CPU/signature, "
                  f"{b['context_switches_per_signature'] or 0:.1f} cs/signature"
                  + ("" if b["all_200"] else "   NOT ALL 200"))
    names = list(rounds[0]["backends"])
    summary: dict[str, Any] = {"clients": args.clients, "threads": args.threads,
                               "rounds": len(rounds), "backends": {}}
    for name in names:
        values = [r["backends"][name] for r in rounds]
        summary["backends"][name] = {
            "median_rate": statistics.median(v["rate"] for v in values),
            "median_share_of_noop": statistics.median(v["share_of_noop"] for v in values),
            "all_200": all(v["all_200"] for v in values),
        }
        print(f"  median   {name:9s} {summary['backends'][name]['median_rate']:9,.1f}/s  "
              f"{summary['backends'][name]['median_share_of_noop']:6.1%} of noop")
    sqlite = summary["backends"]["sqlite"]
    ok = (sqlite["median_rate"] >= SQLITE_RATE_TARGET
          and sqlite["median_share_of_noop"] >= SQLITE_SHARE_TARGET
          and all(b["all_200"] for b in summary["backends"].values()))
    summary["targets_met"] = ok
    print(f"  targets: SQLite >= {SQLITE_RATE_TARGET:,.0f}/s and >= "
          f"{SQLITE_SHARE_TARGET:.0%} of noop (medians): {'PASS' if ok else 'MISS'}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
