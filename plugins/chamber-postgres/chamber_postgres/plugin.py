"""Registers the ``postgres`` slashing-protection backend (entry point ``chamber_postgres``)."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.slashing import SlashingBackend


@hookimpl
def chamber_slashing_backends() -> Mapping[str, type[SlashingBackend]]:
    from chamber_postgres.backend import PostgresSlashingBackend

    return {"postgres": PostgresSlashingBackend}
