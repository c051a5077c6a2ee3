"""Slashing protection (EIP-3076): the backend contract.

The signing path has one call site per kind (``check_and_record_block`` /
``check_and_record_attestation``) and produces no signature unless it returned. The rules live in
:mod:`chamber.slashing.rules`, the interchange format in :mod:`chamber.slashing.interchange`;
backends only store and fetch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from chamber.eth.requests import SigningJob


@dataclass(frozen=True, slots=True)
class ImportReport:
    validators: int
    blocks_written: int
    attestations_written: int


@dataclass(frozen=True, slots=True)
class PruneReport:
    blocks_deleted: int
    attestations_deleted: int


class SlashingBackend(Protocol):
    """Decides and records, atomically, whether a block or attestation may be signed.

    Contract:
    - ``from_config(settings, genesis_validators_root)``: the backend refuses (``StartupError``)
      a database that already belongs to another genesis validators root.
    - ``check_and_record_block`` / ``check_and_record_attestation`` return only after the record
      is durable; a slashable request raises :class:`chamber.slashing.rules.Refused` (a
      ``SlashingRefused``, HTTP 412) whose message names the conflicting record; re-signing the
      identical signing root succeeds and writes nothing.
    - ``check_block`` / ``check_attestation``: the same decision, recording nothing (dry run).
    - ``import_interchange``: all or nothing; a file that is slashable against itself or the
      database raises ``ImportRejected`` and changes nothing. Importing the same file twice
      changes nothing the second time.
    - ``export_interchange``: complete format, for the given keys or all.
    - ``prune(keep_epochs)``: per validator, delete attestations with a target more than
      ``keep_epochs`` before its newest and blocks more than ``keep_epochs`` epochs before its
      newest, raising floors so that the deleted history keeps protecting.
    - ``set_watermark``: after data loss, declare that the validator may have signed blocks up
      to ``block_slot`` and attestations up to ``target_epoch``: blocks at or below
      ``block_slot``, attestations with target at or below ``target_epoch`` and attestations
      with source below ``source_epoch`` are refused from then on. Floors are only ever raised.
      Values no backend can store raise ``BadRequest`` (use ``rules.require_storable``).
    - Any other failure raises, and the caller produces no signature.
    - ``healthy()`` is cheap; ``integrity_check()`` returns problems found (empty = fine).
    """

    name: str
    #: True when every signed record is kept (interchange tests' ``should_succeed_complete``).
    keeps_full_history: bool

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], genesis_validators_root: bytes) -> Self: ...

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None: ...

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None: ...

    def check_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None: ...

    def check_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None: ...

    def import_interchange(self, document: bytes | Mapping[str, Any]) -> ImportReport: ...

    def export_interchange(self, pubkeys: Sequence[bytes] | None = None) -> dict[str, Any]: ...

    def prune(self, keep_epochs: int, slots_per_epoch: int = 32) -> PruneReport: ...

    def set_watermark(
        self,
        pubkey: bytes,
        *,
        block_slot: int | None = None,
        source_epoch: int | None = None,
        target_epoch: int | None = None,
    ) -> None: ...

    def healthy(self) -> bool: ...

    def integrity_check(self) -> list[str]: ...

    def close(self) -> None: ...


def begin_protect(
    backend: SlashingBackend, pubkey: bytes, job: SigningJob
) -> Callable[[], None] | None:
    """Start the durable check-and-record of a block or attestation; None for other types.

    Backends that can queue a check (``begin_block`` / ``begin_attestation``, e.g. SQLite's group
    commit) return at once, so the caller computes the signature while the batch commits; the
    returned callable must be called, and must return, before the signature is released. Other
    backends check synchronously here and return a no-op.
    """
    if job.block_slot is not None:
        begin = getattr(backend, "begin_block", None)
        if begin is not None:
            waiter: Callable[[], None] = begin(pubkey, job.block_slot, job.signing_root)
            return waiter
        backend.check_and_record_block(pubkey, job.block_slot, job.signing_root)
        return _done
    if job.attestation_epochs is not None:
        source, target = job.attestation_epochs
        begin = getattr(backend, "begin_attestation", None)
        if begin is not None:
            waiter = begin(pubkey, source, target, job.signing_root)
            return waiter
        backend.check_and_record_attestation(pubkey, source, target, job.signing_root)
        return _done
    return None


def _done() -> None:
    return None


def dry_run(backend: SlashingBackend, pubkey: bytes, job: SigningJob) -> bool:
    """Would signing ``job`` be refused? Records nothing.

    Returns whether the request type is slashing-relevant (a block or an attestation); raises
    ``Refused`` (412) when it is slashable. Signing itself goes through :func:`begin_protect`.
    """
    if job.block_slot is not None:
        backend.check_block(pubkey, job.block_slot, job.signing_root)
        return True
    if job.attestation_epochs is not None:
        source, target = job.attestation_epochs
        backend.check_attestation(pubkey, source, target, job.signing_root)
        return True
    return False
