"""Minimal SSZ ``hash_tree_root`` helpers over :mod:`hashlib`.

Only merkleization is implemented: the signer never serializes SSZ, it only needs the roots of the
objects a validator client asks it to sign. Every function is pure and works on plain Python
values (ints, bytes, lists of chunk roots) so that the request models can hash themselves without
an object framework in between; this keeps the per-request cost to a handful of SHA-256 calls.

Conventions follow the consensus-specs ``ssz/simple-serialize.md``:

* a *chunk* is 32 bytes; basic values are packed little-endian into chunks;
* ``merkleize(chunks, limit)`` pads with zero subtrees up to the next power of two of ``limit``
  (or of ``len(chunks)`` when no limit applies) and is the chunk itself for a single chunk;
* lists and bitlists mix their length in.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

CHUNK_SIZE = 32
BITS_PER_CHUNK = CHUNK_SIZE * 8
_ZERO_CHUNK = bytes(CHUNK_SIZE)


def hash_pair(left: bytes, right: bytes) -> bytes:
    """SHA-256 of two concatenated 32-byte nodes: one step up the Merkle tree."""
    return sha256(left + right).digest()


def _zero_hashes(depth: int) -> tuple[bytes, ...]:
    hashes = [_ZERO_CHUNK]
    for _ in range(depth):
        hashes.append(hash_pair(hashes[-1], hashes[-1]))
    return tuple(hashes)


#: ``ZERO_HASHES[d]`` is the root of a depth-``d`` tree of zero chunks; precomputed so padding a
#: sparse list (a bitlist limited to 131072 bits, say) costs nothing.
ZERO_HASHES: tuple[bytes, ...] = _zero_hashes(64)


def uint_chunk(value: int, size: int = 8) -> bytes:
    """Root of a single unsigned integer of ``size`` bytes (uint64: 8, uint256: 32)."""
    return value.to_bytes(size, "little").ljust(CHUNK_SIZE, b"\0")


def uint64_chunk(value: int) -> bytes:
    """Root of a uint64: its little-endian bytes in the first 8 bytes of a zero chunk."""
    return value.to_bytes(8, "little") + _ZERO_CHUNK[8:]


def bool_chunk(value: bool) -> bytes:
    """Root of a boolean."""
    return uint_chunk(1 if value else 0, 1)


def pack_bytes(data: bytes) -> list[bytes]:
    """Split ``data`` into 32-byte chunks, zero-padding the last one (SSZ ``pack``)."""
    if not data:
        return []
    remainder = len(data) % CHUNK_SIZE
    if remainder:
        data = data + bytes(CHUNK_SIZE - remainder)
    return [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


def pack_uints(values: Sequence[int], size: int = 8) -> list[bytes]:
    """Pack unsigned integers of ``size`` bytes each into chunks (SSZ ``pack`` of basic values)."""
    return pack_bytes(b"".join(v.to_bytes(size, "little") for v in values))


def merkleize(chunks: Sequence[bytes], limit: int | None = None) -> bytes:
    """Merkle root of ``chunks`` padded with zero chunks to the next power of two of ``limit``.

    Raises ``ValueError`` when there are more chunks than ``limit`` allows: callers validate list
    lengths first, so reaching this is a programming error rather than bad input.
    """
    count = len(chunks)
    if limit is None:
        limit = count
    if count > limit:
        raise ValueError(f"{count} chunks exceed the limit of {limit}")
    depth = (limit - 1).bit_length() if limit > 1 else 0
    if count == 0:
        return ZERO_HASHES[depth]
    layer = list(chunks)
    for level in range(depth):
        if len(layer) & 1:
            layer.append(ZERO_HASHES[level])
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def mix_in_length(root: bytes, length: int) -> bytes:
    """Mix a list's length into its content root, as every SSZ list and bitlist does."""
    return sha256(root + length.to_bytes(32, "little")).digest()


def container_root(field_roots: Sequence[bytes]) -> bytes:
    """Root of a container given the roots of its fields, in declaration order."""
    return merkleize(field_roots)


def byte_vector_root(data: bytes) -> bytes:
    """Root of a ``ByteVector[len(data)]`` (Bytes4, Bytes20, Bytes32, Bytes48, Bytes96 ...)."""
    if len(data) == CHUNK_SIZE:
        return data
    return merkleize(pack_bytes(data))


def vector_root(element_roots: Sequence[bytes]) -> bytes:
    """Root of a fixed-length ``Vector`` of composite values (or of Bytes32) from element roots."""
    return merkleize(element_roots)


def list_root(element_roots: Sequence[bytes], limit: int) -> bytes:
    """Root of a ``List[T, limit]`` of composite values (or Bytes32) from element roots."""
    return mix_in_length(merkleize(element_roots, limit), len(element_roots))


def basic_vector_root(values: Sequence[int], size: int = 8) -> bytes:
    """Root of a ``Vector`` of unsigned integers of ``size`` bytes."""
    return merkleize(pack_uints(values, size))


def basic_list_root(values: Sequence[int], limit: int, size: int = 8) -> bytes:
    """Root of a ``List[uintN, limit]`` of unsigned integers of ``size`` bytes."""
    chunk_limit = (limit * size + CHUNK_SIZE - 1) // CHUNK_SIZE
    return mix_in_length(merkleize(pack_uints(values, size), chunk_limit), len(values))


def bitvector_root(data: bytes, length: int) -> bytes:
    """Root of a ``Bitvector[length]`` from its serialized bytes (bit i is bit i%8 of byte i//8)."""
    return merkleize(pack_bytes(data), (length + BITS_PER_CHUNK - 1) // BITS_PER_CHUNK)


def bitlist_length(serialized: bytes) -> int:
    """Number of bits in a serialized bitlist (the last byte's highest set bit marks the end).

    The caller guarantees a non-empty ``serialized`` whose last byte is non-zero.
    """
    return (len(serialized) - 1) * 8 + serialized[-1].bit_length() - 1


def bitlist_root(serialized: bytes, limit: int) -> bytes:
    """Root of a ``Bitlist[limit]`` from its SSZ serialization (ending in a delimiter bit)."""
    length = bitlist_length(serialized)
    last = serialized[-1]
    data = serialized[:-1] + bytes((last ^ (1 << (last.bit_length() - 1)),))
    data = data[: (length + 7) // 8]
    chunk_limit = (limit + BITS_PER_CHUNK - 1) // BITS_PER_CHUNK
    return mix_in_length(merkleize(pack_bytes(data), chunk_limit), length)
