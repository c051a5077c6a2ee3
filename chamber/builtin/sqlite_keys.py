"""Built-in SQLite encrypted key store (the embedded default; needs the chamber unsealed)."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.keys import KeySource


@hookimpl
def chamber_key_sources() -> Mapping[str, type[KeySource]]:
    from chamber.keys.sqlite_store import SQLiteKeySource

    return {"sqlite": SQLiteKeySource}
