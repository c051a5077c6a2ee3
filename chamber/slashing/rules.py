"""EIP-3076 slashing-protection rules, independent of any database.

Backends fetch the few facts a decision needs (the record at the same slot / target, a
surrounding and a surrounded attestation if any, the validator's floors and maxima), call these
pure functions inside their transaction, and write what they return. Keeping the rules here means
every backend refuses exactly the same requests, and the rules are tested once, without I/O.

Model (the "complete history" strategy of the interchange tests):

- Every signed block and attestation is kept, with its signing root (``None`` when an
  interchange import did not carry one: such a record conflicts with anything at its slot or
  target, because we cannot know what was signed).
- Re-signing the identical signing root is always allowed (lesson: a validator retrying after a
  lost answer must not be locked out) and writes nothing.
- Floors protect what is not in the history: ``block_floor`` refuses any block with a lower slot,
  ``source_floor`` / ``target_floor`` refuse attestations with a lower source / target epoch.
  Imports set them to the minimum of the imported records (EIP-3076); pruning and
  ``set-watermark`` raise them so that deleted history keeps protecting.
- Fast path: an attestation with ``source >= max_source`` and ``target > max_target`` can neither
  surround nor be surrounded by any stored attestation, so backends skip the surround queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chamber.errors import BadRequest, SlashingRefused

#: Slots and epochs are stored as signed 64-bit integers by every backend.
MAX_STORED = 2**63 - 1


def require_storable(field: str, value: int, *, headroom: int = 0) -> None:
    """Refuse (400, naming ``field``) a slot or epoch no backend can store.

    ``headroom`` covers values stored as ``value + headroom`` (watermarks). Real chains are
    nowhere near 2**63 slots; such a request is a bug or an attack, never a duty.
    """
    if not 0 <= value <= MAX_STORED - headroom:
        raise BadRequest(
            f"{field}: {value} is outside the range slashing protection stores "
            f"(0 to {MAX_STORED - headroom})",
            field=field,
        )


class Reason(StrEnum):
    """Why a request was refused (metric label and audit field)."""

    DOUBLE_PROPOSAL = "double_proposal"
    DOUBLE_VOTE = "double_vote"
    SURROUNDING_VOTE = "surrounding_vote"
    SURROUNDED_VOTE = "surrounded_vote"
    BELOW_WATERMARK = "below_watermark"
    SOURCE_AFTER_TARGET = "source_after_target"


class Refused(SlashingRefused):
    """A slashing-protection refusal with its machine-readable reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def watermark_floors(
    block_slot: int | None, source_epoch: int | None, target_epoch: int | None
) -> Floors:
    """The hard floors that ``set_watermark`` raises to: blocks at or below ``block_slot`` and
    attestations with target at or below ``target_epoch`` or source below ``source_epoch``
    are refused. Validates the values (400 naming the field) for every backend."""
    for name, value, headroom in (
        ("slot", block_slot, 1),
        ("source_epoch", source_epoch, 0),
        ("target_epoch", target_epoch, 1),
    ):
        if value is not None:
            require_storable(name, value, headroom=headroom)
    return Floors(
        None if block_slot is None else block_slot + 1,
        source_epoch,
        None if target_epoch is None else target_epoch + 1,
    )


@dataclass(frozen=True, slots=True)
class BlockRecord:
    slot: int
    signing_root: bytes | None


@dataclass(frozen=True, slots=True)
class AttestationRecord:
    source: int
    target: int
    signing_root: bytes | None


@dataclass(frozen=True, slots=True)
class Floors:
    """Lowest values that may be signed (``None`` = no floor). See the module docstring."""

    block_floor: int | None = None
    source_floor: int | None = None
    target_floor: int | None = None


def _root(root: bytes | None) -> str:
    return "0x" + root.hex() if root is not None else "unknown (imported without signing root)"


def is_repeat(existing_root: bytes | None, root: bytes) -> bool:
    """Identical re-signing: only when the stored root is known and equal."""
    return existing_root is not None and existing_root == root


def decide_block(
    slot: int, signing_root: bytes, existing: BlockRecord | None, floors: Floors
) -> bool:
    """Return True for a new record to write, False for an identical re-sign; raise if refused."""
    if existing is not None:
        if is_repeat(existing.signing_root, signing_root):
            return False
        raise Refused(
            Reason.DOUBLE_PROPOSAL,
            f"double proposal: a block at slot {slot} with signing root "
            f"{_root(existing.signing_root)} was already signed",
        )
    if floors.block_floor is not None and slot < floors.block_floor:
        raise Refused(
            Reason.BELOW_WATERMARK,
            f"block slot {slot} is below the low watermark {floors.block_floor} "
            "(history before it was imported, pruned or reset)",
        )
    return True


def attestation_fast_path(
    source: int, target: int, max_source: int | None, max_target: int | None
) -> bool:
    """True when no stored attestation can surround or be surrounded by (source, target)."""
    return (max_source is None or source >= max_source) and (
        max_target is None or target > max_target
    )


def decide_attestation(
    source: int,
    target: int,
    signing_root: bytes,
    same_target: AttestationRecord | None,
    surrounding: AttestationRecord | None,
    surrounded: AttestationRecord | None,
    floors: Floors,
) -> bool:
    """Return True for a new record, False for an identical re-sign; raise if refused.

    ``surrounding`` is a stored attestation with source < ``source`` and target > ``target``;
    ``surrounded`` one with source > ``source`` and target < ``target`` (either may be None).
    """
    if source > target:
        raise Refused(
            Reason.SOURCE_AFTER_TARGET,
            f"attestation source epoch {source} is after its target epoch {target}",
        )
    if same_target is not None:
        if is_repeat(same_target.signing_root, signing_root) and same_target.source == source:
            return False
        raise Refused(
            Reason.DOUBLE_VOTE,
            f"double vote: an attestation with target epoch {target} (source "
            f"{same_target.source}, signing root {_root(same_target.signing_root)}) was "
            "already signed",
        )
    if floors.source_floor is not None and source < floors.source_floor:
        raise Refused(
            Reason.BELOW_WATERMARK,
            f"attestation source epoch {source} is below the low watermark {floors.source_floor}",
        )
    if floors.target_floor is not None and target < floors.target_floor:
        raise Refused(
            Reason.BELOW_WATERMARK,
            f"attestation target epoch {target} is below the low watermark {floors.target_floor}",
        )
    if surrounding is not None:
        raise Refused(
            Reason.SURROUNDED_VOTE,
            f"surround vote: ({source}, {target}) is surrounded by the signed attestation "
            f"({surrounding.source}, {surrounding.target})",
        )
    if surrounded is not None:
        raise Refused(
            Reason.SURROUNDING_VOTE,
            f"surround vote: ({source}, {target}) surrounds the signed attestation "
            f"({surrounded.source}, {surrounded.target})",
        )
    return True
