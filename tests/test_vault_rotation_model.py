"""Rotations, mode switches, credential changes and restarts of a real vault against a model.

A Hypothesis state machine drives one chamber (SQLite state file, local file KMS with six key
names, small Argon2, a SQLite encrypted key store holding a few validator keys sealed under the
master key) through random sequences of ``rotate kms``, ``rotate unseal`` (start, each
registration, cancel), ``rotate mode`` both ways, credential add / remove, refused requests
(stale registration tokens, the last credential, ceremonies that need no rotation in progress)
and restarts. The model holds what an operator team knows: the mode, the KMS key set and
threshold, the current operators with their credentials (id → passphrase), the operator
rotation in progress and its tokens, and every credential ever created.

After every step:
- the key check value in the stored record is the one written at init (the master key never
  changes) and the vault's master key verifies against it;
- every validator key in the encrypted store decrypts with that master key to its public key;
- the stored record says exactly what the model says (mode, KMS keys, operators, credential
  ids, the rotation in progress) and the vault is unsealed (``awaiting_rotation`` while a
  rotation is pending).

A restart is a new vault on the same files: in ``kms_only`` mode it unseals by itself; in
``unseal`` mode credentials that are no longer current (removed, cancelled, of a replaced or
pending operator) are refused, and exactly ``threshold`` current operators, each with a random
current credential, unseal it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chamber.crypto import envelope
from chamber.crypto.bls import BlspyBackend
from chamber.crypto.kdf import Argon2Params
from chamber.errors import BadRequest, Conflict, Unauthorized
from chamber.keys.sqlite_store import SQLiteKeySource
from chamber.vault import states
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.limiter import AttemptLimiter
from chamber.vault.local_kms import LocalKms
from chamber.vault.records import RECORD_KEY, VaultRecord
from chamber.vault.service import DEFAULT_CREDENTIAL_ID, Vault, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests.harness import make_keys

OPTIONS = VaultOptions(
    argon2=Argon2Params(memory_kib=1024, iterations=1, parallelism=1),
    kms_retry_max_seconds=0.2,
)
KEY_NAMES = [f"local:rot-{i}" for i in range(6)]
OPERATOR_NAMES = ["ann", "ben", "cid", "dee", "eli"]
VALIDATORS = make_keys(3, seed="rotation-model")
BLS = BlspyBackend()

KEY_SETS = st.lists(st.sampled_from(KEY_NAMES), min_size=1, max_size=4, unique=True)
OPERATOR_SETS = st.lists(st.sampled_from(OPERATOR_NAMES), min_size=1, max_size=3, unique=True)

#: (operator, credential id, passphrase)
Credential = tuple[str, str, bytes]


class _SetupTokens(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.tokens: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        token = getattr(record, "setup_token", None)
        if token:
            self.tokens.append(str(token))


@dataclass
class Pending:
    """An operator rotation in progress, as the operators know it."""

    names: list[str]
    threshold: int
    tokens: dict[str, str]
    kind: str  # "unseal" (rotate unseal) or "mode" (rotate mode kms_only → unseal)
    registered: dict[str, dict[str, bytes]] = field(default_factory=dict)

    @property
    def unregistered(self) -> list[str]:
        return [name for name in self.names if name not in self.registered]


class VaultRotationModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cc-rotation-model-"))
        self.log = _SetupTokens()
        logger = logging.getLogger("chamber.vault")
        self._log_level = logger.level
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(self.log)
        self.source = SQLiteKeySource.from_config({"path": str(self.root / "keys.sqlite")}, BLS)
        self.vault: Vault | None = None
        self.kcv = b""
        self.pubkeys: set[bytes] = set()
        # the model
        self.mode = "kms_only"
        self.kms_keys: tuple[str, ...] = ()
        self.kms_threshold = 0
        self.threshold = 0
        self.operators: dict[str, dict[str, bytes]] = {}
        self.pending: Pending | None = None
        self.every_credential: list[Credential] = []
        #: Registration tokens that were used or whose rotation was cancelled.
        self.stale_tokens: list[tuple[str, str]] = []
        self.counter = 0
        self.seals = 0

    # ------------------------------------------------------------------ plumbing

    def teardown(self) -> None:
        self._close_vault()
        self.source.close()
        logger = logging.getLogger("chamber.vault")
        logger.removeHandler(self.log)
        logger.setLevel(self._log_level)
        shutil.rmtree(self.root, ignore_errors=True)

    def _new_vault(self) -> Vault:
        return Vault(
            SQLiteStateBackend(self.root / "state.sqlite"),
            KmsSet({"local": LocalKms}, {"local": {"directory": str(self.root / "kms")}}),
            {"passphrase": PassphraseCredential},
            options=OPTIONS,
            # Refused attempts are part of the test; never lock an operator out.
            limiter=AttemptLimiter(free_attempts=1_000_000),
        )

    def _close_vault(self) -> None:
        if self.vault is not None:
            self.vault.stop()
            self.vault.store.close()
            self.vault = None

    @property
    def v(self) -> Vault:
        assert self.vault is not None
        return self.vault

    def _stored(self) -> tuple[bytes, int]:
        found = self.v.store.get(RECORD_KEY)
        assert found is not None
        return found

    def _record(self) -> VaultRecord:
        return VaultRecord.from_bytes(self._stored()[0])

    @contextmanager
    def _unchanged(self) -> Iterator[None]:
        """A refused request leaves the stored record (bytes and version) and the state."""
        before, state = self._stored(), self.v.state
        yield
        assert self._stored() == before
        assert self.v.state == state

    def _fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _passphrase(self) -> bytes:
        return f"{self._fresh('pass-')} correct horse battery".encode()

    def _is_current(self, credential: Credential) -> bool:
        name, credential_id, secret = credential
        return self.operators.get(name, {}).get(credential_id) == secret

    def _retire_pending(self) -> None:
        assert self.pending is not None
        self.stale_tokens.extend(self.pending.tokens.items())
        self.pending = None

    # ------------------------------------------------------------------ init

    @initialize(keys=KEY_SETS, data=st.data())
    def init(self, keys: list[str], data: st.DataObject) -> None:
        threshold = data.draw(st.integers(1, len(keys)), label="kms_threshold")
        vault = self._new_vault()
        self.vault = vault
        vault.boot()
        assert vault.state == states.UNINITIALIZED
        answer = vault.init(self.log.tokens[-1], keys, threshold)
        assert answer["status"] == states.UNSEALED
        master = vault.master_key
        assert master is not None
        for key in VALIDATORS:
            imported, written = self.source.import_secret(
                master.material, key.secret.to_bytes(32, "big")
            )
            assert written and imported.pubkey == key.pubkey
        self.pubkeys = {key.pubkey for key in VALIDATORS}
        self.kcv = self._record().kcv
        self.kms_keys, self.kms_threshold = tuple(keys), threshold
        # Most runs start in unseal mode (switched through the API, every operator registered),
        # so that sequences spend their steps on operator rotations and credentials.
        if data.draw(st.integers(0, 3), label="start in unseal mode") > 0:
            names = data.draw(OPERATOR_SETS, label="operators")
            self._start_rotation(names, data.draw(st.integers(1, len(names))), "mode")
            for name in names:
                self._register(name, default_id=True)

    # ------------------------------------------------------------------ rotate kms

    @precondition(lambda self: self.pending is None)
    @rule(keys=KEY_SETS, data=st.data())
    def rotate_kms(self, keys: list[str], data: st.DataObject) -> None:
        threshold = data.draw(st.integers(1, len(keys)), label="kms_threshold")
        answer = self.v.rotate_kms(keys, threshold)
        assert answer == {"status": "ok", "shares": len(keys), "threshold": threshold}
        self.kms_keys, self.kms_threshold = tuple(keys), threshold

    # ------------------------------------------------------------------ operator rotations

    def _start_rotation(self, names: list[str], threshold: int, kind: str) -> None:
        if kind == "unseal":
            answer = self.v.rotate_unseal(names, threshold)
        else:
            answer = self.v.rotate_mode("unseal", names, threshold)
        assert answer["status"] == states.AWAITING_ROTATION
        tokens = answer["operator_tokens"]
        assert sorted(tokens) == sorted(names)
        assert all(token.startswith("cc-reg-") for token in tokens.values())
        self.pending = Pending(list(names), threshold, dict(tokens), kind)

    @precondition(lambda self: self.mode == "unseal" and self.pending is None)
    @rule(names=OPERATOR_SETS, data=st.data())
    def rotate_unseal(self, names: list[str], data: st.DataObject) -> None:
        threshold = data.draw(st.integers(1, len(names)), label="unseal_threshold")
        self._start_rotation(names, threshold, "unseal")

    @precondition(lambda self: self.pending is not None)
    @rule(data=st.data(), everyone=st.booleans())
    def register(self, data: st.DataObject, everyone: bool) -> None:
        """One pending operator registers, or every one still pending (in a random order)."""
        pending = self.pending
        assert pending is not None
        if everyone:
            for name in data.draw(st.permutations(pending.unregistered), label="order"):
                self._register(name, data.draw(st.booleans(), label="default credential id"))
            return
        name = data.draw(st.sampled_from(pending.unregistered), label="operator")
        self._register(name, data.draw(st.booleans(), label="default credential id"))

    def _register(self, name: str, default_id: bool) -> None:
        pending = self.pending
        assert pending is not None
        credential_id = DEFAULT_CREDENTIAL_ID if default_id else self._fresh("reg-")
        secret = self._passphrase()
        token = pending.tokens[name]
        answer = self.v.register(name, token, secret, credential_id=credential_id)
        pending.registered[name] = {credential_id: secret}
        self.every_credential.append((name, credential_id, secret))
        remaining = len(pending.unregistered)
        assert answer["registered"] == len(pending.registered)
        assert answer["remaining"] == remaining
        if remaining:
            self.stale_tokens.append((name, token))
            return
        # The last registration: the new operator set replaces the old one.
        assert answer["status"] == states.UNSEALED
        self.mode = "unseal"
        self.operators = pending.registered
        self.threshold = pending.threshold
        self._retire_pending()

    @precondition(lambda self: self.pending is not None)
    @rule()
    def cancel(self) -> None:
        assert self.v.rotate_unseal_cancel() == {"status": states.UNSEALED}
        self._retire_pending()

    # ------------------------------------------------------------------ mode

    @precondition(lambda self: self.mode == "unseal" and self.pending is None)
    @rule(now=st.integers(0, 2))
    def mode_to_kms_only(self, now: int) -> None:
        if now:
            # Leaving unseal mode ends most of what there is to test: only one try in three.
            return
        answer = self.v.rotate_mode("kms_only")
        assert answer == {"status": states.UNSEALED, "mode": "kms_only"}
        self.mode = "kms_only"
        self.operators = {}
        self.threshold = 0

    @precondition(lambda self: self.mode == "kms_only" and self.pending is None)
    @rule(names=OPERATOR_SETS, data=st.data())
    def mode_to_unseal(self, names: list[str], data: st.DataObject) -> None:
        threshold = data.draw(st.integers(1, len(names)), label="unseal_threshold")
        self._start_rotation(names, threshold, "mode")

    # ------------------------------------------------------------------ credentials

    @precondition(lambda self: self.mode == "unseal")
    @rule(data=st.data())
    def add_credential(self, data: st.DataObject) -> None:
        self._add_credential(data)

    @precondition(lambda self: self.mode == "unseal")
    @rule(data=st.data())
    def remove_credential(self, data: st.DataObject) -> None:
        self._remove_credential(data)

    def _add_credential(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.operators)), label="operator")
        creds = self.operators[name]
        proof = data.draw(st.sampled_from(sorted(creds)), label="proof")
        new_id, secret = self._fresh("cred-"), self._passphrase()
        answer = self.v.add_credential(name, proof, creds[proof], new_id, secret)
        assert answer == {"operator": name, "credential_id": new_id}
        creds[new_id] = secret
        self.every_credential.append((name, new_id, secret))
        listed = self.v.list_credentials(name)["credential_ids"]
        assert sorted(listed) == sorted(creds)

    def _remove_credential(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.operators)), label="operator")
        creds = self.operators[name]
        target = data.draw(st.sampled_from(sorted(creds)), label="remove")
        proof = data.draw(st.sampled_from(sorted(creds)), label="proof")
        if len(creds) == 1:
            with self._unchanged(), pytest.raises(Conflict, match="last credential") as info:
                self.v.remove_credential(name, proof, creds[proof], target)
            assert info.value.status == 409
            return
        answer = self.v.remove_credential(name, proof, creds[proof], target)
        assert answer == {"operator": name, "removed_credential_id": target}
        del creds[target]

    # ------------------------------------------------------------------ refused requests

    @rule(data=st.data())
    def refused(self, data: st.DataObject) -> None:
        """A request the current configuration forbids: refused, and nothing changes."""
        pending = self.pending
        checks = ["stale_proof" if self.mode == "unseal" else "credentials_kms_only"]
        checks.append("rotate_mode")
        checks.append("cancel" if pending is None else "rotate_kms")
        if self.mode == "kms_only" or pending is not None:
            checks.append("rotate_unseal")
        if self.stale_tokens:
            checks.append("stale_token")
        check = data.draw(st.sampled_from(checks), label="refused request")
        names = data.draw(OPERATOR_SETS, label="operators")
        with self._unchanged():
            if check == "stale_proof":
                # Proving a credential change with a passphrase that is not (or no longer)
                # the credential's.
                name = data.draw(st.sampled_from(sorted(self.operators)), label="operator")
                proof = data.draw(st.sampled_from(sorted(self.operators[name])), label="proof")
                stale = [c for c in self.every_credential if not self._is_current(c)]
                secret = (
                    data.draw(st.sampled_from(stale), label="stale")[2]
                    if stale
                    else self._passphrase()
                )
                with pytest.raises(Unauthorized):
                    self.v.add_credential(
                        name, proof, secret, self._fresh("cred-"), self._passphrase()
                    )
            elif check == "credentials_kms_only":
                with pytest.raises(Conflict, match="only in unseal mode"):
                    self.v.list_credentials(names[0])
            elif check == "rotate_mode":
                # To the mode it is in, or away from it during an operator rotation.
                other = "kms_only" if self.mode == "unseal" else "unseal"
                target = self.mode if pending is None else other
                with pytest.raises(Conflict):
                    if target == "kms_only":
                        self.v.rotate_mode("kms_only")
                    else:
                        self.v.rotate_mode("unseal", names, 1)
            elif check == "cancel":
                with pytest.raises(Conflict, match="no operator rotation"):
                    self.v.rotate_unseal_cancel()
            elif check == "rotate_kms":
                with pytest.raises(Conflict, match="rotation is in progress"):
                    self.v.rotate_kms(list(self.kms_keys), self.kms_threshold)
            elif check == "rotate_unseal":
                with pytest.raises(Conflict):
                    self.v.rotate_unseal(names, 1)
            else:
                name, token = data.draw(st.sampled_from(self.stale_tokens), label="stale token")
                expected: type[Exception]
                if pending is None:
                    expected = Conflict  # no registration in progress
                elif name not in pending.names:
                    expected = BadRequest  # unknown operator
                elif name in pending.registered:
                    expected = Conflict  # already registered; tokens are single-use
                else:
                    expected = Unauthorized  # a token of another (cancelled or done) rotation
                with pytest.raises(expected):
                    self.v.register(name, token, self._passphrase())

    # ------------------------------------------------------------------ restart

    @rule(data=st.data(), seal_first=st.booleans())
    def restart(self, data: st.DataObject, seal_first: bool) -> None:
        """A new process on the same files, after an ``operator seal`` or not."""
        if seal_first:
            assert self.v.seal() == {"status": states.SEALED}
            self.seals += 1
            assert self.v.master_key is None and not self.v.signing_allowed
        self._close_vault()
        vault = self._new_vault()
        self.vault = vault
        vault.boot()
        signing = states.AWAITING_ROTATION if self.pending is not None else states.UNSEALED
        if self.mode == "kms_only":
            assert vault.state == signing
            return
        assert vault.state == states.KMS_UNSEALED
        assert vault.master_key is None and not vault.signing_allowed

        # Credentials that are no longer current never contribute a share.
        stale = [c for c in self.every_credential if not self._is_current(c)]
        if stale:
            tries = data.draw(st.lists(st.sampled_from(stale), max_size=3, unique=True))
            for name, _credential_id, secret in tries:
                expected = Unauthorized if name in self.operators else BadRequest
                with pytest.raises(expected):
                    vault.unseal(name, secret)
        assert vault.shares_received == 0

        # Credentials can change while the chamber waits for its operators (kms_unsealed).
        change = data.draw(st.sampled_from(["none", "add", "remove"]), label="change")
        if change == "add":
            self._add_credential(data)
        elif change == "remove":
            self._remove_credential(data)
        assert vault.state == states.KMS_UNSEALED

        self._every_current_credential_gives_a_share()

        # Exactly `threshold` current operators, a random current credential each.
        chosen = data.draw(st.permutations(sorted(self.operators)), label="order")
        chosen = chosen[: self.threshold]
        for i, name in enumerate(chosen):
            creds = self.operators[name]
            credential_id = data.draw(st.sampled_from(sorted(creds)), label=f"{name} credential")
            answer = vault.unseal(name, creds[credential_id])
            if i + 1 == self.threshold:
                assert answer["status"] == signing
                break
            assert answer == {"shares_received": i + 1, "shares_required": self.threshold}
            # Every other current credential of this operator opens the same share (counted once).
            for other in sorted(creds):
                if other != credential_id:
                    again = vault.unseal(name, creds[other])
                    assert again["shares_received"] == i + 1
                    assert "already submitted" in again["message"]
        assert vault.state == signing

    def _every_current_credential_gives_a_share(self) -> None:
        """Each current credential, on its own, is accepted as its operator's share: submitted
        to a probe vault on the same files, then reset (or, at threshold 1, the probe is
        unsealed and replaced)."""
        probe: Vault | None = None
        try:
            for name in sorted(self.operators):
                for _credential_id, secret in sorted(self.operators[name].items()):
                    if probe is None:
                        probe = self._new_vault()
                        probe.boot()
                        assert probe.state == states.KMS_UNSEALED
                    answer = probe.unseal(name, secret)
                    if self.threshold == 1:
                        assert probe.signing_allowed, answer
                        probe.stop()
                        probe.store.close()
                        probe = None
                    else:
                        assert answer == {"shares_received": 1, "shares_required": self.threshold}
                        probe.unseal_reset()
        finally:
            if probe is not None:
                probe.stop()
                probe.store.close()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def master_key_kcv_and_validator_keys(self) -> None:
        if self.vault is None:
            return
        record = self._record()
        assert record.kcv == self.kcv
        master = self.v.master_key
        assert master is not None
        assert envelope.verify_key_check(master.material, record.kcv)
        result = self.source.load(master.material)
        assert result.errors == []
        assert {key.pubkey for key in result.keys} == self.pubkeys

    @invariant()
    def stored_record_matches_the_model(self) -> None:
        if self.vault is None:
            return
        record = self._record()
        assert record.mode == self.mode
        assert record.phase == "ready"
        assert record.seal_generation == self.seals
        assert (tuple(record.kms.key_ids), record.kms.threshold) == (
            self.kms_keys,
            self.kms_threshold,
        )
        if self.mode == "unseal":
            assert record.operators is not None
            assert record.operators.threshold == self.threshold
            assert {
                op.name: sorted(c.credential_id for c in op.credentials)
                for op in record.operators.operators
            } == {name: sorted(creds) for name, creds in self.operators.items()}
        else:
            assert record.operators is None
        pending = self.pending
        if pending is None:
            assert record.rotation is None
        else:
            assert record.rotation is not None
            layer = record.rotation.operators
            assert [op.name for op in layer.operators] == pending.names
            assert layer.threshold == pending.threshold
            assert {op.name for op in layer.operators if op.registered} == set(pending.registered)
            # A rotation never changes the KMS key set.
            assert record.rotation.kms.key_ids == list(self.kms_keys)
        expected = states.AWAITING_ROTATION if pending is not None else states.UNSEALED
        assert self.v.state == expected and self.v.signing_allowed


def test_rotation_model() -> None:
    started = time.monotonic()
    run_state_machine_as_test(
        VaultRotationModel,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(f"rotation model: {time.monotonic() - started:.1f}s")
