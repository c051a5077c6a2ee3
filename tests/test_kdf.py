"""Argon2id wrapping keys and their stored parameters.

Most tests use tiny parameters (1 MiB, one pass, one lane) to stay fast; one runs the defaults.
The known answers compare with argon2-cffi's low-level API called directly and with the
independent OpenSSL implementation behind ``cryptography``'s ``Argon2id``, where available.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from argon2.low_level import Type, hash_secret_raw
from hypothesis import given
from hypothesis import strategies as st

from chamber.crypto.kdf import SALT_BYTES, Argon2Params, derive_wrapping_key, new_salt

FAST = Argon2Params(memory_kib=1024, iterations=1, parallelism=1)
SECRET = b"TOP-SECRET correct horse battery staple"
SALT = bytes(range(16))


# ---------------------------------------------------------------------------------------------
# Derivation


def test_known_answer_vs_argon2_cffi() -> None:
    params = Argon2Params(memory_kib=2048, iterations=2, parallelism=2)
    expected = hash_secret_raw(
        secret=SECRET,
        salt=SALT,
        time_cost=2,
        memory_cost=2048,
        parallelism=2,
        hash_len=32,
        type=Type.ID,
        version=0x13,
    )
    assert derive_wrapping_key(SECRET, SALT, params) == expected


def test_known_answer_vs_openssl() -> None:
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    except ImportError:
        pytest.skip("cryptography has no Argon2id")
    for params in (FAST, Argon2Params(memory_kib=2048, iterations=3, parallelism=4)):
        try:
            expected = Argon2id(
                salt=SALT,
                length=32,
                iterations=params.iterations,
                lanes=params.parallelism,
                memory_cost=params.memory_kib,
            ).derive(SECRET)
        except UnsupportedAlgorithm:
            pytest.skip("this OpenSSL has no Argon2id")
        assert derive_wrapping_key(SECRET, SALT, params) == expected


def test_pinned_value() -> None:
    # A change here (argon2 version, type, output length) would lock every operator out.
    assert derive_wrapping_key(b"pw", b"s" * 16, FAST) == bytes.fromhex(
        "b290804677f82039aa62229ef5921b721ab1a5f807c5005f326d71a889a86594"
    )


def test_deterministic_and_accepts_bytearray() -> None:
    key = derive_wrapping_key(SECRET, SALT, FAST)
    assert len(key) == 32
    assert derive_wrapping_key(SECRET, SALT, FAST) == key
    assert derive_wrapping_key(bytearray(SECRET), SALT, FAST) == key


def test_differs_by_secret_salt_and_each_parameter() -> None:
    base = derive_wrapping_key(SECRET, SALT, FAST)
    variants = [
        derive_wrapping_key(SECRET + b"!", SALT, FAST),
        derive_wrapping_key(SECRET, bytes(16), FAST),
        derive_wrapping_key(SECRET, SALT + b"\x00", FAST),
        derive_wrapping_key(SECRET, SALT, Argon2Params(1032, 1, 1)),
        derive_wrapping_key(SECRET, SALT, Argon2Params(1024, 2, 1)),
        derive_wrapping_key(SECRET, SALT, Argon2Params(1024, 1, 2)),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_default_parameters_run() -> None:
    assert Argon2Params() == Argon2Params(memory_kib=65536, iterations=3, parallelism=4)
    assert len(derive_wrapping_key(SECRET, new_salt(), Argon2Params())) == 32


def test_new_salt() -> None:
    salts = {new_salt() for _ in range(8)}
    assert len(salts) == 8
    assert all(isinstance(s, bytes) and len(s) == SALT_BYTES == 16 for s in salts)


@pytest.mark.parametrize(
    ("secret", "salt", "error", "match"),
    [
        (b"", SALT, ValueError, "secret is empty"),
        (bytearray(), SALT, ValueError, "secret is empty"),
        (SECRET, b"", ValueError, "salt must be at least 16 bytes, got 0"),
        (SECRET, SALT[:15], ValueError, "salt must be at least 16 bytes, got 15"),
        (SECRET, bytearray(SALT), TypeError, "salt must be bytes"),
        ("text", SALT, TypeError, "secret must be bytes"),
    ],
)
def test_derive_rejects_bad_inputs(
    secret: Any, salt: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as excinfo:
        derive_wrapping_key(secret, salt, FAST)
    assert "TOP-SECRET" not in str(excinfo.value)


def test_derive_rejects_non_params() -> None:
    with pytest.raises(TypeError, match="Argon2Params"):
        derive_wrapping_key(SECRET, SALT, FAST.to_json())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Parameters


def test_to_json() -> None:
    assert Argon2Params().to_json() == {"memory_kib": 65536, "iterations": 3, "parallelism": 4}


@given(
    parallelism=st.integers(1, 64),
    iterations=st.integers(1, 100),
    data=st.data(),
)
def test_params_round_trip(parallelism: int, iterations: int, data: st.DataObject) -> None:
    memory_kib = data.draw(st.integers(8 * parallelism, 4 * 1024 * 1024))
    params = Argon2Params(memory_kib, iterations, parallelism)
    assert Argon2Params.from_json(params.to_json()) == params
    assert Argon2Params.from_json(json.loads(json.dumps(params.to_json()))) == params


GOOD = {"memory_kib": 1024, "iterations": 1, "parallelism": 1}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"memory_kib": 7}, "memory_kib"),
        ({"memory_kib": 0}, "memory_kib"),
        ({"memory_kib": 31, "parallelism": 4}, "memory_kib"),
        ({"memory_kib": 4 * 1024 * 1024 + 1}, "memory_kib"),
        ({"memory_kib": 1024.0}, "memory_kib"),
        ({"memory_kib": "1024"}, "memory_kib"),
        ({"memory_kib": None}, "memory_kib"),
        ({"iterations": 0}, "iterations"),
        ({"iterations": 101}, "iterations"),
        ({"iterations": -1}, "iterations"),
        ({"iterations": True}, "iterations"),
        ({"parallelism": 0}, "parallelism"),
        ({"parallelism": 65, "memory_kib": 65536}, "parallelism"),
        ({"parallelism": 1.5}, "parallelism"),
    ],
)
def test_from_json_rejects_bad_values_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"argon2 parameter {field}"):
        Argon2Params.from_json({**GOOD, **changes})


def test_from_json_rejects_missing_and_unknown_fields() -> None:
    for name in GOOD:
        partial = {k: v for k, v in GOOD.items() if k != name}
        with pytest.raises(ValueError, match=f"argon2 parameter {name} is missing"):
            Argon2Params.from_json(partial)
    with pytest.raises(ValueError, match=r"unknown argon2 parameter\(s\): salt"):
        Argon2Params.from_json({**GOOD, "salt": 1})
    with pytest.raises(ValueError, match="must be an object"):
        Argon2Params.from_json([1, 2, 3])  # type: ignore[arg-type]


def test_memory_lower_bound_follows_parallelism() -> None:
    assert Argon2Params(memory_kib=32, iterations=1, parallelism=4).memory_kib == 32
    assert Argon2Params(memory_kib=8 * 64, iterations=1, parallelism=64).parallelism == 64
    assert Argon2Params(memory_kib=4 * 1024 * 1024, iterations=100, parallelism=1).iterations == 100
    with pytest.raises(ValueError, match=r"memory_kib=31 out of range 32\.\.4194304"):
        Argon2Params(memory_kib=31, iterations=1, parallelism=4)


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="iterations"):
        Argon2Params(iterations=0)
    with pytest.raises(ValueError, match="parallelism"):
        Argon2Params(parallelism=False)
