"""``containment-chamber plugins`` and ``containment-chamber config check``."""

from __future__ import annotations

import sys
from pathlib import Path

import cyclopts
import orjson
import yaml

from chamber.config import load_settings, redacted
from chamber.crypto.bls import select_backend
from chamber.errors import StartupError

config_app = cyclopts.App(name="config", help="Inspect configuration.")


def plugins() -> None:
    """List every plugin: its name, version, distribution and what it provides."""
    from chamber.plugins import load_plugins

    try:
        manager = load_plugins()
    except StartupError as error:
        print(f"containment-chamber: {error.message}", file=sys.stderr)
        sys.exit(2)
    bls_backends = manager.providers("chamber_bls_backends")
    rows = []
    for info in manager.describe():
        row: dict[str, object] = {
            "name": info.name,
            "version": info.version,
            "distribution": info.distribution or "containment-chamber (built-in)",
            "provides": info.provides,
        }
        rows.append(row)
    available = [n for n, p in bls_backends.items() if p.cls.available()]
    classes = {n: p.cls for n, p in bls_backends.items()}
    active = select_backend("auto", classes).name if available else None
    output = {"plugins": rows, "bls_backends": {"available": available, "default": active}}
    print(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode())


@config_app.command
def check(file: Path, /) -> None:
    """Validate FILE with CONTAINMENT_* variables; print the effective settings, secrets hidden."""
    try:
        settings = load_settings(file)
    except StartupError as error:
        print(f"containment-chamber: {error.message}", file=sys.stderr)
        sys.exit(2)
    print(yaml.safe_dump(redacted(settings), sort_keys=False), end="")
