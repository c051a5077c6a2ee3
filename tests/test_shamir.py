"""Shamir secret sharing over GF(2^8): reconstruction, secrecy, refusals, serialisation.

The field arithmetic used to check the module is written here independently of it: shift-and-add
("Russian peasant") multiplication with reduction by 0x11b, inverses as a^254, no tables. The
known answers also rest on products from FIPS-197 §4.2 ({57}·{83} = {c1}, {57}·{13} = {fe}) and
the textbook inverse pair {53}·{ca} = {01}.

Secrecy is checked exhaustively for one-byte secrets: with ``rng`` injected, every possible
coefficient choice is enumerated, and for each secret the ``threshold - 1`` observed share bytes
must hit every possible value exactly once. That is the definition of perfect secrecy (the
observed shares are uniformly distributed whatever the secret), and it fails if ``split`` skews
its coefficients (e.g. forbids a zero leading coefficient) or mixes the secret into them.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chamber.crypto.shamir import SHARE_VERSION, Share, combine, split

# ---------------------------------------------------------------------------------------------
# Independent reference arithmetic


def gf_mul(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return product


def gf_pow(a: int, e: int) -> int:
    result = 1
    for _ in range(e):
        result = gf_mul(result, a)
    return result


def gf_inv(a: int) -> int:
    assert a != 0
    return gf_pow(a, 254)


def ref_eval(coefficients: Sequence[int], x: int) -> int:
    """sum_k c_k x^k, term by term (no Horner, to differ from the module)."""
    value = 0
    for k, c in enumerate(coefficients):
        value ^= gf_mul(c, gf_pow(x, k))
    return value


def ref_interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    """Value at ``at`` of the polynomial of degree < len(points) through ``points``."""
    value = 0
    for j, (xj, yj) in enumerate(points):
        basis = 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                basis = gf_mul(basis, gf_mul(xm ^ at, gf_inv(xm ^ xj)))
        value ^= gf_mul(yj, basis)
    return value


def fixed_rng(data: bytes) -> Callable[[int], bytes]:
    """An rng that must be asked for exactly ``len(data)`` bytes, once."""
    calls: list[int] = []

    def rng(n: int) -> bytes:
        assert not calls, "split must draw its randomness in one call"
        assert n == len(data), f"split asked for {n} random bytes, expected {len(data)}"
        calls.append(n)
        return data

    return rng


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def test_reference_arithmetic_matches_fips_197() -> None:
    assert gf_mul(0x57, 0x83) == 0xC1
    assert gf_mul(0x57, 0x13) == 0xFE
    assert gf_mul(0x53, 0xCA) == 0x01
    assert gf_inv(0x53) == 0xCA


# ---------------------------------------------------------------------------------------------
# Known answers


def test_known_answer_degree_one_by_hand() -> None:
    # f0(x) = 0x00 + 0x57 x, f1(x) = 0x12 + 0x53 x; addition is XOR.
    shares = split(b"\x00\x12", 2, 0xCA, rng=fixed_rng(b"\x57\x53"))
    by_index = {share.index: share.data for share in shares}
    assert [share.index for share in shares] == list(range(1, 0xCA + 1))
    assert by_index[1] == bytes([0x57, 0x12 ^ 0x53])
    assert by_index[2] == bytes([0xAE, 0x12 ^ 0xA6])  # xtime(0x57) = 0xae, xtime(0x53) = 0xa6
    assert by_index[0x13][0] == 0xFE  # {57}·{13}
    assert by_index[0x83][0] == 0xC1  # {57}·{83}
    assert by_index[0xCA][1] == 0x12 ^ 0x01  # {53}·{ca} = {01}


def test_known_answer_against_reference_polynomials() -> None:
    secret = bytes.fromhex("00ff5a13c7")
    threshold, count = 4, 255
    # Coefficient k (k = 1..3) of byte j is random[(k - 1) * len(secret) + j].
    random_bytes = bytes((i * 37 + 11) % 256 for i in range((threshold - 1) * len(secret)))
    shares = split(secret, threshold, count, rng=fixed_rng(random_bytes))
    assert len(shares) == count
    for share in shares:
        expected = bytes(
            ref_eval(
                [secret[j]]
                + [random_bytes[(k - 1) * len(secret) + j] for k in range(1, threshold)],
                share.index,
            )
            for j in range(len(secret))
        )
        assert share.data == expected, share.index
        assert share.version == SHARE_VERSION


def test_combine_known_answer_from_reference_points() -> None:
    # Shares built by the reference evaluator, rebuilt by the module.
    coefficients = [0xB7, 0x00, 0x9E]  # secret 0xb7, zero middle coefficient
    shares = [Share(x, bytes([ref_eval(coefficients, x)])) for x in (3, 200, 255)]
    assert combine(shares) == b"\xb7"


# ---------------------------------------------------------------------------------------------
# Reconstruction


@st.composite
def split_cases(draw: st.DrawFn, max_shares: int) -> tuple[bytes, int, int, list[int], int]:
    count = draw(st.integers(2, max_shares))
    threshold = draw(st.integers(2, count))
    secret = draw(st.binary(min_size=1, max_size=48))
    order = draw(st.permutations(range(count)))
    used = draw(st.integers(threshold, count))
    seed = draw(st.integers(0, 2**32))
    return secret, threshold, count, list(order[:used]), seed


@settings(max_examples=200, deadline=None)
@given(split_cases(max_shares=16))
def test_any_threshold_subset_reconstructs(case: tuple[bytes, int, int, list[int], int]) -> None:
    secret, threshold, count, chosen, seed = case
    shares = split(secret, threshold, count, rng=seeded_rng(seed))
    assert sorted(share.index for share in shares) == list(range(1, count + 1))
    assert all(len(share.data) == len(secret) for share in shares)
    assert combine([shares[i] for i in chosen]) == secret


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(split_cases(max_shares=255))
@example((bytes(range(32)), 255, 255, list(range(254, -1, -1)), 1))
@example((b"\xff" * 32, 2, 255, [254, 0], 2))
def test_any_threshold_subset_reconstructs_up_to_255(
    case: tuple[bytes, int, int, list[int], int],
) -> None:
    secret, threshold, count, chosen, seed = case
    shares = split(secret, threshold, count, rng=seeded_rng(seed))
    assert combine([shares[i] for i in chosen]) == secret


def test_threshold_one_every_share_is_the_secret() -> None:
    shares = split(b"secret!", 1, 5)
    assert [share.data for share in shares] == [b"secret!"] * 5
    for share in shares:
        assert combine([share]) == b"secret!"


def test_bytearray_secret_and_default_rng() -> None:
    secret = bytearray(range(32))
    shares = split(secret, 3, 5)
    assert combine(shares[1:4]) == bytes(secret)


def test_two_splits_of_one_secret_differ() -> None:
    secret = bytes(32)
    assert split(secret, 2, 3)[0].data != split(secret, 2, 3)[0].data


# ---------------------------------------------------------------------------------------------
# Secrecy of threshold - 1 shares


def _observed(secret: int, threshold: int, count: int, random_bytes: bytes) -> bytes:
    """All share bytes, indices 1..count, of a split of a one-byte secret."""
    return bytes(
        s.data[0] for s in split(bytes([secret]), threshold, count, rng=fixed_rng(random_bytes))
    )


def test_one_share_of_two_is_uniform_for_every_secret() -> None:
    # threshold 2: each single share, over all 256 coefficient choices, takes every value once.
    for secret in range(256):
        columns = [_observed(secret, 2, 4, bytes([a])) for a in range(256)]
        for index in range(4):
            values = {column[index] for column in columns}
            assert len(values) == 256, (secret, index + 1)


def test_one_share_of_two_is_uniform_at_every_index() -> None:
    for secret in (0x00, 0x53, 0xFF):
        columns = [_observed(secret, 2, 255, bytes([a])) for a in range(256)]
        for index in range(255):
            assert len({column[index] for column in columns}) == 256, (secret, index + 1)


@pytest.mark.slow
def test_two_shares_of_three_are_uniform() -> None:
    # threshold 3: every pair of shares, over all 65536 coefficient choices, takes every pair of
    # values exactly once, for two different secrets: the pair reveals nothing about the secret.
    for secret in (0x00, 0xA7):
        columns = [
            _observed(secret, 3, 4, bytes(pair)) for pair in itertools.product(range(256), repeat=2)
        ]
        for i, j in itertools.combinations(range(4), 2):
            pairs = {(column[i], column[j]) for column in columns}
            assert len(pairs) == 65536, (secret, i + 1, j + 1)


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(2, 12),
    data=st.data(),
    secret=st.integers(0, 255),
    seed=st.integers(0, 2**32),
)
def test_threshold_minus_one_shares_fit_every_candidate_exactly_once(
    count: int, data: st.DataObject, secret: int, seed: int
) -> None:
    # An attacker holding t - 1 shares cannot rule out any secret: completing them with a
    # t-th share of each possible value yields each of the 256 secrets exactly once (one
    # polynomial of degree <= t - 1 per candidate).
    threshold = data.draw(st.integers(2, count))
    shares = split(bytes([secret]), threshold, count, rng=seeded_rng(seed))
    order = data.draw(st.permutations(shares))
    known, missing = list(order[: threshold - 1]), order[threshold - 1]
    candidates = [combine([*known, Share(missing.index, bytes([y]))]) for y in range(256)]
    assert sorted(candidates) == [bytes([c]) for c in range(256)]
    # and the real share is the one that gives the real secret
    assert candidates[missing.data[0]] == bytes([secret])
    # the reference interpolation agrees on the share each candidate needs
    for candidate in (0, secret, 255):
        points = [(0, candidate)] + [(s.index, s.data[0]) for s in known]
        needed = ref_interpolate(points, missing.index)
        assert candidates[needed] == bytes([candidate])


def test_share_bytes_are_uniform_and_independent_of_the_secret() -> None:
    # Over many splits of a fixed secret, every byte of one share is spread over all 256
    # values (chi-squared well within bounds), for an all-zero and an all-one secret alike.
    # Seeded, so it cannot flake; a split that leaked the secret (or a constant) would fail.
    for fill in (0x00, 0xFF):
        secret = bytes([fill]) * 32
        rng = seeded_rng(fill)
        histogram: Counter[int] = Counter()
        for _ in range(2048):
            histogram.update(split(secret, 4, 6, rng=rng)[5].data)
        expected = 2048 * 32 / 256
        chi2 = sum((histogram[v] - expected) ** 2 / expected for v in range(256))
        assert len(histogram) == 256
        assert chi2 < 400, chi2  # 255 degrees of freedom: mean 255, sd ~23


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("threshold", "count"),
    [(0, 1), (0, 0), (-1, 3), (3, 2), (2, 1), (1, 256), (256, 256), (2, 300)],
)
def test_split_rejects_bad_parameters(threshold: int, count: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        split(b"\x01\x02", threshold, count)


def test_split_rejects_non_int_parameters() -> None:
    with pytest.raises(TypeError):
        split(b"x", True, 3)
    with pytest.raises(TypeError):
        split(b"x", 2, 3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        split("text", 2, 3)  # type: ignore[arg-type]


def test_split_rejects_empty_secret() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        split(b"", 2, 3)


def test_split_rejects_short_rng_without_leaking() -> None:
    secret = b"TOP-SECRET-VALUE"
    with pytest.raises(ValueError, match="rng returned") as excinfo:
        split(secret, 3, 5, rng=lambda n: bytes(n - 1))
    assert b"TOP-SECRET" not in str(excinfo.value).encode()


def _forged(share: Share, **changes: object) -> Share:
    """A copy with fields set behind __post_init__'s back, to test combine's own checks."""
    forged = Share(share.index, share.data)
    for name, value in changes.items():
        object.__setattr__(forged, name, value)
    return forged


def test_combine_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no shares"):
        combine([])


def test_combine_rejects_duplicate_indices() -> None:
    shares = split(b"secret", 2, 3)
    with pytest.raises(ValueError, match="duplicate share index 1"):
        combine([shares[0], shares[0]])
    with pytest.raises(ValueError, match="duplicate share index 2"):
        combine([shares[1], shares[0], Share(2, b"other!")])


def test_combine_rejects_bad_index() -> None:
    shares = split(b"secret", 2, 3)
    for index in (0, 256, -1):
        with pytest.raises(ValueError, match=f"share index {index} is invalid"):
            combine([shares[0], _forged(shares[1], index=index)])


def test_combine_rejects_mixed_lengths() -> None:
    shares = split(b"secret", 2, 3)
    with pytest.raises(ValueError, match="different data lengths"):
        combine([shares[0], Share(2, shares[1].data[:-1])])


def test_combine_rejects_mixed_and_unknown_versions() -> None:
    shares = split(b"secret", 2, 3)
    with pytest.raises(ValueError, match="mixed versions"):
        combine([shares[0], _forged(shares[1], version=2)])
    with pytest.raises(ValueError, match="unknown share version 2"):
        combine([_forged(shares[0], version=2), _forged(shares[1], version=2)])


def test_combine_rejects_non_shares() -> None:
    with pytest.raises(TypeError):
        combine([b"\x01\x01abc"])  # type: ignore[list-item]


def test_combine_errors_do_not_contain_data() -> None:
    secret = b"TOP-SECRET-VALUE"
    shares = split(secret, 1, 2)  # threshold 1: share data is the secret itself
    for bad in ([shares[0], shares[0]], [shares[0], Share(2, secret[:-1])]):
        with pytest.raises(ValueError) as excinfo:
            combine(bad)
        assert "TOP-SECRET" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"index": 0, "data": b"x"}, ValueError, "index 0 is invalid"),
        ({"index": 256, "data": b"x"}, ValueError, "index 256 is invalid"),
        ({"index": 1, "data": b""}, ValueError, "empty"),
        ({"index": 1, "data": b"x", "version": 2}, ValueError, "unknown share version 2"),
        ({"index": 1, "data": bytearray(b"x")}, TypeError, "bytes"),
        ({"index": True, "data": b"x"}, TypeError, "index"),
    ],
)
def test_share_constructor_validates(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Share(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Serialisation and repr


@given(index=st.integers(1, 255), data=st.binary(min_size=1, max_size=64))
def test_share_bytes_round_trip(index: int, data: bytes) -> None:
    share = Share(index, data)
    raw = share.to_bytes()
    assert raw == bytes([SHARE_VERSION, index]) + data
    assert Share.from_bytes(raw) == share


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "too short: 0 bytes"),
        (b"\x01", "too short: 1 bytes"),
        (b"\x01\x05", "too short: 2 bytes"),
        (b"\x02\x01abc", "unknown share version 2"),
        (b"\x00\x01abc", "unknown share version 0"),
        (b"\x01\x00abc", "share index 0 is invalid"),
    ],
)
def test_share_from_bytes_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match) as excinfo:
        Share.from_bytes(raw)
    assert "abc" not in str(excinfo.value)


def test_share_repr_hides_data() -> None:
    data = b"TOP-SECRET-VALUE"
    share = Share(7, data)
    for text in (repr(share), str(share), f"{share}", repr([share])):
        assert "TOP-SECRET" not in text
        assert data.hex() not in text
        assert "index=7" in text
