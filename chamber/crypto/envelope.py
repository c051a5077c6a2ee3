"""AES-256-GCM envelopes, HKDF key derivation and the master key's check value.

Envelope format (version 1)::

    0x01 | nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16 bytes)

The version byte is authenticated too: GCM's associated data is ``0x01 || aad``. Because the
header has a fixed length the concatenation is unambiguous, and a later format cannot be
confused with this one by rewriting the first byte.

Nonces are random, so one key must not seal more than about 2^32 envelopes (the NIST bound for
random 96-bit nonces); derive one key per purpose with :func:`derive_key` rather than sharing one.

Every key is exactly 32 bytes. Keys may be passed as ``bytearray`` so that callers can wipe them;
no function here keeps a reference. Secrets never appear in ``repr`` or exception messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "ENVELOPE_VERSION",
    "HKDF_INFO_PREFIX",
    "KCV_LABEL",
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "EnvelopeError",
    "decrypt",
    "derive_key",
    "encrypt",
    "key_check_value",
    "verify_key_check",
]

ENVELOPE_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: Domain separation for :func:`derive_key`: info is this prefix followed by the purpose.
HKDF_INFO_PREFIX = b"containment-chamber/"
#: Fixed label authenticated by :func:`key_check_value`.
KCV_LABEL = b"containment-chamber key check v1"

_HEADER = bytes((ENVELOPE_VERSION,))
_MIN_ENVELOPE = len(_HEADER) + NONCE_BYTES + TAG_BYTES


class EnvelopeError(ValueError):
    """An envelope could not be opened. The message never contains key, plaintext or AAD."""


_DECRYPTION_FAILED = "decryption failed (wrong key, wrong associated data, or tampered data)"


def _check_key(key: bytes | bytearray, what: str = "key") -> None:
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"{what} must be bytes or bytearray, not {type(key).__name__}")
    if len(key) != KEY_BYTES:
        # The length is not secret; the key itself is never formatted.
        raise ValueError(f"{what} must be exactly {KEY_BYTES} bytes, got {len(key)}")


def derive_key(ikm: bytes | bytearray, purpose: str, *, salt: bytes | None = None) -> bytes:
    """Derive a 32-byte key for ``purpose`` from the 32-byte ``ikm``: HKDF-SHA256 (RFC 5869).

    ``info`` is ``b"containment-chamber/" + purpose.encode()``, so distinct purposes give
    independent keys. ``purpose`` must be non-empty. ``salt`` of ``None`` means RFC 5869's
    default (32 zero bytes). Deterministic: same inputs, same key.
    """
    _check_key(ikm, "input key material")
    if not isinstance(purpose, str) or not purpose:
        raise ValueError("purpose must be a non-empty string")
    info = HKDF_INFO_PREFIX + purpose.encode("utf-8")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(ikm)


def encrypt(key: bytes | bytearray, plaintext: bytes | bytearray, aad: bytes) -> bytes:
    """Seal ``plaintext`` under ``key`` bound to ``aad``; a fresh random nonce every call.

    Returns ``0x01 | nonce | ciphertext || tag``. The same ``aad`` must be given to
    :func:`decrypt`. ``aad`` is authenticated, not encrypted.
    """
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    return _HEADER + nonce + AESGCM(key).encrypt(nonce, plaintext, _HEADER + aad)


def decrypt(key: bytes | bytearray, blob: bytes, aad: bytes) -> bytes:
    """Open an envelope made by :func:`encrypt` with the same ``key`` and ``aad``.

    Raises :class:`EnvelopeError` if the blob is too short, has an unknown version, or fails
    authentication (wrong key, wrong ``aad``, any modified bit). A key of the wrong length is a
    programming error and raises plain :class:`ValueError` instead.
    """
    _check_key(key)
    blob = bytes(blob)
    if len(blob) < _MIN_ENVELOPE:
        raise EnvelopeError(f"envelope is too short: {len(blob)} bytes, need {_MIN_ENVELOPE}")
    if blob[0] != ENVELOPE_VERSION:
        raise EnvelopeError(f"unknown envelope version {blob[0]} (supported: {ENVELOPE_VERSION})")
    nonce = blob[len(_HEADER) : len(_HEADER) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(_HEADER) + NONCE_BYTES :], _HEADER + aad)
    except InvalidTag:
        # `from None`: the chained InvalidTag adds nothing and tracebacks should stay short.
        raise EnvelopeError(_DECRYPTION_FAILED) from None


def key_check_value(master_key: bytes | bytearray) -> bytes:
    """HMAC-SHA256(master_key, :data:`KCV_LABEL`): 32 bytes, stored beside the shares.

    It proves that a reconstruction is the right key (Shamir combine gives garbage silently)
    and reveals nothing usable about the key: recovering a 256-bit key from it is a brute force.
    """
    _check_key(master_key, "master key")
    return hmac.new(master_key, KCV_LABEL, hashlib.sha256).digest()


def verify_key_check(master_key: bytes | bytearray, expected: bytes) -> bool:
    """True if ``expected`` is the check value of ``master_key``; compared in constant time."""
    return hmac.compare_digest(key_check_value(master_key), expected)
