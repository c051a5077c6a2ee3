"""EIP-2335 BLS12-381 keystores: decrypt and encrypt, pure functions without I/O.

Why this module exists on its own: key loading runs decryption in worker processes, and a spawned
worker imports only this module (hashlib, ``cryptography``, ``unicodedata``), not the BLS
backends or the rest of the signer, so start-up of a worker stays cheap.

Supported, as in every deployed client (staking-deposit-cli, Lighthouse, Teku, Web3Signer):

* ``version`` 4 only;
* KDF ``scrypt`` (any power-of-two ``n``) or ``pbkdf2`` with ``prf`` ``hmac-sha256``, ``dklen`` 32;
* cipher ``aes-128-ctr`` with a 16-byte IV, checksum ``sha256``.

Everything else is refused with a :class:`KeystoreError` whose message names the offending field,
because an operator with hundreds of keystores needs to know *which* part of *which* file is wrong.
Messages never contain the password, the derived key or the secret. Absurd KDF parameters (a
scrypt that would need gigabytes, billions of PBKDF2 rounds) are refused up front instead of
exhausting the machine: a keystore file is untrusted input.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "MAX_PBKDF2_ITERATIONS",
    "MAX_SCRYPT_MEMORY",
    "KeystoreError",
    "decrypt_keystore",
    "decrypt_worker",
    "encrypt_keystore",
    "kdf_memory",
    "normalize_password",
    "validate_keystore",
]

#: Upper bound on scrypt's memory (``128 * r * (n + p + 2)`` bytes). The EIP-2335 default
#: (n=2^18, r=8) needs 256 MiB; four times that is already unusual, beyond it is an attack or a bug.
MAX_SCRYPT_MEMORY = 1 << 30
#: Upper bound on PBKDF2 rounds; the EIP-2335 default is 2^18. 2^24 already takes tens of seconds.
MAX_PBKDF2_ITERATIONS = 1 << 24
#: Parameters written by :func:`encrypt_keystore`, the EIP-2335 / staking-deposit-cli defaults.
DEFAULT_SCRYPT_PARAMS: Mapping[str, int] = {"dklen": 32, "n": 1 << 18, "r": 8, "p": 1}
DEFAULT_PBKDF2_PARAMS: Mapping[str, Any] = {"dklen": 32, "c": 1 << 18, "prf": "hmac-sha256"}

_SECRET_LENGTH = 32
_IV_LENGTH = 16
# Control codes EIP-2335 removes from passwords: C0, DEL and C1.
_CONTROL_CODES = dict.fromkeys([*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])


class KeystoreError(ValueError):
    """A keystore cannot be decrypted or built; the message says precisely why.

    A ``ValueError`` so callers that only care about "bad input" need not import this module.
    """


def normalize_password(password: str) -> bytes:
    """EIP-2335 password bytes: NFKD, strip C0/C1 control codes and DEL, then UTF-8.

    Normalisation makes the same visual password typed on different systems (composed vs.
    decomposed accents, a trailing newline in a password file) decrypt the same keystore.
    """
    if not isinstance(password, str):
        raise KeystoreError("password must be a string")
    stripped = unicodedata.normalize("NFKD", password).translate(_CONTROL_CODES)
    try:
        return stripped.encode("utf-8")
    except UnicodeEncodeError:
        # The exception text would quote the offending character: keep it out of the message.
        raise KeystoreError(
            "password contains characters that cannot be encoded as UTF-8 (lone surrogates)"
        ) from None


# --------------------------------------------------------------------------------------------
# Structure helpers: each names the JSON path it failed on.


def _section(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    path = f"{where}.{key}" if where else key
    if key not in parent:
        raise KeystoreError(f"missing {path}")
    value = parent[key]
    if not isinstance(value, Mapping):
        raise KeystoreError(f"{path} must be an object")
    return value


def _string(parent: Mapping[str, Any], key: str, where: str) -> str:
    path = f"{where}.{key}"
    if key not in parent:
        raise KeystoreError(f"missing {path}")
    value = parent[key]
    if not isinstance(value, str):
        raise KeystoreError(f"{path} must be a string")
    return value


def _hex(parent: Mapping[str, Any], key: str, where: str, *, length: int | None = None) -> bytes:
    text = _string(parent, key, where)
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        value = bytes.fromhex(body)
    except ValueError:
        raise KeystoreError(f"{where}.{key} is not valid hex") from None
    if length is not None and len(value) != length:
        raise KeystoreError(f"{where}.{key} must be {length} bytes, got {len(value)}")
    return value


def _int(parent: Mapping[str, Any], key: str, where: str) -> int:
    path = f"{where}.{key}"
    if key not in parent:
        raise KeystoreError(f"missing {path}")
    value = parent[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeystoreError(f"{path} must be an integer")
    return value


# --------------------------------------------------------------------------------------------
# KDFs


def _scrypt_params(params: Mapping[str, Any], where: str) -> tuple[int, int, int]:
    n = _int(params, "n", where)
    r = _int(params, "r", where)
    p = _int(params, "p", where)
    if n < 2 or n & (n - 1):
        raise KeystoreError(f"{where}.n must be a power of two greater than 1, got {n}")
    if r < 1 or p < 1:
        raise KeystoreError(f"{where}.r and {where}.p must be positive, got r={r} p={p}")
    memory = _scrypt_memory(n, r, p)
    if memory > MAX_SCRYPT_MEMORY:
        raise KeystoreError(
            f"scrypt parameters n={n} r={r} p={p} need {memory >> 20} MiB,"
            f" more than the {MAX_SCRYPT_MEMORY >> 20} MiB allowed"
        )
    return n, r, p


def _scrypt_memory(n: int, r: int, p: int) -> int:
    """Bytes OpenSSL's scrypt allocates (its ``maxmem`` check: B plus V)."""
    return 128 * r * p + 128 * r * (n + 2)


def _kdf_params(kdf: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate ``crypto.kdf``; return the function and the keyword arguments for hashlib."""
    where = "crypto.kdf"
    function = _string(kdf, "function", where)
    # Check the function first so an argon2 keystore says "unsupported kdf", not "missing n".
    if function not in ("scrypt", "pbkdf2"):
        raise KeystoreError(f"unsupported kdf {function!r} (supported: 'scrypt', 'pbkdf2')")
    params = _section(kdf, "params", where)
    pwhere = f"{where}.params"
    dklen = _int(params, "dklen", pwhere)
    if dklen != 32:
        raise KeystoreError(f"{pwhere}.dklen must be 32, got {dklen}")
    salt = _hex(params, "salt", pwhere)
    if function == "scrypt":
        n, r, p = _scrypt_params(params, pwhere)
        maxmem = _scrypt_memory(n, r, p) + (1 << 20)
        return function, {"salt": salt, "n": n, "r": r, "p": p, "dklen": dklen, "maxmem": maxmem}
    prf = _string(params, "prf", pwhere)
    if prf != "hmac-sha256":
        raise KeystoreError(f"unsupported pbkdf2 prf {prf!r} (supported: 'hmac-sha256')")
    c = _int(params, "c", pwhere)
    if not 1 <= c <= MAX_PBKDF2_ITERATIONS:
        raise KeystoreError(f"{pwhere}.c must be between 1 and {MAX_PBKDF2_ITERATIONS}, got {c}")
    return function, {"salt": salt, "iterations": c, "dklen": dklen}


def _derive_key(kdf: Mapping[str, Any], password: bytes) -> bytes:
    function, kwargs = _kdf_params(kdf)
    if function == "scrypt":
        return hashlib.scrypt(password, **kwargs)
    return hashlib.pbkdf2_hmac("sha256", password, **kwargs)


def _aes_128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR is its own inverse: the same call encrypts and decrypts."""
    transform = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return transform.update(data) + transform.finalize()


# --------------------------------------------------------------------------------------------
# Public API


def validate_keystore(keystore: Mapping[str, Any]) -> None:
    """Check everything about a keystore that does not need the password; raise if unusable.

    Lets a loader reject a malformed file (and name the problem) before it looks for a password
    or spends a KDF run on it.
    """
    _parse(keystore)


def _parse(keystore: Mapping[str, Any]) -> tuple[Mapping[str, Any], bytes, bytes, bytes]:
    """Validate structure and parameters; return ``(kdf, checksum, iv, ciphertext)``."""
    if not isinstance(keystore, Mapping):
        raise KeystoreError("keystore must be a JSON object")
    if "version" not in keystore:
        raise KeystoreError("missing version")
    version = keystore["version"]
    if type(version) is not int or version != 4:
        raise KeystoreError(f"version {version!r} is not supported (need 4)")
    crypto = _section(keystore, "crypto", "")
    kdf = _section(crypto, "kdf", "crypto")
    checksum = _section(crypto, "checksum", "crypto")
    cipher = _section(crypto, "cipher", "crypto")

    kdf_function = _string(kdf, "function", "crypto.kdf")
    if kdf_function not in ("scrypt", "pbkdf2"):
        raise KeystoreError(f"unsupported kdf {kdf_function!r} (supported: 'scrypt', 'pbkdf2')")
    checksum_function = _string(checksum, "function", "crypto.checksum")
    if checksum_function != "sha256":
        raise KeystoreError(
            f"unsupported checksum function {checksum_function!r} (supported: 'sha256')"
        )
    cipher_function = _string(cipher, "function", "crypto.cipher")
    if cipher_function != "aes-128-ctr":
        raise KeystoreError(
            f"unsupported cipher function {cipher_function!r} (supported: 'aes-128-ctr')"
        )
    expected_checksum = _hex(checksum, "message", "crypto.checksum", length=32)
    cipher_params = _section(cipher, "params", "crypto.cipher")
    iv = _hex(cipher_params, "iv", "crypto.cipher.params", length=_IV_LENGTH)
    ciphertext = _hex(cipher, "message", "crypto.cipher")
    if len(ciphertext) != _SECRET_LENGTH:
        raise KeystoreError(
            f"crypto.cipher.message must be {_SECRET_LENGTH} bytes (a BLS secret key),"
            f" got {len(ciphertext)}"
        )
    _kdf_params(kdf)
    return kdf, expected_checksum, iv, ciphertext


def kdf_memory(keystore: Mapping[str, Any]) -> int:
    """Bytes of memory decrypting ``keystore`` needs (scrypt's working set; 0 for pbkdf2).

    Lets a loader size its worker pool: eight parallel scrypt runs at the default n=2^18 need
    2 GiB. Raises :class:`KeystoreError` for an invalid keystore.
    """
    kdf = _parse(keystore)[0]
    function, kwargs = _kdf_params(kdf)
    if function != "scrypt":
        return 0
    return _scrypt_memory(kwargs["n"], kwargs["r"], kwargs["p"])


def decrypt_keystore(keystore: Mapping[str, Any], password: str) -> bytes:
    """Decrypt an EIP-2335 keystore and return its 32-byte secret.

    Everything that does not need the password is validated before the (deliberately slow) KDF
    runs, so a malformed file fails in microseconds and with the most specific message.
    Raises :class:`KeystoreError`; the wrong password is ``"wrong password (checksum mismatch)"``.
    """
    kdf, expected_checksum, iv, ciphertext = _parse(keystore)
    decryption_key = _derive_key(kdf, normalize_password(password))
    actual_checksum = hashlib.sha256(decryption_key[16:32] + ciphertext).digest()
    if not hmac.compare_digest(actual_checksum, expected_checksum):
        raise KeystoreError("wrong password (checksum mismatch)")
    return _aes_128_ctr(decryption_key[:16], iv, ciphertext)


def encrypt_keystore(
    secret: bytes,
    password: str,
    *,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    path: str = "",
    pubkey: bytes | None = None,
    kdf_params: Mapping[str, Any] | None = None,
    description: str = "",
    salt: bytes | None = None,
    iv: bytes | None = None,
) -> dict[str, Any]:
    """Build an EIP-2335 version-4 keystore (a JSON-ready dict) protecting ``secret``.

    ``kdf_params`` overrides the EIP-2335 defaults (e.g. ``{"n": 2**14}`` to keep tests fast);
    ``salt`` and ``iv`` default to fresh random bytes and exist so tests can reproduce the
    published vectors byte for byte. ``pubkey`` (48 bytes) is written when given, because
    clients and importers use it to identify the key without the password.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) != _SECRET_LENGTH:
        raise KeystoreError(f"secret must be {_SECRET_LENGTH} bytes")
    if pubkey is not None and len(pubkey) != 48:
        raise KeystoreError(f"pubkey must be 48 bytes, got {len(pubkey)}")
    if iv is not None and len(iv) != _IV_LENGTH:
        raise KeystoreError(f"iv must be {_IV_LENGTH} bytes, got {len(iv)}")
    if kdf == "scrypt":
        params: dict[str, Any] = dict(DEFAULT_SCRYPT_PARAMS)
    elif kdf == "pbkdf2":
        params = dict(DEFAULT_PBKDF2_PARAMS)
    else:
        raise KeystoreError(f"unsupported kdf {kdf!r} (supported: 'scrypt', 'pbkdf2')")
    params.update(kdf_params or {})
    params["salt"] = (salt if salt is not None else os.urandom(32)).hex()
    kdf_section: dict[str, Any] = {"function": kdf, "params": params, "message": ""}

    # Derive through the same validating code path decryption uses, so we never write a
    # keystore we would refuse to read back.
    decryption_key = _derive_key(kdf_section, normalize_password(password))
    iv = iv if iv is not None else os.urandom(_IV_LENGTH)
    ciphertext = _aes_128_ctr(decryption_key[:16], iv, bytes(secret))
    checksum = hashlib.sha256(decryption_key[16:32] + ciphertext).hexdigest()

    keystore: dict[str, Any] = {
        "crypto": {
            "kdf": kdf_section,
            "checksum": {"function": "sha256", "params": {}, "message": checksum},
            "cipher": {
                "function": "aes-128-ctr",
                "params": {"iv": iv.hex()},
                "message": ciphertext.hex(),
            },
        },
        "description": description,
        "path": path,
        "uuid": str(uuid.uuid4()),
        "version": 4,
    }
    if pubkey is not None:
        keystore["pubkey"] = pubkey.hex()
    return keystore


def decrypt_worker(job: tuple[Mapping[str, Any], str]) -> tuple[bytes | None, str | None]:
    """Process-pool entry point: ``(keystore, password) -> (secret, None) | (None, reason)``.

    Top level and importing nothing heavy so it works with the ``spawn`` start method. It never
    raises: an exception crossing the process boundary would be pickled with its arguments, and
    an unexpected one is reported by type only because its text could quote the input.
    """
    keystore, password = job
    try:
        return decrypt_keystore(keystore, password), None
    except KeystoreError as exc:
        return None, str(exc)
    except Exception as exc:  # a bug or a resource problem; never quote the input
        return None, f"unexpected error while decrypting: {type(exc).__name__}"
