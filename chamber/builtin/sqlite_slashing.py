"""Built-in SQLite slashing-protection backend (the embedded default)."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.slashing import SlashingBackend


@hookimpl
def chamber_slashing_backends() -> Mapping[str, type[SlashingBackend]]:
    from chamber.slashing.sqlite import SQLiteSlashingBackend

    return {"sqlite": SQLiteSlashingBackend}
