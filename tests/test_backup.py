"""Age-encrypted mnemonic backups (``chamber.crypto.backup``).

The age identities are generated here with pyrage; the signer's module only ever sees their
public halves. Decryption in these tests is what an operator does during a recovery
(``docs/recovery.md``): ``pyrage.decrypt`` with the identity, then ``parse_backup_payload``.
"""

from __future__ import annotations

import ast
import inspect
import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519

from chamber.crypto import backup as backup_module
from chamber.crypto.backup import (
    ARMOR_HEADER,
    BACKUP_FORMAT,
    BACKUP_KIND,
    BackupError,
    BackupPayload,
    backup_payload,
    encrypt_backup,
    is_age_armored,
    parse_backup_payload,
    signing_key_path,
    validate_recipients,
)
from chamber.keys.encrypted import StoredKey
from chamber.keys.sqlite_store import SQLiteKeyStore

#: The BIP-39 test mnemonic of all-zero entropy (24 words): a public test value, no real key.
MNEMONIC = " ".join(["abandon"] * 23 + ["art"])
#: A placeholder public key for the round trips that do not derive anything.
PUBKEY = bytes.fromhex("a5" * 48)
SSH_ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@host"
)
PLUGIN_RECIPIENT = "age1yubikey1q2w7u3vpya839jxxuq8g0sedh3d740d4xvn639sqhr95ejj8vu3hyfumptt"


@pytest.fixture
def identity() -> x25519.Identity:
    return x25519.Identity.generate()


def recipient_of(identity: x25519.Identity) -> str:
    return str(identity.to_public())


# --------------------------------------------------------------------------- round trips


def test_backup_round_trip_with_the_recipients_identity(identity: x25519.Identity) -> None:
    payload = backup_payload(MNEMONIC, 0, PUBKEY)
    sealed = encrypt_backup(payload, [recipient_of(identity)])

    assert sealed.startswith(ARMOR_HEADER + b"\n")
    assert sealed.rstrip().endswith(b"-----END AGE ENCRYPTED FILE-----")
    assert is_age_armored(sealed)
    assert pyrage.decrypt(sealed, [identity]) == payload

    restored = parse_backup_payload(pyrage.decrypt(sealed, [identity]))
    assert restored == BackupPayload(
        mnemonic=MNEMONIC, index=0, pubkey="0x" + PUBKEY.hex(), path="m/12381/3600/0/0/0"
    )
    assert restored.pubkey_bytes == PUBKEY
    assert (restored.format, restored.kind) == (BACKUP_FORMAT, BACKUP_KIND)


def test_the_payload_is_the_documented_json() -> None:
    document = json.loads(backup_payload(MNEMONIC, 7, "0X" + PUBKEY.hex().upper()))
    assert document == {
        "format": 1,
        "kind": "bip39-mnemonic",
        "mnemonic": MNEMONIC,
        "path": "m/12381/3600/7/0/0",
        "index": 7,
        "pubkey": "0x" + PUBKEY.hex(),
    }
    assert signing_key_path(12) == "m/12381/3600/12/0/0"


def test_two_recipients_each_decrypt_alone_and_nobody_else_can() -> None:
    alice, bob, mallory = (x25519.Identity.generate() for _ in range(3))
    payload = backup_payload(MNEMONIC, 3, PUBKEY)
    sealed = encrypt_backup(payload, [recipient_of(alice), bob.to_public()])

    assert pyrage.decrypt(sealed, [alice]) == payload
    assert pyrage.decrypt(sealed, [bob]) == payload
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [mallory])


def test_parsed_recipients_are_accepted_too(identity: x25519.Identity) -> None:
    payload = backup_payload(MNEMONIC, 0, PUBKEY)
    sealed = encrypt_backup(payload, [identity.to_public()])
    assert pyrage.decrypt(sealed, [identity]) == payload
    # Surrounding whitespace (a YAML block scalar, a trailing newline) is ignored.
    assert [str(r) for r in validate_recipients([f"  {recipient_of(identity)}\n"])] == [
        recipient_of(identity)
    ]


def test_a_wrong_identity_cannot_decrypt(identity: x25519.Identity) -> None:
    sealed = encrypt_backup(backup_payload(MNEMONIC, 0, PUBKEY), [recipient_of(identity)])
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [x25519.Identity.generate()])


def test_the_ciphertext_reveals_nothing(identity: x25519.Identity) -> None:
    payload = backup_payload(MNEMONIC, 0, PUBKEY)
    first = encrypt_backup(payload, [recipient_of(identity)])
    second = encrypt_backup(payload, [recipient_of(identity)])
    for sealed in (first, second):
        assert MNEMONIC.encode() not in sealed
        assert b"abandon" not in sealed
        assert b"bip39" not in sealed
        assert PUBKEY.hex().encode() not in sealed
    # A fresh file key each time: the same payload never gives the same bytes.
    assert first != second


def test_the_module_has_no_way_to_decrypt() -> None:
    """Nothing in chamber.crypto.backup calls an age decryption or takes an identity."""
    tree = ast.parse(inspect.getsource(backup_module))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert not {"decrypt", "decrypt_file", "decrypt_io", "Identity", "passphrase", "ssh"} & used
    assert not [name for name in backup_module.__all__ if "decrypt" in name.lower()]


# --------------------------------------------------------------------------- recipients


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (SSH_ED25519, "is an SSH public key"),
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@host", "is an SSH public key"),
        ("not a key", "is not an age X25519 recipient (expected age1…)"),
        ("", "is empty"),
        ("   ", "is empty"),
        (PLUGIN_RECIPIENT, "is a plugin or post-quantum age recipient"),
    ],
)
def test_invalid_recipients_are_named_by_index(
    identity: x25519.Identity, bad: str, reason: str
) -> None:
    with pytest.raises(BackupError) as caught:
        validate_recipients([recipient_of(identity), bad])
    assert str(caught.value).startswith(f"recipients[1]: {reason}")
    assert isinstance(caught.value, ValueError)
    if bad.strip():
        assert bad.strip() not in str(caught.value)


def test_a_recipient_with_a_broken_checksum_is_refused(identity: x25519.Identity) -> None:
    good = recipient_of(identity)
    broken = good[:-1] + ("q" if good[-1] != "q" else "p")
    with pytest.raises(BackupError, match=r"^recipients\[0\]: is not a valid age X25519"):
        validate_recipients([broken])
    with pytest.raises(BackupError, match=r"^recipients\[0\]: is not a valid age X25519"):
        validate_recipients([good[:-5]])


def test_an_identity_given_as_recipient_is_refused_without_echoing_it(
    identity: x25519.Identity,
) -> None:
    secret = str(identity)
    assert secret.startswith("AGE-SECRET-KEY-1")
    with pytest.raises(BackupError) as caught:
        validate_recipients([recipient_of(identity), secret])
    message = str(caught.value)
    assert message.startswith("recipients[1]: is an age identity (secret key), not a recipient")
    assert secret not in message
    assert secret[16:40] not in message
    with pytest.raises(BackupError) as again:
        encrypt_backup(b"{}", [secret])
    assert secret not in str(again.value)
    assert again.value.__cause__ is None and again.value.__suppress_context__


def test_empty_duplicate_and_mistyped_recipient_lists(identity: x25519.Identity) -> None:
    with pytest.raises(BackupError, match=r"^recipients: at least one age1… recipient"):
        validate_recipients([])
    with pytest.raises(BackupError, match=r"^recipients: at least one"):
        encrypt_backup(b"{}", [])
    with pytest.raises(BackupError, match=r"^recipients: must be a list"):
        validate_recipients(recipient_of(identity))
    with pytest.raises(BackupError, match=r"^recipients\[2\]: duplicate of recipients\[0\]"):
        validate_recipients(
            [recipient_of(identity), recipient_of(x25519.Identity.generate()), identity.to_public()]
        )
    with pytest.raises(BackupError, match=r"^recipients\[0\]: must be a string \(age1…\), not int"):
        validate_recipients([42])


# --------------------------------------------------------------------------- payloads


_DROP = object()


def _document(**changes: object) -> bytes:
    document = json.loads(backup_payload(MNEMONIC, 2, PUBKEY))
    for name, value in changes.items():
        if value is _DROP:
            del document[name]
        else:
            document[name] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": 2}, "format: backup format 2 is not supported (this version reads format 1)"),
        ({"format": True}, "format: backup format ? is not supported"),
        ({"format": _DROP}, "format: backup format ? is not supported"),
        ({"kind": "raw-secret"}, "kind: expected 'bip39-mnemonic'"),
        ({"pubkey": _DROP}, "backup: missing field(s) pubkey"),
        ({"passphrase": "x"}, "backup: unknown field(s) passphrase in a format-1 backup"),
        ({"path": "m/12381/3600/3/0/0"}, "path: expected m/12381/3600/2/0/0 for index 2"),
        ({"index": -1}, "index: must be an integer from 0 to 4294967295"),
        ({"index": "2"}, "index: must be an integer"),
        ({"pubkey": "0x" + "A5" * 48}, "pubkey: must be 0x followed by 96 lower-case hex"),
        ({"pubkey": "0x1234"}, "pubkey: must be a 48-byte BLS public key"),
        ({"mnemonic": "abandon " * 11}, "mnemonic: has 11 words"),
        ({"mnemonic": 12}, "mnemonic: must be a string"),
        ({"format": 1.0}, "format: backup format ? is not supported"),
    ],
)
def test_parse_refuses_what_it_does_not_fully_understand(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(BackupError) as caught:
        parse_backup_payload(_document(**changes))
    assert str(caught.value).startswith(message)
    assert MNEMONIC not in str(caught.value)


def test_parse_errors_never_quote_the_document(identity: x25519.Identity) -> None:
    broken = backup_payload(MNEMONIC, 0, PUBKEY)[:-1]  # truncated JSON
    with pytest.raises(BackupError) as caught:
        parse_backup_payload(broken)
    assert str(caught.value) == "backup: not a JSON document"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    sealed = encrypt_backup(backup_payload(MNEMONIC, 0, PUBKEY), [recipient_of(identity)])
    with pytest.raises(BackupError, match="still age-encrypted; decrypt it first"):
        parse_backup_payload(sealed)
    with pytest.raises(BackupError, match="not UTF-8 text"):
        parse_backup_payload(b"\xff\xfe" + b"x" * 10)
    with pytest.raises(BackupError, match="not a JSON object"):
        parse_backup_payload(b"[1, 2]")
    doubled = backup_payload(MNEMONIC, 0, PUBKEY)[:-1] + b',"mnemonic":"zoo zoo"}'
    with pytest.raises(BackupError, match=r"^backup: field 'mnemonic' appears twice$"):
        parse_backup_payload(doubled)
    assert parse_backup_payload(broken.decode() + "}").mnemonic == MNEMONIC  # text is fine


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((MNEMONIC, -1, PUBKEY), "index: must be an integer"),
        ((MNEMONIC, True, PUBKEY), "index: must be an integer"),
        ((MNEMONIC, 2**32, PUBKEY), "index: must be an integer"),
        (("abandon about", 0, PUBKEY), "mnemonic: has 2 words"),
        ((MNEMONIC, 0, PUBKEY[:47]), "pubkey: must be a 48-byte BLS public key"),
        ((MNEMONIC, 0, "0xzz" + "00" * 47), "pubkey: must be a 48-byte BLS public key"),
        ((MNEMONIC, 0, 5), "pubkey: must be 48 bytes or 0x-prefixed hex"),
    ],
)
def test_backup_payload_checks_its_arguments(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(BackupError) as caught:
        backup_payload(*args)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert MNEMONIC not in str(caught.value)


def test_the_mnemonic_is_never_in_a_repr(identity: x25519.Identity) -> None:
    sealed = encrypt_backup(backup_payload(MNEMONIC, 0, PUBKEY), [recipient_of(identity)])
    restored = parse_backup_payload(pyrage.decrypt(sealed, [identity]))
    assert "abandon" not in repr(restored)
    assert "0x" + PUBKEY.hex() in repr(restored)
    record = StoredKey(pubkey=PUBKEY, ciphertext=b"\x01sealed", origin="generated", backup=sealed)
    assert "backup=present" in repr(record)
    assert "AGE" not in repr(record)


# --------------------------------------------------------------------------- beside the key


def test_the_backup_is_readable_from_the_key_store_without_the_master_key(
    tmp_path: Path, identity: x25519.Identity
) -> None:
    """What docs/recovery.md does: read the ``backup`` column straight from the SQLite file."""
    payload = backup_payload(MNEMONIC, 0, PUBKEY)
    sealed = encrypt_backup(payload, [recipient_of(identity)])
    path = tmp_path / "chamber-keys.sqlite"
    store = SQLiteKeyStore(path)
    try:
        # The key's own ciphertext is opaque here: no master key is involved at any point.
        record = StoredKey(
            pubkey=PUBKEY, ciphertext=b"\x01opaque", origin="generated", backup=sealed
        )
        assert store.insert([record]) == [True]
        stored = store.get(PUBKEY)
        assert stored is not None and stored.backup == sealed
    finally:
        store.close()

    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT '0x' || lower(hex(pubkey)), backup FROM validator_keys "
            "WHERE backup IS NOT NULL ORDER BY created_at, pubkey"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("0x" + PUBKEY.hex(), sealed)]
    restored = parse_backup_payload(pyrage.decrypt(rows[0][1], [identity]))
    assert restored.pubkey == rows[0][0]


# --------------------------------------------------------------------------- the recovery guide

RECOVERY_DOC = Path(__file__).resolve().parent.parent / "docs" / "recovery.md"


def _recovery_script() -> str:
    text = RECOVERY_DOC.read_text(encoding="utf-8")
    start = text.index('```python\n"""recover_backups.py') + len("```python\n")
    return text[start : text.index("```", start)]


def test_the_recovery_guide_script_decrypts_a_key_store_and_exported_files(
    tmp_path: Path, identity: x25519.Identity
) -> None:
    """docs/recovery.md step 3, run as written: from the SQLite file and from ``.age`` files."""
    script = tmp_path / "recover_backups.py"
    script.write_text(_recovery_script(), encoding="utf-8")
    identity_file = tmp_path / "identity.txt"  # the layout age-keygen writes
    identity_file.write_text(
        f"# created: 2026-01-01T00:00:00Z\n# public key: {recipient_of(identity)}\n{identity}\n",
        encoding="utf-8",
    )
    other_pubkey = bytes.fromhex("b6" * 48)
    records = [
        StoredKey(
            pubkey=pubkey,
            ciphertext=b"\x01opaque",
            origin="generated",
            backup=encrypt_backup(
                backup_payload(MNEMONIC, index, pubkey), [recipient_of(identity)]
            ),
        )
        for index, pubkey in enumerate((PUBKEY, other_pubkey))
    ]
    records.append(StoredKey(pubkey=bytes.fromhex("c7" * 48), ciphertext=b"\x01imported"))
    store = SQLiteKeyStore(tmp_path / "chamber-keys.sqlite")
    try:
        assert store.insert(records) == [True, True, True]
    finally:
        store.close()
    exported = tmp_path / "backups"
    exported.mkdir()
    for record in records[:2]:
        assert record.backup is not None
        (exported / f"{record.pubkey_hex}.age").write_bytes(record.backup)

    for source, out in ((tmp_path / "chamber-keys.sqlite", "out-db"), (exported, "out-files")):
        done = subprocess.run(
            [sys.executable, str(script), str(identity_file), str(source), str(tmp_path / out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == f"2 backups decrypted into {tmp_path / out}"
        for index, pubkey in enumerate((PUBKEY, other_pubkey)):
            written = tmp_path / out / f"0x{pubkey.hex()}.json"
            assert stat.S_IMODE(written.stat().st_mode) == 0o600
            restored = parse_backup_payload(written.read_bytes())
            assert (restored.mnemonic, restored.index, restored.pubkey_bytes) == (
                MNEMONIC,
                index,
                pubkey,
            )


# --------------------------------------------------------------------------- reproducing the key


def test_the_decrypted_mnemonic_reproduces_the_validator_key(identity: x25519.Identity) -> None:
    """The acceptance test of issue #7: a backup made for a generated key, decrypted with the age
    identity, gives back the same validator key (EIP-2333/2334 via chamber.crypto.derivation)."""
    from chamber.crypto import derivation
    from chamber.crypto.bls import select_backend

    bls = select_backend("auto")

    def signing_key(mnemonic: str, index: int) -> tuple[bytes, bytes]:
        seed = derivation.mnemonic_to_seed(mnemonic)
        secret = derivation.secret_key_bytes(derivation.validator_signing_key(seed, index))
        return secret, bytes(bls.public_key(bls.secret_key(secret)))

    mnemonic = derivation.generate_mnemonic()
    index = 3
    secret, pubkey = signing_key(mnemonic, index)
    sealed = encrypt_backup(backup_payload(mnemonic, index, pubkey), [recipient_of(identity)])
    assert mnemonic.encode() not in sealed

    restored = parse_backup_payload(pyrage.decrypt(sealed, [identity]))
    assert restored.path == derivation.signing_key_path(index) == signing_key_path(index)
    assert derivation.validator_index_from_path(restored.path) == restored.index == index
    again_secret, again_pubkey = signing_key(restored.mnemonic, restored.index)
    assert again_pubkey == restored.pubkey_bytes == pubkey
    assert again_secret == secret
    # Another index of the same mnemonic is another key: the index in the backup matters.
    assert signing_key(restored.mnemonic, index + 1)[1] != pubkey
