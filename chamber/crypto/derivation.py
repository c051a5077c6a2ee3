"""Validator key generation: BIP-39 mnemonics, EIP-2333 key trees, EIP-2334 paths, deposit data.

Pure functions, no I/O. The pieces, in the order a key is born:

1. **BIP-39** (:func:`generate_mnemonic`, :func:`entropy_to_mnemonic`, :func:`canonical_mnemonic`,
   :func:`mnemonic_to_seed`): entropy -> words (wordlists from the ``mnemonic`` package, trezor's
   reference implementation) -> 64-byte seed (PBKDF2-HMAC-SHA512, 2048 rounds, salt
   ``"mnemonic" + passphrase``, both NFKD-normalised). Mnemonics are produced and accepted in
   the languages staking-deposit-cli offers (:data:`LANGUAGES`), so a mnemonic made here restores
   there and vice versa. A mnemonic is always returned in NFKD form, as staking-deposit-cli
   writes it (this matters only for accented and Hangul words: the seed is the same either way).
2. **EIP-2333** (:func:`derive_master_sk`, :func:`derive_child_sk` and the named steps of the EIP:
   :func:`hkdf_mod_r`, :func:`ikm_to_lamport_sk`, :func:`parent_sk_to_lamport_pk`): seed -> master
   secret key -> child keys, each an integer in ``[1, CURVE_ORDER)``.
3. **EIP-2334** (:func:`parse_path`, :func:`derive_path`, :func:`validator_keys`): validator ``i``
   signs with ``m/12381/3600/i/0/0`` and withdraws with ``m/12381/3600/i/0``.
4. **Deposit data** (:func:`deposit_data`): one entry of staking-deposit-cli's
   ``deposit_data-*.json``, signed over the ``DepositMessage`` under ``DOMAIN_DEPOSIT`` with the
   network's *genesis* fork version and a *zero* genesis validators root (deposits are processed
   by the deposit contract before a chain has a validators root, so the spec fixes it to zero).

Secrets stay out of messages: every error names a position, a length or a rule, never a word of
a mnemonic, a passphrase, a seed or a key. Functions return secrets as plain ``int``/``bytes``
(what the EIPs and :mod:`chamber.crypto.keystore` speak); :class:`ValidatorKeys` bundles one
validator's keys behind a redacted ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from mnemonic import Mnemonic

from chamber.crypto.bls import (
    CURVE_ORDER,
    PUBLIC_KEY_SIZE,
    SECRET_KEY_SIZE,
    BlsBackend,
    SecretKey,
    select_backend,
    validate_secret_key,
)
from chamber.eth.containers import DepositData, DepositMessage
from chamber.eth.networks import Network
from chamber.eth.signing import (
    DOMAIN_DEPOSIT,
    ZERO_ROOT,
    compute_domain,
    compute_signing_root,
)

__all__ = [
    "BLS_WITHDRAWAL_PREFIX",
    "COMPOUNDING_WITHDRAWAL_PREFIX",
    "DEPOSIT_CLI_VERSION",
    "DEPOSIT_DATA_FIELDS",
    "ETH1_ADDRESS_WITHDRAWAL_PREFIX",
    "GWEI_PER_ETH",
    "LANGUAGES",
    "MAX_EFFECTIVE_BALANCE",
    "MAX_EFFECTIVE_BALANCE_ELECTRA",
    "MIN_DEPOSIT_AMOUNT",
    "MIN_SEED_SIZE",
    "MNEMONIC_WORD_COUNTS",
    "DepositDataError",
    "DerivationError",
    "MnemonicError",
    "PathError",
    "ValidatorKeys",
    "bls_withdrawal_credentials",
    "canonical_mnemonic",
    "deposit_data",
    "deposit_data_filename",
    "deposit_data_json",
    "deposit_data_root",
    "deposit_message_root",
    "deposit_signing_root",
    "derive_child_sk",
    "derive_master_sk",
    "derive_path",
    "entropy_to_mnemonic",
    "execution_withdrawal_credentials",
    "format_path",
    "generate_mnemonic",
    "hkdf_mod_r",
    "ikm_to_lamport_sk",
    "iter_validator_keys",
    "mnemonic_to_seed",
    "parent_sk_to_lamport_pk",
    "parse_execution_address",
    "parse_path",
    "secret_key_bytes",
    "signing_key_path",
    "validator_index_from_path",
    "validator_keys",
    "validator_signing_key",
    "validator_withdrawal_key",
    "withdrawal_key_path",
]


class DerivationError(ValueError):
    """Bad input to key generation; the message never contains secret material."""


class MnemonicError(DerivationError):
    """A mnemonic is malformed, has an unknown word or a wrong checksum (words never quoted)."""


class PathError(DerivationError):
    """A derivation path is not of the form ``m/<index>/<index>...``."""


class DepositDataError(DerivationError):
    """Deposit data cannot be built from these inputs (amount, credentials, key mismatch)."""


# ============================================================================================
# BIP-39

#: The languages staking-deposit-cli offers; wordlists come from the ``mnemonic`` package.
LANGUAGES: Final = (
    "chinese_simplified",
    "chinese_traditional",
    "czech",
    "english",
    "italian",
    "korean",
    "portuguese",
    "spanish",
)
#: Word counts BIP-39 defines, for 128, 160, 192, 224 and 256 bits of entropy.
MNEMONIC_WORD_COUNTS: Final = (12, 15, 18, 21, 24)
_ENTROPY_SIZES: Final = (16, 20, 24, 28, 32)
_WORDLIST_SIZE: Final = 2048
#: Words of a BIP-39 list are unique in their first four letters (staking-deposit-cli and most
#: wallets accept these abbreviations when a mnemonic is typed in).
_ABBREVIATION_LENGTH: Final = 4


def _nfkd(text: str) -> str:
    return unicodedata.normalize("NFKD", text)


def _check_language(language: object) -> str:
    if not isinstance(language, str) or language not in LANGUAGES:
        raise MnemonicError(f"unsupported mnemonic language; choose one of {', '.join(LANGUAGES)}")
    return language


@lru_cache(maxsize=len(LANGUAGES))
def _mnemonic(language: str) -> Mnemonic:
    return Mnemonic(language)


@lru_cache(maxsize=len(LANGUAGES))
def _wordlist(language: str) -> tuple[str, ...]:
    """The language's 2048 words in NFKD form (how BIP-39 compares words; normalised here
    rather than trusted, since a composed list would silently break every lookup)."""
    words = tuple(_nfkd(word) for word in _mnemonic(language).wordlist)
    if len(words) != _WORDLIST_SIZE or len(set(words)) != _WORDLIST_SIZE:
        raise RuntimeError(f"the {language} BIP-39 wordlist is not 2048 distinct words")
    return words


@lru_cache(maxsize=len(LANGUAGES))
def _word_indices(language: str) -> dict[str, int]:
    """Full word -> index, plus every unambiguous four-letter abbreviation -> index."""
    words = _wordlist(language)
    indices = {word: index for index, word in enumerate(words)}
    prefixes: dict[str, list[int]] = {}
    for index, word in enumerate(words):
        prefix = unicodedata.normalize("NFKC", word)[:_ABBREVIATION_LENGTH]
        if len(prefix) == _ABBREVIATION_LENGTH:
            prefixes.setdefault(_nfkd(prefix), []).append(index)
    for prefix, matches in prefixes.items():
        if len(matches) == 1:
            indices.setdefault(prefix, matches[0])
    return indices


def _checksum_bits(entropy: bytes) -> int:
    """The first ``len(entropy) * 8 / 32`` bits of SHA-256(entropy), as an integer."""
    bits = len(entropy) // 4
    return hashlib.sha256(entropy).digest()[0] >> (8 - bits)


def entropy_to_mnemonic(entropy: bytes, language: str = "english") -> str:
    """The BIP-39 mnemonic (NFKD, single spaces) encoding ``entropy`` in ``language``.

    ``entropy`` must be 16, 20, 24, 28 or 32 bytes (12 to 24 words); the checksum word is
    computed here. Deterministic: the BIP-39 test vectors are entropy -> mnemonic pairs.
    """
    language = _check_language(language)
    if not isinstance(entropy, (bytes, bytearray)) or len(entropy) not in _ENTROPY_SIZES:
        raise MnemonicError("entropy must be 16, 20, 24, 28 or 32 bytes (128 to 256 bits)")
    return _nfkd(_mnemonic(language).to_mnemonic(bytes(entropy)))


def generate_mnemonic(language: str = "english", *, strength: int = 256) -> str:
    """A fresh mnemonic from ``strength`` bits of OS randomness (default 256 bits: 24 words).

    ``strength`` is one of 128, 160, 192, 224, 256. The caller decides whether one mnemonic
    covers a batch of validators (indices 0..n-1 under one seed) or each key gets its own.
    """
    if isinstance(strength, bool) or strength not in [8 * size for size in _ENTROPY_SIZES]:
        raise MnemonicError("strength must be 128, 160, 192, 224 or 256 bits")
    return entropy_to_mnemonic(secrets.token_bytes(strength // 8), language)


def _decode_words(tokens: Sequence[str], language: str) -> list[int] | int:
    """Word indices of ``tokens`` in ``language``, or the 1-based position of the first miss."""
    lookup = _word_indices(language)
    indices: list[int] = []
    for position, token in enumerate(tokens, start=1):
        index = lookup.get(token)
        if index is None:
            return position
        indices.append(index)
    return indices


def _checksum_matches(indices: Sequence[int]) -> bool:
    value = 0
    for index in indices:
        value = (value << 11) | index
    checksum_length = len(indices) // 3
    entropy = (value >> checksum_length).to_bytes(checksum_length * 4, "big")
    return _checksum_bits(entropy) == value & ((1 << checksum_length) - 1)


def canonical_mnemonic(mnemonic: str, language: str | None = None) -> str:
    """Validate ``mnemonic`` and return it in canonical form: full words, NFKD, single spaces.

    Accepted as typed by a person: any case, any whitespace between words, composed or
    decomposed accents, and the unambiguous four-letter abbreviations of words. ``language``
    ``None`` tries every language of :data:`LANGUAGES` in that order (some words are shared
    between lists; the first language in which every word is known and the checksum holds
    wins; for full words the seed does not depend on which that is, only on the words).

    Raises :class:`MnemonicError` for a wrong word count, a word in no wordlist (named by its
    position, never quoted) or a checksum mismatch.
    """
    if not isinstance(mnemonic, str):
        raise MnemonicError("mnemonic must be a string")
    languages = LANGUAGES if language is None else (_check_language(language),)
    tokens = _nfkd(mnemonic).lower().split()
    if len(tokens) not in MNEMONIC_WORD_COUNTS:
        raise MnemonicError(f"a mnemonic has 12, 15, 18, 21 or 24 words, not {len(tokens)}")
    # The language that knows the most leading words, and the first word it does not know.
    best_language, best_miss = languages[0], 0
    decoded_somewhere = False
    for candidate in languages:
        decoded = _decode_words(tokens, candidate)
        if isinstance(decoded, int):
            if decoded > best_miss:
                best_language, best_miss = candidate, decoded
            continue
        decoded_somewhere = True
        if _checksum_matches(decoded):
            words = _wordlist(candidate)
            return " ".join(words[index] for index in decoded)
    if not decoded_somewhere:
        if language is not None:
            raise MnemonicError(f"mnemonic word {best_miss} is not in the {language} wordlist")
        if best_miss == 1:
            raise MnemonicError("mnemonic word 1 is not in any supported BIP-39 wordlist")
        raise MnemonicError(
            f"mnemonic word {best_miss} is not in the {best_language} wordlist, "
            "the language of the words before it"
        )
    raise MnemonicError(
        "mnemonic checksum mismatch: a word is mistyped or the words are out of order"
    )


def mnemonic_to_seed(mnemonic: str, passphrase: str = "", *, language: str | None = None) -> bytes:
    """The 64-byte BIP-39 seed of a valid ``mnemonic`` with an optional ``passphrase``.

    The mnemonic is validated and canonicalised first (:func:`canonical_mnemonic`), so the same
    words typed with other spacing, case or abbreviations give the same seed, as in
    staking-deposit-cli; a mnemonic that fails its checksum is refused rather than silently
    yielding the keys of a different wallet. The passphrase is NFKD-normalised, not trimmed.
    """
    if not isinstance(passphrase, str):
        raise MnemonicError("passphrase must be a string")
    words = canonical_mnemonic(mnemonic, language)
    return bytes(Mnemonic.to_seed(words, passphrase))


# ============================================================================================
# EIP-2333

#: EIP-2333 requires at least 256 bits of seed.
MIN_SEED_SIZE: Final = 32
_MAX_INDEX: Final = 2**32 - 1
_HKDF_MOD_R_L: Final = 48
_KEYGEN_SALT: Final = b"BLS-SIG-KEYGEN-SALT-"
_LAMPORT_CHUNKS: Final = 255
_ALL_ONES_256: Final = 2**256 - 1


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, "sha256")


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    blocks: list[bytes] = []
    block = b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        blocks.append(block)
    return b"".join(blocks)[:length]


def hkdf_mod_r(ikm: bytes, key_info: bytes = b"") -> int:
    """EIP-2333 ``HKDF_mod_r``: a secret key in ``[1, CURVE_ORDER)`` from key material.

    The salt starts as ``"BLS-SIG-KEYGEN-SALT-"`` and is re-hashed until the key is non-zero
    (the loop of the current EIP-2333 / IETF KeyGen; it practically never repeats).
    """
    salt = _KEYGEN_SALT
    sk = 0
    while sk == 0:
        salt = hashlib.sha256(salt).digest()
        prk = _hkdf_extract(salt, ikm + b"\x00")
        okm = _hkdf_expand(prk, key_info + _HKDF_MOD_R_L.to_bytes(2, "big"), _HKDF_MOD_R_L)
        sk = int.from_bytes(okm, "big") % CURVE_ORDER
    return sk


def ikm_to_lamport_sk(ikm: bytes, salt: bytes) -> list[bytes]:
    """EIP-2333 ``IKM_to_lamport_SK``: 255 chunks of 32 bytes of HKDF(salt, IKM) output."""
    okm = _hkdf_expand(_hkdf_extract(salt, ikm), b"", 32 * _LAMPORT_CHUNKS)
    return [okm[i : i + 32] for i in range(0, len(okm), 32)]


def _check_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_INDEX:
        raise DerivationError("child index must be an integer in [0, 2**32)")
    return index


def _check_sk(sk: object) -> int:
    if isinstance(sk, bool) or not isinstance(sk, int) or not 0 < sk < CURVE_ORDER:
        raise DerivationError("parent secret key must be an integer in [1, curve order)")
    return sk


def parent_sk_to_lamport_pk(parent_sk: int, index: int) -> bytes:
    """EIP-2333 ``parent_SK_to_lamport_PK``: the 32-byte compressed Lamport public key."""
    parent_sk = _check_sk(parent_sk)
    salt = _check_index(index).to_bytes(4, "big")
    lamport_0 = ikm_to_lamport_sk(parent_sk.to_bytes(32, "big"), salt)
    lamport_1 = ikm_to_lamport_sk((parent_sk ^ _ALL_ONES_256).to_bytes(32, "big"), salt)
    sha256 = hashlib.sha256
    return sha256(b"".join(sha256(chunk).digest() for chunk in lamport_0 + lamport_1)).digest()


def derive_child_sk(parent_sk: int, index: int) -> int:
    """EIP-2333 ``derive_child_SK``: child ``index`` (0 <= index < 2**32) of ``parent_sk``."""
    return hkdf_mod_r(parent_sk_to_lamport_pk(parent_sk, index))


def derive_master_sk(seed: bytes) -> int:
    """EIP-2333 ``derive_master_SK``: the root of the tree for a seed of at least 32 bytes."""
    if not isinstance(seed, (bytes, bytearray)):
        raise DerivationError("seed must be bytes")
    if len(seed) < MIN_SEED_SIZE:
        raise DerivationError(f"seed must be at least {MIN_SEED_SIZE} bytes, got {len(seed)}")
    return hkdf_mod_r(bytes(seed))


def secret_key_bytes(sk: int) -> bytes:
    """The 32 big-endian bytes of a derived secret key (what EIP-2335 keystores encrypt)."""
    return validate_secret_key(_check_sk(sk).to_bytes(SECRET_KEY_SIZE, "big"))


# ============================================================================================
# EIP-2334 paths

PURPOSE: Final = 12381
COIN_TYPE: Final = 3600
_INDEX_RE: Final = re.compile(r"0|[1-9][0-9]{0,9}")


def parse_path(path: str) -> tuple[int, ...]:
    """The child indices of an EIP-2333 tree path: ``"m/12381/3600/0/0/0"`` -> (12381, ...).

    Strict, because a path names a key and two spellings must never name the same one: ``m``
    then ``/``-separated decimal indices in ``[0, 2**32)``, ASCII digits only, no leading zeros,
    no whitespace, no empty segments, no hardened markers (EIP-2333 has no hardening). ``"m"``
    alone is the master key. Raises :class:`PathError` naming the offending segment by position.
    """
    if not isinstance(path, str):
        raise PathError("path must be a string")
    segments = path.split("/")
    if segments[0] != "m":
        raise PathError("path must start with 'm'")
    nodes: list[int] = []
    for position, segment in enumerate(segments[1:], start=1):
        if not _INDEX_RE.fullmatch(segment) or int(segment) > _MAX_INDEX:
            raise PathError(
                f"path segment {position} must be a decimal index in [0, 2**32) "
                "without leading zeros"
            )
        nodes.append(int(segment))
    return tuple(nodes)


def format_path(nodes: Iterable[int]) -> str:
    """The canonical path string for child indices (inverse of :func:`parse_path`)."""
    return "/".join(["m", *(str(_check_index(node)) for node in nodes)])


def withdrawal_key_path(index: int) -> str:
    """EIP-2334 withdrawal key path of validator ``index``: ``m/12381/3600/{index}/0``."""
    return format_path((PURPOSE, COIN_TYPE, index, 0))


def signing_key_path(index: int) -> str:
    """EIP-2334 signing key path of validator ``index``: ``m/12381/3600/{index}/0/0``."""
    return format_path((PURPOSE, COIN_TYPE, index, 0, 0))


def validator_index_from_path(path: str) -> int:
    """The validator index ``i`` of an EIP-2334 *signing* key path ``m/12381/3600/i/0/0``.

    Raises :class:`PathError` for any other path (including withdrawal paths), so a keystore
    claiming a path can be matched to the index it was generated for.
    """
    nodes = parse_path(path)
    if len(nodes) != 5 or nodes[:2] != (PURPOSE, COIN_TYPE) or nodes[3:] != (0, 0):
        raise PathError("not an EIP-2334 signing key path m/12381/3600/<index>/0/0")
    return nodes[2]


def _derive_nodes(sk: int, nodes: Iterable[int]) -> int:
    for node in nodes:
        sk = derive_child_sk(sk, node)
    return sk


def derive_path(seed: bytes, path: str) -> int:
    """The secret key at ``path`` (any EIP-2333 path, see :func:`parse_path`) below ``seed``."""
    nodes = parse_path(path)
    return _derive_nodes(derive_master_sk(seed), nodes)


@dataclass(frozen=True)
class ValidatorKeys:
    """One validator's EIP-2334 keys. ``repr`` shows the index and paths, never the keys."""

    index: int
    signing_sk: int = field(repr=False)
    withdrawal_sk: int = field(repr=False)

    @property
    def signing_path(self) -> str:
        return signing_key_path(self.index)

    @property
    def withdrawal_path(self) -> str:
        return withdrawal_key_path(self.index)

    def __reduce__(self) -> Any:
        raise TypeError("validator keys cannot be pickled")


def _coin_sk(seed: bytes) -> int:
    return _derive_nodes(derive_master_sk(seed), (PURPOSE, COIN_TYPE))


def _keys_below(coin_sk: int, index: int) -> ValidatorKeys:
    withdrawal = _derive_nodes(coin_sk, (_check_index(index), 0))
    return ValidatorKeys(index, derive_child_sk(withdrawal, 0), withdrawal)


def validator_keys(seed: bytes, index: int) -> ValidatorKeys:
    """Signing and withdrawal keys of validator ``index`` (the shared prefix derived once)."""
    _check_index(index)
    return _keys_below(_coin_sk(seed), index)


def iter_validator_keys(seed: bytes, start: int, count: int) -> Iterator[ValidatorKeys]:
    """Keys of validators ``start .. start + count - 1`` under one seed (a batch mnemonic).

    ``m/12381/3600`` is derived once; each validator then costs three child derivations.
    """
    _check_index(start)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise DerivationError("count must be a non-negative integer")
    if count:
        _check_index(start + count - 1)
    coin_sk = _coin_sk(seed)  # checks the seed now, not at the first next()
    return (_keys_below(coin_sk, index) for index in range(start, start + count))


def validator_signing_key(seed: bytes, index: int) -> int:
    """Secret signing key of validator ``index``: path ``m/12381/3600/{index}/0/0``."""
    return validator_keys(seed, index).signing_sk


def validator_withdrawal_key(seed: bytes, index: int) -> int:
    """Secret withdrawal key of validator ``index``: path ``m/12381/3600/{index}/0``."""
    return _derive_nodes(_coin_sk(seed), (_check_index(index), 0))


# ============================================================================================
# Deposit data

GWEI_PER_ETH: Final = 10**9
#: The deposit contract refuses less than 1 ETH.
MIN_DEPOSIT_AMOUNT: Final = 1 * GWEI_PER_ETH
#: Cap for 0x00 / 0x01 credentials: more is never effective balance (staking-deposit-cli's cap).
MAX_EFFECTIVE_BALANCE: Final = 32 * GWEI_PER_ETH
#: Cap for 0x02 (compounding, Electra) credentials.
MAX_EFFECTIVE_BALANCE_ELECTRA: Final = 2048 * GWEI_PER_ETH
BLS_WITHDRAWAL_PREFIX: Final = b"\x00"
ETH1_ADDRESS_WITHDRAWAL_PREFIX: Final = b"\x01"
COMPOUNDING_WITHDRAWAL_PREFIX: Final = b"\x02"
#: The ``deposit_cli_version`` written by default: the staking-deposit-cli release whose format
#: this reproduces (the Launchpad checks the field is present and recent enough).
DEPOSIT_CLI_VERSION: Final = "2.8.0"
#: Keys of one ``deposit_data-*.json`` entry, in staking-deposit-cli's order.
DEPOSIT_DATA_FIELDS: Final = (
    "pubkey",
    "withdrawal_credentials",
    "amount",
    "signature",
    "deposit_message_root",
    "deposit_data_root",
    "fork_version",
    "network_name",
    "deposit_cli_version",
)
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_UINT64_MAX: Final = 2**64 - 1

# Keccak-256 (the pre-standard SHA-3 padding Ethereum uses) for EIP-55 address checksums only:
# hashlib's sha3_256 pads differently, and eth-utils' keccak needs an optional backend package.
_KECCAK_RATE: Final = 136
_LANE_MASK: Final = 2**64 - 1
_KECCAK_ROUND_CONSTANTS: Final = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
#: Rotation offset of lane (x, y), stored at index x + 5 * y.
_KECCAK_ROTATIONS: Final = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip
#: Lane (x, y) moves to (y, 2x + 3y) in the pi step.
_KECCAK_PI: Final = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))


def _keccak_f(lanes: list[int]) -> list[int]:
    for constant in _KECCAK_ROUND_CONSTANTS:
        parity = [
            lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20]
            for x in range(5)
        ]
        theta = [
            parity[(x - 1) % 5]
            ^ (((parity[(x + 1) % 5] << 1) | (parity[(x + 1) % 5] >> 63)) & _LANE_MASK)
            for x in range(5)
        ]
        moved = [0] * 25
        for index, lane in enumerate(lanes):
            lane ^= theta[index % 5]
            shift = _KECCAK_ROTATIONS[index]
            moved[_KECCAK_PI[index]] = ((lane << shift) | (lane >> (64 - shift))) & _LANE_MASK
        lanes = [
            moved[i] ^ (~moved[i - i % 5 + (i + 1) % 5] & moved[i - i % 5 + (i + 2) % 5])
            for i in range(25)
        ]
        lanes[0] ^= constant
    return lanes


def _keccak256(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (padding ``0x01 .. 0x80``), as Ethereum hashes addresses."""
    padded = bytearray(data) + b"\x01"
    padded += bytes(-len(padded) % _KECCAK_RATE)
    padded[-1] |= 0x80
    lanes = [0] * 25
    for start in range(0, len(padded), _KECCAK_RATE):
        block = padded[start : start + _KECCAK_RATE]
        for i in range(_KECCAK_RATE // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        lanes = _keccak_f(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


def _eip55(address_hex: str) -> str:
    """The EIP-55 mixed-case spelling of 40 hex digits (returned with ``0x``)."""
    lower = address_hex.lower()
    digest = _keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(
        char.upper() if int(nibble, 16) >= 8 else char
        for char, nibble in zip(lower, digest, strict=False)
    )


def _octets(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise DepositDataError(f"{what} must be bytes")
    data = bytes(value)
    if len(data) != size:
        raise DepositDataError(f"{what} must be {size} bytes, got {len(data)}")
    return data


def bls_withdrawal_credentials(withdrawal_pubkey: bytes) -> bytes:
    """0x00 credentials: ``0x00 || sha256(withdrawal_pubkey)[1:]`` (48-byte BLS public key)."""
    pubkey = _octets(withdrawal_pubkey, PUBLIC_KEY_SIZE, "withdrawal public key")
    return BLS_WITHDRAWAL_PREFIX + hashlib.sha256(pubkey).digest()[1:]


def parse_execution_address(address: str) -> bytes:
    """The 20 bytes of an execution-layer address given as EIP-55 mixed-case hex.

    The checksum is required (as staking-deposit-cli requires it): a typo here sends every
    withdrawal of the validator to an address nobody controls.
    """
    if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address):
        raise DepositDataError("execution address must be 0x followed by 40 hex digits")
    if _eip55(address[2:]) != address:
        raise DepositDataError(
            "execution address fails its EIP-55 checksum: copy it again in its mixed-case form"
        )
    return bytes.fromhex(address[2:])


def execution_withdrawal_credentials(address: bytes | str, *, compounding: bool = False) -> bytes:
    """0x01 credentials (0x02 with ``compounding``): ``prefix || 11 zero bytes || address``.

    ``address`` is 20 bytes, or a string checked by :func:`parse_execution_address`.
    """
    raw = parse_execution_address(address) if isinstance(address, str) else address
    data = _octets(raw, 20, "execution address")
    prefix = COMPOUNDING_WITHDRAWAL_PREFIX if compounding else ETH1_ADDRESS_WITHDRAWAL_PREFIX
    return prefix + bytes(11) + data


def _check_credentials(credentials: object) -> bytes:
    data = _octets(credentials, 32, "withdrawal credentials")
    prefix = data[:1]
    if prefix == BLS_WITHDRAWAL_PREFIX:
        return data
    if prefix in (ETH1_ADDRESS_WITHDRAWAL_PREFIX, COMPOUNDING_WITHDRAWAL_PREFIX):
        if any(data[1:12]):
            raise DepositDataError(
                "withdrawal credentials: bytes 1 to 11 of 0x01/0x02 credentials must be zero"
            )
        return data
    raise DepositDataError("withdrawal credentials must start with 0x00, 0x01 or 0x02")


def _check_amount(amount_gwei: object, credentials: bytes) -> int:
    if isinstance(amount_gwei, bool) or not isinstance(amount_gwei, int):
        raise DepositDataError("amount must be an integer number of gwei")
    compounding = credentials[:1] == COMPOUNDING_WITHDRAWAL_PREFIX
    cap = MAX_EFFECTIVE_BALANCE_ELECTRA if compounding else MAX_EFFECTIVE_BALANCE
    if not MIN_DEPOSIT_AMOUNT <= amount_gwei <= cap:
        kind = "0x02" if compounding else "0x00/0x01"
        raise DepositDataError(
            f"amount must be between {MIN_DEPOSIT_AMOUNT} and {cap} gwei "
            f"({MIN_DEPOSIT_AMOUNT // GWEI_PER_ETH} to {cap // GWEI_PER_ETH} ETH) "
            f"for {kind} credentials, got {amount_gwei}"
        )
    return amount_gwei


def _check_uint64(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT64_MAX:
        raise DepositDataError(f"{what} must be an integer in [0, 2**64)")
    return value


def deposit_message_root(pubkey: bytes, withdrawal_credentials: bytes, amount_gwei: int) -> bytes:
    """``hash_tree_root(DepositMessage(pubkey, withdrawal_credentials, amount))``."""
    message = DepositMessage.model_construct(
        pubkey=_octets(pubkey, PUBLIC_KEY_SIZE, "pubkey"),
        withdrawal_credentials=_octets(withdrawal_credentials, 32, "withdrawal credentials"),
        amount=_check_uint64(amount_gwei, "amount"),
        genesis_fork_version=bytes(4),  # not part of the SSZ container, only of the API shape
    )
    return message.hash_tree_root()


def deposit_data_root(
    pubkey: bytes, withdrawal_credentials: bytes, amount_gwei: int, signature: bytes
) -> bytes:
    """``hash_tree_root(DepositData(...))``: the root the deposit contract checks on-chain."""
    data = DepositData.model_construct(
        pubkey=_octets(pubkey, PUBLIC_KEY_SIZE, "pubkey"),
        withdrawal_credentials=_octets(withdrawal_credentials, 32, "withdrawal credentials"),
        amount=_check_uint64(amount_gwei, "amount"),
        signature=_octets(signature, 96, "signature"),
    )
    return data.hash_tree_root()


def deposit_signing_root(message_root: bytes, genesis_fork_version: bytes) -> bytes:
    """What a deposit's BLS signature covers: ``DOMAIN_DEPOSIT``, the given genesis fork
    version and a zero genesis validators root (``compute_domain`` in the deposit processing
    of the consensus specs), combined with the ``DepositMessage`` root."""
    version = _octets(genesis_fork_version, 4, "genesis fork version")
    return compute_signing_root(message_root, compute_domain(DOMAIN_DEPOSIT, version, ZERO_ROOT))


@lru_cache(maxsize=1)
def _default_backend() -> BlsBackend:
    return select_backend("auto")


def deposit_data(
    secret: bytes | int | SecretKey,
    pubkey: bytes,
    withdrawal_credentials: bytes,
    amount_gwei: int,
    network: Network,
    *,
    backend: BlsBackend | None = None,
    deposit_cli_version: str = DEPOSIT_CLI_VERSION,
) -> dict[str, Any]:
    """One entry of a ``deposit_data-*.json`` file, exactly as staking-deposit-cli writes it.

    ``secret`` is the validator's signing key: 32 bytes, an integer from the derivation
    functions, or a :class:`SecretKey` handle of ``backend`` (required in that case). ``pubkey``
    must be its public key, checked here: a deposit signed by another key is accepted by the
    contract but ignored by the beacon chain, and the ether is stuck. ``amount_gwei`` is at
    least 1 ETH and at most 32 ETH (2048 ETH for 0x02 credentials).

    The signature covers ``DepositMessage(pubkey, withdrawal_credentials, amount)`` under
    ``DOMAIN_DEPOSIT`` with ``network.genesis_fork_version`` and a zero validators root, and is
    verified before it is returned. Values are lower-case hex without ``0x`` except ``amount``
    (an integer), in the key order of :data:`DEPOSIT_DATA_FIELDS`.
    """
    if not isinstance(network, Network):
        raise DepositDataError("network must be a chamber.eth.networks.Network")
    credentials = _check_credentials(withdrawal_credentials)
    amount = _check_amount(amount_gwei, credentials)
    public = _octets(pubkey, PUBLIC_KEY_SIZE, "pubkey")
    if isinstance(secret, SecretKey):
        if backend is None:
            raise DepositDataError("a SecretKey handle needs the backend that made it")
        sk = secret
    else:
        backend = backend if backend is not None else _default_backend()
        if isinstance(secret, int) and not isinstance(secret, bool):
            secret = secret_key_bytes(secret)
        if not isinstance(secret, (bytes, bytearray, memoryview)):
            raise DepositDataError("secret must be 32 bytes, an integer or a SecretKey")
        sk = backend.secret_key(bytes(secret))
    if backend.public_key(sk) != public:
        raise DepositDataError("pubkey is not the public key of the signing secret")
    message_root = deposit_message_root(public, credentials, amount)
    signing_root = deposit_signing_root(message_root, network.genesis_fork_version)
    signature = backend.sign(sk, signing_root)
    if not backend.verify(public, signing_root, signature):
        raise RuntimeError("the BLS backend produced a deposit signature that does not verify")
    return {
        "pubkey": public.hex(),
        "withdrawal_credentials": credentials.hex(),
        "amount": amount,
        "signature": signature.hex(),
        "deposit_message_root": message_root.hex(),
        "deposit_data_root": deposit_data_root(public, credentials, amount, signature).hex(),
        "fork_version": network.genesis_fork_version.hex(),
        "network_name": network.name,
        "deposit_cli_version": deposit_cli_version,
    }


def deposit_data_json(entries: Iterable[Mapping[str, Any]]) -> str:
    """The text of a ``deposit_data-*.json`` file: a JSON list, as ``json.dump`` writes it."""
    return json.dumps([dict(entry) for entry in entries])


def deposit_data_filename(timestamp: int) -> str:
    """``deposit_data-<unix seconds>.json``, staking-deposit-cli's file name."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise DepositDataError("timestamp must be a non-negative integer of seconds")
    return f"deposit_data-{timestamp}.json"
