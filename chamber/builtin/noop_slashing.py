"""The ``noop`` slashing backend: records nothing and refuses nothing.

Only for tests and benchmarks. The server refuses to use it unless the configuration names it
explicitly (``anti_slashing.backend: noop``), and warns loudly at every start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from chamber.errors import ConfigError
from chamber.hookspecs import hookimpl
from chamber.slashing import SlashingBackend


class NoopSlashingBackend:
    name = "noop"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        if settings:
            unknown = ", ".join(f"anti_slashing.{key}" for key in sorted(settings))
            raise ConfigError(f"{unknown}: unknown key for the noop backend")
        return cls()

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        return None

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        return None


@hookimpl
def chamber_slashing_backends() -> Mapping[str, type[SlashingBackend]]:
    return {"noop": NoopSlashingBackend}
