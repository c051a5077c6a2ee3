"""BLS backends: byte-for-byte agreement, key validation, edge cases, backend selection.

The vectors (tests/vectors/test_bls_vectors.py) fix known answers; these tests fix what the
vectors do not reach: random keys and messages, and the places where the three libraries differ
natively (zero keys, infinity keys, points outside G2, empty inputs), which the shared checks in
``chamber.crypto.bls`` must make uniform.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chamber.crypto import bls
from chamber.errors import StartupError
from tests.support import REPO_ROOT, VECTORS

NAMES = list(bls.BACKENDS)
#: A point on the G2 curve that is not in G2, from the deserialization vectors.
NOT_IN_G2_VECTOR = (
    VECTORS / "bls12-381-tests/deserialization_G2/deserialization_fails_not_in_G2.json"
)

# py_ecc needs ~0.1 s per signature and ~0.3 s per verification: keep the example counts small
# enough that the whole module stays well under a minute.
agreement_settings = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
roundtrip_settings = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

secret_ints = st.integers(min_value=1, max_value=bls.CURVE_ORDER - 1)
messages = st.binary(max_size=96)


@pytest.fixture(scope="module")
def backends() -> dict[str, bls.BlsBackend]:
    return {name: cls() for name, cls in bls.BACKENDS.items()}


@pytest.fixture(scope="module", params=NAMES)
def backend(request: pytest.FixtureRequest, backends: dict[str, bls.BlsBackend]) -> bls.BlsBackend:
    return backends[request.param]


def _raw(secret: int) -> bytes:
    return secret.to_bytes(32, "big")


def _negate_g1(pubkey: bytes) -> bytes:
    """-P for a compressed non-identity G1 point: flip the sign-of-y flag."""
    return bytes([pubkey[0] ^ 0x20]) + pubkey[1:]


# ------------------------------------------------------------------------------ availability


@pytest.mark.parametrize("name", NAMES)
def test_every_backend_is_available_and_implements_the_protocol(name: str) -> None:
    cls = bls.BACKENDS[name]
    assert cls.available(), f"{name} must import in the test environment"
    instance = cls()
    assert isinstance(instance, bls.BlsBackend)
    assert instance.name == name


def test_importing_the_module_loads_no_native_library() -> None:
    code = (
        "import sys, chamber.crypto.bls; "
        "print([m for m in ('blspy', 'milagro_bls_binding') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -------------------------------------------------------------------------------- agreement


@agreement_settings
@given(secret=secret_ints, message=messages)
@example(secret=1, message=b"")
@example(secret=bls.CURVE_ORDER - 1, message=b"\x00" * 32)
def test_backends_agree_on_public_keys_and_signatures(
    backends: dict[str, bls.BlsBackend], secret: int, message: bytes
) -> None:
    raw = _raw(secret)
    pubkeys, signatures = {}, {}
    for name, backend in backends.items():
        sk = backend.secret_key(raw)
        pubkeys[name] = backend.public_key(sk)
        signatures[name] = backend.sign(sk, message)
    assert len(set(pubkeys.values())) == 1, pubkeys
    assert len(set(signatures.values())) == 1, signatures
    assert len(pubkeys["blspy"]) == 48 and len(signatures["blspy"]) == 96


@roundtrip_settings
@given(secret=secret_ints, message=messages)
def test_every_backend_verifies_every_backends_signature(
    backends: dict[str, bls.BlsBackend], secret: int, message: bytes
) -> None:
    blspy = backends["blspy"]
    sk = blspy.secret_key(_raw(secret))
    pubkey, signature = blspy.public_key(sk), blspy.sign(sk, message)
    other_message = message + b"\x01"
    for name, backend in backends.items():
        assert backend.verify(pubkey, message, signature), name
        assert not backend.verify(pubkey, other_message, signature), name


@pytest.mark.parametrize("name", NAMES)
def test_sign_verify_round_trip_and_tampering(
    backends: dict[str, bls.BlsBackend], name: str
) -> None:
    backend = backends[name]
    sk = backend.secret_key(_raw(0x1234_5678_9ABC))
    other = backend.secret_key(_raw(0x0FED_CBA9))
    pubkey, message = backend.public_key(sk), b"signing root".ljust(32, b"\x00")
    signature = backend.sign(sk, message)
    assert backend.verify(pubkey, message, signature)
    assert not backend.verify(backend.public_key(other), message, signature)
    assert not backend.verify(pubkey, message[:-1] + b"\x01", signature)
    flipped = bytearray(signature)
    flipped[50] ^= 0x01
    assert not backend.verify(pubkey, message, bytes(flipped))


def test_aggregation_agrees_and_verifies(backends: dict[str, bls.BlsBackend]) -> None:
    blspy = backends["blspy"]
    keys = [blspy.secret_key(_raw(s)) for s in (11, 22, 33)]
    pubkeys = [blspy.public_key(k) for k in keys]
    same = b"same message"
    distinct = [b"m0", b"m1", b"m2"]
    same_sigs = [blspy.sign(k, same) for k in keys]
    distinct_sigs = [blspy.sign(k, m) for k, m in zip(keys, distinct, strict=True)]
    aggregates = {name: b.aggregate(same_sigs) for name, b in backends.items()}
    assert len(set(aggregates.values())) == 1
    aggregate_distinct = blspy.aggregate(distinct_sigs)
    for name, backend in backends.items():
        assert backend.fast_aggregate_verify(pubkeys, same, aggregates["blspy"]), name
        assert not backend.fast_aggregate_verify(pubkeys[:2], same, aggregates["blspy"]), name
        assert backend.aggregate_verify(pubkeys, distinct, aggregate_distinct), name
        assert not backend.aggregate_verify(pubkeys, distinct[::-1], aggregate_distinct), name
        assert backend.batch_verify(pubkeys, distinct, distinct_sigs), name
        assert not backend.batch_verify(pubkeys, distinct, distinct_sigs[::-1]), name


def test_hash_to_g2_with_the_ethereum_dst_is_the_signature_of_key_one(
    backends: dict[str, bls.BlsBackend],
) -> None:
    # sign(1, m) = 1 * H(m): ties hash_to_g2 to the signing path on every backend, including
    # milagro's own ETH-DST route.
    for message in (b"", b"abc", bytes(range(200))):
        expected = backends["blspy"].sign(backends["blspy"].secret_key(_raw(1)), message)
        for name, backend in backends.items():
            assert backend.hash_to_g2(message) == expected, name
            assert backend.hash_to_g2(message, bls.ETH2_DST) == expected, name


@pytest.mark.parametrize("dst", [b"", b"x" * 256, "QUUX"])
def test_hash_to_g2_rejects_an_unusable_dst(backend: bls.BlsBackend, dst: Any) -> None:
    with pytest.raises(ValueError, match="domain separation tag"):
        backend.hash_to_g2(b"abc", dst)


# ----------------------------------------------------------------------------- secret keys

BAD_KEYS = {
    "zero": bytes(32),
    "curve-order": bls.CURVE_ORDER.to_bytes(32, "big"),
    "above-order": (bls.CURVE_ORDER + 0x5EC2E7).to_bytes(32, "big"),
    "all-ones": b"\xff" * 32,
    "31-bytes": bytes.fromhex("5ec2e75ec2e7" * 5 + "5e"),
    "33-bytes": bytes.fromhex("a1" * 16) + bytes.fromhex("b2" * 17),
    "48-bytes": bytes.fromhex("c3d4" * 24),
    "empty": b"",
}


@pytest.mark.parametrize("label", list(BAD_KEYS))
def test_secret_key_rejects_invalid_keys_without_echoing_them(
    backend: bls.BlsBackend, label: str
) -> None:
    raw = BAD_KEYS[label]
    with pytest.raises(ValueError) as info:
        backend.secret_key(raw)
    text = str(info.value)
    # No chained library exception that might carry the bytes either.
    assert info.value.__cause__ is None and info.value.__context__ is None
    if raw.strip(b"\x00"):
        for form in (raw.hex(), raw.hex().upper(), repr(raw), str(int.from_bytes(raw, "big"))):
            assert form not in text


@pytest.mark.parametrize("raw", ["00" * 32, 5, None])
def test_secret_key_rejects_non_bytes(backend: bls.BlsBackend, raw: Any) -> None:
    with pytest.raises(TypeError):
        backend.secret_key(raw)


@pytest.mark.parametrize("edge", [1, bls.CURVE_ORDER - 1])
def test_secret_key_accepts_the_edges_of_the_range(backend: bls.BlsBackend, edge: int) -> None:
    assert len(backend.public_key(backend.secret_key(_raw(edge)))) == 48


def test_secret_key_accepts_bytes_like(backend: bls.BlsBackend) -> None:
    raw = _raw(424242)
    expected = backend.public_key(backend.secret_key(raw))
    for like in (bytearray(raw), memoryview(raw)):
        assert backend.public_key(backend.secret_key(like)) == expected  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- edge cases


@pytest.fixture(scope="module")
def keypair(backends: dict[str, bls.BlsBackend]) -> tuple[bytes, bytes, bytes]:
    blspy = backends["blspy"]
    sk = blspy.secret_key(_raw(777))
    message = b"\x42" * 32
    return blspy.public_key(sk), message, blspy.sign(sk, message)


MALFORMED: list[Callable[[bls.BlsBackend, bytes, bytes, bytes], bool]] = [
    lambda b, pk, m, s: b.verify(pk[:-1], m, s),
    lambda b, pk, m, s: b.verify(pk, m, s + b"\x00"),
    lambda b, pk, m, s: b.verify(pk.hex(), m, s),  # type: ignore[arg-type]
    lambda b, pk, m, s: b.verify(pk, None, s),  # type: ignore[arg-type]
    lambda b, pk, m, s: b.verify(bls.G1_INFINITY, m, bls.G2_INFINITY),
    lambda b, pk, m, s: b.verify(b"\x00" * 48, m, s),
    lambda b, pk, m, s: b.verify(pk, m, b"\x00" * 96),
    lambda b, pk, m, s: b.aggregate_verify([], [], s),
    lambda b, pk, m, s: b.aggregate_verify([], [], bls.G2_INFINITY),
    lambda b, pk, m, s: b.aggregate_verify([pk], [m, m], s),
    lambda b, pk, m, s: b.aggregate_verify([pk, bls.G1_INFINITY], [m, m], s),
    lambda b, pk, m, s: b.fast_aggregate_verify([], m, bls.G2_INFINITY),
    lambda b, pk, m, s: b.fast_aggregate_verify([pk, bls.G1_INFINITY], m, s),
    lambda b, pk, m, s: b.fast_aggregate_verify([pk, _negate_g1(pk)], m, bls.G2_INFINITY),
    lambda b, pk, m, s: b.batch_verify([], [], []),
    lambda b, pk, m, s: b.batch_verify([pk], [m], []),
    lambda b, pk, m, s: b.batch_verify([pk, pk], [m], [s, s]),
    lambda b, pk, m, s: b.batch_verify([bls.G1_INFINITY], [m], [bls.G2_INFINITY]),
    lambda b, pk, m, s: b.g1_decompress_valid(pk + b"\x00"),
    lambda b, pk, m, s: b.g2_decompress_valid(s[:-1]),
    lambda b, pk, m, s: b.g2_decompress_valid("not bytes"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("case", range(len(MALFORMED)))
def test_verification_answers_false_for_malformed_input(
    backend: bls.BlsBackend, keypair: tuple[bytes, bytes, bytes], case: int
) -> None:
    pubkey, message, signature = keypair
    assert backend.verify(pubkey, message, signature)  # the baseline really verifies
    assert MALFORMED[case](backend, pubkey, message, signature) is False


def test_aggregate_rejects_empty_and_invalid_input(
    backend: bls.BlsBackend, keypair: tuple[bytes, bytes, bytes]
) -> None:
    _, _, signature = keypair
    with pytest.raises(ValueError, match="empty"):
        backend.aggregate([])
    with pytest.raises(ValueError, match="signature 1"):
        backend.aggregate([signature, signature[:-1]])
    with pytest.raises(ValueError, match="signature 0"):
        backend.aggregate([b"\x00" * 96])
    assert backend.aggregate([bls.G2_INFINITY, signature]) == signature


def test_a_curve_point_outside_g2_is_never_accepted(
    backend: bls.BlsBackend, keypair: tuple[bytes, bytes, bytes]
) -> None:
    pubkey, message, _ = keypair
    point = bytes.fromhex(json.loads(NOT_IN_G2_VECTOR.read_text())["input"]["signature"][2:])
    assert not backend.g2_decompress_valid(point)
    assert not backend.verify(pubkey, message, point)
    assert not backend.fast_aggregate_verify([pubkey], message, point)
    assert not backend.aggregate_verify([pubkey], [message], point)
    assert not backend.batch_verify([pubkey], [message], [point])
    with pytest.raises(ValueError, match="not a valid G2 point"):
        backend.aggregate([point])


@pytest.fixture(scope="module")
def torsion_forgery() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Two valid signatures shifted by +T and -T, T a point of order 13 outside G2.

    Each signature is off the subgroup, yet their sum is the honest aggregate: an aggregation
    or batch check that skips the subgroup check accepts the pair (the batch one whenever the
    two random coefficients agree mod 13). Built with py_ecc's curve arithmetic.
    """
    # Any-typed modules: py_ecc's annotations (NewTypes, point tuples) only add casts here.
    pop: Any = importlib.import_module("py_ecc.bls").G2ProofOfPossession
    points: Any = importlib.import_module("py_ecc.bls.g2_primitives")
    compression: Any = importlib.import_module("py_ecc.bls.point_compression")
    curve: Any = importlib.import_module("py_ecc.optimized_bls12_381")

    cofactor = int(  # of G2 in E2(Fp2)
        "5d543a95414e7f1091d50792876a202cd91de4547085abaa68a205b2e5a7ddfa"
        "628f1cb4d9e82ef21537e293a6691ae1616ec6e786f0c70cf1c38e31c7238e5",
        16,
    )
    # Cofactor = 13^2 * 23^2 * ...: (cofactor / 13^2) * r * P lands in the 13-torsion.
    for x in range(1, 1000):
        try:
            candidate = compression.decompress_G2((2**383 + x, 7))
        except ValueError:
            continue
        torsion = curve.multiply(curve.multiply(candidate, bls.CURVE_ORDER), cofactor // 169)
        if not curve.is_inf(torsion):
            break
    else:
        pytest.fail("no 13-torsion point found")
    assert curve.is_inf(curve.multiply(torsion, 13))
    secrets_, messages_ = [0xA11CE, 0xB0B], [b"alice", b"bob"]
    pubkeys = [bytes(pop.SkToPk(s)) for s in secrets_]
    honest = [
        points.signature_to_G2(pop.Sign(s, m)) for s, m in zip(secrets_, messages_, strict=True)
    ]
    shifted = [curve.add(honest[0], torsion), curve.add(honest[1], curve.neg(torsion))]
    return pubkeys, messages_, [bytes(points.G2_to_signature(p)) for p in shifted]


def test_torsion_shifted_signatures_are_rejected_everywhere(
    backend: bls.BlsBackend, torsion_forgery: tuple[list[bytes], list[bytes], list[bytes]]
) -> None:
    pubkeys, msgs, sigs = torsion_forgery
    for pk, msg, sig in zip(pubkeys, msgs, sigs, strict=True):
        assert not backend.g2_decompress_valid(sig)
        assert not backend.verify(pk, msg, sig)
    with pytest.raises(ValueError, match="not a valid G2 point"):
        backend.aggregate(sigs)
    # A randomised check slips with probability 1/13 per run if it skips the subgroup check;
    # 40 runs make that a 96% catch. Only milagro's batch check is randomised and cheap.
    runs = 40 if backend.name == "milagro" else 1
    for _ in range(runs):
        assert not backend.batch_verify(pubkeys, msgs, sigs)


def test_py_ecc_refuses_a_foreign_handle(backends: dict[str, bls.BlsBackend]) -> None:
    foreign = backends["blspy"].secret_key(_raw(5))  # wraps a blspy PrivateKey, not an int
    with pytest.raises(TypeError):
        backends["py_ecc"].sign(foreign, b"m")


# ------------------------------------------------------------------------------- selection


def _unavailable(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.setattr(bls.BACKENDS[name], "available", classmethod(lambda cls: False))


def test_auto_selects_blspy_when_everything_is_installed() -> None:
    assert isinstance(bls.select_backend(), bls.BlspyBackend)
    assert isinstance(bls.select_backend("auto"), bls.BlspyBackend)


@pytest.mark.parametrize("name", NAMES)
def test_explicit_names_select_that_backend(name: str) -> None:
    chosen = bls.select_backend(name)
    assert isinstance(chosen, bls.BACKENDS[name])
    assert chosen.name == name


def test_auto_falls_back_in_preference_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _unavailable(monkeypatch, "blspy")
    assert isinstance(bls.select_backend(), bls.MilagroBackend)
    _unavailable(monkeypatch, "milagro")
    assert isinstance(bls.select_backend(), bls.PyEccBackend)
    _unavailable(monkeypatch, "py_ecc")
    with pytest.raises(StartupError, match="pip install blspy"):
        bls.select_backend()


@pytest.mark.parametrize(
    ("name", "package"),
    [("blspy", "blspy"), ("milagro", "milagro-bls-binding"), ("py_ecc", "py-ecc")],
)
def test_an_unavailable_explicit_backend_is_a_startup_error(
    monkeypatch: pytest.MonkeyPatch, name: str, package: str
) -> None:
    _unavailable(monkeypatch, name)
    with pytest.raises(StartupError) as info:
        bls.select_backend(name)
    assert repr(name) in info.value.message
    assert f"pip install {package}" in info.value.message


def test_an_unknown_backend_name_lists_the_choices() -> None:
    with pytest.raises(StartupError) as info:
        bls.select_backend("blst")
    assert "'blst'" in info.value.message
    for name in ["auto", *NAMES]:
        assert name in info.value.message


def test_available_is_false_when_the_library_does_not_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bls.MilagroBackend, "module_name", "no_such_module_for_chamber_tests")
    assert bls.MilagroBackend.available() is False
    with pytest.raises(StartupError, match="milagro-bls-binding"):
        bls.select_backend("milagro")


@pytest.mark.parametrize("name", NAMES)
def test_secret_key_handles_never_show_or_pickle_the_key(name: str) -> None:
    import pickle

    backend = bls.BACKENDS[name]()
    secret = 0x1234_5678_9ABC_DEF0
    sk = backend.secret_key(_raw(secret))
    shown = repr(sk) + str(sk) + f"{sk}" + repr([sk]) + repr({"k": sk})
    for form in (_raw(secret).hex(), f"{secret:x}", str(secret)):
        assert form not in shown.lower()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(sk)


def test_selection_takes_the_given_providers_and_names_the_setting() -> None:
    class Plugged(bls.PyEccBackend):
        name = "plugged"

    chosen = bls.select_backend("plugged", {**bls.BACKENDS, "plugged": Plugged})
    assert isinstance(chosen, Plugged)
    with pytest.raises(StartupError, match=r"^bls\.backend: unknown BLS backend 'nope'"):
        bls.select_backend("nope", {"plugged": Plugged})
