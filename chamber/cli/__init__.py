"""The ``containment-chamber`` command line (cyclopts).

Sub-apps live in their own modules and are registered here: ``server``, ``plugins``,
``config``, ``keys`` (and later ``operator``, ``slashing``).
"""

from __future__ import annotations

import cyclopts

from chamber import __version__

app = cyclopts.App(
    name="containment-chamber",
    help="Remote signer for Ethereum validators.",
    version=__version__,
)


def _register() -> None:
    from chamber.cli import info, keys, operator, quickstart, server, slashing

    app.command(server.server)
    app.command(quickstart.quickstart)
    app.command(info.plugins)
    app.command(info.config_app)
    app.command(keys.keys_app)
    app.command(slashing.slashing_app)
    app.command(operator.operator_app)


def main() -> None:
    _register()
    app()
