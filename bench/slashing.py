"""Slashing-protection cost, in one command: the same attestation load against noop, SQLite
and (when a URL is given) PostgreSQL, back to back, and each one's rate as a share of noop's.

    python bench/slashing.py [--clients 32] [--duration 15] [--postgres-url postgresql://…]

Targets checked (issue 3): SQLite at 32 clients >= 1,800 attestation signatures/s and >= 80% of
the noop rate measured in the same run. Exit 1 when a target is missed or a run failed.
"""

from __future__ import annotations

import argparse
import json
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
    print(f"== {backend}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, check=False)
    if not out.exists():
        raise SystemExit(f"bench/sign.py failed for {backend} (exit {done.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    result["exit_code"] = done.returncode
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "noop": run("noop", args, Path(tmp) / "noop.json", []),
            "sqlite": run("sqlite", args, Path(tmp) / "sqlite.json", [
                "--set", f"anti_slashing.path={tmp}/bench.sqlite"]),
        }
        if args.postgres_url:
            results["postgres"] = run("postgres", args, Path(tmp) / "pg.json",
                                      ["--slashing-url", args.postgres_url])
    noop_rate = results["noop"]["results"]["signatures_per_second"]
    print("\nattestation signatures/s at", args.clients, "clients")
    summary: dict[str, Any] = {"clients": args.clients, "backends": {}}
    for name, result in results.items():
        rate = result["results"]["signatures_per_second"]
        latency = result["results"]["latency_ms"]
        share = rate / noop_rate if noop_rate else 0.0
        summary["backends"][name] = {"rate": rate, "share_of_noop": share,
                                     "p50_ms": latency["p50"], "p99_ms": latency["p99"],
                                     "all_200": result["exit_code"] == 0}
        print(f"  {name:9s} {rate:9,.1f}/s  {share:6.1%} of noop   p50 {latency['p50']:.2f} ms"
              f"   p99 {latency['p99']:.2f} ms")
    sqlite = summary["backends"]["sqlite"]
    ok = (sqlite["rate"] >= SQLITE_RATE_TARGET and sqlite["share_of_noop"] >= SQLITE_SHARE_TARGET
          and all(b["all_200"] for b in summary["backends"].values()))
    summary["targets_met"] = ok
    print(f"  targets: SQLite >= {SQLITE_RATE_TARGET:,.0f}/s and >= "
          f"{SQLITE_SHARE_TARGET:.0%} of noop: {'PASS' if ok else 'MISS'}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
