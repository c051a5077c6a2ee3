"""The EIP-2335 keystore test vectors (staking-deposit-cli copy) against chamber.crypto.keystore.

The published password is "testpassword" spelt in MATHEMATICAL FRAKTUR letters (U+1D531 ...),
which only decrypt after NFKD normalisation turns them into ASCII, followed by the key emoji
U+1F511 (4 bytes of UTF-8), which NFKD leaves alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from py_ecc.bls import G2ProofOfPossession

from chamber.crypto.keystore import KeystoreError, decrypt_keystore, encrypt_keystore
from tests.support import VECTORS

VECTOR_DIR = VECTORS / "staking-deposit-cli/tests/test_key_handling/keystore_test_vectors"
PASSWORD = "\U0001d531\U0001d522\U0001d530\U0001d531\U0001d52d\U0001d51e\U0001d530\U0001d530\U0001d534\U0001d52c\U0001d52f\U0001d521\U0001f511"  # noqa: E501
SECRET = bytes.fromhex("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f")
VECTOR_FILES = ["test0.json", "test1.json"]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTOR_DIR / name).read_text())
    return data


def test_readme_publishes_this_password_and_secret() -> None:
    readme = (VECTORS / "staking-deposit-cli/README.md").read_text(encoding="utf-8")
    assert PASSWORD in readme
    assert "0x" + SECRET.hex() in readme
    assert sorted(p.name for p in VECTOR_DIR.glob("*.json")) == VECTOR_FILES


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_vector_decrypts_to_published_secret(name: str) -> None:
    keystore = _load(name)
    secret = decrypt_keystore(keystore, PASSWORD)
    assert secret == SECRET
    # The vector's pubkey field is the secret's public key (independent py_ecc derivation).
    pubkey = G2ProofOfPossession.SkToPk(int.from_bytes(secret, "big"))
    assert pubkey.hex() == keystore["pubkey"]


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_control_codes_in_password_are_ignored(name: str) -> None:
    # C0 (NUL, newline), DEL and C1 (NEL) are stripped by EIP-2335 normalisation.
    noisy = "\x00" + PASSWORD[:4] + "\x7f\u0085" + PASSWORD[4:] + "\r\n"
    assert decrypt_keystore(_load(name), noisy) == SECRET


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_wrong_password_is_a_checksum_mismatch(name: str) -> None:
    with pytest.raises(KeystoreError, match=r"^wrong password \(checksum mismatch\)$"):
        decrypt_keystore(_load(name), "testpassword")  # the emoji is part of the password


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_reencrypting_with_same_salt_and_iv_reproduces_crypto(name: str) -> None:
    keystore = _load(name)
    kdf = keystore["crypto"]["kdf"]
    params = {k: v for k, v in kdf["params"].items() if k != "salt"}
    rebuilt = encrypt_keystore(
        SECRET,
        PASSWORD,
        kdf=kdf["function"],
        kdf_params=params,
        salt=bytes.fromhex(kdf["params"]["salt"]),
        iv=bytes.fromhex(keystore["crypto"]["cipher"]["params"]["iv"]),
        path=keystore["path"],
        pubkey=bytes.fromhex(keystore["pubkey"]),
    )
    assert rebuilt["crypto"] == keystore["crypto"]
    assert rebuilt["pubkey"] == keystore["pubkey"]
    assert rebuilt["path"] == keystore["path"]
    assert rebuilt["version"] == 4
    # And it survives a JSON round trip.
    assert decrypt_keystore(json.loads(json.dumps(rebuilt)), PASSWORD) == SECRET


def test_vector_dir_exists() -> None:
    assert Path(VECTOR_DIR).is_dir()
