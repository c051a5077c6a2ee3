"""Built-in SQLite vault state store (the embedded default)."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import StateBackend


@hookimpl
def chamber_state_backends() -> Mapping[str, type[StateBackend]]:
    from chamber.vault.sqlite_state import SQLiteStateBackend

    return {"sqlite": SQLiteStateBackend}
