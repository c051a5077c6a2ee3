"""The vault: master-key life cycle, ceremonies and the chamber's state.

One :class:`Vault` per process. Ceremonies are serialised by one lock and each commits at most one
compare-and-set of the stored record (``chamber.vault.records``), after every check has passed, so
a refused request leaves the store byte-identical and a crash leaves the old or the new record.

What lives only in this process: the master key (unsealed), the opened KMS layer (outer key and
the decrypted operator bundle), partial unseal shares (with their timeout), the setup token, and
the brute-force counters. Everything a ceremony needs between two requests is in the record.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chamber.crypto import envelope, kdf, shamir
from chamber.errors import (
    BadRequest,
    ChamberError,
    Conflict,
    Unauthorized,
    Unavailable,
)
from chamber.vault import faults, states
from chamber.vault.interfaces import CredentialType, StateBackend
from chamber.vault.kms import KmsSet
from chamber.vault.limiter import AttemptLimiter
from chamber.vault.master import MasterKey, zeroize
from chamber.vault.records import (
    NAME_PATTERN,
    RECORD_KEY,
    BundleEntry,
    CredentialRecord,
    OperatorLayer,
    OperatorRecord,
    RotationRecord,
    VaultRecord,
    bundle_from_bytes,
    bundle_to_bytes,
)
from chamber.vault.states import State
from chamber.vault.tokens import (
    new_registration_token,
    new_setup_token,
    token_digest,
    token_matches,
)

log = logging.getLogger("chamber.vault")
audit = logging.getLogger("chamber.audit")

MASTER_PURPOSE = "master-key"
OUTER_PURPOSE = "outer-key"
BUNDLE_PURPOSE = "operator-bundle"
DEFAULT_CREDENTIAL_ID = "password-1"
MAX_OPERATORS = 32
SETUP_SUBJECT = "setup-token"
#: The stored value meaning "uninitialized" after an init-reset.
TOMBSTONE = b"uninitialized"


class KeyCheckFailed(ChamberError):
    """Shares combined into a key that fails the stored key check value."""

    status = 500
    title = "key check failed"


@dataclass(slots=True)
class _Opened:
    """What opening the KMS layer yields: the master key (kms_only) or the outer key and the
    decrypted operator bundle (unseal mode)."""

    master: MasterKey | None = None
    outer: bytearray | None = field(default=None, repr=False)
    bundle: dict[str, BundleEntry] | None = field(default=None, repr=False)

    def forget(self) -> None:
        if self.master is not None:
            self.master.zeroize()
        zeroize(self.outer)


DEFAULT_ARGON2 = kdf.Argon2Params()


@dataclass(frozen=True, slots=True)
class _Registration:
    layer: OperatorLayer
    bundle: dict[str, BundleEntry] = field(repr=False)
    registered: int
    remaining: int


@dataclass(frozen=True, slots=True)
class VaultOptions:
    argon2: kdf.Argon2Params = DEFAULT_ARGON2
    unseal_timeout_seconds: float = 30 * 60
    kms_retry_max_seconds: float = 60.0
    refresh_interval_seconds: float = 0.0


class VaultHooks:
    """What the vault asks of the rest of the signer (keys, events, metrics). Overridden by the
    signer; the defaults do nothing, which is what the tests of the vault alone need."""

    def keys_unsealed(self, master: MasterKey) -> int:
        """Load the key sources that need the master key; return the number of keys loaded."""
        return 0

    def keys_sealed(self) -> None:
        """Drop every key that came from a source needing the master key."""

    def key_count(self) -> int | None:
        """Keys currently loaded (all sources), or None when the vault alone cannot tell."""
        return None

    def state_changed(self, old: State, new: State) -> None: ...

    def ceremony_step(self, step: str, details: Mapping[str, Any]) -> None: ...

    def credential_failure(self, operator: str, ceremony: str) -> None: ...


class Vault:
    def __init__(
        self,
        store: StateBackend,
        kms: KmsSet,
        credential_types: Mapping[str, type[CredentialType]],
        *,
        options: VaultOptions = VaultOptions(),
        limiter: AttemptLimiter | None = None,
        hooks: VaultHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.kms = kms
        self.credential_types = dict(credential_types)
        self.options = options
        self.limiter = limiter or AttemptLimiter()
        self.hooks = hooks or VaultHooks()
        self._clock = clock
        self._lock = threading.RLock()
        self._state: State = states.SEALED
        self._record: VaultRecord | None = None
        self._version = 0
        self._master: MasterKey | None = None
        self._outer: bytearray | None = None
        self._bundle: dict[str, BundleEntry] | None = None
        self._partial: dict[str, shamir.Share] = {}
        self._partial_started: float | None = None
        self._setup_digest: str | None = None
        self._sealed_by_operator = False
        self._keys_loaded: int | None = None
        self._opening = threading.Event()
        self._stop = threading.Event()
        self._kms_error: str | None = None
        self._seal_seen = 0
        self._rotation_outer: bytearray | None = None
        self._rotation_bundle: dict[str, BundleEntry] | None = None
        #: The outer key opened just for one credential change while the bundle is closed.
        self._scratch_outer: bytearray | None = None

    # ------------------------------------------------------------------ reading state

    @property
    def state(self) -> State:
        return self._state

    @property
    def signing_allowed(self) -> bool:
        return self._state in states.SIGNING_STATES

    @property
    def shares_received(self) -> int:
        return len(self._partial)

    @property
    def master_key(self) -> MasterKey | None:
        return self._master

    def status(self) -> dict[str, Any]:
        """The public state. Plain attribute reads: never waits behind a ceremony or a KMS
        call."""
        self._expire_partial(blocking=False)
        state = self._state
        record = self._record
        seal: dict[str, Any] = {"status": state}
        if record is not None:
            seal["mode"] = record.mode
            seal["kms"] = {"threshold": record.kms.threshold, "keys": len(record.kms.shares)}
            ops = record.operators
            if ops is not None:
                seal["operators"] = {
                    "threshold": ops.threshold,
                    "names": [op.name for op in ops.operators],
                    "registered": ops.registered,
                }
                if state == states.AWAITING_REGISTRATION:
                    seal["registered"] = ops.registered
                    seal["remaining"] = len(ops.operators) - ops.registered
                if state == states.KMS_UNSEALED:
                    seal["shares_received"] = len(self._partial)
                    seal["shares_required"] = ops.threshold
        kms_error = self._kms_error
        if kms_error is not None and state in (states.SEALED, states.AWAITING_REGISTRATION):
            seal["kms_error"] = kms_error
        loaded = self.hooks.key_count()
        if loaded is None:
            loaded = self._keys_loaded
        keys = {"loaded": loaded} if state in states.SIGNING_STATES and loaded is not None else None
        return {"seal": seal, "keys": keys}

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Read the stored record and open what can be opened, in the background."""
        threading.Thread(target=self.boot, name="vault-boot", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def boot(self) -> None:
        """Load the record; uninitialized → log a setup token; otherwise open the KMS layer,
        retrying with backoff while too few KMS keys answer."""
        delay = 1.0
        while True:
            try:
                with self._lock:
                    self._load_record()
                    if self._record is not None:
                        self._seal_seen = self._record.seal_generation
                break
            except ChamberError as error:
                self._kms_error = error.message
                log.error(
                    "cannot read the vault's state store; retrying",
                    extra={"reason": error.message, "retry_in_seconds": delay},
                )
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.options.kms_retry_max_seconds)
        if self.options.refresh_interval_seconds > 0:
            threading.Thread(target=self._poll, name="vault-poll", daemon=True).start()
        with self._lock:
            if self._record is None:
                if self._state != states.UNINITIALIZED:
                    self._transition("record_removed")
                self._issue_setup_token()
                return
            if self._record.phase == "awaiting_registration":
                self._transition("registration_found")
                # init-reset needs a setup token; this start's token replaces the lost one.
                self._issue_setup_token()
        self._open_kms_layer_with_retry()

    def _load_record(self) -> None:
        found = self.store.get(RECORD_KEY)
        if found is None:
            self._record, self._version = None, 0
            return
        raw, version = found
        if raw == TOMBSTONE:
            self._record, self._version = None, version
            return
        try:
            self._record = VaultRecord.from_bytes(raw)
        except ValueError as error:
            raise Unavailable(
                f"state store: {error}; restore the state store from a backup"
            ) from None
        self._version = version

    def _issue_setup_token(self) -> None:
        token = new_setup_token()
        self._setup_digest = token_digest(token)
        # The one place a secret is logged, on purpose: the runbook reads it from here.
        log.warning(
            "Setup token generated (save securely, one-time use)",
            extra={"setup_token": token},
        )

    def _open_kms_layer_with_retry(self) -> None:
        """Open the KMS layer; while too few keys answer, retry with growing delays.

        KMS calls run outside the lock (they can take seconds); the result is applied only if
        the record did not change meanwhile (another replica, init-reset)."""
        delay = 1.0
        while not self._stop.is_set():
            with self._lock:
                record = self._record
                if record is None or self._sealed_by_operator:
                    return
                if not self._needs_opening():
                    return
            try:
                opened = self._unwrap_kms_layer(record)
            except ChamberError as error:
                self._kms_error = error.message
                log.error(
                    "KMS unseal failed; retrying",
                    extra={"reason": error.message, "retry_in_seconds": delay},
                )
            else:
                with self._lock:
                    if (
                        self._record is record
                        and not self._sealed_by_operator
                        and self._needs_opening()
                    ):
                        self._kms_error = None
                        self._apply_opened(record, opened)
                        return
                    opened.forget()
                    continue
            self._stop.wait(delay)
            delay = min(delay * 2, self.options.kms_retry_max_seconds)
            with self._lock:
                try:
                    self._load_record()
                except ChamberError as error:
                    self._kms_error = error.message
                else:
                    self._follow_seal()

    def _needs_opening(self) -> bool:
        """Whether the KMS layer still has to be opened (another thread may have done it)."""
        if self._state == states.SEALED:
            return True
        return self._state == states.AWAITING_REGISTRATION and self._bundle is None

    def _unwrap_kms_layer(self, record: VaultRecord) -> _Opened:
        if record.mode == "kms_only":
            secret, report = self.kms.unwrap(record.kms, record.chamber_id, MASTER_PURPOSE)
            self._report_kms_failures(report.failures)
            master = MasterKey(secret)
            if not envelope.verify_key_check(master.material, record.kcv):
                master.zeroize()
                raise KeyCheckFailed(
                    "the master key rebuilt from the KMS shares fails the key check; "
                    "the stored record or a KMS key is wrong"
                )
            return _Opened(master=master)
        secret, report = self.kms.unwrap(record.kms, record.chamber_id, OUTER_PURPOSE)
        self._report_kms_failures(report.failures)
        outer = bytearray(secret)
        try:
            assert record.operators is not None
            bundle = self._decrypt_bundle(outer, record.operators, record.chamber_id)
        except ChamberError:
            zeroize(outer)
            raise
        return _Opened(outer=outer, bundle=bundle)

    def _apply_opened(self, record: VaultRecord, opened: _Opened) -> None:
        if opened.master is not None:
            self._unsealed_with(opened.master, "kms_open_kms_only")
            return
        self._outer, self._bundle = opened.outer, opened.bundle
        if record.phase == "awaiting_registration":
            log.info("KMS layer open: operators can register")
            return
        self._partial.clear()
        self._partial_started = None
        self._transition("kms_open_unseal")

    def _report_kms_failures(self, failures: Mapping[str, str]) -> None:
        for key_id, reason in failures.items():
            log.warning(
                "a KMS key could not decrypt its share; unsealed with the others",
                extra={"kms_key_id": key_id, "reason": reason},
            )

    def _decrypt_bundle(
        self, outer: bytearray, layer: OperatorLayer, chamber_id: str
    ) -> dict[str, BundleEntry]:
        key = envelope.derive_key(outer, BUNDLE_PURPOSE)
        try:
            raw = envelope.decrypt(key, layer.bundle, chamber_id.encode())
        except envelope.EnvelopeError:
            raise KeyCheckFailed(
                "the operator bundle does not open with the key rebuilt from the KMS shares"
            ) from None
        return bundle_from_bytes(raw)

    # ------------------------------------------------------------------ transitions

    def _set_state(self, new: State) -> None:
        old = self._state
        self._state = new
        if old != new:
            audit.info("seal state changed", extra={"from_state": old, "to_state": new})
            self.hooks.state_changed(old, new)

    def _transition(self, event: str) -> None:
        new = states.next_state(self._state, event)
        if new is None:
            raise Conflict(f"cannot {event.replace('_', ' ')} in state {self._state}")
        self._set_state(new)

    def _unsealed_with(self, master: MasterKey, event: str) -> None:
        # Keys first, state second: signing opens only once the encrypted keys are loaded.
        self._master = master
        try:
            self._keys_loaded = self.hooks.keys_unsealed(master)
        except Exception:
            log.exception("loading the encrypted key stores failed")
            self._keys_loaded = 0
        self._transition(event)
        if self._record is not None and self._record.rotation is not None:
            self._transition("rotation_started")  # a rotation was pending at restart

    def _follow_stored(self) -> None:
        """The stored record was changed by another replica: drop what is stale and move to
        the state the record implies (opening the KMS layer again where needed)."""
        record = self._record
        state = self._state
        if self._follow_seal():
            return
        if state in (states.UNSEALED, states.AWAITING_ROTATION):
            master = self._master
            if (
                record is None
                or master is None
                or not envelope.verify_key_check(master.material, record.kcv)
            ):
                self._seal_here("chamber sealed: the stored master-key configuration changed")
                return
            if record.rotation is None:
                self._forget_rotation()
                if state == states.AWAITING_ROTATION:
                    self._transition("rotation_complete")
            else:
                self._forget_rotation()  # reopened from the new record when needed
                if state == states.UNSEALED:
                    self._transition("rotation_started")
            return
        if record is None:
            if state in (states.AWAITING_REGISTRATION, states.SEALED):
                self._forget_secrets()
                self._transition("record_removed")
                self._issue_setup_token()
            return
        if state == states.UNINITIALIZED:
            self._setup_digest = None
            if record.phase == "awaiting_registration":
                self._transition("registration_started")
            else:
                self._transition("record_found")
            self._start_opening()
        elif state == states.AWAITING_REGISTRATION:
            self._forget_secrets()
            if record.phase == "ready":
                self._setup_digest = None
                self._transition("registration_complete")
            self._start_opening()
        elif state == states.KMS_UNSEALED:
            self._forget_secrets()
            self._transition("record_changed")
            self._start_opening()
        elif state == states.SEALED:
            self._forget_secrets()
            self._start_opening()

    def _follow_seal(self) -> bool:
        """An operator sealed another replica (the record's seal generation grew): seal here
        too, including a replica still opening its KMS layer. True when it did."""
        record = self._record
        if record is None or record.seal_generation <= self._seal_seen:
            return False
        self._seal_seen = record.seal_generation
        if self._state in (states.KMS_UNSEALED, states.UNSEALED, states.AWAITING_ROTATION):
            self._seal_here("chamber sealed: another replica was sealed by an operator")
            self.hooks.ceremony_step("seal", {"followed": True})
            return True
        if self._state == states.SEALED:
            self._sealed_by_operator = True  # stop opening; sticky until a restart
            self._forget_secrets()
            audit.warning("chamber stays sealed: another replica was sealed by an operator")
            return True
        return False

    def _sync(self) -> None:
        """Before a ceremony changes the record: catch up with another replica's change
        (one read), so a stale copy does not cost the operator a 409 and a retry."""
        try:
            found = self.store.get(RECORD_KEY)
        except ChamberError:
            return  # the compare-and-set will tell
        if (0 if found is None else found[1]) != self._version:
            try:
                self._load_record()
            except ChamberError:
                return  # a corrupt record: the ceremony's own checks refuse
            self._follow_stored()

    def _start_opening(self) -> None:
        threading.Thread(
            target=self._open_kms_layer_with_retry, name="vault-open", daemon=True
        ).start()

    def _commit(self, record: VaultRecord | None, step: str = "change") -> None:
        """One compare-and-set of the record. ``None`` (init-reset) writes a tombstone instead of
        deleting: versions keep growing, so a replica still holding the old record's version can
        never overwrite a newer initialisation."""
        try:
            value = TOMBSTONE if record is None else record.to_bytes()
            faults.point(f"{step}:before_commit")
            self._version = self.store.put(RECORD_KEY, value, self._version)
            faults.point(f"{step}:after_commit")
            if record is not None:
                self._seal_seen = record.seal_generation
        except Conflict:
            # Another replica changed the record: follow it and tell the caller.
            self._load_record()
            self._follow_stored()
            raise Conflict(
                "the chamber's stored state was changed by another replica; check "
                "`operator status` and retry"
            ) from None
        self._record = record

    # ------------------------------------------------------------------ ceremonies

    def _check_setup_token(self, token: str | None) -> None:
        self.limiter.check(SETUP_SUBJECT, "setup token")
        if not token_matches(token, self._setup_digest):
            self.limiter.failure(SETUP_SUBJECT)
            self.hooks.credential_failure(SETUP_SUBJECT, "setup")
            audit.warning("setup token rejected")
            raise Unauthorized(
                "invalid setup token: use the token this signer logged at start-up "
                "(a new one is logged at every start while uninitialized)"
            )
        self.limiter.success(SETUP_SUBJECT)

    def init(
        self,
        setup_token: str | None,
        kms_key_ids: Sequence[str],
        kms_threshold: int,
        operators: Sequence[str] | None = None,
        unseal_threshold: int | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._sync()
            if self._state != states.UNINITIALIZED:
                raise Conflict(
                    f"already initialized (state {self._state}); use operator rotate kms, "
                    "rotate unseal or rotate mode instead of operator init"
                )
            self._check_setup_token(setup_token)
            self.kms.validate(kms_key_ids, kms_threshold)
            names = _validate_operators(operators, unseal_threshold)
            chamber_id = secrets.token_hex(16)
            master = MasterKey.generate()
            now = int(time.time())
            kcv = envelope.key_check_value(master.material)
            if not names:
                try:  # the new master key is wiped unless it ends up in use
                    layer = self.kms.wrap(
                        master.material, kms_key_ids, kms_threshold, chamber_id, MASTER_PURPOSE
                    )
                    record = VaultRecord(
                        chamber_id=chamber_id,
                        mode="kms_only",
                        phase="ready",
                        kcv=kcv,
                        kms=layer,
                        operators=None,
                        created_at=now,
                        updated_at=now,
                    )
                    self._commit(step="init", record=record)
                except Exception:
                    master.zeroize()
                    raise
                self._setup_digest = None
                audit.info(
                    "chamber initialized", extra={"mode": "kms_only", "kms_keys": len(kms_key_ids)}
                )
                self.hooks.ceremony_step("init", {"mode": "kms_only"})
                self._unsealed_with(master, "init_kms_only")
                return {"status": self._state, "validators_loaded": self._keys_loaded or 0}

            assert unseal_threshold is not None
            outer = bytearray(os.urandom(32))
            try:
                layer = self.kms.wrap(outer, kms_key_ids, kms_threshold, chamber_id, OUTER_PURPOSE)
            except Exception:
                master.zeroize()
                zeroize(outer)
                raise
            tokens, operator_layer, bundle = _new_operator_layer(
                bytes(master.material), names, unseal_threshold, outer, chamber_id
            )
            master.zeroize()
            self._outer = outer
            record = VaultRecord(
                chamber_id=chamber_id,
                mode="unseal",
                phase="awaiting_registration",
                kcv=kcv,
                kms=layer,
                operators=operator_layer,
                created_at=now,
                updated_at=now,
            )
            try:
                self._commit(step="init", record=record)
            except Exception:
                zeroize(self._outer)
                self._outer = None
                raise
            self._bundle = bundle
            audit.info(
                "chamber initialized",
                extra={"mode": "unseal", "kms_keys": len(kms_key_ids), "operators": names},
            )
            self.hooks.ceremony_step("init", {"mode": "unseal", "operators": list(names)})
            self._transition("init_unseal")
            return {"status": self._state, "operator_tokens": tokens}

    def init_reset(self, setup_token: str | None) -> dict[str, Any]:
        with self._lock:
            self._sync()
            if self._state != states.AWAITING_REGISTRATION:
                raise Conflict(
                    f"init-reset is only possible while awaiting_registration (state {self._state})"
                )
            self._check_setup_token(setup_token)
            self._commit(step="init_reset", record=None)
            self._forget_secrets()
            audit.info("initialization reset")
            self.hooks.ceremony_step("init_reset", {})
            self._transition("init_reset")
            self._issue_setup_token()
            return {"status": self._state}

    def register(
        self,
        operator: str,
        registration_token: str | None,
        material: bytes,
        *,
        credential_id: str = DEFAULT_CREDENTIAL_ID,
        credential_type: str = "passphrase",
        credential_public: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._sync()
            if self._state == states.AWAITING_ROTATION:
                return self._register_rotation(
                    operator,
                    registration_token,
                    material,
                    credential_id,
                    credential_type,
                    credential_public,
                )
            if self._state != states.AWAITING_REGISTRATION:
                raise Conflict(f"no registration is in progress (state {self._state})")
            record = self._record
            if record is None or record.operators is None:
                raise Conflict("no registration is in progress")
            if self._bundle is None or self._outer is None:
                # Not open yet (start-up, or just followed another replica's change): open
                # it now rather than send the operator away.
                opened = self._unwrap_kms_layer(record)
                if opened.outer is None or opened.bundle is None:
                    opened.forget()
                    raise Conflict("no registration is in progress")
                self._outer, self._bundle = opened.outer, opened.bundle
            step = self._registration_step(
                record.chamber_id,
                record.operators,
                self._bundle,
                self._outer,
                operator,
                registration_token,
                material,
                credential_id,
                credential_type,
                credential_public,
            )
            new_record = record.evolve(
                operators=step.layer,
                phase="ready" if step.remaining == 0 else "awaiting_registration",
                updated_at=int(time.time()),
            )
            self._commit(step="register", record=new_record)
            self._bundle = step.bundle
            answer = self._registered(operator, credential_id, step)
            if step.remaining == 0:
                self._setup_digest = None
                self._forget_secrets()
                self._transition("registration_complete")
                answer["status"] = self._state
                # Open the KMS layer again as a restart would: the chamber moves on to
                # kms_unsealed by itself.
                self._start_opening()
            return answer

    def _register_rotation(
        self,
        operator: str,
        registration_token: str | None,
        material: bytes,
        credential_id: str,
        credential_type: str,
        credential_public: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        record = self._record
        assert record is not None and record.rotation is not None
        rotation = record.rotation
        if self._rotation_bundle is None or self._rotation_outer is None:
            opened_outer, _ = self.kms.unwrap(rotation.kms, record.chamber_id, OUTER_PURPOSE)
            outer = bytearray(opened_outer)
            try:
                bundle = self._decrypt_bundle(outer, rotation.operators, record.chamber_id)
            except ChamberError:
                zeroize(outer)
                raise
            self._rotation_outer, self._rotation_bundle = outer, bundle
        step = self._registration_step(
            record.chamber_id,
            rotation.operators,
            self._rotation_bundle,
            self._rotation_outer,
            operator,
            registration_token,
            material,
            credential_id,
            credential_type,
            credential_public,
        )
        now = int(time.time())
        if step.remaining:
            new_record = record.evolve(
                rotation=RotationRecord(
                    kms=rotation.kms, operators=step.layer, started_at=rotation.started_at
                ),
                updated_at=now,
            )
        else:
            # The last registration: the new operator set replaces the old one in the same
            # compare-and-set; the rotation's outer key becomes the KMS layer's secret.
            new_record = record.evolve(
                mode="unseal",
                kms=rotation.kms,
                operators=step.layer,
                rotation=None,
                updated_at=now,
            )
        self._commit(step="register_rotation", record=new_record)
        self._rotation_bundle = step.bundle
        answer = self._registered(operator, credential_id, step)
        if step.remaining == 0:
            self._forget_rotation()
            kind = "mode" if record.mode == "kms_only" else "unseal"
            self._transition("rotation_complete")
            audit.info("operator rotation complete", extra={"mode": "unseal", "kind": kind})
            self.hooks.ceremony_step("rotation_complete", {"kind": kind})
            answer["status"] = self._state
        return answer

    def _registration_step(
        self,
        chamber_id: str,
        layer: OperatorLayer,
        bundle: dict[str, BundleEntry],
        outer: bytearray,
        operator: str,
        registration_token: str | None,
        material: bytes,
        credential_id: str,
        credential_type: str,
        credential_public: Mapping[str, str] | None = None,
    ) -> _Registration:
        """Check a registration against ``layer`` and build the layer and bundle after it."""
        op = layer.get(operator)
        if op is None:
            raise BadRequest(f"operator: unknown operator {operator!r}", field="operator")
        self.limiter.check(operator, "registration")
        if op.registration_token_digest is None:
            raise Conflict(
                f"operator {operator!r} has already registered; registration tokens are "
                "single-use (add credentials with operator credentials add)"
            )
        if not token_matches(registration_token, op.registration_token_digest):
            self._failed(operator, "register")
            raise Unauthorized(f"invalid registration token for operator {operator!r}")
        cred_type = self._credential_type(credential_type)
        _check_credential_id(credential_id)
        cred_type.validate(material)
        entry = bundle[operator]
        assert entry.pending_share is not None
        credential, wrapped = self._wrap_share(
            chamber_id,
            op,
            credential_id,
            credential_type,
            material,
            entry.pending_share,
            credential_public,
        )
        new_bundle = dict(bundle)
        new_bundle[operator] = BundleEntry(pending_share=None, wrapped={credential_id: wrapped})
        updated_op = OperatorRecord(
            name=op.name, index=op.index, credentials=(credential,), registration_token_digest=None
        )
        operators = layer.with_operator(updated_op)
        new_layer = OperatorLayer(
            threshold=layer.threshold,
            operators=operators,
            bundle=_encrypt_bundle(outer, chamber_id, new_bundle),
        )
        remaining = sum(1 for o in operators if not o.registered)
        self.limiter.success(operator)
        return _Registration(new_layer, new_bundle, len(operators) - remaining, remaining)

    def _registered(self, operator: str, credential_id: str, step: _Registration) -> dict[str, Any]:
        audit.info(
            "operator registered",
            extra={
                "operator": operator,
                "credential_id": credential_id,
                "registered": step.registered,
                "remaining": step.remaining,
            },
        )
        self.hooks.ceremony_step(
            "register",
            {"operator": operator, "registered": step.registered, "remaining": step.remaining},
        )
        return {"registered": step.registered, "remaining": step.remaining}

    # ------------------------------------------------------------------ rotations

    def rotate_kms(self, kms_key_ids: Sequence[str], kms_threshold: int) -> dict[str, Any]:
        """Re-split and re-wrap under a new KMS key set; the master key stays the same. Every
        new key proves an encrypt + decrypt round trip first; any failure changes nothing."""
        with self._lock:
            self._sync()
            record, master = self._require_unsealed("rotate kms")
            if record.rotation is not None:
                raise Conflict(
                    "an operator rotation is in progress; finish or cancel it "
                    "(operator rotate unseal-cancel) before rotating KMS keys"
                )
            self.kms.validate(kms_key_ids, kms_threshold)
            if record.mode == "kms_only":
                layer = self.kms.wrap(
                    master.material, kms_key_ids, kms_threshold, record.chamber_id, MASTER_PURPOSE
                )
                new_record = record.evolve(kms=layer, updated_at=int(time.time()))
            else:
                assert record.operators is not None
                # The operator bundle moves to a new outer key wrapped by the new KMS keys.
                old_outer, _ = self.kms.unwrap(record.kms, record.chamber_id, OUTER_PURPOSE)
                old = bytearray(old_outer)
                try:
                    bundle = self._decrypt_bundle(old, record.operators, record.chamber_id)
                finally:
                    zeroize(old)
                outer = bytearray(os.urandom(32))
                try:
                    layer = self.kms.wrap(
                        outer, kms_key_ids, kms_threshold, record.chamber_id, OUTER_PURPOSE
                    )
                    operators = OperatorLayer(
                        threshold=record.operators.threshold,
                        operators=record.operators.operators,
                        bundle=_encrypt_bundle(outer, record.chamber_id, bundle),
                    )
                finally:
                    zeroize(outer)
                new_record = record.evolve(
                    kms=layer, operators=operators, updated_at=int(time.time())
                )
            self._commit(step="rotate_kms", record=new_record)
            audit.warning(
                "KMS keys rotated",
                extra={"kms_keys": list(kms_key_ids), "kms_threshold": kms_threshold},
            )
            self.hooks.ceremony_step("rotation_complete", {"kind": "kms"})
            return {"status": "ok", "shares": len(kms_key_ids), "threshold": kms_threshold}

    def rotate_unseal(self, operators: Sequence[str], unseal_threshold: int) -> dict[str, Any]:
        """Start replacing the operator set (signing continues in awaiting_rotation)."""
        with self._lock:
            self._sync()
            record, _ = self._require_unsealed("rotate unseal")
            if record.mode != "unseal":
                raise Conflict(
                    "the chamber is in kms_only mode: use operator rotate mode --mode unseal"
                )
            return self._start_rotation(record, operators, unseal_threshold, "unseal")

    def rotate_mode(
        self,
        mode: str,
        operators: Sequence[str] | None = None,
        unseal_threshold: int | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._sync()
            record, master = self._require_unsealed("rotate mode")
            if mode not in ("kms_only", "unseal"):
                raise BadRequest("mode: must be kms_only or unseal", field="mode")
            if mode == record.mode:
                raise Conflict(f"the chamber is already in {mode} mode")
            if mode == "unseal":
                if not operators or unseal_threshold is None:
                    raise BadRequest(
                        "operators: switching to unseal mode needs operators and an "
                        "unseal_threshold",
                        field="operators",
                    )
                return self._start_rotation(record, operators, unseal_threshold, "mode")
            if operators or unseal_threshold is not None:
                raise BadRequest("operators: kms_only mode has no operators", field="operators")
            if record.rotation is not None:
                raise Conflict("an operator rotation is in progress; cancel it first")
            layer = self.kms.wrap(
                master.material,
                record.kms.key_ids,
                record.kms.threshold,
                record.chamber_id,
                MASTER_PURPOSE,
            )
            self._commit(
                step="rotate_mode",
                record=record.evolve(
                    mode="kms_only", kms=layer, operators=None, updated_at=int(time.time())
                ),
            )
            audit.warning("mode switched", extra={"mode": "kms_only"})
            self.hooks.ceremony_step("rotation_complete", {"kind": "mode"})
            return {"status": self._state, "mode": "kms_only"}

    def rotate_unseal_cancel(self) -> dict[str, Any]:
        with self._lock:
            self._sync()
            record = self._record
            if self._state != states.AWAITING_ROTATION or record is None or record.rotation is None:
                raise Conflict(f"no operator rotation is in progress (state {self._state})")
            self._commit(
                step="rotate_unseal_cancel",
                record=record.evolve(rotation=None, updated_at=int(time.time())),
            )
            self._forget_rotation()
            self._transition("rotation_cancelled")
            audit.warning("operator rotation cancelled")
            self.hooks.ceremony_step("rotation_cancelled", {})
            return {"status": self._state}

    def _require_unsealed(self, what: str) -> tuple[VaultRecord, MasterKey]:
        record, master = self._record, self._master
        if self._state not in states.SIGNING_STATES or record is None or master is None:
            raise Conflict(f"{what} needs an unsealed chamber (state {self._state})")
        return record, master

    def _start_rotation(
        self, record: VaultRecord, operators: Sequence[str], threshold: int, kind: str
    ) -> dict[str, Any]:
        if record.rotation is not None:
            raise Conflict(
                "an operator rotation is already in progress; cancel it with "
                "operator rotate unseal-cancel first"
            )
        master = self._master
        assert master is not None
        names = _validate_operators(operators, threshold)
        outer = bytearray(os.urandom(32))
        try:
            kms_layer = self.kms.wrap(
                outer,
                record.kms.key_ids,
                record.kms.threshold,
                record.chamber_id,
                OUTER_PURPOSE,
            )
            tokens, layer, bundle = _new_operator_layer(
                bytes(master.material), names, threshold, outer, record.chamber_id
            )
            self._commit(
                step="rotate_mode" if kind == "mode" else "rotate_unseal",
                record=record.evolve(
                    rotation=RotationRecord(
                        kms=kms_layer, operators=layer, started_at=int(time.time())
                    ),
                    updated_at=int(time.time()),
                ),
            )
        except Exception:
            zeroize(outer)
            raise
        self._rotation_outer, self._rotation_bundle = outer, bundle
        self._transition("rotation_started")
        audit.warning("operator rotation started", extra={"kind": kind, "operators": names})
        self.hooks.ceremony_step("rotation_started", {"kind": kind, "operators": list(names)})
        return {"status": self._state, "operator_tokens": tokens}

    def _forget_rotation(self) -> None:
        zeroize(self._rotation_outer)
        self._rotation_outer = None
        self._rotation_bundle = None

    def unseal(self, operator: str, material: bytes) -> dict[str, Any]:
        expired = self._expire_partial()
        with self._lock:
            if self._state == states.SEALED:
                raise Unavailable(
                    "the KMS layer is not open yet (state sealed); wait for it and retry "
                    "(operator status shows KMS errors; after operator seal, restart the signer)",
                    retry_after=2,
                )
            if self._state != states.KMS_UNSEALED:
                raise Conflict(f"cannot unseal in state {self._state}")
            record = self._record
            assert record is not None and record.operators is not None
            assert self._bundle is not None
            op = record.operators.get(operator)
            if op is None or not op.registered:
                raise BadRequest(f"operator: unknown operator {operator!r}", field="operator")
            self.limiter.check(operator, "unseal")
            share = self._unwrap_share(record.chamber_id, op, material)
            if share is None:
                self._failed(operator, "unseal")
                raise Unauthorized(
                    f"wrong passphrase for operator {operator!r}: no registered credential "
                    "of this operator matches (check for a trailing newline or another encoding)"
                )
            self.limiter.success(operator)
            duplicate = operator in self._partial
            if not duplicate:
                if not self._partial:
                    self._partial_started = self._clock()
                self._partial[operator] = share
            received = len(self._partial)
            threshold = record.operators.threshold
            audit.info(
                "unseal share accepted",
                extra={
                    "operator": operator,
                    "shares_received": received,
                    "shares_required": threshold,
                    "duplicate": duplicate,
                },
            )
            self.hooks.ceremony_step(
                "unseal_share",
                {"operator": operator, "shares_received": received, "shares_required": threshold},
            )
            if received < threshold:
                answer: dict[str, Any] = {"shares_received": received, "shares_required": threshold}
                if duplicate:
                    answer["message"] = f"operator {operator!r} already submitted a share"
                elif expired:
                    answer["message"] = (
                        f"unseal timeout expired: {expired} earlier share(s) were cleared; "
                        "this share starts a new round"
                    )
                return answer
            shares = list(self._partial.values())
            self._partial.clear()
            self._partial_started = None
            master = MasterKey(shamir.combine(shares))
            if not envelope.verify_key_check(master.material, record.kcv):
                master.zeroize()
                audit.error("reconstructed master key failed the key check")
                raise KeyCheckFailed(
                    "the operator shares rebuilt a key that fails the key check; the partial "
                    "unseal was reset, submit again"
                )
            zeroize(self._outer)
            self._outer, self._bundle = None, None
            self._unsealed_with(master, "operator_threshold")
            self.hooks.ceremony_step("unsealed", {})
            return {"status": self._state, "validators_loaded": self._keys_loaded or 0}

    # ------------------------------------------------------------------ credentials

    def list_credentials(self, operator: str) -> dict[str, Any]:
        """Credential ids are public: listing needs no proof."""
        op = self._registered_operator(operator)
        return {
            "operator": op.name,
            "credential_ids": [c.credential_id for c in op.credentials],
            "credentials": [
                {
                    "credential_id": c.credential_id,
                    "type": c.type,
                    "public": dict(c.public),
                    # A type whose plugin is not installed here is reported, never a crash:
                    # unsealing with it needs the plugin only on the operator's machine.
                    "available": c.type in self.credential_types,
                }
                for c in op.credentials
            ],
        }

    def add_credential(
        self,
        operator: str,
        existing_credential_id: str,
        existing_material: bytes,
        new_credential_id: str,
        new_material: bytes,
        *,
        credential_type: str = "passphrase",
        credential_public: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Wrap the operator's share under one more credential, proven by an existing one.
        New credentials take the current ``vault.argon2`` parameters; old ones keep theirs."""
        with self._lock:
            self._sync()
            op = self._registered_operator(operator)
            _check_credential_id(new_credential_id, "new_credential_id")
            if op.credential(new_credential_id) is not None:
                raise Conflict(
                    f"operator {operator!r} already has a credential {new_credential_id!r}"
                )
            try:
                self._credential_type(credential_type).validate(new_material)
            except BadRequest as error:
                # The request's field is the NEW credential's material.
                field = "new_passphrase" if credential_type == "passphrase" else "new_secret"
                message = error.message
                if error.field and message.startswith(error.field):
                    message = field + message[len(error.field) :]
                raise BadRequest(message, field=field) from None
            record, bundle, share = self._prove(op, existing_credential_id, existing_material)
            credential, wrapped = self._wrap_share(
                record.chamber_id,
                op,
                new_credential_id,
                credential_type,
                new_material,
                share.to_bytes(),
                credential_public,
            )
            entry = bundle[op.name]
            new_bundle = dict(bundle)
            new_bundle[op.name] = BundleEntry(
                pending_share=None, wrapped={**entry.wrapped, new_credential_id: wrapped}
            )
            updated = OperatorRecord(
                name=op.name,
                index=op.index,
                credentials=(*op.credentials, credential),
                registration_token_digest=op.registration_token_digest,
            )
            self._commit_operators(record, updated, new_bundle)
            audit.info(
                "operator credential added",
                extra={
                    "operator": operator,
                    "credential_id": new_credential_id,
                    "credential_type": credential_type,
                },
            )
            self.hooks.ceremony_step(
                "credential_added", {"operator": operator, "credential_id": new_credential_id}
            )
            return {"operator": op.name, "credential_id": new_credential_id}

    def remove_credential(
        self,
        operator: str,
        existing_credential_id: str,
        existing_material: bytes,
        remove_credential_id: str,
    ) -> dict[str, Any]:
        """Remove one credential, proven by an existing one; never the last (409)."""
        with self._lock:
            self._sync()
            op = self._registered_operator(operator)
            if op.credential(remove_credential_id) is None:
                raise BadRequest(
                    f"remove_credential_id: operator {operator!r} has no credential "
                    f"{remove_credential_id!r}",
                    field="remove_credential_id",
                )
            if len(op.credentials) == 1:
                raise Conflict(
                    f"{remove_credential_id!r} is the last credential of operator {operator!r}; "
                    "add another one before removing it"
                )
            record, bundle, _ = self._prove(op, existing_credential_id, existing_material)
            entry = bundle[op.name]
            new_bundle = dict(bundle)
            new_bundle[op.name] = BundleEntry(
                pending_share=None,
                wrapped={k: v for k, v in entry.wrapped.items() if k != remove_credential_id},
            )
            updated = OperatorRecord(
                name=op.name,
                index=op.index,
                credentials=tuple(
                    c for c in op.credentials if c.credential_id != remove_credential_id
                ),
                registration_token_digest=op.registration_token_digest,
            )
            self._commit_operators(record, updated, new_bundle)
            audit.info(
                "operator credential removed",
                extra={"operator": operator, "credential_id": remove_credential_id},
            )
            self.hooks.ceremony_step(
                "credential_removed", {"operator": operator, "credential_id": remove_credential_id}
            )
            return {"operator": op.name, "removed_credential_id": remove_credential_id}

    def _registered_operator(self, operator: str) -> OperatorRecord:
        record = self._record
        if record is None or record.operators is None:
            raise Conflict(f"operator credentials exist only in unseal mode (state {self._state})")
        op = record.operators.get(operator)
        if op is None or not op.registered:
            raise BadRequest(f"operator: unknown operator {operator!r}", field="operator")
        return op

    def _prove(
        self, op: OperatorRecord, credential_id: str, material: bytes
    ) -> tuple[VaultRecord, dict[str, BundleEntry], shamir.Share]:
        """Open the operator bundle (KMS, if it is not open) and the operator's share with
        ``credential_id``; failures count against the operator like a wrong unseal."""
        record = self._record
        assert record is not None
        if op.credential(credential_id) is None:
            raise BadRequest(
                f"existing_credential_id: operator {op.name!r} has no credential {credential_id!r}",
                field="existing_credential_id",
            )
        self.limiter.check(op.name, "credential")
        bundle = self._bundle
        outer = self._outer
        if bundle is None or outer is None:
            opened = self._unwrap_kms_layer(record)  # unseal mode: the outer key and bundle
            if opened.bundle is None or opened.outer is None:
                opened.forget()
                raise Conflict("operator credentials exist only in unseal mode")
            bundle, outer = opened.bundle, opened.outer
            self._scratch_outer = outer
        share = self._unwrap_share(
            record.chamber_id, op, material, bundle=bundle, only=credential_id
        )
        if share is None:
            if self._scratch_outer is not None:
                zeroize(self._scratch_outer)
                self._scratch_outer = None
            self._failed(op.name, "credential")
            raise Unauthorized(
                f"wrong passphrase for credential {credential_id!r} of operator {op.name!r}"
            )
        self.limiter.success(op.name)
        return record, bundle, share

    def _commit_operators(
        self, record: VaultRecord, updated: OperatorRecord, bundle: dict[str, BundleEntry]
    ) -> None:
        assert record.operators is not None
        outer = self._outer if self._outer is not None else self._scratch_outer
        assert outer is not None
        key = envelope.derive_key(outer, BUNDLE_PURPOSE)
        layer = OperatorLayer(
            threshold=record.operators.threshold,
            operators=record.operators.with_operator(updated),
            bundle=envelope.encrypt(key, bundle_to_bytes(bundle), record.chamber_id.encode()),
        )
        try:
            self._commit(
                step="credentials",
                record=record.evolve(operators=layer, updated_at=int(time.time())),
            )
        finally:
            if self._scratch_outer is not None and self._scratch_outer is not self._outer:
                zeroize(self._scratch_outer)
            self._scratch_outer = None
        if self._bundle is not None:
            self._bundle = bundle

    def unseal_reset(self) -> dict[str, Any]:
        with self._lock:
            if self._state != states.KMS_UNSEALED:
                raise Conflict(f"no unseal is in progress (state {self._state})")
            self._partial.clear()
            self._partial_started = None
            assert self._record is not None and self._record.operators is not None
            audit.info("partial unseal reset")
            self.hooks.ceremony_step("unseal_reset", {})
            return {"shares_received": 0, "shares_required": self._record.operators.threshold}

    def seal(self) -> dict[str, Any]:
        """Zeroize and stop signing here, then bump the record's seal generation so every
        replica polling it seals too. The local seal never waits for or depends on the store."""
        with self._lock:
            if self._state == states.SEALED:
                self._sealed_by_operator = True
                return {"status": self._state}
            if states.next_state(self._state, "seal") is None:
                raise Conflict(f"nothing to seal (state {self._state})")
            self._seal_here("chamber sealed by an operator")
            self.hooks.ceremony_step("seal", {})
            self._publish_seal()
            return {"status": self._state}

    def _seal_here(self, reason: str) -> None:
        self._sealed_by_operator = True
        self._transition("seal")
        master = self._master
        self._master = None
        self._forget_secrets()
        self._forget_rotation()
        self._keys_loaded = None
        try:
            self.hooks.keys_sealed()
        finally:
            if master is not None:
                master.zeroize()
        audit.warning(reason)

    def _publish_seal(self) -> None:
        for _ in range(3):
            record = self._record
            if record is None:
                return
            try:
                self._commit(
                    step="seal", record=record.evolve(seal_generation=record.seal_generation + 1)
                )
                return
            except Conflict:
                continue  # reloaded by _commit; try again on the current record
            except ChamberError as error:
                log.error(
                    "sealed here, but the seal could not be recorded for the other replicas",
                    extra={"reason": error.message},
                )
                return

    # ------------------------------------------------------------------ following the record

    def _poll(self) -> None:
        """Replicas sharing the state store follow each other's changes."""
        interval = self.options.refresh_interval_seconds
        failing = False
        while not self._stop.wait(interval):
            try:
                found = self.store.get(RECORD_KEY)
            except ChamberError as error:
                if not failing:
                    log.error(
                        "cannot poll the vault's state store", extra={"reason": error.message}
                    )
                failing = True
                continue
            failing = False
            version = 0 if found is None else found[1]
            if version <= self._version:
                continue
            with self._lock:
                # Versions only grow (init-reset writes a tombstone): a version this replica has
                # reached by its own write since the read is not a change to follow.
                if version <= self._version:
                    continue
                try:
                    self._load_record()
                except ChamberError as error:
                    log.error(
                        "cannot read the vault's state record", extra={"reason": error.message}
                    )
                    continue
                self._follow_stored()

    # ------------------------------------------------------------------ helpers

    def _forget_secrets(self) -> None:
        zeroize(self._outer)
        self._outer = None
        self._bundle = None
        self._partial.clear()
        self._partial_started = None

    def _expire_partial(self, *, blocking: bool = True) -> int:
        """Clear partial shares older than the unseal timeout; returns how many were cleared."""
        timeout = self.options.unseal_timeout_seconds
        if timeout <= 0 or self._partial_started is None:
            return 0
        if not self._lock.acquire(blocking=blocking):
            return 0
        count = 0
        try:
            started = self._partial_started
            if started is not None and self._clock() - started > timeout:
                count = len(self._partial)
                self._partial.clear()
                self._partial_started = None
                audit.warning(
                    "unseal timeout expired: partial shares cleared",
                    extra={"shares_cleared": count},
                )
                self.hooks.ceremony_step("unseal_timeout", {"shares_cleared": count})
        finally:
            self._lock.release()
        return count

    def _failed(self, operator: str, ceremony: str) -> None:
        failures = self.limiter.failure(operator)
        self.hooks.credential_failure(operator, ceremony)
        audit.warning(
            "credential rejected",
            extra={"operator": operator, "ceremony": ceremony, "consecutive_failures": failures},
        )

    def _credential_type(self, name: str) -> CredentialType:
        cls = self.credential_types.get(name)
        if cls is None:
            known = ", ".join(sorted(self.credential_types)) or "none"
            raise BadRequest(
                f"credential_type: {name!r} is not installed on this signer (installed: {known})",
                field="credential_type",
            )
        return cls()

    def _wrap_share(
        self,
        chamber_id: str,
        op: OperatorRecord,
        credential_id: str,
        credential_type: str,
        material: bytes,
        share: bytes,
        public: Mapping[str, str] | None = None,
    ) -> tuple[CredentialRecord, bytes]:
        salt = kdf.new_salt()
        params = self.options.argon2
        key = kdf.derive_wrapping_key(material, salt, params)
        wrapped = envelope.encrypt(key, share, _share_aad(chamber_id, op, credential_id))
        credential = CredentialRecord(
            credential_id=credential_id,
            type=credential_type,
            salt=salt,
            params=params,
            created_at=int(time.time()),
            public=_check_public(public or {}),
        )
        return credential, wrapped

    def _unwrap_share(
        self,
        chamber_id: str,
        op: OperatorRecord,
        material: bytes,
        *,
        bundle: dict[str, BundleEntry] | None = None,
        only: str | None = None,
    ) -> shamir.Share | None:
        """The operator's share if ``material`` opens one of its credentials (only the
        credential ``only`` when given), else None."""
        bundle = self._bundle if bundle is None else bundle
        assert bundle is not None
        entry = bundle.get(op.name)
        if entry is None:
            return None
        for credential in op.credentials:
            if only is not None and credential.credential_id != only:
                continue
            blob = entry.wrapped.get(credential.credential_id)
            if blob is None:
                continue
            try:
                key = kdf.derive_wrapping_key(material, credential.salt, credential.params)
                raw = envelope.decrypt(
                    key, blob, _share_aad(chamber_id, op, credential.credential_id)
                )
            except ValueError:  # EnvelopeError (no match) or material the KDF refuses (empty)
                continue
            share = shamir.Share.from_bytes(raw)
            if share.index == op.index:
                return share
        return None


def _encrypt_bundle(outer: bytearray, chamber_id: str, bundle: dict[str, BundleEntry]) -> bytes:
    key = envelope.derive_key(outer, BUNDLE_PURPOSE)
    return envelope.encrypt(key, bundle_to_bytes(bundle), chamber_id.encode())


def _new_operator_layer(
    master: bytes, names: Sequence[str], threshold: int, outer: bytearray, chamber_id: str
) -> tuple[dict[str, str], OperatorLayer, dict[str, BundleEntry]]:
    """Split the master key among ``names``: one registration token each (stored as a
    digest), the plain shares in a bundle under ``outer`` until each operator registers."""
    shares = shamir.split(master, threshold, len(names))
    tokens: dict[str, str] = {}
    members: list[OperatorRecord] = []
    bundle: dict[str, BundleEntry] = {}
    for name, share in zip(names, shares, strict=True):
        token = new_registration_token()
        tokens[name] = token
        members.append(
            OperatorRecord(
                name=name, index=share.index, registration_token_digest=token_digest(token)
            )
        )
        bundle[name] = BundleEntry(pending_share=share.to_bytes())
    layer = OperatorLayer(
        threshold=threshold,
        operators=tuple(members),
        bundle=_encrypt_bundle(outer, chamber_id, bundle),
    )
    return tokens, layer, bundle


MAX_PUBLIC_ENTRIES = 16
MAX_PUBLIC_CHARS = 4096


def _check_public(public: Mapping[str, str]) -> dict[str, str]:
    """A credential type's public parameters: a small map of strings (stored in the record)."""
    if not isinstance(public, Mapping) or len(public) > MAX_PUBLIC_ENTRIES:
        raise BadRequest(
            f"credential_public: an object of at most {MAX_PUBLIC_ENTRIES} string entries",
            field="credential_public",
        )
    checked: dict[str, str] = {}
    for key, value in public.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadRequest(
                "credential_public: keys and values must be strings", field="credential_public"
            )
        if len(key) > 64 or len(value) > MAX_PUBLIC_CHARS:
            raise BadRequest(
                f"credential_public: key {key[:64]!r} or its value is too long",
                field="credential_public",
            )
        checked[key] = value
    return checked


def _share_aad(chamber_id: str, op: OperatorRecord, credential_id: str) -> bytes:
    return f"{chamber_id}|{op.name}|{op.index}|{credential_id}".encode()


_CREDENTIAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_credential_id(credential_id: str, field: str = "credential_id") -> None:
    if not isinstance(credential_id, str) or not _CREDENTIAL_ID.match(credential_id):
        raise BadRequest(
            f"{field}: 1 to 64 characters of letters, digits, '.', '_' or '-'",
            field=field,
        )


def _validate_operators(operators: Sequence[str] | None, threshold: int | None) -> list[str]:
    if not operators:
        if threshold is not None:
            raise BadRequest(
                "unseal_threshold: given without operators; list the operators too",
                field="operators",
            )
        return []
    names = [str(name).strip() for name in operators]
    if len(names) > MAX_OPERATORS:
        raise BadRequest(f"operators: at most {MAX_OPERATORS} operators", field="operators")
    for name in names:
        if not NAME_PATTERN.match(name):
            raise BadRequest(
                f"operators: {name[:64]!r} is not a valid operator name (letters, digits, "
                "'.', '_', '-'; up to 64 characters)",
                field="operators",
            )
    if len(set(names)) != len(names):
        raise BadRequest("operators: an operator is listed twice", field="operators")
    if threshold is None:
        raise BadRequest(
            "unseal_threshold: required when operators are given", field="unseal_threshold"
        )
    if not 1 <= threshold <= len(names):
        raise BadRequest(
            f"unseal_threshold: must be between 1 and the number of operators ({len(names)})",
            field="unseal_threshold",
        )
    return names
