"""staking-deposit-cli's BIP-39 and EIP-2333 vectors against chamber.crypto.derivation.

* ``mnemonic.json``: 168 BIP-39 cases in 7 languages, ``[entropy, mnemonic, seed, xprv]`` with
  passphrase "TREZOR" (upstream tests check entropy -> mnemonic and mnemonic -> seed; the xprv
  column is BIP-32, which Ethereum validator keys do not use).
* ``tree_kdf.json``: seed -> master SK -> child SK, 4 cases (the SKs as decimal integers).
* ``tree_kdf_intermediate.json``: one case with every intermediate value of EIP-2333.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mnemonic import Mnemonic

from chamber.crypto.derivation import (
    canonical_mnemonic,
    derive_child_sk,
    derive_master_sk,
    derive_path,
    entropy_to_mnemonic,
    hkdf_mod_r,
    ikm_to_lamport_sk,
    mnemonic_to_seed,
    parent_sk_to_lamport_pk,
)
from tests.support import VECTORS

VECTOR_DIR = (
    VECTORS / "staking-deposit-cli/tests/test_key_handling/test_key_derivation/test_vectors"
)
BIP39_PASSPHRASE = "TREZOR"
#: From the vectors' README; a truncated or half-copied directory fails here, not silently.
EXPECTED_LANGUAGES = {
    "chinese_simplified",
    "chinese_traditional",
    "english",
    "italian",
    "korean",
    "portuguese",
    "spanish",
}
EXPECTED_MNEMONIC_CASES = 168


def _load(name: str) -> Any:
    return json.loads((VECTOR_DIR / name).read_text(encoding="utf-8"))


def _mnemonic_cases() -> list[Any]:
    cases = []
    for language, vectors in sorted(_load("mnemonic.json").items()):
        for number, vector in enumerate(vectors):
            cases.append(pytest.param(language, *vector, id=f"{language}-{number}"))
    return cases


MNEMONIC_CASES = _mnemonic_cases()
TREE_KDF_CASES = _load("tree_kdf.json")["kdf_tests"]
INTERMEDIATE = _load("tree_kdf_intermediate.json")


def test_vector_files_are_complete() -> None:
    languages = {case.values[0] for case in MNEMONIC_CASES}
    assert languages == EXPECTED_LANGUAGES
    assert len(MNEMONIC_CASES) == EXPECTED_MNEMONIC_CASES
    assert len(TREE_KDF_CASES) == 4
    assert len(INTERMEDIATE["lamport_0"]) == len(INTERMEDIATE["lamport_1"]) == 255


# ---------------------------------------------------------------------------------------------
# BIP-39


@pytest.mark.parametrize(("language", "entropy", "mnemonic", "seed", "xprv"), MNEMONIC_CASES)
def test_bip39_vector(language: str, entropy: str, mnemonic: str, seed: str, xprv: str) -> None:
    assert entropy_to_mnemonic(bytes.fromhex(entropy), language) == mnemonic
    assert canonical_mnemonic(mnemonic, language) == mnemonic
    assert mnemonic_to_seed(mnemonic, BIP39_PASSPHRASE, language=language).hex() == seed
    # Without a language the words find their list themselves (Chinese simplified and
    # traditional share characters; the seed depends only on the words).
    assert mnemonic_to_seed(mnemonic, BIP39_PASSPHRASE) == bytes.fromhex(seed)
    # The fourth column (BIP-32 master key of the seed) checks the vector itself, with the
    # reference implementation's own encoder.
    assert Mnemonic.to_hd_master_key(bytes.fromhex(seed)) == xprv


# ---------------------------------------------------------------------------------------------
# EIP-2333


@pytest.mark.parametrize("case", TREE_KDF_CASES, ids=lambda case: str(case["child_index"]))
def test_tree_kdf_vector(case: dict[str, Any]) -> None:
    seed = bytes.fromhex(case["seed"])
    master = derive_master_sk(seed)
    assert master == case["master_SK"]
    assert derive_child_sk(master, case["child_index"]) == case["child_SK"]
    assert derive_path(seed, f"m/{case['child_index']}") == case["child_SK"]


def test_intermediate_seed_from_mnemonic() -> None:
    seed = mnemonic_to_seed(INTERMEDIATE["mnemonic"], INTERMEDIATE["password"])
    assert seed.hex() == INTERMEDIATE["seed"]
    assert derive_master_sk(seed) == INTERMEDIATE["master_SK"]
    assert hkdf_mod_r(seed) == INTERMEDIATE["master_SK"]


def test_intermediate_lamport_secret_keys() -> None:
    master = INTERMEDIATE["master_SK"]
    salt = INTERMEDIATE["child_index"].to_bytes(4, "big")
    lamport_0 = ikm_to_lamport_sk(master.to_bytes(32, "big"), salt)
    lamport_1 = ikm_to_lamport_sk((master ^ (2**256 - 1)).to_bytes(32, "big"), salt)
    assert [chunk.hex() for chunk in lamport_0] == INTERMEDIATE["lamport_0"]
    assert [chunk.hex() for chunk in lamport_1] == INTERMEDIATE["lamport_1"]


def test_intermediate_compressed_lamport_pk_and_child() -> None:
    master, index = INTERMEDIATE["master_SK"], INTERMEDIATE["child_index"]
    compressed = parent_sk_to_lamport_pk(master, index)
    assert compressed.hex() == INTERMEDIATE["compressed_lamport_PK"]
    assert hkdf_mod_r(compressed) == INTERMEDIATE["child_SK"]
    assert derive_child_sk(master, index) == INTERMEDIATE["child_SK"]
    seed = bytes.fromhex(INTERMEDIATE["seed"])
    assert derive_path(seed, INTERMEDIATE["path"]) == INTERMEDIATE["child_SK"]
