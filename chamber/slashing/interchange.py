"""EIP-3076 interchange format v5: parsing, validation, merging into a history, export.

Parsing is strict and names the JSON path of any problem (``data[2].signed_blocks[0].slot``).
:func:`merge_history` is the pure heart of every backend's import: given what a validator's
history holds and what a file brings, it returns exactly what to write, or raises
:class:`ImportRejected` naming the slashable pair, so a bad file changes nothing anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chamber.errors import BadRequest
from chamber.slashing.rules import MAX_STORED, AttestationRecord, BlockRecord

__all__ = [
    "MAX_STORED",
    "ImportRejected",
    "Interchange",
    "MergeResult",
    "ValidatorHistory",
    "check_network",
    "export_document",
    "find_surround",
    "group_by_validator",
    "merge_history",
    "parse_interchange",
]

FORMAT_VERSION = "5"


class ImportRejected(BadRequest):
    """The interchange contradicts itself or the database (slashable); nothing was imported."""


@dataclass(frozen=True, slots=True)
class ValidatorHistory:
    pubkey: bytes
    blocks: tuple[BlockRecord, ...] = ()
    attestations: tuple[AttestationRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Interchange:
    genesis_validators_root: bytes
    validators: tuple[ValidatorHistory, ...]


def _fail(path: str, problem: str) -> BadRequest:
    return BadRequest(f"{path}: {problem}", field=path)


def _hex(value: object, path: str, length: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise _fail(path, f"must be a 0x-prefixed hex string of {length} bytes")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise _fail(path, "is not valid hex") from None
    if len(raw) != length:
        raise _fail(path, f"must be {length} bytes, got {len(raw)}")
    return raw


def _uint(value: object, path: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _fail(path, "must be a decimal integer string")
    if not 0 <= number <= MAX_STORED:
        raise _fail(path, f"must be between 0 and {MAX_STORED}")
    return number


def _object(
    value: object, path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "must be a JSON object")
    for key in required:
        if key not in value:
            raise _fail(f"{path}.{key}" if path else key, "required field is missing")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise _fail(where, "unknown field")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "must be a JSON array")
    return value


def parse_interchange(raw: bytes | str | Mapping[str, Any]) -> Interchange:
    """Parse and validate an interchange document (format v5, complete or minimal)."""
    if isinstance(raw, bytes | str):
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("the interchange file is not valid JSON") from None
    else:
        document = raw
    top = _object(document, "", ("metadata", "data"))
    metadata = _object(
        top["metadata"], "metadata", ("interchange_format_version", "genesis_validators_root")
    )
    version = metadata["interchange_format_version"]
    if version != FORMAT_VERSION:
        raise _fail(
            "metadata.interchange_format_version",
            f'version {version!r} is not supported (need "5")',
        )
    gvr = _hex(metadata["genesis_validators_root"], "metadata.genesis_validators_root", 32)
    validators = []
    for i, entry in enumerate(_list(top["data"], "data")):
        path = f"data[{i}]"
        item = _object(entry, path, ("pubkey",), ("signed_blocks", "signed_attestations"))
        pubkey = _hex(item["pubkey"], f"{path}.pubkey", 48)
        blocks = []
        for j, block in enumerate(_list(item.get("signed_blocks", []), f"{path}.signed_blocks")):
            bpath = f"{path}.signed_blocks[{j}]"
            b = _object(block, bpath, ("slot",), ("signing_root",))
            root = b.get("signing_root")
            blocks.append(
                BlockRecord(
                    _uint(b["slot"], f"{bpath}.slot"),
                    None if root is None else _hex(root, f"{bpath}.signing_root", 32),
                )
            )
        atts = []
        for j, att in enumerate(
            _list(item.get("signed_attestations", []), f"{path}.signed_attestations")
        ):
            apath = f"{path}.signed_attestations[{j}]"
            a = _object(att, apath, ("source_epoch", "target_epoch"), ("signing_root",))
            root = a.get("signing_root")
            atts.append(
                AttestationRecord(
                    _uint(a["source_epoch"], f"{apath}.source_epoch"),
                    _uint(a["target_epoch"], f"{apath}.target_epoch"),
                    None if root is None else _hex(root, f"{apath}.signing_root", 32),
                )
            )
        validators.append(ValidatorHistory(pubkey, tuple(blocks), tuple(atts)))
    return Interchange(gvr, tuple(validators))


def check_network(interchange: Interchange, genesis_validators_root: bytes) -> None:
    if interchange.genesis_validators_root != genesis_validators_root:
        raise ImportRejected(
            "metadata.genesis_validators_root: the interchange is for genesis validators root "
            f"0x{interchange.genesis_validators_root.hex()}, but this signer protects "
            f"0x{genesis_validators_root.hex()}; refusing to import another network's history",
            field="metadata.genesis_validators_root",
        )


def group_by_validator(interchange: Interchange) -> dict[bytes, ValidatorHistory]:
    """Merge entries that repeat a public key (allowed by the format)."""
    merged: dict[bytes, ValidatorHistory] = {}
    for entry in interchange.validators:
        previous = merged.get(entry.pubkey)
        if previous is None:
            merged[entry.pubkey] = entry
        else:
            merged[entry.pubkey] = ValidatorHistory(
                entry.pubkey,
                previous.blocks + entry.blocks,
                previous.attestations + entry.attestations,
            )
    return merged


# ------------------------------------------------------------------------------- merging


@dataclass
class MergeResult:
    """What an import writes for one validator. Records are full replacements by slot/target."""

    pubkey: bytes
    blocks: list[BlockRecord] = field(default_factory=list)
    attestations: list[AttestationRecord] = field(default_factory=list)
    #: Minimum slot / source / target of this import (None when it brings none).
    min_slot: int | None = None
    min_source: int | None = None
    min_target: int | None = None

    @property
    def changes_anything(self) -> bool:
        return bool(self.blocks or self.attestations)


def _single_root(records: Sequence[BlockRecord | AttestationRecord]) -> tuple[bool, bytes | None]:
    """(consistent, merged root) of the records for one slot / target: inconsistent when two
    known roots differ; the merged root is ``None`` if any root is unknown."""
    known = {r.signing_root for r in records if r.signing_root is not None}
    if len(known) > 1:
        return False, None
    if any(r.signing_root is None for r in records):
        return True, None
    return True, known.pop()


def _hex_or_unknown(root: bytes | None) -> str:
    return "unknown" if root is None else "0x" + root.hex()


def _describe(pubkey: bytes) -> str:
    return "0x" + pubkey.hex()


def merge_history(
    imported: ValidatorHistory,
    existing_blocks: Iterable[BlockRecord],
    existing_attestations: Iterable[AttestationRecord],
) -> MergeResult:
    """Combine an import with stored history; raise ImportRejected on any slashable pair."""
    who = _describe(imported.pubkey)
    result = MergeResult(imported.pubkey)

    # Every record for one slot / target, from the file and the database together: two
    # different known roots (or sources) among them is slashable, whatever else is there. An
    # unknown root makes the merged record unknown (the safer one) but never hides a conflict.
    stored_blocks = {b.slot: b for b in existing_blocks}
    by_slot: dict[int, list[BlockRecord]] = {}
    for block in imported.blocks:
        by_slot.setdefault(block.slot, []).append(block)
    new_blocks: dict[int, BlockRecord] = {}
    for slot, records in by_slot.items():
        current = stored_blocks.get(slot)
        everything = records if current is None else [current, *records]
        consistent, root = _single_root(everything)
        if not consistent:
            roots = sorted({_hex_or_unknown(r.signing_root) for r in everything})
            raise ImportRejected(
                f"validator {who}: different blocks at slot {slot} (signing roots "
                f"{', '.join(roots)}): slashable, nothing was imported"
            )
        if current is None or current.signing_root != root:
            new_blocks[slot] = BlockRecord(slot, root)
    result.blocks = sorted(new_blocks.values(), key=lambda b: b.slot)

    stored_atts = {a.target: a for a in existing_attestations}
    by_target: dict[int, list[AttestationRecord]] = {}
    for att in imported.attestations:
        by_target.setdefault(att.target, []).append(att)
    new_atts: dict[int, AttestationRecord] = {}
    for target, atts in by_target.items():
        known = stored_atts.get(target)
        every_att = atts if known is None else [known, *atts]
        sources = sorted({a.source for a in every_att})
        consistent, att_root = _single_root(every_att)
        if len(sources) > 1 or not consistent:
            raise ImportRejected(
                f"validator {who}: different attestations with target epoch {target} "
                f"(sources {', '.join(map(str, sources))}): a double vote, nothing was imported"
            )
        if known is None or known.signing_root != att_root:
            new_atts[target] = AttestationRecord(sources[0], target, att_root)
    result.attestations = sorted(new_atts.values(), key=lambda a: a.target)

    combined = {**stored_atts, **new_atts}
    pair = find_surround(combined.values())
    if pair is not None:
        outer, inner = pair
        raise ImportRejected(
            f"validator {who}: attestation ({outer.source}, {outer.target}) surrounds "
            f"({inner.source}, {inner.target}): slashable, nothing was imported"
        )

    if imported.blocks:
        result.min_slot = min(b.slot for b in imported.blocks)
    if imported.attestations:
        result.min_source = min(a.source for a in imported.attestations)
        result.min_target = min(a.target for a in imported.attestations)
    return result


def find_surround(
    attestations: Iterable[AttestationRecord],
) -> tuple[AttestationRecord, AttestationRecord] | None:
    """A pair (outer, inner) with outer.source < inner.source and outer.target > inner.target.

    Records with source > target (seen in the wild, never signed by us) are kept as they are:
    they only ever make the checks stricter. O(n log n): sweep by source, remembering the
    attestation with the largest target among strictly smaller sources.
    """
    ordered = sorted(attestations, key=lambda a: (a.source, a.target))
    best: AttestationRecord | None = None  # largest target among strictly smaller sources
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j].source == ordered[i].source:
            if best is not None and ordered[j].target < best.target:
                return best, ordered[j]
            j += 1
        for k in range(i, j):
            if best is None or ordered[k].target > best.target:
                best = ordered[k]
        i = j
    return None


# ------------------------------------------------------------------------------- export


def _root_json(root: bytes | None) -> dict[str, str]:
    return {} if root is None else {"signing_root": "0x" + root.hex()}


def export_document(
    genesis_validators_root: bytes, histories: Iterable[ValidatorHistory]
) -> dict[str, Any]:
    """A complete-format interchange document (every record we hold)."""
    data = []
    for history in histories:
        data.append(
            {
                "pubkey": "0x" + history.pubkey.hex(),
                "signed_blocks": [
                    {"slot": str(b.slot), **_root_json(b.signing_root)}
                    for b in sorted(history.blocks, key=lambda b: b.slot)
                ],
                "signed_attestations": [
                    {
                        "source_epoch": str(a.source),
                        "target_epoch": str(a.target),
                        **_root_json(a.signing_root),
                    }
                    for a in sorted(history.attestations, key=lambda a: a.target)
                ],
            }
        )
    return {
        "metadata": {
            "interchange_format_version": FORMAT_VERSION,
            "genesis_validators_root": "0x" + genesis_validators_root.hex(),
        },
        "data": data,
    }
