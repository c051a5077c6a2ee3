"""BLS12-381 signatures for Ethereum (ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_``).

A small backend interface with three implementations: ``blspy`` (default, native, releases the
GIL), ``milagro`` (milagro-bls-binding, native fallback) and ``py_ecc`` (pure Python reference).
All three must agree byte for byte (tested with hypothesis and the bls12-381-tests vectors).

PLACEHOLDER: the implementations are being written; the Protocol below is the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

ETH2_DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
#: Order of the BLS12-381 scalar field: a secret key is an integer in [1, CURVE_ORDER).
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


@runtime_checkable
class BlsBackend(Protocol):
    """One BLS implementation. Secret keys are opaque handles owned by the backend.

    Contract: ``secret_key`` rejects (``ValueError``) a zero key, a key >= the curve order and
    anything that is not 32 bytes, without putting the key bytes in the message. ``sign`` is
    thread-safe. ``verify``-style methods return ``False`` (never raise) for malformed points.
    """

    name: str

    @classmethod
    def available(cls) -> bool:
        """Whether the underlying library imports on this machine."""
        ...

    def secret_key(self, raw: bytes) -> object: ...

    def public_key(self, sk: object) -> bytes:
        """48-byte compressed G1 public key of ``sk``."""
        ...

    def sign(self, sk: object, message: bytes) -> bytes:
        """96-byte compressed G2 signature of ``message``."""
        ...

    def verify(self, pubkey: bytes, message: bytes, signature: bytes) -> bool: ...

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        """Aggregate signatures; ``ValueError`` for an empty list or an invalid point."""
        ...

    def aggregate_verify(
        self, pubkeys: Sequence[bytes], messages: Sequence[bytes], signature: bytes
    ) -> bool: ...

    def fast_aggregate_verify(
        self, pubkeys: Sequence[bytes], message: bytes, signature: bytes
    ) -> bool: ...
