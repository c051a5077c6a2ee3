"""AES-256-GCM envelopes, HKDF derivation and the key check value.

HKDF is checked against a from-the-RFC implementation written here with ``hmac`` (itself pinned to
RFC 5869 test cases 1 and 3) and against ``cryptography``'s HKDF; the key check value against
HMAC computed by hand from SHA-256 (RFC 2104) and against the ``hmac`` module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from chamber.crypto.envelope import (
    ENVELOPE_VERSION,
    KCV_LABEL,
    EnvelopeError,
    decrypt,
    derive_key,
    encrypt,
    key_check_value,
    verify_key_check,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = b"\xa0" * 48  # a public key, as the vault uses
PLAINTEXT = b"TOP-SECRET-VALIDATOR-KEY-0123456"
FAILED = "decryption failed (wrong key, wrong associated data, or tampered data)"


# ---------------------------------------------------------------------------------------------
# Round trips and format


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    plaintext=st.binary(max_size=256),
    aad=st.binary(max_size=64),
)
def test_round_trip(key: bytes, plaintext: bytes, aad: bytes) -> None:
    blob = encrypt(key, plaintext, aad)
    assert decrypt(key, blob, aad) == plaintext
    assert len(blob) == 1 + 12 + len(plaintext) + 16


def test_round_trip_with_bytearrays() -> None:
    key, plaintext = bytearray(KEY), bytearray(PLAINTEXT)
    blob = encrypt(key, plaintext, AAD)
    assert decrypt(key, blob, AAD) == PLAINTEXT
    assert decrypt(KEY, blob, AAD) == PLAINTEXT


def test_format_is_version_nonce_ciphertext_tag() -> None:
    blob = encrypt(KEY, PLAINTEXT, AAD)
    assert blob[0] == ENVELOPE_VERSION == 1
    nonce, sealed = blob[1:13], blob[13:]
    # Plain AES-GCM with the version byte prepended to the associated data.
    assert AESGCM(KEY).decrypt(nonce, sealed, b"\x01" + AAD) == PLAINTEXT


def test_nonces_and_ciphertexts_differ_between_encryptions() -> None:
    blobs = [encrypt(KEY, PLAINTEXT, AAD) for _ in range(2)]
    assert blobs[0][1:13] != blobs[1][1:13]
    assert blobs[0][13:] != blobs[1][13:]


# ---------------------------------------------------------------------------------------------
# Refusals


def test_wrong_key() -> None:
    blob = encrypt(KEY, PLAINTEXT, AAD)
    with pytest.raises(EnvelopeError) as excinfo:
        decrypt(OTHER_KEY, blob, AAD)
    assert str(excinfo.value) == FAILED
    assert excinfo.value.__cause__ is None


def test_wrong_aad() -> None:
    blob = encrypt(KEY, PLAINTEXT, AAD)
    for aad in (b"", AAD[:-1], AAD + b"\x00", b"\xa1" + AAD[1:]):
        with pytest.raises(EnvelopeError, match="decryption failed"):
            decrypt(KEY, blob, aad)


def test_every_flipped_bit_is_detected() -> None:
    blob = encrypt(KEY, b"short", AAD)
    for position in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[position] ^= 1 << bit
            with pytest.raises(EnvelopeError):
                decrypt(KEY, bytes(tampered), AAD)


def test_truncated_or_extended_is_detected() -> None:
    blob = encrypt(KEY, b"short", AAD)
    for length in range(len(blob)):
        with pytest.raises(EnvelopeError):
            decrypt(KEY, blob[:length], AAD)
    with pytest.raises(EnvelopeError, match="decryption failed"):
        decrypt(KEY, blob + b"\x00", AAD)
    with pytest.raises(EnvelopeError, match="too short: 0 bytes"):
        decrypt(KEY, b"", AAD)


def test_wrong_version() -> None:
    blob = encrypt(KEY, PLAINTEXT, AAD)
    for version in (0, 2, 255):
        with pytest.raises(EnvelopeError, match=f"unknown envelope version {version}"):
            decrypt(KEY, bytes([version]) + blob[1:], AAD)


def test_envelope_error_is_a_value_error() -> None:
    assert issubclass(EnvelopeError, ValueError)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_keys_must_be_32_bytes(length: int) -> None:
    key = b"K" * length
    blob = encrypt(KEY, PLAINTEXT, AAD)
    calls: list[Callable[[], object]] = [
        lambda: encrypt(key, PLAINTEXT, AAD),
        lambda: decrypt(key, blob, AAD),
        lambda: derive_key(key, "purpose"),
        lambda: key_check_value(key),
        lambda: verify_key_check(key, bytes(32)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=f"exactly 32 bytes, got {length}") as excinfo:
            call()
        assert not isinstance(excinfo.value, EnvelopeError)
        if length:
            assert "KK" not in str(excinfo.value)


def test_non_bytes_key_is_refused() -> None:
    with pytest.raises(TypeError):
        encrypt("k" * 32, PLAINTEXT, AAD)  # type: ignore[arg-type]


def test_errors_never_contain_secrets() -> None:
    blob = encrypt(KEY, PLAINTEXT, AAD)
    calls: list[Callable[[], object]] = [
        lambda: decrypt(OTHER_KEY, blob, AAD),
        lambda: decrypt(KEY, blob[:-1], AAD),
        lambda: decrypt(KEY, b"\x02" + blob[1:], AAD),
    ]
    for call in calls:
        with pytest.raises(EnvelopeError) as excinfo:
            call()
        text = str(excinfo.value) + repr(excinfo.value)
        for secret in (PLAINTEXT, KEY, OTHER_KEY):
            assert secret.hex() not in text
            assert repr(secret) not in text
        assert "TOP-SECRET" not in text


# ---------------------------------------------------------------------------------------------
# HKDF


def rfc5869_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 straight from RFC 5869 §2.2-2.3."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_reference_hkdf_matches_rfc_5869() -> None:
    ikm = b"\x0b" * 22
    # Test case 1.
    assert rfc5869_hkdf(ikm, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42) == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    # Test case 3: empty salt and info.
    assert rfc5869_hkdf(ikm, b"", b"", 42) == bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


@pytest.mark.parametrize("salt", [None, b"", bytes(range(13)), b"\x5a" * 32])
@pytest.mark.parametrize("purpose", ["validator-keys", "outer", "clé/ünïcode"])
def test_derive_key_is_hkdf_sha256_with_prefixed_info(salt: bytes | None, purpose: str) -> None:
    info = b"containment-chamber/" + purpose.encode("utf-8")
    derived = derive_key(KEY, purpose, salt=salt)
    assert len(derived) == 32
    assert derived == rfc5869_hkdf(KEY, salt or b"", info, 32)
    assert derived == HKDF(hashes.SHA256(), 32, salt, info).derive(KEY)


def test_derive_key_known_answer() -> None:
    # Pinned so that a change of derivation (which would orphan every stored key) is noticed;
    # the value was cross-checked with the RFC 5869 reference above.
    expected = bytes.fromhex("2b92347da86258be7c88a20e046d1b49ecc0869138559bf965ff11dff0a5cf5f")
    assert rfc5869_hkdf(KEY, b"", b"containment-chamber/validator-keys", 32) == expected
    assert derive_key(KEY, "validator-keys") == expected
    # RFC 5869: an absent salt is HashLen zero bytes.
    assert derive_key(KEY, "validator-keys", salt=bytes(32)) == expected


def test_derive_key_separates_inputs() -> None:
    base = derive_key(KEY, "validator-keys")
    assert derive_key(bytearray(KEY), "validator-keys") == base
    others = {
        derive_key(KEY, "validator-key"),
        derive_key(KEY, "validator-keys2"),
        derive_key(KEY, "outer"),
        derive_key(OTHER_KEY, "validator-keys"),
        derive_key(KEY, "validator-keys", salt=b"salt"),
    }
    assert base not in others
    assert len(others) == 5


def test_derive_key_rejects_empty_purpose() -> None:
    with pytest.raises(ValueError, match="purpose"):
        derive_key(KEY, "")


# ---------------------------------------------------------------------------------------------
# Key check value


def hmac_sha256_by_hand(key: bytes, message: bytes) -> bytes:
    """RFC 2104 HMAC over SHA-256 (64-byte blocks), without the hmac module."""
    padded = key.ljust(64, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded) + message).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in padded) + inner).digest()


def test_key_check_value_known_answer() -> None:
    assert KCV_LABEL == b"containment-chamber key check v1"
    expected = hmac_sha256_by_hand(KEY, KCV_LABEL)
    assert expected == hmac.new(KEY, KCV_LABEL, hashlib.sha256).digest()
    assert key_check_value(KEY) == expected
    assert key_check_value(bytearray(KEY)) == expected
    assert len(expected) == 32


def test_verify_key_check() -> None:
    kcv = key_check_value(KEY)
    assert verify_key_check(KEY, kcv)
    assert verify_key_check(bytearray(KEY), kcv)
    assert not verify_key_check(OTHER_KEY, kcv)
    assert not verify_key_check(KEY, kcv[:-1])
    assert not verify_key_check(KEY, b"")
    assert not verify_key_check(KEY, bytes(32))


def test_key_check_value_is_not_a_derived_key() -> None:
    # The check value is stored in the clear; it must not double as any key.
    kcv = key_check_value(KEY)
    assert kcv not in {derive_key(KEY, p) for p in ("key check v1", "validator-keys", "outer")}
    assert kcv != KEY
