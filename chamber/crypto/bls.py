"""BLS12-381 signatures for Ethereum (ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_``).

A small backend interface with three implementations: ``blspy`` (default, native, releases the
GIL), ``milagro`` (milagro-bls-binding, native fallback) and ``py_ecc`` (pure Python reference).
All three must agree byte for byte (tested with hypothesis and the bls12-381-tests vectors).

The libraries disagree on edge cases the Ethereum vectors pin down (blspy accepts a zero secret
key, an infinity public key in ``fast_aggregate_verify`` and an empty ``aggregate_verify``;
milagro and py_ecc aggregate points outside G2), so every input check that defines the
*contract* lives once, in :class:`_CheckedBackend`, and the backends only run the cryptography.

Native libraries are imported when a backend is constructed, never at module import, so a
missing optional library costs nothing until someone asks for that backend.
"""

from __future__ import annotations

import hashlib
import importlib
import secrets
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Final, Protocol, final, runtime_checkable

from chamber.errors import StartupError

ETH2_DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
#: Order of the BLS12-381 scalar field: a secret key is an integer in [1, CURVE_ORDER).
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001

SECRET_KEY_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 48
SIGNATURE_SIZE: Final = 96
#: The only valid encodings of the identity: compressed, infinity flag set, everything else zero.
G1_INFINITY: Final = b"\xc0" + bytes(PUBLIC_KEY_SIZE - 1)
G2_INFINITY: Final = b"\xc0" + bytes(SIGNATURE_SIZE - 1)

#: Bits of the curve order below the leading one, for milagro's double-and-add subgroup check.
_ORDER_TAIL_BITS: Final = bin(CURVE_ORDER)[3:]
#: Secret key 1: signing with it yields the bare hash-to-curve point H(m).
_SECRET_ONE: Final = (1).to_bytes(SECRET_KEY_SIZE, "big")
#: Batch verification coefficients: 64 random bits, as blst, milagro and Lighthouse use.
_BATCH_RANDOM_BITS: Final = 64
#: Malformed-input errors the libraries raise while decoding points (pybind11 maps C++
#: ``invalid_argument`` to ValueError and some ``runtime_error`` paths to RuntimeError).
_DECODE_ERRORS: Final = (ValueError, RuntimeError)


@final
class SecretKey:
    """A backend's secret-key handle behind a wall: never printed, never pickled.

    The libraries' own handles show the key (blspy's ``PrivateKey`` repr is the key in hex;
    milagro's is the raw bytes, py_ecc's an int), so every backend hands out this wrapper and
    unwraps it itself. Only the owning backend reads ``handle``.
    """

    __slots__ = ("handle",)

    def __init__(self, handle: object) -> None:
        self.handle = handle

    def __repr__(self) -> str:
        return "SecretKey(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> Any:
        raise TypeError("secret keys cannot be pickled")


@runtime_checkable
class BlsBackend(Protocol):
    """One BLS implementation. Secret keys are opaque handles owned by the backend.

    Contract: ``secret_key`` rejects (``ValueError``) a zero key, a key >= the curve order and
    anything that is not 32 bytes, without putting the key bytes in the message (a non-bytes
    argument is a caller bug: ``TypeError``). ``sign`` is thread-safe. ``verify``-style methods
    return ``False`` (never raise) for malformed points, wrong lengths and empty key lists.
    Handles are :class:`SecretKey` wrappers, which never print or pickle the key.
    """

    name: str

    @classmethod
    def available(cls) -> bool:
        """Whether the underlying library imports on this machine."""
        ...

    def secret_key(self, raw: bytes) -> SecretKey: ...

    def public_key(self, sk: SecretKey) -> bytes:
        """48-byte compressed G1 public key of ``sk``."""
        ...

    def sign(self, sk: SecretKey, message: bytes) -> bytes:
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

    def batch_verify(
        self, pubkeys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
    ) -> bool:
        """True iff every ``(pubkey, message, signature)`` set verifies; False for none."""
        ...

    def hash_to_g2(self, message: bytes, dst: bytes = ETH2_DST) -> bytes:
        """RFC 9380 ``hash_to_curve`` onto G2 (SHA-256, SSWU, random oracle), compressed."""
        ...

    def g1_decompress_valid(self, data: bytes) -> bool:
        """Whether ``data`` is the canonical compressed encoding of a point of G1."""
        ...

    def g2_decompress_valid(self, data: bytes) -> bool:
        """Whether ``data`` is the canonical compressed encoding of a point of G2."""
        ...


def _octets(value: object, size: int | None = None) -> bytes | None:
    """``value`` as bytes if it is bytes-like (of ``size`` bytes when given), else None.

    Verification answers False rather than raising on a wrong type, so a malformed request can
    never turn into a 500; callers that hold a ``bytearray`` or ``memoryview`` still work.
    """
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, (bytearray, memoryview)):
        data = bytes(value)
    else:
        return None
    if size is not None and len(data) != size:
        return None
    return data


def _pubkey(value: object) -> bytes | None:
    """A 48-byte public key that passes the cheap part of KeyValidate, else None.

    The identity is refused here, once, because blspy's ``fast_aggregate_verify`` accepts it;
    the non-canonical infinity encodings fail decompression in every library.
    """
    data = _octets(value, PUBLIC_KEY_SIZE)
    return None if data is None or data == G1_INFINITY else data


def _octet_list(values: Sequence[object], size: int | None = None) -> list[bytes] | None:
    out: list[bytes] = []
    for value in values:
        data = _octets(value, size)
        if data is None:
            return None
        out.append(data)
    return out


def _pubkey_list(values: Sequence[object]) -> list[bytes] | None:
    out: list[bytes] = []
    for value in values:
        data = _pubkey(value)
        if data is None:
            return None
        out.append(data)
    return out


def validate_secret_key(raw: object) -> bytes:
    """The 32 big-endian bytes of a usable secret key, or ``ValueError``/``TypeError``.

    Checked here rather than by the libraries because they disagree (blspy accepts zero) and
    because their messages are not ours to vouch for: ours never contain the key.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"secret key must be bytes, not {type(raw).__name__}")
    data = bytes(raw)
    if len(data) != SECRET_KEY_SIZE:
        raise ValueError(f"secret key must be {SECRET_KEY_SIZE} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value == 0:
        raise ValueError("secret key is zero")
    if value >= CURVE_ORDER:
        raise ValueError("secret key is not below the BLS12-381 curve order")
    return data


def _check_dst(dst: object) -> bytes:
    data = _octets(dst)
    if data is None or not 1 <= len(data) <= 255:
        # RFC 9380 section 5.3.3: longer tags must be pre-hashed by the caller, and an empty tag
        # defeats domain separation.
        raise ValueError("domain separation tag must be 1 to 255 bytes")
    return data


class _CheckedBackend(ABC):
    """Input validation shared by all backends; subclasses get only well-formed inputs.

    Public keys reaching a ``_raw_*`` method are 48 bytes and not the identity, signatures are
    96 bytes, lists are non-empty and of matching lengths. Decoding errors the library raises
    from there on mean "invalid" and are turned into False.
    """

    name: str
    #: Distribution that provides the library, for the "install it" hint.
    pip_package: str
    #: Top-level module imported by :meth:`available`.
    module_name: str

    @classmethod
    def available(cls) -> bool:
        try:
            cls._import()
        except ImportError:
            return False
        return True

    @classmethod
    def _import(cls) -> ModuleType:
        return importlib.import_module(cls.module_name)

    # ------------------------------------------------------------------ keys and signing

    def secret_key(self, raw: bytes) -> SecretKey:
        return SecretKey(self._secret_key(validate_secret_key(raw)))

    @abstractmethod
    def _secret_key(self, raw: bytes) -> object:
        """Handle for a key that is already known to be in [1, r)."""

    @abstractmethod
    def public_key(self, sk: SecretKey) -> bytes: ...

    @abstractmethod
    def sign(self, sk: SecretKey, message: bytes) -> bytes: ...

    # ------------------------------------------------------------------ verification

    def verify(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        pk = _pubkey(pubkey)
        msg = _octets(message)
        sig = _octets(signature, SIGNATURE_SIZE)
        if pk is None or msg is None or sig is None:
            return False
        try:
            return self._raw_verify(pk, msg, sig)
        except _DECODE_ERRORS:
            return False

    def aggregate_verify(
        self, pubkeys: Sequence[bytes], messages: Sequence[bytes], signature: bytes
    ) -> bool:
        pks = _pubkey_list(pubkeys)
        msgs = _octet_list(messages)
        sig = _octets(signature, SIGNATURE_SIZE)
        if pks is None or msgs is None or sig is None or not pks or len(pks) != len(msgs):
            return False
        try:
            return self._raw_aggregate_verify(pks, msgs, sig)
        except _DECODE_ERRORS:
            return False

    def fast_aggregate_verify(
        self, pubkeys: Sequence[bytes], message: bytes, signature: bytes
    ) -> bool:
        pks = _pubkey_list(pubkeys)
        msg = _octets(message)
        sig = _octets(signature, SIGNATURE_SIZE)
        if pks is None or msg is None or sig is None or not pks:
            return False
        try:
            return self._raw_fast_aggregate_verify(pks, msg, sig)
        except _DECODE_ERRORS:
            return False

    def batch_verify(
        self, pubkeys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
    ) -> bool:
        """True iff every ``(pubkey, message, signature)`` set verifies.

        An empty batch is False: like ``aggregate_verify`` with no keys, it vouches for nothing,
        and a caller that batches an empty queue almost certainly has a bug.
        """
        pks = _pubkey_list(pubkeys)
        msgs = _octet_list(messages)
        sigs = _octet_list(signatures, SIGNATURE_SIZE)
        if pks is None or msgs is None or sigs is None or not pks:
            return False
        if not len(pks) == len(msgs) == len(sigs):
            return False
        try:
            return self._raw_batch_verify(pks, msgs, sigs)
        except _DECODE_ERRORS:
            return False

    @abstractmethod
    def _raw_verify(self, pk: bytes, msg: bytes, sig: bytes) -> bool: ...

    @abstractmethod
    def _raw_aggregate_verify(self, pks: list[bytes], msgs: list[bytes], sig: bytes) -> bool: ...

    @abstractmethod
    def _raw_fast_aggregate_verify(self, pks: list[bytes], msg: bytes, sig: bytes) -> bool: ...

    @abstractmethod
    def _raw_batch_verify(self, pks: list[bytes], msgs: list[bytes], sigs: list[bytes]) -> bool: ...

    # ------------------------------------------------------------------ aggregation

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        """Sum of the signatures; ``ValueError`` if the list is empty or one is not in G2.

        Stricter than the IETF draft, which only requires points on the curve: blspy cannot
        decode a point outside G2 at all, and the backends must agree.
        """
        sigs = _octet_list(signatures)
        if sigs is None:
            raise ValueError("signatures must be bytes")
        if not sigs:
            raise ValueError("cannot aggregate an empty list of signatures")
        for index, sig in enumerate(sigs):
            if not self.g2_decompress_valid(sig):
                raise ValueError(f"signature {index} is not a valid G2 point")
        return self._raw_aggregate(sigs)

    @abstractmethod
    def _raw_aggregate(self, sigs: list[bytes]) -> bytes:
        """Sum of signatures already known to be valid G2 points."""

    # ------------------------------------------------------------------ primitives

    def hash_to_g2(self, message: bytes, dst: bytes = ETH2_DST) -> bytes:
        msg = _octets(message)
        if msg is None:
            raise TypeError("message must be bytes")
        return self._raw_hash_to_g2(msg, _check_dst(dst))

    @abstractmethod
    def _raw_hash_to_g2(self, msg: bytes, dst: bytes) -> bytes: ...

    def g1_decompress_valid(self, data: bytes) -> bool:
        point = _octets(data, PUBLIC_KEY_SIZE)
        if point is None:
            return False
        try:
            return self._raw_g1_valid(point)
        except _DECODE_ERRORS:
            return False

    def g2_decompress_valid(self, data: bytes) -> bool:
        point = _octets(data, SIGNATURE_SIZE)
        if point is None:
            return False
        try:
            return self._raw_g2_valid(point)
        except _DECODE_ERRORS:
            return False

    @abstractmethod
    def _raw_g1_valid(self, data: bytes) -> bool: ...

    @abstractmethod
    def _raw_g2_valid(self, data: bytes) -> bool: ...


# ====================================================================================== blspy


class BlspyBackend(_CheckedBackend):
    """Chia's blspy (BLS12-381 on relic/mcl): the fastest here (~3,800 signs/s).

    Secret-key handle: ``blspy.PrivateKey`` inside a :class:`SecretKey` (its own ``repr`` prints
    the key in hex).
    """

    name = "blspy"
    pip_package = "blspy"
    module_name = "blspy"

    def __init__(self) -> None:
        blspy = self._import()
        self._pop: Any = blspy.PopSchemeMPL
        self._private_key: Any = blspy.PrivateKey
        self._g1: Any = blspy.G1Element
        self._g2: Any = blspy.G2Element

    def _secret_key(self, raw: bytes) -> object:
        return self._private_key.from_bytes(raw)

    def public_key(self, sk: SecretKey) -> bytes:
        return bytes(self._pop.sk_to_g1(sk.handle))

    def sign(self, sk: SecretKey, message: bytes) -> bytes:
        # The hot path: one native call, no Python-side checks. blspy releases the GIL while it
        # signs (measured by bench/sign.py: 2 threads sign ~2x one), so threads sign in parallel.
        return bytes(self._pop.sign(sk.handle, message))

    def _raw_verify(self, pk: bytes, msg: bytes, sig: bytes) -> bool:
        return bool(self._pop.verify(self._g1.from_bytes(pk), msg, self._g2.from_bytes(sig)))

    def _raw_aggregate_verify(self, pks: list[bytes], msgs: list[bytes], sig: bytes) -> bool:
        points = [self._g1.from_bytes(pk) for pk in pks]
        return bool(self._pop.aggregate_verify(points, msgs, self._g2.from_bytes(sig)))

    def _raw_fast_aggregate_verify(self, pks: list[bytes], msg: bytes, sig: bytes) -> bool:
        points = [self._g1.from_bytes(pk) for pk in pks]
        return bool(self._pop.fast_aggregate_verify(points, msg, self._g2.from_bytes(sig)))

    def _raw_batch_verify(self, pks: list[bytes], msgs: list[bytes], sigs: list[bytes]) -> bool:
        """Verify each set on its own.

        blspy 2 has no batch verification and no scalar multiplication of arbitrary points,
        which the random-linear-combination check needs; emulating it with ``pair`` costs 2n
        full pairings, more than n ordinary verifications (each one shared final
        exponentiation). Verifying every set is exact, not probabilistic, so the answer is the
        same one a real batch check gives with overwhelming probability.
        """
        return all(
            self._raw_verify(pk, msg, sig) for pk, msg, sig in zip(pks, msgs, sigs, strict=True)
        )

    def _raw_aggregate(self, sigs: list[bytes]) -> bytes:
        return bytes(self._pop.aggregate([self._g2.from_bytes(sig) for sig in sigs]))

    def _raw_hash_to_g2(self, msg: bytes, dst: bytes) -> bytes:
        return bytes(self._g2.from_message(msg, dst))

    def _raw_g1_valid(self, data: bytes) -> bool:
        # from_bytes checks flags, canonical infinity, field range, curve and subgroup.
        self._g1.from_bytes(data)
        return True

    def _raw_g2_valid(self, data: bytes) -> bool:
        self._g2.from_bytes(data)
        return True


# ==================================================================================== milagro


class MilagroBackend(_CheckedBackend):
    """Sigma Prime's milagro_bls through milagro-bls-binding (deprecated upstream, still works).

    Secret-key handle: the 32 raw bytes, since every function of the binding takes bytes.
    The binding exposes only the IETF API, so two primitives are built from it: hash_to_G2 for
    the Ethereum DST (a signature by key 1) and the G2 subgroup check (double-and-add through
    ``Aggregate``, which adds points without checking the subgroup). hash_to_G2 under any other
    DST cannot be reached and falls back to py_ecc.
    """

    name = "milagro"
    pip_package = "milagro-bls-binding"
    module_name = "milagro_bls_binding"

    def __init__(self) -> None:
        self._m: Any = self._import()

    @classmethod
    def _import(cls) -> ModuleType:
        # 1.9.1 warns at import that it is unmaintained; that is a deployment decision made
        # in configuration, not something to repeat on every start or turn into a test error.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="milagro_bls_binding is deprecated", category=DeprecationWarning
            )
            return super()._import()

    def _secret_key(self, raw: bytes) -> object:
        return raw

    def public_key(self, sk: SecretKey) -> bytes:
        return bytes(self._m.SkToPk(sk.handle))

    def sign(self, sk: SecretKey, message: bytes) -> bytes:
        return bytes(self._m.Sign(sk.handle, message))

    def _raw_verify(self, pk: bytes, msg: bytes, sig: bytes) -> bool:
        return bool(self._m.Verify(pk, msg, sig))

    def _raw_aggregate_verify(self, pks: list[bytes], msgs: list[bytes], sig: bytes) -> bool:
        return bool(self._m.AggregateVerify(pks, msgs, sig))

    def _raw_fast_aggregate_verify(self, pks: list[bytes], msg: bytes, sig: bytes) -> bool:
        return bool(self._m.FastAggregateVerify(pks, msg, sig))

    def _raw_batch_verify(self, pks: list[bytes], msgs: list[bytes], sigs: list[bytes]) -> bool:
        """milagro's own randomised batch check (64-bit coefficients).

        It rejects sets whose signatures lie outside G2 even when the torsion parts cancel
        (tests/test_bls_backends.py checks this), so no separate subgroup check is needed.
        """
        sets = [(sig, pk, msg) for pk, msg, sig in zip(pks, msgs, sigs, strict=True)]
        return bool(self._m.VerifyMultipleAggregateSignatures(sets))

    def _raw_aggregate(self, sigs: list[bytes]) -> bytes:
        return bytes(self._m.Aggregate(sigs))

    def _raw_hash_to_g2(self, msg: bytes, dst: bytes) -> bytes:
        """H(msg) as the signature of ``msg`` by secret key 1, for the Ethereum DST.

        The binding fixes the DST inside ``Sign`` and exposes no map-to-curve, so any other DST
        (only the RFC 9380 test vectors use one) is computed with py_ecc.
        """
        if dst == ETH2_DST:
            return bytes(self._m.Sign(_SECRET_ONE, msg))
        return _py_ecc_hash_to_g2(msg, dst)

    def _raw_g1_valid(self, data: bytes) -> bool:
        # Public-key decoding runs KeyValidate, which refuses the identity; the identity is a
        # valid G1 point with exactly one encoding, so it is recognised by its bytes.
        if data == G1_INFINITY:
            return True
        self._m._AggregatePKs([data])
        return True

    def _raw_g2_valid(self, data: bytes) -> bool:
        """Decoding (flags, field range, curve) by ``Aggregate``, then ``r * P == O``.

        The binding's verification functions check the subgroup but cannot tell "outside G2"
        from "wrong signature", and ``Aggregate`` does not check it at all, so the check is
        done with ``Aggregate`` as the group law: one call per bit of r (about 0.1 s). It
        costs nothing on the signing path, which never decodes a signature.
        """
        if data == G2_INFINITY:
            return True
        aggregate = self._m.Aggregate
        acc = bytes(aggregate([data]))  # raises ValueError unless on the curve, canonical
        point = acc
        for bit in _ORDER_TAIL_BITS:
            acc = bytes(aggregate([acc, acc, point] if bit == "1" else [acc, acc]))
        return acc == G2_INFINITY


# ===================================================================================== py_ecc


def _py_ecc_hash_to_g2(msg: bytes, dst: bytes) -> bytes:
    """hash_to_curve with py_ecc, for backends whose library cannot take a custom DST."""
    primitives: Any = importlib.import_module("py_ecc.bls.g2_primitives")
    hash_to_curve: Any = importlib.import_module("py_ecc.bls.hash_to_curve")
    return bytes(primitives.G2_to_signature(hash_to_curve.hash_to_G2(msg, dst, hashlib.sha256)))


class PyEccBackend(_CheckedBackend):
    """The Ethereum Foundation's pure-Python py_ecc: slow (~0.1 s per signature), the reference.

    Secret-key handle: the key as an int. Every primitive comes from py_ecc itself; batch
    verification is the random-linear-combination check built from its pairing functions.
    """

    name = "py_ecc"
    pip_package = "py-ecc"
    module_name = "py_ecc"

    def __init__(self) -> None:
        # Held as Any: py_ecc's annotations use NewTypes (BLSPubkey, ...) and point tuples that
        # add nothing here but casts.
        self._pop: Any = importlib.import_module("py_ecc.bls").G2ProofOfPossession
        self._points: Any = importlib.import_module("py_ecc.bls.g2_primitives")
        self._hash_to_curve: Any = importlib.import_module("py_ecc.bls.hash_to_curve")
        self._curve: Any = importlib.import_module("py_ecc.optimized_bls12_381")
        self._fq12: Any = importlib.import_module("py_ecc.fields").optimized_bls12_381_FQ12

    def _secret_key(self, raw: bytes) -> object:
        return int.from_bytes(raw, "big")

    @staticmethod
    def _int(sk: SecretKey) -> int:
        # bool is an int; a handle from another backend (bytes, PrivateKey) is not.
        handle = sk.handle
        if not isinstance(handle, int) or isinstance(handle, bool):
            raise TypeError("py_ecc secret key handles are ints from PyEccBackend.secret_key")
        return handle

    def public_key(self, sk: SecretKey) -> bytes:
        return bytes(self._pop.SkToPk(self._int(sk)))

    def sign(self, sk: SecretKey, message: bytes) -> bytes:
        return bytes(self._pop.Sign(self._int(sk), message))

    def _raw_verify(self, pk: bytes, msg: bytes, sig: bytes) -> bool:
        return bool(self._pop.Verify(pk, msg, sig))

    def _raw_aggregate_verify(self, pks: list[bytes], msgs: list[bytes], sig: bytes) -> bool:
        return bool(self._pop.AggregateVerify(pks, msgs, sig))

    def _raw_fast_aggregate_verify(self, pks: list[bytes], msg: bytes, sig: bytes) -> bool:
        return bool(self._pop.FastAggregateVerify(pks, msg, sig))

    def _raw_batch_verify(self, pks: list[bytes], msgs: list[bytes], sigs: list[bytes]) -> bool:
        """prod e(r_i * PK_i, H(m_i)) * e(-G1, sum r_i * S_i) == 1 for random 64-bit r_i.

        n + 1 Miller loops and one final exponentiation instead of 2n and n; a forged set
        passes with probability 2**-64. Keys go through KeyValidate and signatures through the
        subgroup check first, as in single verification: the randomisation is only sound
        inside G1 and G2.
        """
        curve, points = self._curve, self._points
        product = self._fq12.one()
        signature_sum = curve.Z2
        for pk, msg, sig in zip(pks, msgs, sigs, strict=True):
            if not self._pop.KeyValidate(pk):
                return False
            sig_point = points.signature_to_G2(sig)
            if not points.subgroup_check(sig_point):
                return False
            coefficient = secrets.randbelow(2**_BATCH_RANDOM_BITS - 1) + 1
            signature_sum = curve.add(signature_sum, curve.multiply(sig_point, coefficient))
            message_point = self._hash_to_curve.hash_to_G2(msg, self._pop.DST, hashlib.sha256)
            pk_point = curve.multiply(points.pubkey_to_G1(pk), coefficient)
            product *= curve.pairing(message_point, pk_point, final_exponentiate=False)
        product *= curve.pairing(signature_sum, curve.neg(curve.G1), final_exponentiate=False)
        return bool(curve.final_exponentiate(product) == self._fq12.one())

    def _raw_aggregate(self, sigs: list[bytes]) -> bytes:
        total = self._curve.Z2
        for sig in sigs:
            total = self._curve.add(total, self._points.signature_to_G2(sig))
        return bytes(self._points.G2_to_signature(total))

    def _raw_hash_to_g2(self, msg: bytes, dst: bytes) -> bytes:
        return _py_ecc_hash_to_g2(msg, dst)

    def _raw_g1_valid(self, data: bytes) -> bool:
        return bool(self._points.subgroup_check(self._points.pubkey_to_G1(data)))

    def _raw_g2_valid(self, data: bytes) -> bool:
        return bool(self._points.subgroup_check(self._points.signature_to_G2(data)))


# =================================================================================== registry

#: The built-in backends by name, in "auto" preference order. A constant: plugins add backends
#: through the ``chamber_bls_backends`` hook, not by mutating this.
BACKENDS: Final[dict[str, type[BlsBackend]]] = {
    BlspyBackend.name: BlspyBackend,
    MilagroBackend.name: MilagroBackend,
    PyEccBackend.name: PyEccBackend,
}

_PIP_PACKAGES: Final = {
    BlspyBackend.name: BlspyBackend.pip_package,
    MilagroBackend.name: MilagroBackend.pip_package,
    PyEccBackend.name: PyEccBackend.pip_package,
}


def select_backend(
    name: str = "auto", backends: Mapping[str, type[BlsBackend]] = BACKENDS
) -> BlsBackend:
    """A new instance of backend ``name`` from ``backends`` (the built-ins, or every plugin's);
    "auto" takes the first available in the mapping's order, which lists the fastest first.

    An explicitly named backend that cannot be used is a start-up error rather than a silent
    fallback: an operator who pinned a backend wants to know it is not the one running.
    """
    if name == "auto":
        for cls in backends.values():
            if cls.available():
                return cls()
        raise StartupError(
            "bls.backend: no BLS backend is available: install one with `pip install blspy` "
            "(or `pip install milagro-bls-binding`, or `pip install py-ecc`)"
        )
    chosen = backends.get(name)
    if chosen is None:
        choices = ", ".join(["auto", *backends])
        raise StartupError(f"bls.backend: unknown BLS backend {name!r}: choose one of {choices}")
    if not chosen.available():
        package = getattr(chosen, "pip_package", name)
        raise StartupError(
            f"bls.backend: {name!r} is not available: its library does not import; "
            f"install it with `pip install {package}` or use the 'auto' backend"
        )
    return chosen()
