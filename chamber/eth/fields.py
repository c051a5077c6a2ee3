"""Strict JSON field types for signing requests (pydantic ``Annotated`` types).

The Beacon API encodes integers as decimal strings and byte strings as ``0x``-prefixed hex. We
validate both exactly, because a signer that "helpfully" coerces (``" 12"``, ``"1_000"``,
``1.0``, ``True``, short hex left-padded with zeros) would sign something other than what the
client meant. Each validator is a plain function (fast in pydantic-core) that raises a
``PydanticCustomError`` whose message is phrased to follow the field's JSON path, e.g.
``beacon_block.block_header.slot: must be a decimal uint64 string``.

Tolerances, both matching Web3Signer (Jackson reads uint64 via ``getValueAsString``): uint64 values
may also be JSON integers, and leading zeros in decimal strings are accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from chamber.eth.ssz import bitlist_length

UINT64_MAX = 2**64 - 1
_UINT64_DIGITS = len(str(UINT64_MAX))


def parse_uint64(value: Any) -> int:
    """Accept a decimal string (or JSON integer) in ``[0, 2**64 - 1]``; bools and floats never."""
    if type(value) is str:
        if not (0 < len(value) <= _UINT64_DIGITS and value.isascii() and value.isdigit()):
            raise PydanticCustomError("uint64", "must be a decimal uint64 string")
        number = int(value)
    elif type(value) is int:
        number = value
    else:
        raise PydanticCustomError("uint64", "must be a decimal uint64 string")
    if not 0 <= number <= UINT64_MAX:
        raise PydanticCustomError("uint64", "must be a decimal uint64 string: out of range")
    return number


def _decode_hex(value: Any, size: int) -> bytes | None:
    """Exactly ``size`` bytes from a ``0x`` + 2*size hex digit string, else None.

    ``bytes.fromhex`` skips whitespace, so the decoded length is checked too.
    """
    if type(value) is not str or len(value) != 2 + 2 * size or value[:2] != "0x":
        return None
    try:
        decoded = bytes.fromhex(value[2:])
    except ValueError:
        return None
    return decoded if len(decoded) == size else None


def hex_bytes(size: int) -> Callable[[Any], bytes]:
    """Validator for a fixed-size byte string (``BytesN``)."""
    message = f"must be a 0x-prefixed hex string of {size} bytes"

    def validate(value: Any) -> bytes:
        decoded = _decode_hex(value, size)
        if decoded is None:
            raise PydanticCustomError("hex", message)
        return decoded

    return validate


def _optional_root(value: Any) -> bytes | None:
    """A 32-byte root, or JSON null meaning "not given" (as Web3Signer treats it)."""
    if value is None:
        return None
    decoded = _decode_hex(value, 32)
    if decoded is None:
        raise PydanticCustomError("hex", "must be a 0x-prefixed hex string of 32 bytes")
    return decoded


def bitvector(length: int) -> Callable[[Any], bytes]:
    """Validator for a ``Bitvector[length]``: exactly ceil(length/8) bytes, no stray high bits."""
    size = (length + 7) // 8
    spare_mask = (0xFF << (length % 8)) & 0xFF if length % 8 else 0
    message = f"must be a 0x-prefixed hex SSZ bitvector of {length} bits ({size} bytes)"

    def validate(value: Any) -> bytes:
        decoded = _decode_hex(value, size)
        if decoded is None or decoded[-1] & spare_mask:
            raise PydanticCustomError("bitvector", message)
        return decoded

    return validate


def bitlist(limit: int) -> Callable[[Any], bytes]:
    """Validator for a ``Bitlist[limit]`` in SSZ form: the last byte carries the end-marker bit."""
    max_hex = 2 + 2 * (limit // 8 + 1)
    message = f"must be a 0x-prefixed hex SSZ bitlist of at most {limit} bits"

    def validate(value: Any) -> bytes:
        if type(value) is not str or not 4 <= len(value) <= max_hex or len(value) % 2:
            raise PydanticCustomError("bitlist", message)
        decoded = _decode_hex(value, len(value) // 2 - 1)
        if decoded is None:
            raise PydanticCustomError("bitlist", message)
        if decoded[-1] == 0:
            raise PydanticCustomError(
                "bitlist", "must be an SSZ bitlist: the last byte must hold the length marker bit"
            )
        if bitlist_length(decoded) > limit:
            raise PydanticCustomError("bitlist", message)
        return decoded

    return validate


Uint64 = Annotated[int, PlainValidator(parse_uint64)]
Version = Annotated[bytes, PlainValidator(hex_bytes(4))]
Bytes20 = Annotated[bytes, PlainValidator(hex_bytes(20))]
Root = Annotated[bytes, PlainValidator(hex_bytes(32))]
OptionalRoot = Annotated[bytes | None, PlainValidator(_optional_root)]
Pubkey = Annotated[bytes, PlainValidator(hex_bytes(48))]
Signature = Annotated[bytes, PlainValidator(hex_bytes(96))]
