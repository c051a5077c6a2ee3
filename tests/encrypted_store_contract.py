"""The contract of encrypted validator-key stores, run against every implementation.

Shared by the SQLite tests here and the DynamoDB plugin's tests. Each check receives a source
over a fresh, empty store and the BLS backend, and exercises only the public API
(:class:`~chamber.keys.encrypted.EncryptedKeySource` and its ``store``), so a store passes
exactly when it keeps the :class:`~chamber.keys.encrypted.EncryptedKeyStore` promises.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import pytest

from chamber.crypto.bls import CURVE_ORDER, BlsBackend
from chamber.crypto.envelope import EnvelopeError
from chamber.errors import Unavailable
from chamber.keys.encrypted import (
    REASON_DECRYPT,
    REASON_MISMATCH,
    EncryptedKeySource,
    StoredKey,
    decrypt_secret,
    encrypt_secret,
)

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
MESSAGE = b"\x42" * 32


def secret(index: int, seed: str = "encrypted-store") -> bytes:
    """A valid secret key (an integer in [1, r), 32 bytes big-endian), deterministic."""
    value = int.from_bytes(hashlib.sha256(f"{seed}-{index}".encode()).digest(), "big")
    return (value % (CURVE_ORDER - 1) + 1).to_bytes(32, "big")


def secrets_(count: int, seed: str = "encrypted-store") -> list[bytes]:
    return [secret(i, seed) for i in range(count)]


def pubkey_of(bls: BlsBackend, raw: bytes) -> bytes:
    return bls.public_key(bls.secret_key(raw))


def assert_no_secret(text: str, raws: list[bytes]) -> None:
    lowered = text.lower()
    for raw in raws:
        assert raw.hex() not in lowered
        assert str(int.from_bytes(raw, "big")) not in lowered


# ----------------------------------------------------------------------------- the checks


def check_round_trip(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """Imported keys load back under the same master key, match and sign."""
    raws = secrets_(4)
    expected = []
    for raw in raws:
        key, inserted = source.import_secret(MASTER, raw)
        assert inserted
        assert key.pubkey == pubkey_of(bls, raw)
        assert key.source == source.name
        expected.append(key.pubkey)
    result = source.load(MASTER)
    assert result.errors == []
    assert sorted(k.pubkey for k in result.keys) == sorted(expected)
    for key in result.keys:
        assert key.source == source.name
        assert bls.verify(key.pubkey, MESSAGE, bls.sign(key.secret, MESSAGE))
    stored = source.store.get(expected[0])
    assert stored is not None
    assert stored.status == "active" and stored.origin == "imported" and stored.created_at > 0
    assert decrypt_secret(MASTER, expected[0], stored.ciphertext) == raws[0]


def check_wrong_master_key(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """Every key is one error (never an exception), and no error or log line names a secret."""
    raws = secrets_(3, "wrong-master")
    for raw in raws:
        source.import_secret(MASTER, raw)
    result = source.load(OTHER_MASTER)
    assert result.keys == []
    assert len(result.errors) == 3
    pubkeys = {"0x" + pubkey_of(bls, raw).hex() for raw in raws}
    assert {e.path for e in result.errors} == pubkeys
    for error in result.errors:
        assert error.reason == REASON_DECRYPT
        assert_no_secret(str(error) + repr(error), raws)


def check_ciphertext_bound_to_pubkey(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """A ciphertext moved onto another public key's record does not open (AAD binding)."""
    raw_a, raw_b = secrets_(2, "swap")
    key_a, _ = source.import_secret(MASTER, raw_a)
    key_b, _ = source.import_secret(MASTER, raw_b)
    record_b = source.store.get(key_b.pubkey)
    assert record_b is not None
    with pytest.raises(EnvelopeError):
        decrypt_secret(MASTER, key_a.pubkey, record_b.ciphertext)
    assert source.store.delete(key_a.pubkey)
    assert source.store.insert([StoredKey(key_a.pubkey, record_b.ciphertext)]) == [True]
    result = source.load(MASTER)
    assert [k.pubkey for k in result.keys] == [key_b.pubkey]
    assert [(e.path, e.reason) for e in result.errors] == [(key_a.pubkey_hex, REASON_DECRYPT)]


def check_pubkey_mismatch(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """A record that opens but holds another key's secret is refused, the others load."""
    raw_a, raw_b, raw_c = secrets_(3, "mismatch")
    pub_a = pubkey_of(bls, raw_a)
    # Sealed correctly for pub_a (so it decrypts), but the secret inside is b's.
    forged = StoredKey(pub_a, encrypt_secret(MASTER, pub_a, raw_b))
    assert source.store.insert([forged]) == [True]
    key_c, _ = source.import_secret(MASTER, raw_c)
    result = source.load(MASTER)
    assert [k.pubkey for k in result.keys] == [key_c.pubkey]
    assert [(e.path, e.reason) for e in result.errors] == [("0x" + pub_a.hex(), REASON_MISMATCH)]
    assert_no_secret(str(result.errors[0]), [raw_a, raw_b])


def check_duplicate_import(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """A second import of a key answers False and leaves the first record as it was."""
    raw = secret(0, "duplicate")
    key, inserted = source.import_secret(MASTER, raw, backup=b"age-1")
    assert inserted
    original = source.store.get(key.pubkey)
    again, inserted_again = source.import_secret(MASTER, raw, origin="generated", backup=b"age-2")
    assert not inserted_again
    assert again.pubkey == key.pubkey
    kept = source.store.get(key.pubkey)
    assert kept is not None and original is not None
    assert kept.ciphertext == original.ciphertext
    assert (kept.origin, kept.backup) == ("imported", b"age-1")
    assert len(source.store.list_keys()) == 1


def check_insert_batch(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """Per-key answers: new keys True, stored or repeated keys False, nothing overwritten."""
    raws = secrets_(3, "batch")
    records = [
        StoredKey(pubkey_of(bls, raw), encrypt_secret(MASTER, pubkey_of(bls, raw), raw))
        for raw in raws
    ]
    assert source.store.insert([records[0]]) == [True]
    repeat = StoredKey(records[1].pubkey, records[2].ciphertext)
    answer = source.store.insert([records[0], records[1], repeat, records[2]])
    assert answer == [False, True, False, True]
    assert source.store.insert([]) == []
    stored = source.store.get(records[1].pubkey)
    assert stored is not None and stored.ciphertext == records[1].ciphertext
    assert {r.pubkey for r in source.store.list_keys()} == {r.pubkey for r in records}


def check_status_and_delete(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """Inactive keys are not loaded; status and delete answer False for an absent key."""
    raws = secrets_(3, "status")
    keys = [source.import_secret(MASTER, raw)[0] for raw in raws]
    absent = pubkey_of(bls, secret(99, "status"))
    assert source.store.set_status(keys[0].pubkey, "inactive")
    assert not source.store.set_status(absent, "inactive")
    assert source.store.get(absent) is None
    loaded = source.load(MASTER)
    assert sorted(k.pubkey for k in loaded.keys) == sorted(k.pubkey for k in keys[1:])
    assert loaded.errors == []
    assert [r.pubkey for r in source.store.list_keys("inactive")] == [keys[0].pubkey]
    assert len(source.store.list_keys("active")) == 2
    assert len(source.store.list_keys()) == 3
    with pytest.raises(ValueError):
        source.store.set_status(keys[1].pubkey, "deleted")
    assert source.store.set_status(keys[0].pubkey, "active")
    assert len(source.load(MASTER).keys) == 3

    assert source.store.delete(keys[1].pubkey)
    assert not source.store.delete(keys[1].pubkey)
    assert not source.store.delete(absent)
    assert source.store.get(keys[1].pubkey) is None
    assert sorted(k.pubkey for k in source.load(MASTER).keys) == sorted(
        [keys[0].pubkey, keys[2].pubkey]
    )
    # A deleted key can be imported again.
    assert source.import_secret(MASTER, raws[1])[1]


def check_fields_round_trip(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """Every field of a record comes back as stored (the backup is opaque bytes)."""
    raw = secret(0, "fields")
    pub = pubkey_of(bls, raw)
    record = StoredKey(
        pub,
        encrypt_secret(MASTER, pub, raw),
        status="inactive",
        origin="generated",
        created_at=1_700_000_000,
        backup=b"age-encryption.org/v1\n" + bytes(range(256)),
    )
    assert source.store.insert([record]) == [True]
    assert source.store.get(pub) == record
    assert source.store.list_keys() == [record]
    key, inserted = source.import_secret(MASTER, secret(1, "fields"), origin="generated")
    stored = source.store.get(key.pubkey)
    assert inserted and stored is not None
    assert stored.origin == "generated" and stored.backup is None


def check_sealed_and_invalid(source: EncryptedKeySource, bls: BlsBackend) -> None:
    """No master key: 503, nothing read or written. A bad secret: ValueError, nothing stored."""
    with pytest.raises(Unavailable, match="sealed"):
        source.load(None)
    with pytest.raises(Unavailable, match="sealed"):
        source.import_secret(None, secret(0, "sealed"))
    bad = [bytes(32), CURVE_ORDER.to_bytes(32, "big"), b"\x01" * 31]
    for raw in bad:
        with pytest.raises(ValueError) as caught:
            source.import_secret(MASTER, raw)
        assert_no_secret(str(caught.value), [raw] if any(raw) else [])
    with pytest.raises(ValueError):
        source.import_secret(MASTER, secret(1, "sealed"), origin="found-on-a-usb-stick")
    assert source.store.list_keys() == []
    assert source.load(MASTER).keys == []


def check_no_secret_in_logs(
    source: EncryptedKeySource, bls: BlsBackend, caplog: pytest.LogCaptureFixture
) -> None:
    raws = secrets_(3, "logs")
    with caplog.at_level(logging.DEBUG):
        for raw in raws:
            source.import_secret(MASTER, raw)
        source.load(MASTER)
        source.load(OTHER_MASTER)
    text = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert_no_secret(text, raws)
    for record in source.store.list_keys():
        assert record.ciphertext.hex() not in repr(record)
        assert "ciphertext" not in repr(record)


Check = Callable[[EncryptedKeySource, BlsBackend], None]

CONTRACT_CHECKS: list[Check] = [
    check_round_trip,
    check_wrong_master_key,
    check_ciphertext_bound_to_pubkey,
    check_pubkey_mismatch,
    check_duplicate_import,
    check_insert_batch,
    check_status_and_delete,
    check_fields_round_trip,
    check_sealed_and_invalid,
]
