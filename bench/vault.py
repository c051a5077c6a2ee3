"""Vault costs, in one command: Argon2id at the default parameters, a KMS-only unseal with the
local file KMS, and loading encrypted validator keys from the SQLite key store.

    python bench/vault.py [--keys 10000] [--rounds 5]

Prints one line per measurement and, with ``--json FILE``, writes them. Numbers go to
docs/performance.md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chamber.crypto import kdf  # noqa: E402
from chamber.crypto.bls import CURVE_ORDER, select_backend  # noqa: E402
from chamber.keys.sqlite_store import SQLiteKeySource  # noqa: E402
from chamber.vault.credentials import PassphraseCredential  # noqa: E402
from chamber.vault.kms import KmsSet  # noqa: E402
from chamber.vault.local_kms import LocalKms  # noqa: E402
from chamber.vault.service import Vault, VaultOptions  # noqa: E402
from chamber.vault.sqlite_state import SQLiteStateBackend  # noqa: E402


def argon2_default(rounds: int) -> dict[str, float]:
    params = kdf.Argon2Params()
    salt = kdf.new_salt()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        kdf.derive_wrapping_key(b"a passphrase of some length", salt, params)
        times.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}


class _Token(logging.Handler):
    token: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        token = getattr(record, "setup_token", None)
        if token:
            _Token.token = token


def _vault(directory: Path) -> Vault:
    store = SQLiteStateBackend.from_config({"path": str(directory / "state.sqlite")})
    kms = KmsSet({"local": LocalKms}, {"local": {"directory": str(directory / "kms")}})
    return Vault(store, kms, {"passphrase": PassphraseCredential}, options=VaultOptions())


def kms_only_unseal(rounds: int) -> dict[str, float]:
    logging.getLogger("chamber.vault").addHandler(_Token())
    logging.getLogger("chamber.vault").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        first = _vault(directory)
        first.boot()
        assert _Token.token is not None
        first.init(_Token.token, ["local:a", "local:b", "local:c"], 2)
        first.store.close()
        times = []
        for _ in range(rounds):
            vault = _vault(directory)
            started = time.perf_counter()
            vault.boot()  # reads the record, opens the KMS layer, checks the key check value
            times.append(time.perf_counter() - started)
            assert vault.state == "unsealed", vault.state
            vault.stop()
            vault.store.close()
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}


def key_load(count: int) -> dict[str, Any]:
    bls = select_backend("auto")
    master = bytearray(os.urandom(32))
    with tempfile.TemporaryDirectory() as tmp:
        source = SQLiteKeySource.from_config({"path": f"{tmp}/keys.sqlite"}, bls)
        started = time.perf_counter()
        for i in range(count):
            secret = (int.from_bytes(os.urandom(32), "big") % (CURVE_ORDER - 1) + 1).to_bytes(
                32, "big"
            )
            source.import_secret(master, secret)
            if (i + 1) % 2000 == 0:
                print(f"  imported {i + 1}/{count}", flush=True)
        imported = time.perf_counter() - started
        started = time.perf_counter()
        result = source.load(master)
        loaded = time.perf_counter() - started
        assert len(result.keys) == count and not result.errors
    return {
        "keys": count,
        "load_seconds": loaded,
        "import_seconds": imported,
        "import_per_second": count / imported,
        "backend": bls.name,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    }
    results["argon2_default"] = argon2_default(args.rounds)
    print(f"argon2id m=64MiB t=3 p=4: median {results['argon2_default']['median_ms']:.1f} ms")
    results["kms_only_unseal"] = kms_only_unseal(args.rounds)
    print(
        f"kms_only boot to unsealed (3 local keys, 2 of 3): median "
        f"{results['kms_only_unseal']['median_ms']:.1f} ms"
    )
    results["key_load"] = key_load(args.keys)
    load = results["key_load"]
    print(
        f"encrypted SQLite store, {args.keys} keys: load {load['load_seconds']:.2f} s "
        f"(decrypt + public key), import {load['import_per_second']:,.0f} keys/s one by one"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
