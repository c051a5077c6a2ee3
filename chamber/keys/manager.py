"""Key management: import, generate, activate / deactivate, delete, and the background refresh.

One :class:`KeyManager` per signer. The HTTP handlers (chamber key API, keymanager API) parse and
authorise, then call it; it owns every change to the key stores and to the in-memory registry,
so the rules below hold whichever API a change came through:

- **Per key, independent.** Every operation answers one result per key, in request order; a bad
  key, a wrong password or a duplicate never affects the others. Keys not reached before the
  request's deadline (``request_timeout_seconds``) get their own "timed out" error.
- **Durable first, then signable.** New keys are written to the store in one batch (one
  transaction: a crash leaves each key absent or complete) and only then added to the registry.
- **Unsignable first, then answered.** Deactivating or deleting removes the key from the registry
  and waits until no signing request still holds it (:meth:`KeyRegistry.remove_and_drain`); only
  then is the change written and the answer sent. So a deleted key's exported slashing history
  is complete: nothing can sign with it here afterwards.
- **Replicas.** A background thread reads each encrypted store every
  ``chamber.keys.refresh_interval_seconds`` and applies what another replica (or an offline
  command) changed: new active keys are opened and added, deactivated and deleted ones dropped.
  Local changes made while a refresh was reading win over what that read saw.
- **Limits.** Each operation kind has an ``enabled`` flag, a per-request item cap and a cap on
  concurrent requests (more get 503 + Retry-After, never a queue).

Secrets (keystore passwords, decrypted keys, mnemonics) never appear in results, errors or logs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pyrage import x25519

from chamber.config import KeyOperationConfig
from chamber.crypto.backup import (
    BackupError,
    backup_payload,
    encrypt_backup,
    validate_recipients,
)
from chamber.crypto.bls import validate_secret_key
from chamber.crypto.derivation import (
    bls_withdrawal_credentials,
    deposit_data,
    generate_mnemonic,
    mnemonic_to_seed,
    secret_key_bytes,
    signing_key_path,
    validator_keys,
)
from chamber.errors import (
    BadRequest,
    ChamberError,
    ConfigError,
    Forbidden,
    KeyLoadError,
    Unavailable,
)
from chamber.keys import ValidatorKey
from chamber.keys.encrypted import (
    ACTIVE,
    INACTIVE,
    EncryptedKeySource,
    StoredKey,
    encrypt_secret,
)
from chamber.vault import faults

if TYPE_CHECKING:
    from chamber.signer import Signer
    from chamber.vault.master import MasterKey

__all__ = ["MEMORY", "ImportItem", "KeyManager", "generate_worker"]

log = logging.getLogger("chamber.keys.manager")
audit = logging.getLogger("chamber.audit")

#: The registry source of keys imported through the keymanager API without persistence.
MEMORY: Final = "memory"
#: Longest wait for in-flight signing requests to release a key being removed.
DRAIN_SECONDS: Final = 10.0
#: Every this many refresh rounds the stores are read in full even if they report no change.
FULL_REFRESH_EVERY: Final = 30


@dataclass(frozen=True, slots=True)
class ImportItem:
    """One key of an import request, after decryption: the secret, or why there is none.

    ``expected_pubkey`` is the public key the input claimed (a keystore's ``pubkey`` field, a raw
    key's declared public key); a secret whose public key differs is refused.
    """

    label: str
    secret: bytes | None = None
    error: str | None = None
    expected_pubkey: bytes | None = None

    def __repr__(self) -> str:
        return f"ImportItem({self.label!r}, error={self.error!r})"


def generate_worker(job: tuple[str, int]) -> tuple[bytes, bytes]:
    """Process-pool entry point: ``(mnemonic, index) -> (signing secret, withdrawal secret)``,
    both 32 bytes, at ``m/12381/3600/<index>/0/0`` and ``m/12381/3600/<index>/0``."""
    mnemonic, index = job
    keys = validator_keys(mnemonic_to_seed(mnemonic), index)
    return secret_key_bytes(keys.signing_sk), secret_key_bytes(keys.withdrawal_sk)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0

    def message(self, setting: str) -> str:
        return (
            f"timed out: the request's {self.seconds:g} s ({setting}) ran out before this key "
            "was processed; send it again"
        )


def _result(status: str, pubkey: str | None = None, message: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"status": status}
    if pubkey is not None:
        found["pubkey"] = pubkey
    if message is not None:
        found["message"] = message
    return found


class KeyManager:
    """Every change to validator keys, for one signer (see the module documentation)."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.settings = signer.settings.chamber.keys
        self.keymanager = signer.settings.http.key_manager_api
        self._lock = threading.RLock()
        self._admission: dict[str, threading.BoundedSemaphore] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Refresh bookkeeping: pubkeys changed locally while a refresh was reading (their local
        # state wins), a counter bumped by seal / unseal (a read across it is discarded), and
        # each store's last change token.
        self._touched: set[str] | None = None
        self._epoch = 0
        self._tokens: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backup_recipients = self._backup_recipients()
        self.keymanager_store = self._keymanager_store_name()
        if self.settings.generate.enabled and not self.encrypted_sources():
            raise ConfigError(
                "chamber.keys.generate.enabled: generated keys are kept in an encrypted key "
                "store, and none is configured (add key_sources.sqlite or a plugin's store)",
                field="chamber.keys.generate.enabled",
            )

    # ------------------------------------------------------------------ configuration

    def encrypted_sources(self) -> dict[str, EncryptedKeySource]:
        return {
            name: source
            for name, source in self.signer.key_sources.items()
            if isinstance(source, EncryptedKeySource)
        }

    def _backup_recipients(self) -> list[x25519.Recipient] | None:
        backup = self.settings.generate.backup
        if not backup.enabled:
            return None
        try:
            return validate_recipients(backup.recipients)
        except BackupError as error:
            raise ConfigError(
                f"chamber.keys.generate.backup.recipients: {error}",
                field="chamber.keys.generate.backup.recipients",
            ) from None

    def _keymanager_store_name(self) -> str:
        configured = self.keymanager.store
        stores = self.encrypted_sources()
        if configured is None:
            return next(iter(stores), MEMORY)
        if configured != MEMORY and configured not in stores:
            raise ConfigError(
                f"http.key_manager_api.store: {configured!r} is not an encrypted key source "
                f"(configured: {', '.join(sorted(stores)) or 'none'}; or use memory)",
                field="http.key_manager_api.store",
            )
        return configured

    def store(self, name: str | None, field: str = "store") -> EncryptedKeySource:
        stores = self.encrypted_sources()
        if not stores:
            raise BadRequest(
                f"{field}: no encrypted key store is configured (key_sources.sqlite or a "
                "plugin's store)",
                field=field,
            )
        if name is None:
            return next(iter(stores.values()))
        found = stores.get(name)
        if found is None:
            raise BadRequest(
                f"{field}: no encrypted key store named {name!r} (configured: "
                f"{', '.join(sorted(stores))})",
                field=field,
            )
        return found

    # ------------------------------------------------------------------ admission

    @contextmanager
    def admit(self, kind: str, limits: KeyOperationConfig, setting: str) -> Iterator[_Deadline]:
        """Run one request of ``kind`` within its limits; yields its deadline."""
        self.require_enabled(limits, setting)
        semaphore = self._admission.get(kind)
        if semaphore is None:
            with self._pool_lock:
                semaphore = self._admission.setdefault(
                    kind, threading.BoundedSemaphore(limits.max_concurrent_requests)
                )
        if not semaphore.acquire(blocking=False):
            raise Unavailable(
                f"too many concurrent requests of this kind ({setting}.max_concurrent_requests "
                f"= {limits.max_concurrent_requests}); retry shortly",
                retry_after=1,
            )
        try:
            yield _Deadline(limits.request_timeout_seconds)
        finally:
            semaphore.release()

    @staticmethod
    def require_enabled(limits: KeyOperationConfig, setting: str) -> None:
        if not limits.enabled:
            raise Forbidden(f"this key operation is disabled ({setting}.enabled: false)")

    @staticmethod
    def check_count(count: int, limits: KeyOperationConfig, field: str, setting: str) -> None:
        if count < 1:
            raise BadRequest(f"{field}: at least one key is required", field=field)
        if count > limits.max_items_per_request:
            raise BadRequest(
                f"{field}: {count} keys in one request; at most {limits.max_items_per_request} "
                f"({setting}.max_items_per_request)",
                field=field,
            )

    def pool(self) -> ProcessPoolExecutor:
        """Worker processes for the slow, GIL-holding work (scrypt, key derivation)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=max(1, min(4, os.cpu_count() or 1)),
                    mp_context=multiprocessing.get_context("spawn"),
                )
            return self._pool

    # ------------------------------------------------------------------ master key

    def _master(self) -> MasterKey:
        vault = self.signer.vault
        master = None if vault is None else vault.master_key
        if vault is None or master is None or not vault.signing_allowed:
            state = "no vault" if vault is None else vault.state
            raise Unavailable(
                f"signer is sealed (state {state}): the encrypted key stores need the master "
                "key; unseal the chamber first",
                retry_after=5,
            )
        return master

    def _still(self, master: MasterKey) -> bytearray:
        """The master key's bytes, if it is still the chamber's key (not sealed meanwhile)."""
        vault = self.signer.vault
        if vault is None or vault.master_key is not master or not vault.signing_allowed:
            raise Unavailable("the signer was sealed during the request; nothing more was written")
        try:
            return master.material
        except ValueError:
            raise Unavailable(
                "the signer was sealed during the request; nothing more was written"
            ) from None

    def _count(self, source: str) -> None:
        self.signer.metrics.keys_active.labels(source).set(
            len(self.signer.registry.source_keys(source))
        )

    def _touch(self, pubkeys: Sequence[str]) -> None:
        if self._touched is not None:
            self._touched.update(pubkeys)

    # ------------------------------------------------------------------ seal and unseal

    def load_unsealed(self, master: MasterKey) -> int:
        with self._lock:
            self._epoch += 1
            self._tokens.clear()
            for name, source in self.signer.key_sources.items():
                if source.requires_unseal:
                    self.signer.load_source(name, source, master.material)
            return len(self.signer.registry)

    def drop_unsealed(self) -> None:
        with self._lock:
            self._epoch += 1
            self._tokens.clear()
            for name, source in self.signer.key_sources.items():
                if source.requires_unseal:
                    self.signer.registry.replace_source(name, [])
                    self.signer.metrics.keys_active.labels(name).set(0)

    # ------------------------------------------------------------------ import

    def _new_key(self, item: ImportItem) -> tuple[bytes, bytes, ValidatorKey] | str:
        """``(secret, pubkey, key)`` for one decrypted item, or the reason it is refused."""
        if item.secret is None:
            return item.error or "no key"
        bls = self.signer.bls
        try:
            raw = validate_secret_key(item.secret)
            handle = bls.secret_key(raw)
            pubkey = bytes(bls.public_key(handle))
        except (ValueError, TypeError):
            return "not a valid BLS secret key"
        except Exception as exc:  # the backend's message is not ours to vouch for
            return f"the BLS backend refused the key ({type(exc).__name__})"
        if item.expected_pubkey is not None and item.expected_pubkey != pubkey:
            return (
                f"the public key given for it (0x{item.expected_pubkey.hex()}) is not the public "
                f"key of the secret (0x{pubkey.hex()})"
            )
        return raw, pubkey, ValidatorKey(pubkey=pubkey, source="", secret=handle)

    def import_keys(
        self,
        items: Sequence[ImportItem],
        target: str,
        *,
        duplicate_if_loaded: bool,
        origin: str = "imported",
        backups: Sequence[bytes | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Store and load ``items`` into ``target`` (an encrypted source's name or
        :data:`MEMORY`). One result per item: ``imported`` | ``duplicate`` | ``error``.

        ``duplicate_if_loaded``: a key already loaded from any source, or held (even
        deactivated) by any encrypted store, is a duplicate (the keymanager API's rule);
        otherwise only a key already in ``target`` is.
        """
        registry = self.signer.registry
        results: list[dict[str, Any] | None] = [None] * len(items)
        fresh: list[tuple[int, bytes, bytes, ValidatorKey]] = []
        seen: set[bytes] = set()
        for index, item in enumerate(items):
            built = self._new_key(item)
            if isinstance(built, str):
                results[index] = _result("error", message=f"{item.label}: {built}")
                continue
            raw, pubkey, key = built
            pubkey_hex = key.pubkey_hex
            if pubkey in seen or (duplicate_if_loaded and registry.get(pubkey_hex) is not None):
                results[index] = _result("duplicate", pubkey_hex)
                continue
            seen.add(pubkey)
            fresh.append((index, raw, pubkey, key))
        if duplicate_if_loaded and fresh:
            # Known to an encrypted store but not loaded (deactivated): still a duplicate,
            # whichever the target (a memory import must not bring a deactivated key back).
            for index, _raw, pubkey, key in fresh:
                if self._find(pubkey) is not None:
                    results[index] = _result("duplicate", key.pubkey_hex)
            fresh = [entry for entry in fresh if results[entry[0]] is None]

        if target == MEMORY:
            with self._lock:
                added = []
                for index, _raw, _pubkey, key in fresh:
                    if registry.get(key.pubkey_hex) is not None and duplicate_if_loaded:
                        results[index] = _result("duplicate", key.pubkey_hex)
                        continue
                    added.append(ValidatorKey(pubkey=key.pubkey, source=MEMORY, secret=key.secret))
                    results[index] = _result("imported", key.pubkey_hex)
                registry.update_source(MEMORY, add=added)
                self._count(MEMORY)
            return [r for r in results if r is not None]

        source = self.store(target)
        master = self._master()
        if fresh:
            now = int(time.time())
            with self._lock:
                material = self._still(master)
                records = [
                    StoredKey(
                        pubkey=pubkey,
                        ciphertext=encrypt_secret(material, pubkey, raw),
                        status=ACTIVE,
                        origin=origin,
                        created_at=now,
                        backup=None if backups is None else backups[index],
                    )
                    for index, raw, pubkey, _key in fresh
                ]
                try:
                    faults.point("keys_import:before_commit")
                    inserted = source.store.insert(records)
                    faults.point("keys_import:after_commit")
                except ChamberError as error:
                    for index, _raw, _pubkey, key in fresh:
                        results[index] = _result(
                            "error", key.pubkey_hex, f"the key store failed: {error.message}"
                        )
                    return [r for r in results if r is not None]
                added = []
                for (index, _raw, _pubkey, key), written in zip(fresh, inserted, strict=True):
                    if written:
                        added.append(
                            ValidatorKey(pubkey=key.pubkey, source=source.name, secret=key.secret)
                        )
                        results[index] = _result("imported", key.pubkey_hex)
                    else:
                        results[index] = _result("duplicate", key.pubkey_hex)
                self._touch([key.pubkey_hex for key in added])
                # Written durably above; only now signable. (A seal that started meanwhile is
                # waiting for this lock and drops them right after.)
                registry.update_source(source.name, add=added)
                self._count(source.name)
        return [r for r in results if r is not None]

    def decrypt_keystores(
        self,
        keystores: Sequence[Mapping[str, Any] | str],
        passwords: Sequence[str],
        deadline: _Deadline,
        setting: str,
    ) -> list[ImportItem]:
        """Decrypt EIP-2335 keystores in worker processes (scrypt is slow on purpose).

        A string in ``keystores`` is the reason that entry could not be parsed."""
        from chamber.crypto.keystore import decrypt_worker

        jobs: list[Future[tuple[bytes | None, str | None]] | str] = []
        expected: list[bytes | None] = []
        for keystore, password in zip(keystores, passwords, strict=True):
            if isinstance(keystore, str):
                jobs.append(keystore)
                expected.append(None)
                continue
            expected.append(_declared_pubkey(keystore))
            jobs.append(self.pool().submit(decrypt_worker, (dict(keystore), password)))
        items: list[ImportItem] = []
        for index, job in enumerate(jobs):
            label = f"keystore {index}"
            if isinstance(job, str):
                items.append(ImportItem(label, error=job))
                continue
            try:
                secret, reason = job.result(timeout=max(0.0, deadline.remaining()))
            except FutureTimeout:
                job.cancel()
                items.append(ImportItem(label, error=deadline.message(setting)))
                continue
            if secret is None:
                items.append(ImportItem(label, error=reason))
                continue
            declared = expected[index]
            if declared == b"":
                items.append(ImportItem(label, error="pubkey: not a 48-byte hex public key"))
                continue
            items.append(ImportItem(label, secret=secret, expected_pubkey=declared))
        return items

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        count: int,
        target: str | None,
        *,
        withdrawal_credentials: bytes | None,
        bls_withdrawal: bool,
        amount_gwei: int,
        deadline: _Deadline,
    ) -> dict[str, Any]:
        """Generate ``count`` keys into an encrypted store; the answer holds one result per key
        and, when withdrawal credentials were asked for, their deposit data."""
        settings = self.settings.generate
        source = self.store(target)
        self._master()  # sealed: 503 before any work
        if bls_withdrawal and self.backup_recipients is None:
            raise BadRequest(
                "bls_withdrawal: BLS (0x00) withdrawal credentials need the mnemonic to "
                "withdraw, and without chamber.keys.generate.backup the signer keeps no copy of "
                "it; give an execution address (0x01) or enable the backup",
                field="bls_withdrawal",
            )
        per_batch = settings.mnemonic == "per_batch"
        batch_mnemonic = generate_mnemonic() if per_batch else None
        mnemonics = [
            batch_mnemonic if batch_mnemonic is not None else generate_mnemonic()
            for _ in range(count)
        ]
        indices = list(range(count)) if per_batch else [0] * count
        pool = self.pool()
        futures = [
            pool.submit(generate_worker, (mnemonic, index))
            for mnemonic, index in zip(mnemonics, indices, strict=True)
        ]
        setting = "chamber.keys.generate.request_timeout_seconds"
        items: list[ImportItem] = []
        backups: list[bytes | None] = []
        deposits: list[dict[str, Any]] = []
        for position, future in enumerate(futures):
            label = f"key {position}"
            try:
                signing, withdrawal = future.result(timeout=max(0.0, deadline.remaining()))
            except FutureTimeout:
                future.cancel()
                items.append(ImportItem(label, error=deadline.message(setting)))
                backups.append(None)
                continue
            bls = self.signer.bls
            pubkey = bytes(bls.public_key(bls.secret_key(signing)))
            backup = None
            if self.backup_recipients is not None:
                payload = backup_payload(mnemonics[position], indices[position], pubkey)
                backup = encrypt_backup(payload, self.backup_recipients)
            backups.append(backup)
            credentials = withdrawal_credentials
            if bls_withdrawal:
                withdrawal_pubkey = bytes(bls.public_key(bls.secret_key(withdrawal)))
                credentials = bls_withdrawal_credentials(withdrawal_pubkey)
            if credentials is not None:
                deposits.append(
                    deposit_data(
                        signing,
                        pubkey,
                        credentials,
                        amount_gwei,
                        self.signer.network,
                        backend=bls,
                    )
                )
            items.append(ImportItem(label, secret=signing, expected_pubkey=pubkey))
        results = self.import_keys(
            items, source.name, duplicate_if_loaded=False, origin="generated", backups=backups
        )
        for result, index in zip(results, indices, strict=True):
            if result["status"] == "imported":
                result["status"] = "generated"
                result["path"] = signing_key_path(index)
                result["backup"] = self.backup_recipients is not None
        made = {r["pubkey"] for r in results if r["status"] == "generated"}
        return {
            "data": results,
            "mnemonic": "per_batch" if per_batch else "per_key",
            "deposit_data": [d for d in deposits if "0x" + d["pubkey"] in made],
        }

    # ------------------------------------------------------------------ lifecycle

    def _find(self, pubkey: bytes) -> tuple[EncryptedKeySource, StoredKey] | None:
        for source in self.encrypted_sources().values():
            record = source.store.get(pubkey)
            if record is not None:
                return source, record
        return None

    def set_status(
        self, pubkeys: Sequence[bytes], status: str, deadline: _Deadline
    ) -> list[dict[str, Any]]:
        """Activate or deactivate stored keys. Per key: ``activated`` | ``deactivated`` |
        ``unchanged`` | ``not_found`` | ``error``."""
        if status not in (ACTIVE, INACTIVE):
            raise BadRequest("status: must be 'active' or 'inactive'", field="status")
        setting = "chamber.keys.lifecycle.request_timeout_seconds"
        results = []
        master = self._master() if status == ACTIVE else None
        for pubkey in pubkeys:
            pubkey_hex = "0x" + pubkey.hex()
            if deadline.passed():
                results.append(_result("error", pubkey_hex, deadline.message(setting)))
                continue
            try:
                results.append(self._set_one(pubkey, pubkey_hex, status, master))
            except ChamberError as error:
                results.append(_result("error", pubkey_hex, error.message))
        return results

    def _set_one(
        self, pubkey: bytes, pubkey_hex: str, status: str, master: MasterKey | None
    ) -> dict[str, Any]:
        with self._lock:
            found = self._find(pubkey)
            if found is None:
                return _result("not_found", pubkey_hex, "no encrypted key store holds this key")
            source, record = found
            self._touch([pubkey_hex])
            if status == INACTIVE:
                busy = self.signer.registry.remove_and_drain([pubkey_hex], DRAIN_SECONDS)
                if busy:
                    return _result(
                        "error", pubkey_hex, "a signing request still holds the key; try again"
                    )
                if record.status == INACTIVE:
                    return _result("unchanged", pubkey_hex)
                source.store.set_status(pubkey, INACTIVE)
                self._count(source.name)
                audit.warning("key deactivated", extra={"pubkey": pubkey_hex})
                return _result("deactivated", pubkey_hex)
            assert master is not None
            material = self._still(master)
            opened = source.open_records(material, [record])
            if opened.errors:
                return _result("error", pubkey_hex, opened.errors[0].reason)
            if record.status != ACTIVE:
                source.store.set_status(pubkey, ACTIVE)
            self.signer.registry.update_source(source.name, add=opened.keys)
            self._count(source.name)
            if record.status == ACTIVE:
                return _result("unchanged", pubkey_hex)
            audit.warning("key activated", extra={"pubkey": pubkey_hex})
            return _result("activated", pubkey_hex)

    def delete(self, pubkeys: Sequence[bytes], deadline: _Deadline) -> dict[str, Any]:
        """Chamber API: delete keys from memory and the encrypted stores. One result per key
        (``deleted`` | ``not_found`` | ``error``) plus the slashing-protection interchange of
        every requested key that has history (kept in the slashing database)."""
        statuses, exported, _ = self._delete(
            pubkeys,
            deadline,
            allowed=set(self.encrypted_sources()) | {MEMORY},
            setting="chamber.keys.lifecycle.request_timeout_seconds",
            api="chamber",
        )
        return {"data": statuses, "slashing_protection": exported}

    def delete_keymanager(self, pubkeys: Sequence[bytes], deadline: _Deadline) -> dict[str, Any]:
        """Keymanager API: like :meth:`delete`, but it may delete only what it can import
        (memory keys and keys of its store; other sources are read-only to it), and its statuses
        are ``deleted`` (was signable, removed) | ``not_active`` (not signable here, history
        returned) | ``not_found`` | ``error``."""
        statuses, exported, signable = self._delete(
            pubkeys,
            deadline,
            allowed={MEMORY, self.keymanager_store},
            setting="http.key_manager_api.request_timeout_seconds",
            api="keymanager",
        )
        with_history = {str(entry["pubkey"]).lower() for entry in exported.get("data", [])}
        for entry in statuses:
            if (entry["status"] == "deleted" and entry["pubkey"] not in signable) or (
                entry["status"] == "not_found" and entry["pubkey"] in with_history
            ):
                entry["status"] = "not_active"
        return {"data": statuses, "slashing_protection": exported}

    def _delete(
        self,
        pubkeys: Sequence[bytes],
        deadline: _Deadline,
        *,
        allowed: set[str],
        setting: str,
        api: str,
    ) -> tuple[list[dict[str, Any]], dict[str, Any], set[str]]:
        """Remove each key from memory (draining its signing requests) and from the
        ``allowed`` stores. Returns the results (``deleted`` | ``not_found`` | ``error``), the
        interchange of the settled keys, and the keys that were signable here."""
        registry = self.signer.registry
        statuses: list[dict[str, Any]] = []
        signable: set[str] = set()
        for pubkey in pubkeys:
            pubkey_hex = "0x" + pubkey.hex()
            if deadline.passed():
                statuses.append(_result("error", pubkey_hex, deadline.message(setting)))
                continue
            try:
                with self._lock:
                    holders = registry.sources_of(pubkey_hex)
                    readonly = sorted(holders - allowed)
                    if readonly:
                        statuses.append(
                            _result(
                                "error",
                                pubkey_hex,
                                f"the key comes from the {', '.join(readonly)} key source, "
                                "which this API cannot delete from; remove it there",
                            )
                        )
                        continue
                    self._touch([pubkey_hex])
                    busy = registry.remove_and_drain([pubkey_hex], DRAIN_SECONDS)
                    if busy:
                        statuses.append(
                            _result("error", pubkey_hex, "a signing request still holds the key")
                        )
                        continue
                    removed_stored = False
                    for name, source in self.encrypted_sources().items():
                        if name in allowed and source.store.delete(pubkey):
                            removed_stored = True
                    if holders:
                        signable.add(pubkey_hex)
                    if holders or removed_stored:
                        audit.warning("key deleted", extra={"pubkey": pubkey_hex, "api": api})
                        statuses.append(_result("deleted", pubkey_hex))
                    else:
                        statuses.append(_result("not_found", pubkey_hex))
            except ChamberError as error:
                statuses.append(_result("error", pubkey_hex, error.message))
        # Only now, with none of them signable here, is the history exported. Keys answered
        # "error" may still sign here, so their history would be a snapshot already going
        # stale: it is left out.
        settled = [
            bytes.fromhex(entry["pubkey"][2:]) for entry in statuses if entry["status"] != "error"
        ]
        return statuses, self.signer.slashing.export_interchange(settled), signable

    # ------------------------------------------------------------------ listing

    def list_stored(self, status: str | None, target: str | None) -> list[dict[str, Any]]:
        """Records of the encrypted stores (no secrets) and whether each is loaded here."""
        sources = {target: self.store(target)} if target is not None else self.encrypted_sources()
        loaded = self.signer.registry
        found = []
        for name, source in sources.items():
            for record in source.store.list_keys(status):
                found.append(
                    {
                        "pubkey": record.pubkey_hex,
                        "store": name,
                        "status": record.status,
                        "origin": record.origin,
                        "created_at": record.created_at,
                        "backup": record.backup is not None,
                        "loaded": loaded.get(record.pubkey_hex) is not None,
                    }
                )
        return found

    # ------------------------------------------------------------------ background refresh

    def start(self) -> None:
        interval = self.settings.refresh_interval_seconds
        if interval <= 0 or not self.encrypted_sources() or self.signer.vault is None:
            return
        self._thread = threading.Thread(
            target=self._refresh_loop, args=(interval,), name="key-refresh", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _refresh_loop(self, interval: float) -> None:
        rounds = 0
        failing: set[str] = set()
        while not self._stop.wait(interval):
            rounds += 1
            for name, source in self.encrypted_sources().items():
                try:
                    self.refresh_source(name, source, full=rounds % FULL_REFRESH_EVERY == 0)
                    failing.discard(name)
                except ChamberError as error:
                    if name not in failing:
                        log.error(
                            "cannot refresh keys from the store",
                            extra={"source": name, "reason": error.message},
                        )
                    failing.add(name)
                except Exception:
                    log.exception("key refresh failed", extra={"source": name})

    def refresh_source(self, name: str, source: EncryptedKeySource, *, full: bool = True) -> bool:
        """Apply one store's changes made elsewhere; ``False`` when skipped (sealed, or the
        store reports no change)."""
        vault = self.signer.vault
        master = None if vault is None else vault.master_key
        if vault is None or master is None or not vault.signing_allowed:
            return False
        change_token: Callable[[], object] | None = getattr(source.store, "change_token", None)
        token = change_token() if change_token is not None else None
        if token is not None and not full and self._tokens.get(name) == token:
            return False
        with self._lock:
            epoch = self._epoch
            self._touched = set()
        try:
            records = {r.pubkey_hex: r for r in source.store.list_keys(ACTIVE)}
            current = self.signer.registry.source_keys(name)
            new = [record for pubkey, record in records.items() if pubkey not in current]
            gone = current - records.keys()
            opened = None
            if new:
                try:
                    opened = source.open_records(master.material, new)
                except ValueError:  # zeroized meanwhile: sealed
                    return False
            with self._lock:
                if self._epoch != epoch or vault.master_key is not master:
                    return False
                touched = self._touched or set()
                add = [k for k in (opened.keys if opened else []) if k.pubkey_hex not in touched]
                remove = [pubkey for pubkey in gone if pubkey not in touched]
                if add or remove:
                    self.signer.registry.update_source(name, add=add, remove=remove)
                    self._count(name)
                    log.info(
                        "keys refreshed from the store",
                        extra={"source": name, "added": len(add), "removed": len(remove)},
                    )
                if opened is not None:
                    for error in opened.errors:
                        _log_load_error(name, error)
                if token is not None:
                    self._tokens[name] = token
                return True
        finally:
            with self._lock:
                self._touched = None


def _log_load_error(source: str, error: KeyLoadError) -> None:
    log.error(
        "key failed to load", extra={"source": source, "path": error.path, "reason": error.reason}
    )


def _declared_pubkey(keystore: Mapping[str, Any]) -> bytes | None:
    """The keystore's optional ``pubkey`` field as bytes; ``b""`` when present but malformed."""
    value = keystore.get("pubkey")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return b""
    text = value[2:] if value.lower().startswith("0x") else value
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return b""
    return raw if len(raw) == 48 else b""
