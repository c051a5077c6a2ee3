"""``containment-chamber server``: run the signer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from chamber.config import load_settings
from chamber.errors import StartupError
from chamber.logs import configure_logging


def server(
    *,
    config: Annotated[Path | None, Parameter(name=["--config", "-c"])] = None,
    server_listen_address: str | None = None,
    server_listen_port: int | None = None,
    metrics_listen_address: str | None = None,
    metrics_listen_port: int | None = None,
    network: str | None = None,
    key_sources_filesystem_paths: list[Path] | None = None,
    anti_slashing_backend: str | None = None,
    bls_backend: str | None = None,
    log_level: str | None = None,
) -> None:
    """Run the signer.

    Settings come from the YAML file (--config), then CONTAINMENT_* environment variables, then
    these flags, each overriding the one before.
    """
    from chamber.plugins import load_plugins
    from chamber.server import serve
    from chamber.signer import build_signer

    overrides = {
        "server.listen_address": server_listen_address,
        "server.listen_port": server_listen_port,
        "metrics.listen_address": metrics_listen_address,
        "metrics.listen_port": metrics_listen_port,
        "network": network,
        "key_sources.filesystem.paths": (
            [str(p) for p in key_sources_filesystem_paths] if key_sources_filesystem_paths else None
        ),
        "anti_slashing.backend": anti_slashing_backend,
        "bls.backend": bls_backend,
        "logging.level": log_level,
    }
    try:
        settings = load_settings(config, overrides=overrides)
        configure_logging(settings.logging.level, settings.logging.format)
        signer = build_signer(settings, load_plugins())
    except StartupError as error:
        print(f"containment-chamber: {error.message}", file=sys.stderr)
        sys.exit(2)
    serve(signer)
