"""Deposit data for generated keys, checked without the code under test.

Keys come from ``chamber.crypto.derivation`` (a mnemonic, EIP-2334 paths) and so does the
``deposit_data-*.json`` entry; every check then recomputes what the entry claims from scratch:
public keys with py_ecc, SSZ roots with remerkleable containers declared here, the domain and
signing root with hashlib, the deposit data root a second time the way the deposit contract
computes it, and the signature with ``py_ecc.bls.G2ProofOfPossession.Verify``.

No ``from __future__ import annotations``: remerkleable reads container fields from the class
annotations, which must be real types.
"""

import hashlib
import json
from typing import Any

import pytest
from py_ecc.bls import G2ProofOfPossession
from remerkleable.basic import uint64
from remerkleable.byte_arrays import Bytes4, Bytes32, Bytes48, Bytes96
from remerkleable.complex import Container

from chamber.crypto import bls
from chamber.crypto.derivation import (
    DepositDataError,
    _keccak256,
    bls_withdrawal_credentials,
    deposit_data,
    deposit_data_filename,
    deposit_data_json,
    execution_withdrawal_credentials,
    iter_validator_keys,
    mnemonic_to_seed,
    parse_execution_address,
)
from chamber.eth.networks import MAINNET, custom_network

# --------------------------------------------------------------------------------------------
# Oracle (consensus-specs phase0 containers, hashlib), sharing nothing with chamber.


class DepositMessageSSZ(Container):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: uint64


class DepositDataSSZ(Container):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: uint64
    signature: Bytes96


class ForkData(Container):
    current_version: Bytes4
    genesis_validators_root: Bytes32


class SigningData(Container):
    object_root: Bytes32
    domain: Bytes32


ORACLE_DOMAIN_DEPOSIT = bytes.fromhex("03000000")
GWEI = 10**9
FIELDS = [
    "pubkey",
    "withdrawal_credentials",
    "amount",
    "signature",
    "deposit_message_root",
    "deposit_data_root",
    "fork_version",
    "network_name",
    "deposit_cli_version",
]
#: A BIP-39 English test mnemonic (entropy 0x7f * 16) and a passphrase.
MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
PASSPHRASE = "chamber test"
#: EIP-55's own examples of checksummed addresses.
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ADDRESS_2 = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DEVNET = custom_network(
    genesis_validators_root="0x" + "ab" * 32,
    genesis_fork_version="0x10000910",
    name="devnet",
)


def oracle_signing_root(message_root: bytes, fork_version: bytes) -> bytes:
    """Spec ``compute_domain(DOMAIN_DEPOSIT, fork_version, Root())`` and the signing root."""
    fork_data_root = ForkData(
        current_version=Bytes4(fork_version), genesis_validators_root=Bytes32(bytes(32))
    ).hash_tree_root()
    domain = ORACLE_DOMAIN_DEPOSIT + bytes(fork_data_root)[:28]
    return bytes(
        SigningData(object_root=Bytes32(message_root), domain=Bytes32(domain)).hash_tree_root()
    )


def contract_deposit_data_root(
    pubkey: bytes, credentials: bytes, amount: int, signature: bytes
) -> bytes:
    """The root as the deposit contract (deposit_contract.sol) computes it, with hashlib."""
    sha = hashlib.sha256
    pubkey_root = sha(pubkey + bytes(16)).digest()
    signature_root = sha(
        sha(signature[:64]).digest() + sha(signature[64:] + bytes(32)).digest()
    ).digest()
    return sha(
        sha(pubkey_root + credentials).digest()
        + sha(amount.to_bytes(8, "little") + bytes(24) + signature_root).digest()
    ).digest()


def check_entry(entry: dict[str, Any], signing_sk: int, fork_version: bytes) -> None:
    """Everything a deposit_data entry claims, recomputed independently."""
    assert list(entry) == FIELDS
    pubkey = bytes.fromhex(entry["pubkey"])
    credentials = bytes.fromhex(entry["withdrawal_credentials"])
    signature = bytes.fromhex(entry["signature"])
    amount = entry["amount"]
    assert type(amount) is int
    assert pubkey == G2ProofOfPossession.SkToPk(signing_sk)
    assert entry["fork_version"] == fork_version.hex()

    message = DepositMessageSSZ(
        pubkey=Bytes48(pubkey),
        withdrawal_credentials=Bytes32(credentials),
        amount=uint64(amount),
    )
    message_root = bytes(message.hash_tree_root())
    assert entry["deposit_message_root"] == message_root.hex()

    signing_root = oracle_signing_root(message_root, fork_version)
    assert G2ProofOfPossession.Verify(pubkey, signing_root, signature)

    data = DepositDataSSZ(
        pubkey=Bytes48(pubkey),
        withdrawal_credentials=Bytes32(credentials),
        amount=uint64(amount),
        signature=Bytes96(signature),
    )
    assert entry["deposit_data_root"] == bytes(data.hash_tree_root()).hex()
    assert (
        entry["deposit_data_root"]
        == contract_deposit_data_root(pubkey, credentials, amount, signature).hex()
    )


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def keys() -> list[Any]:
    seed = mnemonic_to_seed(MNEMONIC, PASSPHRASE)
    return list(iter_validator_keys(seed, 0, 3))


@pytest.fixture(scope="module")
def pubkeys(keys: list[Any]) -> list[bytes]:
    return [G2ProofOfPossession.SkToPk(k.signing_sk) for k in keys]


@pytest.fixture(scope="module")
def blspy() -> bls.BlsBackend:
    return bls.select_backend("blspy")


# --------------------------------------------------------------------------------------------
# Deposit data that verifies


def test_mainnet_bls_credentials(keys: list[Any], pubkeys: list[bytes]) -> None:
    withdrawal_pk = G2ProofOfPossession.SkToPk(keys[0].withdrawal_sk)
    credentials = bls_withdrawal_credentials(withdrawal_pk)
    assert credentials == b"\x00" + hashlib.sha256(withdrawal_pk).digest()[1:]
    entry = deposit_data(keys[0].signing_sk, pubkeys[0], credentials, 32 * GWEI, MAINNET)
    check_entry(entry, keys[0].signing_sk, bytes(4))
    assert entry["amount"] == 32_000_000_000
    assert entry["network_name"] == "mainnet"
    assert entry["fork_version"] == "00000000"
    assert entry["deposit_cli_version"] == "2.8.0"
    for name in ("pubkey", "withdrawal_credentials", "signature"):
        assert entry[name] == entry[name].lower() and not entry[name].startswith("0x")


def test_custom_network_execution_credentials(keys: list[Any], pubkeys: list[bytes]) -> None:
    credentials = execution_withdrawal_credentials(ADDRESS)
    assert credentials == b"\x01" + bytes(11) + bytes.fromhex(ADDRESS[2:])
    entry = deposit_data(keys[1].signing_sk, pubkeys[1], credentials, 32 * GWEI, DEVNET)
    # Genesis fork version of the network, zero validators root (not DEVNET's 0xabab...).
    check_entry(entry, keys[1].signing_sk, bytes.fromhex("10000910"))
    assert entry["network_name"] == "devnet"
    assert entry["fork_version"] == "10000910"


def test_compounding_credentials_up_to_2048_eth(keys: list[Any], pubkeys: list[bytes]) -> None:
    credentials = execution_withdrawal_credentials(ADDRESS_2, compounding=True)
    assert credentials[:12] == b"\x02" + bytes(11)
    secret = keys[2].signing_sk.to_bytes(32, "big")  # raw bytes are accepted too
    entry = deposit_data(secret, pubkeys[2], credentials, 2048 * GWEI, DEVNET)
    check_entry(entry, keys[2].signing_sk, bytes.fromhex("10000910"))


def test_fresh_mnemonic_keys_sign_deposits(blspy: bls.BlsBackend) -> None:
    from chamber.crypto.derivation import generate_mnemonic, validator_keys

    words = generate_mnemonic()
    assert len(words.split()) == 24
    key = validator_keys(mnemonic_to_seed(words), 5)
    pubkey = G2ProofOfPossession.SkToPk(key.signing_sk)
    handle = blspy.secret_key(key.signing_sk.to_bytes(32, "big"))
    entry = deposit_data(
        handle, pubkey, execution_withdrawal_credentials(ADDRESS), GWEI, MAINNET, backend=blspy
    )
    check_entry(entry, key.signing_sk, bytes(4))


@pytest.mark.parametrize("name", list(bls.BACKENDS))
def test_every_backend_writes_the_same_entry(
    name: str, keys: list[Any], pubkeys: list[bytes]
) -> None:
    credentials = execution_withdrawal_credentials(ADDRESS)
    reference = deposit_data(
        keys[0].signing_sk,
        pubkeys[0],
        credentials,
        32 * GWEI,
        MAINNET,
        backend=bls.select_backend("blspy"),
    )
    entry = deposit_data(
        keys[0].signing_sk,
        pubkeys[0],
        credentials,
        32 * GWEI,
        MAINNET,
        backend=bls.select_backend(name),
    )
    assert entry == reference


def test_file_text_and_name(keys: list[Any], pubkeys: list[bytes]) -> None:
    entries = [
        deposit_data(k.signing_sk, pk, execution_withdrawal_credentials(ADDRESS), 32 * GWEI, DEVNET)
        for k, pk in zip(keys[:2], pubkeys[:2], strict=True)
    ]
    text = deposit_data_json(entries)
    assert json.loads(text) == entries
    # staking-deposit-cli writes json.dump(list) with the default separators and no indent.
    assert text == json.dumps(entries)
    assert text.startswith('[{"pubkey": "')
    assert deposit_data_filename(1700000000) == "deposit_data-1700000000.json"
    with pytest.raises(DepositDataError):
        deposit_data_filename(-1)


# --------------------------------------------------------------------------------------------
# Refusals


def _refusal(keys: list[Any], pubkeys: list[bytes], **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "secret": keys[0].signing_sk,
        "pubkey": pubkeys[0],
        "withdrawal_credentials": execution_withdrawal_credentials(ADDRESS),
        "amount_gwei": 32 * GWEI,
        "network": MAINNET,
    }
    arguments.update(overrides)
    with pytest.raises(DepositDataError) as caught:
        deposit_data(**arguments)
    message = str(caught.value)
    secret = keys[0].signing_sk
    assert str(secret) not in message
    assert secret.to_bytes(32, "big").hex() not in message
    return message


def test_refuses_a_pubkey_of_another_key(keys: list[Any], pubkeys: list[bytes]) -> None:
    message = _refusal(keys, pubkeys, pubkey=pubkeys[1])
    assert message == "pubkey is not the public key of the signing secret"


@pytest.mark.parametrize(
    ("credentials", "amount", "fragment"),
    [
        (execution_withdrawal_credentials(ADDRESS), GWEI - 1, "between"),
        (execution_withdrawal_credentials(ADDRESS), 32 * GWEI + 1, "0x00/0x01"),
        (b"\x00" * 32, 33 * GWEI, "0x00/0x01"),
        (execution_withdrawal_credentials(ADDRESS, compounding=True), 2048 * GWEI + 1, "0x02"),
        (execution_withdrawal_credentials(ADDRESS), True, "integer"),
        (execution_withdrawal_credentials(ADDRESS), 32.0 * GWEI, "integer"),
        (b"\x03" + bytes(31), 32 * GWEI, "0x00, 0x01 or 0x02"),
        (b"\x01" + b"\x01" + bytes(30), 32 * GWEI, "must be zero"),
        (b"\x01" * 31, 32 * GWEI, "32 bytes"),
        ("00" * 32, 32 * GWEI, "must be bytes"),
    ],
)
def test_refuses_bad_amounts_and_credentials(
    keys: list[Any], pubkeys: list[bytes], credentials: Any, amount: Any, fragment: str
) -> None:
    message = _refusal(keys, pubkeys, withdrawal_credentials=credentials, amount_gwei=amount)
    assert fragment in message


def test_refuses_a_handle_without_its_backend(
    keys: list[Any], pubkeys: list[bytes], blspy: bls.BlsBackend
) -> None:
    handle = blspy.secret_key(keys[0].signing_sk.to_bytes(32, "big"))
    assert "backend" in _refusal(keys, pubkeys, secret=handle)


def test_refuses_other_secret_types_and_networks(keys: list[Any], pubkeys: list[bytes]) -> None:
    assert "secret" in _refusal(keys, pubkeys, secret="00" * 32)
    assert "network" in _refusal(keys, pubkeys, network="mainnet")
    assert "pubkey" in _refusal(keys, pubkeys, pubkey=pubkeys[0][:47])


@pytest.mark.parametrize(
    "address",
    [
        ADDRESS.lower(),  # no checksum at all
        ADDRESS[:2] + ADDRESS[2:].upper(),
        ADDRESS.replace("a", "A", 1),  # one letter's case flipped
        ADDRESS[:-1],
        ADDRESS[2:],
        "0x" + "g" * 40,
    ],
)
def test_execution_address_needs_an_eip55_checksum(address: str) -> None:
    with pytest.raises(DepositDataError):
        parse_execution_address(address)
    with pytest.raises(DepositDataError):
        execution_withdrawal_credentials(address)


#: The checksummed examples of EIP-55 itself.
EIP55_EXAMPLES = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_EXAMPLES)
def test_eip55_examples(address: str) -> None:
    assert parse_execution_address(address) == bytes.fromhex(address[2:])
    for position, char in enumerate(address[2:], start=2):
        if char.isalpha():
            flipped = address[:position] + char.swapcase() + address[position + 1 :]
            with pytest.raises(DepositDataError):
                parse_execution_address(flipped)


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (b"a" * 200, "96ea54061def936c4be90b518992fdc6f12f535068a256229aca54267b4d084d"),
    ],
)
def test_keccak256_known_answers(data: bytes, digest: str) -> None:
    # Ethereum's Keccak-256 (not FIPS SHA3-256): empty string and "abc" are the usual known
    # answers; 200 bytes spans two sponge blocks (rate 136).
    assert _keccak256(data).hex() == digest
    assert hashlib.sha3_256(data).hexdigest() != digest


def test_execution_address_bytes_and_checksums() -> None:
    raw = bytes.fromhex(ADDRESS[2:])
    assert parse_execution_address(ADDRESS) == raw
    assert parse_execution_address(ADDRESS_2) == bytes.fromhex(ADDRESS_2[2:])
    assert execution_withdrawal_credentials(raw) == execution_withdrawal_credentials(ADDRESS)
    with pytest.raises(DepositDataError):
        execution_withdrawal_credentials(raw[:19])
    with pytest.raises(DepositDataError):
        bls_withdrawal_credentials(bytes(47))
