"""The key registry's signing hold and drain, and the key manager's refresh rules, in process.

Real components: a signer built from settings (SQLite vault state, local file KMS, SQLite key
store files in a temporary directory) whose vault is initialised kms_only in process. The
end-to-end behaviour through HTTP and two server processes is in test_keys_api.py,
test_keymanager_api.py and test_keys_replicas.py; this file pins the concurrency rules those
rest on, deterministically.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chamber.config import Settings
from chamber.crypto.bls import select_backend
from chamber.keys import KeyRegistry, ValidatorKey
from chamber.keys.encrypted import INACTIVE, EncryptedKeySource
from chamber.keys.manager import ImportItem, _Deadline
from chamber.keys.sqlite_store import SQLiteKeyStore
from chamber.plugins import load_plugins
from chamber.signer import Signer, build_signer

SECRETS = [(i + 1).to_bytes(32, "big") for i in range(6)]


def _key(bls: Any, secret: bytes, source: str = "s") -> ValidatorKey:
    handle = bls.secret_key(secret)
    return ValidatorKey(pubkey=bytes(bls.public_key(handle)), source=source, secret=handle)


# ---------------------------------------------------------------------- registry


def test_remove_and_drain_waits_for_the_request_holding_the_key() -> None:
    bls = select_backend("auto")
    registry = KeyRegistry()
    key = _key(bls, SECRETS[0])
    other = _key(bls, SECRETS[1])
    registry.update_source("s", add=[key, other])
    holding = threading.Event()
    release = threading.Event()
    seen: list[ValidatorKey | None] = []

    def signer_thread() -> None:
        with registry.signing(key.pubkey_hex) as held:
            seen.append(held)
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=signer_thread)
    thread.start()
    assert holding.wait(10)
    finished: list[float] = []

    def remover() -> None:
        busy = registry.remove_and_drain([key.pubkey_hex], timeout=10)
        assert busy == set()
        finished.append(time.monotonic())

    removing = threading.Thread(target=remover)
    removing.start()
    time.sleep(0.3)
    # Removed at once (new requests no longer find it), but the call has not returned: the
    # request that holds the key is still signing.
    assert registry.get(key.pubkey_hex) is None
    assert registry.get(other.pubkey_hex) is other
    assert not finished
    with registry.signing(key.pubkey_hex) as late:
        assert late is None
    released_at = time.monotonic()
    release.set()
    removing.join(10)
    thread.join(10)
    assert finished and finished[0] >= released_at
    assert seen == [key]


def test_remove_and_drain_reports_a_key_still_held_after_the_timeout() -> None:
    bls = select_backend("auto")
    registry = KeyRegistry()
    key = _key(bls, SECRETS[0])
    registry.update_source("s", add=[key])
    with registry.signing(key.pubkey_hex):
        started = time.monotonic()
        assert registry.remove_and_drain([key.pubkey_hex], timeout=0.2) == {key.pubkey_hex}
        assert time.monotonic() - started >= 0.2
    assert registry.remove_and_drain([key.pubkey_hex], timeout=0.2) == set()


def test_update_source_and_sources_of() -> None:
    bls = select_backend("auto")
    registry = KeyRegistry()
    a, b = _key(bls, SECRETS[0], "x"), _key(bls, SECRETS[1], "x")
    registry.update_source("x", add=[a, b])
    registry.update_source("y", add=[_key(bls, SECRETS[0], "y")])
    assert registry.sources_of(a.pubkey_hex) == {"x", "y"}
    registry.update_source("x", remove=[a.pubkey_hex])
    assert registry.sources_of(a.pubkey_hex) == {"y"}
    assert registry.source_keys("x") == {b.pubkey_hex}
    assert sorted(registry.public_keys()) == sorted([a.pubkey_hex, b.pubkey_hex])


# ---------------------------------------------------------------------- SQLite change token


def test_change_token_follows_other_connections_only(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "keys.sqlite")
    try:
        first = store.change_token()
        assert store.change_token() == first
        other = sqlite3.connect(tmp_path / "keys.sqlite")
        other.execute("UPDATE validator_keys SET status = 'active' WHERE 0")
        other.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
        other.commit()
        other.close()
        assert store.change_token() != first
    finally:
        store.close()


# ---------------------------------------------------------------------- the manager, in process


def _settings(root: Path, **keys: Any) -> Settings:
    return Settings.model_validate(
        {
            "anti_slashing": {"backend": "sqlite", "path": str(root / "slashing.sqlite")},
            "signer_state": {"backend": "sqlite", "path": str(root / "state.sqlite")},
            "key_sources": {"sqlite": {"path": str(root / "keys.sqlite")}},
            "kms": {"local": {"directory": str(root / "kms")}},
            "vault": {"argon2": {"memory_kib": 1024, "iterations": 1, "parallelism": 1}},
            "chamber": {"keys": {"refresh_interval_seconds": 0, **keys}},
            "allow_unauthenticated_signing": True,
        }
    )


@pytest.fixture
def signer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Signer]:
    built = build_signer(_settings(tmp_path), load_plugins(entry_points_enabled=False))
    vault = built.vault
    assert vault is not None
    caplog.set_level(logging.WARNING, logger="chamber.vault")
    vault.boot()
    token = next(
        r.setup_token  # type: ignore[attr-defined]
        for r in caplog.records
        if hasattr(r, "setup_token")
    )
    vault.init(token, ["local:a", "local:b", "local:c"], 2)
    assert vault.signing_allowed
    try:
        yield built
    finally:
        built.close()


def _raw(*secrets: bytes) -> list[ImportItem]:
    return [ImportItem(f"raw key {i}", secret=s) for i, s in enumerate(secrets)]


def test_a_local_delete_during_a_refresh_read_is_not_undone(
    signer: Signer, tmp_path: Path
) -> None:
    """The refresh read the store (key present), then a local delete ran, then the refresh
    applied what it read: the deleted key must stay deleted."""
    manager = signer.manager
    source = manager.encrypted_sources()["sqlite"]
    results = manager.import_keys(_raw(SECRETS[0], SECRETS[1]), "sqlite", duplicate_if_loaded=False)
    assert [r["status"] for r in results] == ["imported", "imported"]
    doomed = results[0]["pubkey"]
    # Another process adds a key, so the refresh has something to apply.
    other = SQLiteKeyStore(tmp_path / "keys.sqlite")
    master = signer.vault.master_key  # type: ignore[union-attr]
    assert master is not None
    EncryptedKeySource("sqlite", other, signer.bls).import_secret(master.material, SECRETS[2])
    other.close()
    added = "0x" + bytes(signer.bls.public_key(signer.bls.secret_key(SECRETS[2]))).hex()

    real_list = source.store.list_keys

    def list_then_delete(status: str | None = None) -> list[Any]:
        records = real_list(status)
        # A local delete lands between the refresh's read and its apply.
        answer = manager.delete([bytes.fromhex(doomed[2:])], _Deadline(10))
        assert answer["data"][0]["status"] == "deleted"
        return records

    source.store.list_keys = list_then_delete  # type: ignore[method-assign]
    try:
        assert manager.refresh_source("sqlite", source)
    finally:
        source.store.list_keys = real_list  # type: ignore[method-assign]
    assert signer.registry.get(doomed) is None
    assert signer.registry.get(added) is not None  # the rest of the read was applied
    assert source.store.get(bytes.fromhex(doomed[2:])) is None
    # A later refresh agrees.
    assert manager.refresh_source("sqlite", source)
    assert signer.registry.get(doomed) is None


def test_refresh_follows_another_process_and_skips_when_nothing_changed(
    signer: Signer, tmp_path: Path
) -> None:
    manager = signer.manager
    source = manager.encrypted_sources()["sqlite"]
    (imported,) = manager.import_keys(_raw(SECRETS[3]), "sqlite", duplicate_if_loaded=False)
    pubkey = imported["pubkey"]
    assert manager.refresh_source("sqlite", source, full=False)
    # Nothing changed since: the change token says so and the store is not read.
    calls = []
    real_list = source.store.list_keys

    def counting(status: str | None = None) -> list[Any]:
        calls.append(status)
        return real_list(status)

    source.store.list_keys = counting  # type: ignore[method-assign]
    try:
        assert not manager.refresh_source("sqlite", source, full=False)
        assert calls == []
        # Another process deactivates the key: seen at the next round.
        other = SQLiteKeyStore(tmp_path / "keys.sqlite")
        assert other.set_status(bytes.fromhex(pubkey[2:]), INACTIVE)
        other.close()
        assert manager.refresh_source("sqlite", source, full=False)
        assert calls == ["active"]
    finally:
        source.store.list_keys = real_list  # type: ignore[method-assign]
    assert signer.registry.get(pubkey) is None


def test_refresh_does_nothing_while_sealed(signer: Signer, tmp_path: Path) -> None:
    manager = signer.manager
    source = manager.encrypted_sources()["sqlite"]
    master = signer.vault.master_key  # type: ignore[union-attr]
    assert master is not None
    other = SQLiteKeyStore(tmp_path / "keys.sqlite")
    EncryptedKeySource("sqlite", other, signer.bls).import_secret(master.material, SECRETS[4])
    other.close()
    signer.vault.seal()  # type: ignore[union-attr]
    assert not manager.refresh_source("sqlite", source)
    assert len(signer.registry) == 0


def test_import_answers_per_key_in_request_order(signer: Signer) -> None:
    manager = signer.manager
    pubkey_0 = bytes(signer.bls.public_key(signer.bls.secret_key(SECRETS[0])))
    items = [
        ImportItem("raw key 0", secret=SECRETS[0], expected_pubkey=pubkey_0),
        ImportItem("raw key 1", error="secret: not hex"),
        ImportItem("raw key 2", secret=SECRETS[1], expected_pubkey=pubkey_0),
        ImportItem("raw key 3", secret=SECRETS[0]),
        ImportItem("raw key 4", secret=bytes(32)),
    ]
    results = manager.import_keys(items, "sqlite", duplicate_if_loaded=False)
    assert [r["status"] for r in results] == ["imported", "error", "error", "duplicate", "error"]
    assert results[1]["message"] == "raw key 1: secret: not hex"
    assert "is not the public key of the secret" in results[2]["message"]
    assert results[4]["message"] == "raw key 4: not a valid BLS secret key"
    # A second request: the stored key is a duplicate in its store.
    again = manager.import_keys(_raw(SECRETS[0]), "sqlite", duplicate_if_loaded=False)
    assert again[0]["status"] == "duplicate"
    for result in results:
        assert SECRETS[0].hex() not in repr(result) and SECRETS[1].hex() not in repr(result)


def test_generation_refused_at_start_without_an_encrypted_store(tmp_path: Path) -> None:
    from chamber.errors import ConfigError

    settings = Settings.model_validate(
        {
            "anti_slashing": {"backend": "sqlite", "path": str(tmp_path / "s.sqlite")},
            "chamber": {"keys": {"generate": {"enabled": True}}},
            "allow_unauthenticated_signing": True,
        }
    )
    with pytest.raises(ConfigError, match=r"chamber\.keys\.generate\.enabled"):
        build_signer(settings, load_plugins(entry_points_enabled=False))


def test_backup_recipients_checked_at_start(tmp_path: Path) -> None:
    from chamber.errors import ConfigError

    secret_identity = "AGE-SECRET-KEY-1" + "Q" * 58
    settings = _settings(
        tmp_path,
        generate={"enabled": True, "backup": {"enabled": True, "recipients": [secret_identity]}},
    )
    with pytest.raises(ConfigError) as caught:
        build_signer(settings, load_plugins(entry_points_enabled=False))
    assert "chamber.keys.generate.backup.recipients" in caught.value.message
    assert secret_identity not in caught.value.message


def test_concurrency_cap_answers_503(signer: Signer) -> None:
    manager = signer.manager
    limits = manager.settings.import_.model_copy(update={"max_concurrent_requests": 1})
    from chamber.errors import Unavailable

    with (
        manager.admit("cap-test", limits, "chamber.keys.import"),
        pytest.raises(Unavailable, match="max_concurrent_requests = 1"),
        manager.admit("cap-test", limits, "chamber.keys.import"),
    ):
        pass
    with manager.admit("cap-test", limits, "chamber.keys.import"):
        pass

