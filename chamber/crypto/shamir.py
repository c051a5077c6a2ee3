"""Shamir secret sharing over GF(2^8), byte by byte: the vault splits its master key with it.

Each byte of the secret is the constant term of its own random polynomial of degree
``threshold - 1`` over GF(2^8) (the AES field, reduction polynomial ``x^8 + x^4 + x^3 + x + 1``,
0x11b); share ``x`` holds that polynomial evaluated at ``x`` for every byte, x = 1..255. Any
``threshold`` shares determine the polynomials, hence the secret (Lagrange interpolation at 0);
any ``threshold - 1`` shares are, for every candidate secret, consistent with exactly as many
coefficient choices, so they reveal nothing about it.

What this module cannot do: :func:`combine` does not know the threshold. Too few shares, or a
share from another split, interpolate to a wrong secret *silently*. Callers must check the result,
as the vault does with its key check value (:func:`chamber.crypto.envelope.verify_key_check`).

Secrets never appear in ``repr`` or in exception messages; messages name indices, versions and
lengths, which are public.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_SHARES", "SHARE_VERSION", "Share", "combine", "split"]

#: Format version written as the first byte of :meth:`Share.to_bytes`.
SHARE_VERSION = 1
#: x coordinates are the non-zero field elements; 0 is where the secret lives.
MAX_SHARES = 255

_HEADER_BYTES = 2  # version byte, index byte
# Log assigned to 0 in _LOG; see _build_tables.
_ZERO_LOG = 510


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Log/exp tables of GF(2^8) with generator 3 (2 does not generate the AES field).

    ``_LOG[0]`` is set to :data:`_ZERO_LOG` and the exp table padded with zeros beyond 509, so
    that ``_EXP[_LOG[a] + _LOG[b]]`` is the product even when ``a`` or ``b`` is zero. This keeps
    multiplication free of branches on the (secret) operands: the sum of two non-zero logs is at
    most 508, any sum involving a zero is at least 510.
    """
    exp = [0] * (2 * _ZERO_LOG + 1)
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = exp[i + 255] = x
        log[x] = i
        doubled = (x << 1) ^ (0x11B if x & 0x80 else 0)
        x ^= doubled  # x * 3 = x * 2 + x
    assert x == 1, "3 must generate the multiplicative group of GF(2^8)"
    log[0] = _ZERO_LOG
    return tuple(exp), tuple(log)


_EXP, _LOG = _build_tables()


def _check_int(name: str, value: object) -> int:
    # bool is an int subclass; True as a share count is a bug, not a request for one share.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Share:
    """One share of a split secret.

    Contract: ``index`` is in 1..255, ``data`` is non-empty ``bytes`` as long as the secret, and
    ``version`` is :data:`SHARE_VERSION`; anything else raises :class:`ValueError` (or
    :class:`TypeError` for wrong types) at construction. ``data`` is excluded from ``repr``.
    """

    index: int
    data: bytes = field(repr=False)
    version: int = SHARE_VERSION

    def __post_init__(self) -> None:
        _check_int("share index", self.index)
        _check_int("share version", self.version)
        if not isinstance(self.data, bytes):
            raise TypeError(f"share data must be bytes, not {type(self.data).__name__}")
        if self.version != SHARE_VERSION:
            raise ValueError(f"unknown share version {self.version} (supported: {SHARE_VERSION})")
        if not 1 <= self.index <= MAX_SHARES:
            raise ValueError(f"share index {self.index} is invalid (must be 1..{MAX_SHARES})")
        if not self.data:
            raise ValueError("share data is empty")

    def to_bytes(self) -> bytes:
        """Serialise as ``version byte | index byte | data``; :meth:`from_bytes` inverts it."""
        return bytes((self.version, self.index)) + self.data

    @classmethod
    def from_bytes(cls, raw: bytes) -> Share:
        """Parse :meth:`to_bytes` output.

        Raises :class:`ValueError` naming the problem: too short (fewer than 3 bytes), unknown
        version, or index 0. The message never contains the share data.
        """
        raw = bytes(raw)
        if len(raw) <= _HEADER_BYTES:
            raise ValueError(
                f"share is too short: {len(raw)} bytes, need at least {_HEADER_BYTES + 1}"
            )
        return cls(index=raw[1], data=raw[_HEADER_BYTES:], version=raw[0])


def split(
    secret: bytes | bytearray,
    threshold: int,
    shares: int,
    *,
    rng: Callable[[int], bytes] = os.urandom,
) -> list[Share]:
    """Split ``secret`` into ``shares`` shares, any ``threshold`` of which rebuild it.

    Requires ``1 <= threshold <= shares <= 255`` and a non-empty secret, else
    :class:`ValueError`. Threshold 1 is allowed: every share then *is* the secret.

    Returns shares with indices 1..``shares`` in that order. When ``threshold > 1``, ``rng`` is
    called exactly once, for ``(threshold - 1) * len(secret)`` bytes, which must be uniformly
    random (the default, :func:`os.urandom`, is); byte ``j`` of coefficient ``k`` (of x^k,
    k = 1..threshold-1) is ``random[(k - 1) * len(secret) + j]``. That layout is fixed so tests
    can inject ``rng`` and check known answers. Coefficients may be zero, including the leading
    one: excluding zero would make the distribution of ``threshold - 1`` shares depend on the
    secret.
    """
    _check_int("threshold", threshold)
    _check_int("shares", shares)
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise ValueError(
            f"need 1 <= threshold <= shares <= {MAX_SHARES}, "
            f"got threshold={threshold}, shares={shares}"
        )
    if not isinstance(secret, bytes | bytearray):
        raise TypeError(f"secret must be bytes or bytearray, not {type(secret).__name__}")
    length = len(secret)
    if length == 0:
        raise ValueError("secret is empty")

    # rows[k] holds coefficient k for every byte position; rows[0] is the secret itself.
    rows: list[bytes] = [bytes(secret)]
    if threshold > 1:
        needed = (threshold - 1) * length
        random = rng(needed)
        if len(random) != needed:
            raise ValueError(f"rng returned {len(random)} bytes, expected {needed}")
        rows.extend(random[k * length : (k + 1) * length] for k in range(threshold - 1))

    exp, log = _EXP, _LOG
    result: list[Share] = []
    for x in range(1, shares + 1):
        log_x = log[x]
        # Horner's rule, all byte positions at once: y = (...(c[t-1] * x + c[t-2]) * x ...) + c[0].
        y: bytes | list[int] = rows[-1]
        for row in reversed(rows[:-1]):
            y = [exp[log[b] + log_x] ^ c for b, c in zip(y, row, strict=True)]
        result.append(Share(index=x, data=bytes(y)))
    return result


def combine(shares: Sequence[Share]) -> bytes:
    """Rebuild the secret from shares by Lagrange interpolation at x = 0.

    Raises :class:`ValueError` for: no shares, mixed or unknown versions, an index outside
    1..255, the same index twice (even with identical data: deduplicating is the caller's job,
    and silently accepting duplicates would let one share count twice towards a threshold), or
    data of different lengths.

    Order does not matter. The result is only right if at least ``threshold`` shares of one
    split are given: with fewer, it is a wrong value *without any error*, so verify it.
    """
    if not shares:
        raise ValueError("no shares to combine")
    for share in shares:
        if not isinstance(share, Share):
            raise TypeError(f"expected Share, not {type(share).__name__}")

    versions = sorted({share.version for share in shares})
    if len(versions) > 1:
        raise ValueError(f"shares have mixed versions {versions}")
    if versions[0] != SHARE_VERSION:
        raise ValueError(f"unknown share version {versions[0]} (supported: {SHARE_VERSION})")

    # Construction already validates; these re-checks cover objects built around __post_init__
    # (object.__setattr__, copy tricks), since a bad index here would silently corrupt the result.
    seen: set[int] = set()
    for share in shares:
        if isinstance(share.index, bool) or not isinstance(share.index, int):
            raise TypeError("share index must be an int")
        if not 1 <= share.index <= MAX_SHARES:
            raise ValueError(f"share index {share.index} is invalid (must be 1..{MAX_SHARES})")
        if share.index in seen:
            raise ValueError(f"duplicate share index {share.index}")
        seen.add(share.index)

    lengths = sorted({len(share.data) for share in shares})
    if len(lengths) > 1:
        raise ValueError(f"shares have different data lengths {lengths}")
    if lengths[0] == 0:
        raise ValueError("share data is empty")

    exp, log = _EXP, _LOG
    xs = [share.index for share in shares]
    # Lagrange basis at 0, in the log domain: l_j(0) = prod_{m != j} x_m / (x_m - x_j), and
    # subtraction is XOR in characteristic 2. It depends only on the public indices.
    log_basis = []
    for xj in xs:
        numerator = sum(log[xm] for xm in xs if xm != xj)
        denominator = sum(log[xm ^ xj] for xm in xs if xm != xj)
        log_basis.append((numerator - denominator) % 255)

    secret = [0] * lengths[0]
    for share, log_l in zip(shares, log_basis, strict=True):
        for i, y in enumerate(share.data):
            secret[i] ^= exp[log[y] + log_l]
    return bytes(secret)
