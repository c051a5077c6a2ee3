"""EIP-2335 keystore encryption/decryption: round trips, normalisation, every refusal."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chamber.crypto.keystore import (
    KeystoreError,
    decrypt_keystore,
    decrypt_worker,
    encrypt_keystore,
    kdf_memory,
    normalize_password,
    validate_keystore,
)

SECRET = bytes.fromhex("25295f0d1d592a90b333e26e85149708208e9f8e8bc18f6c77bd62f8ad7a6866")
PASSWORD = "correct horse battery staple Ω"
FAST_SCRYPT = {"n": 2**10}
FAST_PBKDF2 = {"c": 2**10}


@pytest.fixture(scope="module")
def scrypt_keystore() -> dict[str, Any]:
    return encrypt_keystore(SECRET, PASSWORD, kdf="scrypt", kdf_params=FAST_SCRYPT)


@pytest.fixture(scope="module")
def pbkdf2_keystore() -> dict[str, Any]:
    return encrypt_keystore(SECRET, PASSWORD, kdf="pbkdf2", kdf_params=FAST_PBKDF2)


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(("kdf", "params"), [("scrypt", FAST_SCRYPT), ("pbkdf2", FAST_PBKDF2)])
def test_round_trip(kdf: Any, params: dict[str, int]) -> None:
    pubkey = bytes(range(48))
    keystore = encrypt_keystore(
        SECRET, PASSWORD, kdf=kdf, kdf_params=params, path="m/12381/3600/0/0/0", pubkey=pubkey
    )
    assert decrypt_keystore(keystore, PASSWORD) == SECRET
    assert keystore["version"] == 4
    assert keystore["path"] == "m/12381/3600/0/0/0"
    assert keystore["pubkey"] == pubkey.hex()
    assert keystore["crypto"]["kdf"]["function"] == kdf
    assert keystore["crypto"]["kdf"]["params"]["dklen"] == 32
    assert len(bytes.fromhex(keystore["crypto"]["kdf"]["params"]["salt"])) == 32
    assert len(bytes.fromhex(keystore["crypto"]["cipher"]["params"]["iv"])) == 16
    uuid.UUID(keystore["uuid"])
    assert SECRET.hex() not in str(keystore)


def test_defaults_are_the_eip_defaults() -> None:
    # Cheap to check without running the KDF: build with defaults is slow (scrypt 2^18), so
    # inspect the parameters a fast override leaves alone.
    scrypt = encrypt_keystore(SECRET, PASSWORD, kdf_params={"n": 2**4})["crypto"]["kdf"]
    assert scrypt["function"] == "scrypt"
    assert {k: scrypt["params"][k] for k in ("dklen", "r", "p")} == {"dklen": 32, "r": 8, "p": 1}
    pbkdf2 = encrypt_keystore(SECRET, PASSWORD, kdf="pbkdf2", kdf_params={"c": 1})["crypto"]["kdf"]
    assert pbkdf2["params"]["prf"] == "hmac-sha256"
    assert "pubkey" not in encrypt_keystore(SECRET, "", kdf="pbkdf2", kdf_params={"c": 1})


def test_fresh_salt_and_iv_each_time() -> None:
    a = encrypt_keystore(SECRET, PASSWORD, kdf="pbkdf2", kdf_params={"c": 1})
    b = encrypt_keystore(SECRET, PASSWORD, kdf="pbkdf2", kdf_params={"c": 1})
    assert a["crypto"]["kdf"]["params"]["salt"] != b["crypto"]["kdf"]["params"]["salt"]
    assert a["crypto"]["cipher"]["params"]["iv"] != b["crypto"]["cipher"]["params"]["iv"]
    assert a["uuid"] != b["uuid"]


@settings(max_examples=50, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), password=st.text(max_size=40))
def test_round_trip_any_password(secret: bytes, password: str) -> None:
    keystore = encrypt_keystore(secret, password, kdf="pbkdf2", kdf_params={"c": 1})
    assert decrypt_keystore(keystore, password) == secret


def test_wrong_password(pbkdf2_keystore: dict[str, Any], scrypt_keystore: dict[str, Any]) -> None:
    for keystore in (pbkdf2_keystore, scrypt_keystore):
        with pytest.raises(KeystoreError, match=r"^wrong password \(checksum mismatch\)$"):
            decrypt_keystore(keystore, PASSWORD + "!")


def test_keystore_error_is_value_error() -> None:
    assert issubclass(KeystoreError, ValueError)


# ---------------------------------------------------------------------------------------------
# Password normalisation (EIP-2335: NFKD, strip C0/C1/DEL, UTF-8)


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("password", b"password"),
        # EIP-2335's own example: fraktur letters fold to ASCII, the emoji stays.
        (
            "\U0001d531\U0001d522\U0001d530\U0001d531\U0001d52d\U0001d51e\U0001d530\U0001d530"
            "\U0001d534\U0001d52c\U0001d52f\U0001d521\U0001f511",
            bytes.fromhex("7465737470617373776f7264f09f9491"),
        ),
        ("pass\nword\r\n", b"password"),  # C0 incl. the password file's newline
        ("\x00\x1fpass\x7fword", b"password"),  # C0 bounds and DEL
        ("pass\x80\x85\x9fword", b"password"),  # C1 bounds and NEL
        ("\ufb01", b"fi"),  # compatibility ligature
        ("\u00fc", "u\u0308".encode()),  # composed ü -> decomposed
        (" pass word\t", b" pass word"),  # spaces are kept, tab (C0) is not
        ("\u00a0", "\u0020".encode()),  # NBSP: NFKD makes it a space, not stripped
        ("", b""),
    ],
)
def test_normalize_password(password: str, expected: bytes) -> None:
    assert normalize_password(password) == expected


def test_composed_and_decomposed_passwords_open_the_same_keystore() -> None:
    keystore = encrypt_keystore(SECRET, "M\u00fcnchen", kdf="pbkdf2", kdf_params={"c": 1})
    assert decrypt_keystore(keystore, "Mu\u0308nchen") == SECRET
    assert decrypt_keystore(keystore, "M\u00fcnchen\n") == SECRET


def test_lone_surrogate_password_is_refused_without_quoting_it() -> None:
    with pytest.raises(KeystoreError, match="lone surrogates") as info:
        normalize_password("abc\ud800")
    assert "\ud800" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Malformed keystores: each refusal names the problem, before any KDF work.


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(keystore: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = keystore
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(keystore: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = keystore
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


SCRYPT_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no version", _del("version"), "missing version"),
    ("version 3", _set("version", 3), "version 3 is not supported (need 4)"),
    ("version string", _set("version", "4"), "version '4' is not supported (need 4)"),
    ("version float", _set("version", 4.0), "version 4.0 is not supported (need 4)"),
    ("version bool", _set("version", True), "version True is not supported (need 4)"),
    ("no crypto", _del("crypto"), "missing crypto"),
    ("crypto list", _set("crypto", []), "crypto must be an object"),
    ("no kdf", _del("crypto.kdf"), "missing crypto.kdf"),
    ("no checksum", _del("crypto.checksum"), "missing crypto.checksum"),
    ("no cipher", _del("crypto.cipher"), "missing crypto.cipher"),
    ("kdf argon2", _set("crypto.kdf.function", "argon2"), "unsupported kdf 'argon2'"),
    ("no kdf function", _del("crypto.kdf.function"), "missing crypto.kdf.function"),
    ("kdf function int", _set("crypto.kdf.function", 1), "crypto.kdf.function must be a string"),
    (
        "checksum sha512",
        _set("crypto.checksum.function", "sha512"),
        "unsupported checksum function 'sha512'",
    ),
    (
        "cipher gcm",
        _set("crypto.cipher.function", "aes-256-gcm"),
        "unsupported cipher function 'aes-256-gcm'",
    ),
    ("no kdf params", _del("crypto.kdf.params"), "missing crypto.kdf.params"),
    ("no salt", _del("crypto.kdf.params.salt"), "missing crypto.kdf.params.salt"),
    ("bad salt", _set("crypto.kdf.params.salt", "xyz"), "crypto.kdf.params.salt is not valid hex"),
    ("dklen 64", _set("crypto.kdf.params.dklen", 64), "crypto.kdf.params.dklen must be 32, got 64"),
    ("no dklen", _del("crypto.kdf.params.dklen"), "missing crypto.kdf.params.dklen"),
    ("n not pow2", _set("crypto.kdf.params.n", 1000), "must be a power of two"),
    ("n zero", _set("crypto.kdf.params.n", 0), "must be a power of two"),
    ("n as string", _set("crypto.kdf.params.n", "1024"), "crypto.kdf.params.n must be an integer"),
    ("n huge", _set("crypto.kdf.params.n", 2**30), "MiB allowed"),
    ("r huge", _set("crypto.kdf.params.r", 2**20), "MiB allowed"),
    ("r zero", _set("crypto.kdf.params.r", 0), "must be positive"),
    ("p negative", _set("crypto.kdf.params.p", -1), "must be positive"),
    ("no n", _del("crypto.kdf.params.n"), "missing crypto.kdf.params.n"),
    ("no cipher params", _del("crypto.cipher.params"), "missing crypto.cipher.params"),
    ("no iv", _del("crypto.cipher.params.iv"), "missing crypto.cipher.params.iv"),
    ("short iv", _set("crypto.cipher.params.iv", "00" * 8), "iv must be 16 bytes, got 8"),
    ("no ciphertext", _del("crypto.cipher.message"), "missing crypto.cipher.message"),
    (
        "short ciphertext",
        _set("crypto.cipher.message", "00" * 31),
        "crypto.cipher.message must be 32 bytes (a BLS secret key), got 31",
    ),
    ("bad ciphertext", _set("crypto.cipher.message", "0g" * 32), "cipher.message is not valid hex"),
    ("no checksum msg", _del("crypto.checksum.message"), "missing crypto.checksum.message"),
    (
        "short checksum",
        _set("crypto.checksum.message", "00" * 16),
        "crypto.checksum.message must be 32 bytes, got 16",
    ),
]

PBKDF2_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "prf sha512",
        _set("crypto.kdf.params.prf", "hmac-sha512"),
        "unsupported pbkdf2 prf 'hmac-sha512'",
    ),
    ("no prf", _del("crypto.kdf.params.prf"), "missing crypto.kdf.params.prf"),
    ("c zero", _set("crypto.kdf.params.c", 0), "crypto.kdf.params.c must be between 1 and"),
    ("c huge", _set("crypto.kdf.params.c", 2**40), "crypto.kdf.params.c must be between 1 and"),
    ("c bool", _set("crypto.kdf.params.c", True), "crypto.kdf.params.c must be an integer"),
]


def _cases() -> Iterator[Any]:
    for name, mutate, message in SCRYPT_CASES:
        yield pytest.param("scrypt", mutate, message, id=f"scrypt-{name}")
    for name, mutate, message in PBKDF2_CASES:
        yield pytest.param("pbkdf2", mutate, message, id=f"pbkdf2-{name}")


@pytest.mark.parametrize(("kind", "mutate", "message"), list(_cases()))
def test_malformed_keystore(
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
    message: str,
    scrypt_keystore: dict[str, Any],
    pbkdf2_keystore: dict[str, Any],
) -> None:
    keystore = copy.deepcopy(scrypt_keystore if kind == "scrypt" else pbkdf2_keystore)
    mutate(keystore)
    started = time.perf_counter()
    with pytest.raises(KeystoreError) as info:
        decrypt_keystore(keystore, PASSWORD)
    assert message in str(info.value)
    assert PASSWORD not in str(info.value)
    assert SECRET.hex() not in str(info.value)
    # Refused on structure alone: no KDF run, and validate_keystore agrees without a password.
    assert time.perf_counter() - started < 0.5
    with pytest.raises(KeystoreError, match="^" + _re_escape(str(info.value)) + "$"):
        validate_keystore(keystore)


def _re_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("value", [None, [], "keystore", 4])
def test_non_object_keystore(value: Any) -> None:
    with pytest.raises(KeystoreError, match="keystore must be a JSON object"):
        decrypt_keystore(value, PASSWORD)


def test_hex_with_0x_prefix_is_accepted(pbkdf2_keystore: dict[str, Any]) -> None:
    keystore = copy.deepcopy(pbkdf2_keystore)
    keystore["crypto"]["cipher"]["message"] = "0x" + keystore["crypto"]["cipher"]["message"]
    assert decrypt_keystore(keystore, PASSWORD) == SECRET


def test_unsupported_kdf_beats_missing_params(scrypt_keystore: dict[str, Any]) -> None:
    keystore = copy.deepcopy(scrypt_keystore)
    keystore["crypto"]["kdf"] = {"function": "argon2id", "params": {"m": 1}, "message": ""}
    with pytest.raises(KeystoreError, match=r"^unsupported kdf 'argon2id'"):
        decrypt_keystore(keystore, PASSWORD)


# ---------------------------------------------------------------------------------------------
# encrypt_keystore refusals


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": b"\x01" * 31}, "secret must be 32 bytes"),
        ({"kdf": "argon2"}, "unsupported kdf 'argon2'"),
        ({"kdf_params": {"n": 3}}, "must be a power of two"),
        ({"kdf_params": {"dklen": 16}}, "dklen must be 32"),
        ({"pubkey": b"\x01" * 47}, "pubkey must be 48 bytes"),
        ({"iv": b"\x01" * 12}, "iv must be 16 bytes"),
    ],
)
def test_encrypt_refuses(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"secret": SECRET, "kdf_params": {"n": 2**4}} | kwargs
    secret = args.pop("secret")
    with pytest.raises(KeystoreError, match=message):
        encrypt_keystore(secret, PASSWORD, **args)


# ---------------------------------------------------------------------------------------------
# The process-pool worker never raises and never quotes its input


def test_worker_success_and_failure(pbkdf2_keystore: dict[str, Any]) -> None:
    assert decrypt_worker((pbkdf2_keystore, PASSWORD)) == (SECRET, None)
    assert decrypt_worker((pbkdf2_keystore, "nope")) == (None, "wrong password (checksum mismatch)")


class _Exploding(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError(f"boom {PASSWORD}")

    def __iter__(self) -> Iterator[str]:
        return iter(["version"])

    def __len__(self) -> int:
        return 1


def test_worker_reports_unexpected_errors_by_type_only() -> None:
    secret, reason = decrypt_worker((_Exploding(), PASSWORD))
    assert secret is None
    assert reason == "unexpected error while decrypting: RuntimeError"


def test_kdf_memory(scrypt_keystore: dict[str, Any], pbkdf2_keystore: dict[str, Any]) -> None:
    # OpenSSL's accounting: B (128*r*p) plus V (128*r*(n+2)); n=2^10, r=8, p=1 here.
    assert kdf_memory(scrypt_keystore) == 128 * 8 * 1 + 128 * 8 * (2**10 + 2)
    assert kdf_memory(pbkdf2_keystore) == 0
    with pytest.raises(KeystoreError, match="missing version"):
        kdf_memory({})
