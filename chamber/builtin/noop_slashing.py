"""The ``noop`` slashing backend: records nothing and refuses nothing.

Only for tests and benchmarks. The server refuses to use it unless the configuration names it
explicitly (``anti_slashing.backend: noop``), and warns loudly at every start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from chamber.errors import BadRequest, ConfigError
from chamber.hookspecs import hookimpl
from chamber.slashing import ImportReport, PruneReport, SlashingBackend
from chamber.slashing.interchange import export_document


class NoopSlashingBackend:
    name = "noop"
    keeps_full_history = False

    def __init__(self, genesis_validators_root: bytes) -> None:
        self.gvr = genesis_validators_root

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], genesis_validators_root: bytes) -> Self:
        if settings:
            unknown = ", ".join(f"anti_slashing.{key}" for key in sorted(settings))
            raise ConfigError(f"{unknown}: unknown key for the noop backend")
        return cls(genesis_validators_root)

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        return None

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        return None

    def check_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        return None

    def check_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        return None

    def import_interchange(self, document: bytes | Mapping[str, Any]) -> ImportReport:
        raise BadRequest("anti_slashing.backend is noop: it keeps no history to import into")

    def export_interchange(self, pubkeys: Sequence[bytes] | None = None) -> dict[str, Any]:
        return export_document(self.gvr, [])

    def prune(self, keep_epochs: int, slots_per_epoch: int = 32) -> PruneReport:
        return PruneReport(0, 0)

    def set_watermark(
        self,
        pubkey: bytes,
        *,
        block_slot: int | None = None,
        source_epoch: int | None = None,
        target_epoch: int | None = None,
    ) -> None:
        raise BadRequest("anti_slashing.backend is noop: it keeps no watermarks")

    def healthy(self) -> bool:
        return True

    def integrity_check(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


@hookimpl
def chamber_slashing_backends() -> Mapping[str, type[SlashingBackend]]:
    return {"noop": NoopSlashingBackend}
