"""Argon2id for operator credentials: a credential and a salt become a 32-byte wrapping key.

The parameters are stored beside each wrapped share (:meth:`Argon2Params.to_json`), so they can
be raised later without breaking existing credentials. Stored parameters are untrusted input:
:meth:`Argon2Params.from_json` bounds them, so a corrupted or hostile record cannot make start-up
allocate gigabytes or spin for hours.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from argon2.low_level import Type, hash_secret_raw

__all__ = [
    "ARGON2_VERSION",
    "MAX_ITERATIONS",
    "MAX_MEMORY_KIB",
    "MAX_PARALLELISM",
    "SALT_BYTES",
    "WRAPPING_KEY_BYTES",
    "Argon2Params",
    "derive_wrapping_key",
    "new_salt",
]

SALT_BYTES = 16
WRAPPING_KEY_BYTES = 32
#: Argon2 version 1.3. Pinned rather than left to argon2-cffi's default, because a change of
#: default would silently change every derived key and lock operators out.
ARGON2_VERSION = 0x13
MAX_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB
MAX_ITERATIONS = 100
MAX_PARALLELISM = 64


def _int_field(name: str, value: object) -> int:
    # bool is an int subclass, and JSON true must not become iterations=1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"argon2 parameter {name} must be an integer, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost parameters.

    Contract: ``parallelism`` in 1..64, ``memory_kib`` in ``8 * parallelism``..4194304 (Argon2
    needs 8 KiB per lane; 4 GiB is beyond any sane setting), ``iterations`` in 1..100. Violations
    raise :class:`ValueError` naming the field, at construction and in :meth:`from_json`.
    The defaults (64 MiB, 3 passes, 4 lanes) follow RFC 9106's second recommended option.
    """

    memory_kib: int = 65536
    iterations: int = 3
    parallelism: int = 4

    def __post_init__(self) -> None:
        parallelism = _int_field("parallelism", self.parallelism)
        memory_kib = _int_field("memory_kib", self.memory_kib)
        iterations = _int_field("iterations", self.iterations)
        if not 1 <= parallelism <= MAX_PARALLELISM:
            raise ValueError(
                f"argon2 parameter parallelism={parallelism} out of range 1..{MAX_PARALLELISM}"
            )
        if not 8 * parallelism <= memory_kib <= MAX_MEMORY_KIB:
            raise ValueError(
                f"argon2 parameter memory_kib={memory_kib} out of range "
                f"{8 * parallelism}..{MAX_MEMORY_KIB} (8 KiB per lane)"
            )
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ValueError(
                f"argon2 parameter iterations={iterations} out of range 1..{MAX_ITERATIONS}"
            )

    def to_json(self) -> dict[str, int]:
        """The parameters as a JSON object; :meth:`from_json` inverts it."""
        return {
            "memory_kib": self.memory_kib,
            "iterations": self.iterations,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Argon2Params:
        """Parse :meth:`to_json` output, validating every field.

        All three fields are required and no others are allowed: a stored record with a missing
        or unexpected field is corrupt, and guessing a default would derive the wrong key.
        Raises :class:`ValueError` naming the offending field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"argon2 parameters must be an object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in data if key not in names)
        if unknown:
            raise ValueError(f"unknown argon2 parameter(s): {', '.join(unknown)}")
        for name in names:
            if name not in data:
                raise ValueError(f"argon2 parameter {name} is missing")
        return cls(
            memory_kib=_int_field("memory_kib", data["memory_kib"]),
            iterations=_int_field("iterations", data["iterations"]),
            parallelism=_int_field("parallelism", data["parallelism"]),
        )


def new_salt() -> bytes:
    """A fresh random salt of :data:`SALT_BYTES` bytes from the OS CSPRNG."""
    return os.urandom(SALT_BYTES)


def derive_wrapping_key(secret: bytes | bytearray, salt: bytes, params: Argon2Params) -> bytes:
    """Argon2id(secret, salt, params) -> 32-byte key for wrapping an operator's share.

    Deterministic in all three inputs. ``secret`` must be non-empty and ``salt`` at least
    :data:`SALT_BYTES` bytes, else :class:`ValueError` (the message never contains either).
    Slow by design: with the default parameters, tens to hundreds of milliseconds and 64 MiB.
    """
    if not isinstance(secret, bytes | bytearray):
        raise TypeError(f"secret must be bytes or bytearray, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret is empty")
    if not isinstance(salt, bytes):
        raise TypeError(f"salt must be bytes, not {type(salt).__name__}")
    if len(salt) < SALT_BYTES:
        raise ValueError(f"salt must be at least {SALT_BYTES} bytes, got {len(salt)}")
    if not isinstance(params, Argon2Params):
        raise TypeError(f"params must be Argon2Params, not {type(params).__name__}")
    return hash_secret_raw(
        # argon2-cffi accepts only bytes here; the copy is unavoidable and short-lived.
        secret=bytes(secret),
        salt=salt,
        time_cost=params.iterations,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=WRAPPING_KEY_BYTES,
        type=Type.ID,
        version=ARGON2_VERSION,
    )
