"""Slashing protection (EIP-3076): the backend contract and the single call site before signing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self


class SlashingBackend(Protocol):
    """Decides and records, atomically, whether a block or attestation may be signed.

    Contract:
    - ``check_and_record_block`` / ``check_and_record_attestation`` return only after the record
      is durable; a slashable request raises :class:`chamber.errors.SlashingRefused` whose message
      names the conflicting record; re-signing the identical signing root succeeds.
    - Any other failure raises (the caller answers 5xx/503 and produces no signature).
    - ``healthy()`` is cheap and says whether the database is reachable (``/healthcheck``).
    """

    name: str

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self: ...

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None: ...

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None: ...

    def healthy(self) -> bool: ...

    def close(self) -> None: ...
