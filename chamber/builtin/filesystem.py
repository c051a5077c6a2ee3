"""Built-in filesystem key source (Web3Signer YAML descriptors and EIP-2335 keystores)."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.keys import KeySource


@hookimpl
def chamber_key_sources() -> Mapping[str, type[KeySource]]:
    from chamber.keys.filesystem import FilesystemKeySource

    return {"filesystem": FilesystemKeySource}
