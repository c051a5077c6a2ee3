"""``containment-chamber keys ...``: offline checks of validator key files.

``keys check`` loads key directories exactly as the server's filesystem key source would (same
parser, same decryption, same duplicate rule), so an operator can validate a directory before
pointing a running signer at it. Output is one line per key file, never secret material.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import cyclopts

keys_app = cyclopts.App(
    name="keys",
    help="Inspect validator key files (Web3Signer YAML descriptors, EIP-2335 keystores).",
)


@keys_app.command
def check(
    *paths: Annotated[Path, cyclopts.Parameter(help="Directories (non-recursive) or key files.")],
    concurrency: Annotated[
        int | None,
        cyclopts.Parameter(help="Keystores decrypted in parallel (default: CPU count)."),
    ] = None,
) -> int:
    """Load key files as the server would; print one line per file; exit 1 if any failed.

    Each line is ``ok <path> <pubkey>`` or ``error <path>: <reason>``. An empty selection also
    exits 1: checking a directory that holds no keys is almost always a wrong path.
    """
    from chamber.keys.filesystem import check_paths

    if not paths:
        print("keys check: give at least one directory or key file", file=sys.stderr)
        return 2
    if concurrency is not None and concurrency < 1:
        print("keys check: --concurrency must be at least 1", file=sys.stderr)
        return 2

    show_progress = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rdecrypting keystores: {done}/{total}", end=end, file=sys.stderr, flush=True)

    statuses = check_paths(
        [str(path) for path in paths],
        load_concurrency=concurrency,
        progress=progress if show_progress else None,
    )
    failed = 0
    for status in statuses:
        if status.status == "ok":
            print(f"ok     {status.path}  {status.pubkey}")
        else:
            failed += 1
            print(f"error  {status.path}: {status.reason}")
    loaded = len(statuses) - failed
    if not statuses:
        print("no key files found (looked for *.yaml, *.yml, *.json)")
        return 1
    print(f"{loaded} ok, {failed} failed")
    return 1 if failed else 0
