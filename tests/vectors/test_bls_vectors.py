"""Every ethereum/bls12-381-tests vector, on every BLS backend.

The vectors pin the ciphersuite (a wrong DST fails every ``sign`` case) and the edge cases the
libraries disagree on (infinity keys, empty inputs, non-canonical encodings), so each backend
must pass all of them; a backend whose library does not import fails here, it is not skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chamber.crypto import bls
from tests.support import VECTORS

BLS_VECTORS = VECTORS / "bls12-381-tests"
#: Per-handler counts from the vectors' README; a missing or half-copied directory fails loudly.
EXPECTED_COUNTS = {
    "sign": 10,
    "verify": 29,
    "aggregate": 6,
    "fast_aggregate_verify": 12,
    "aggregate_verify": 5,
    "batch_verify": 4,
    "hash_to_G2": 4,
    "deserialization_G1": 16,
    "deserialization_G2": 18,
}
EXPECTED_TOTAL = 104
#: hash_to_G2 vectors are RFC 9380 appendix J.10.1, generated with the RFC's test DST (the DST
#: is not stored in the files).
RFC9380_DST = b"QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_"
#: BLS12-381 base field modulus, for checking hash_to_G2 outputs without any BLS library.
P = int(
    "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf"
    "6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab",
    16,
)


def _vector_files() -> list[Path]:
    return sorted(BLS_VECTORS.glob("*/*.json"))


VECTOR_FILES = _vector_files()


def _vector_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.fixture(scope="module", params=list(bls.BACKENDS))
def backend(request: pytest.FixtureRequest) -> bls.BlsBackend:
    cls = bls.BACKENDS[request.param]
    # All three libraries are test dependencies: a backend that cannot load is a failure.
    assert cls.available(), f"BLS backend {request.param} does not import"
    return cls()


def _hex(value: str) -> bytes:
    assert value.startswith("0x"), value
    return bytes.fromhex(value[2:])


def _hexes(values: list[str]) -> list[bytes]:
    return [_hex(v) for v in values]


def test_all_104_vector_files_are_present() -> None:
    counts = Counter(path.parent.name for path in VECTOR_FILES)
    assert dict(counts) == EXPECTED_COUNTS
    assert len(VECTOR_FILES) == sum(EXPECTED_COUNTS.values()) == EXPECTED_TOTAL
    # Nothing hides in deeper directories that the parametrisation would miss.
    assert len(list(BLS_VECTORS.rglob("*.json"))) == EXPECTED_TOTAL


# ------------------------------------------------------------------------ hash_to_G2 helpers


def _fp2(text: str) -> tuple[int, int]:
    """``"0x<re>,0x<im>"`` as the pair (re, im), each checked to be a field element."""
    re_text, im_text = text.split(",")
    re, im = int(re_text, 16), int(im_text, 16)
    assert 0 <= re < P and 0 <= im < P
    return re, im


def _fp2_mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    # (a0 + a1 i)(b0 + b1 i) with i^2 = -1
    return (a[0] * b[0] - a[1] * b[1]) % P, (a[0] * b[1] + a[1] * b[0]) % P


def _compress_g2(x: tuple[int, int], y: tuple[int, int]) -> bytes:
    """ZCash compressed encoding of the affine point (x, y) of E2: y^2 = x^3 + 4(1 + i).

    Written out here, from the curve equation and the serialisation rules, so the hash_to_G2
    check does not trust any of the libraries under test. The encoding fixes x and the sign of
    y; with (x, y) checked to be on the curve, equal encodings mean equal points.
    """
    x3 = _fp2_mul(_fp2_mul(x, x), x)
    assert _fp2_mul(y, y) == ((x3[0] + 4) % P, (x3[1] + 4) % P), "expected point not on E2"
    half = (P - 1) // 2
    y_is_larger = y[1] > half if y[1] != 0 else y[0] > half
    flags = 0x80 | (0x20 if y_is_larger else 0)  # compressed, not infinity, sign of y
    encoded = bytearray(x[1].to_bytes(48, "big") + x[0].to_bytes(48, "big"))  # x_im || x_re
    encoded[0] |= flags
    return bytes(encoded)


# ------------------------------------------------------------------------------- the vectors


def _run(backend: bls.BlsBackend, handler: str, data: dict[str, Any]) -> None:
    given, expected = data["input"], data["output"]
    if handler == "sign":
        if expected is None:
            with pytest.raises(ValueError):
                backend.secret_key(_hex(given["privkey"]))
            return
        sk = backend.secret_key(_hex(given["privkey"]))
        message = _hex(given["message"])
        assert backend.sign(sk, message) == _hex(expected)
        assert backend.verify(backend.public_key(sk), message, _hex(expected)) is True
    elif handler == "verify":
        result = backend.verify(
            _hex(given["pubkey"]), _hex(given["message"]), _hex(given["signature"])
        )
        assert result is expected
    elif handler == "aggregate":
        if expected is None:
            with pytest.raises(ValueError):
                backend.aggregate(_hexes(given))
            return
        assert backend.aggregate(_hexes(given)) == _hex(expected)
    elif handler == "fast_aggregate_verify":
        result = backend.fast_aggregate_verify(
            _hexes(given["pubkeys"]), _hex(given["message"]), _hex(given["signature"])
        )
        assert result is expected
    elif handler == "aggregate_verify":
        result = backend.aggregate_verify(
            _hexes(given["pubkeys"]), _hexes(given["messages"]), _hex(given["signature"])
        )
        assert result is expected
    elif handler == "batch_verify":
        result = backend.batch_verify(
            _hexes(given["pubkeys"]), _hexes(given["messages"]), _hexes(given["signatures"])
        )
        assert result is expected
    elif handler == "hash_to_G2":
        # The RFC's messages are ASCII text, not hex.
        message = given["msg"].encode("ascii")
        point = _compress_g2(_fp2(expected["x"]), _fp2(expected["y"]))
        assert backend.hash_to_g2(message, RFC9380_DST) == point
    elif handler == "deserialization_G1":
        assert backend.g1_decompress_valid(_hex(given["pubkey"])) is expected
    elif handler == "deserialization_G2":
        assert backend.g2_decompress_valid(_hex(given["signature"])) is expected
    else:
        pytest.fail(f"no runner for vector handler {handler!r}")


@pytest.mark.parametrize("path", VECTOR_FILES, ids=_vector_id)
def test_vector(backend: bls.BlsBackend, path: Path) -> None:
    _run(backend, path.parent.name, json.loads(path.read_text()))
