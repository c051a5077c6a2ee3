"""The vault's ceremonies without HTTP, on real components.

Every vault here runs on a real SQLite state file and the real local file KMS in a temporary
directory; Argon2 is made cheap through ``VaultOptions``. Faults (a KMS key that fails or hangs)
come from :class:`FaultyKms`, a provider behind the same ``KmsProvider`` interface a real one
implements, wrapping the local file KMS. Setup tokens are read where an operator reads them: the
``chamber.vault`` log record's ``setup_token`` attribute.

Every state change the vaults make is recorded through ``VaultHooks.state_changed`` and checked
against ``states.TRANSITIONS`` when each test finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from chamber.crypto import envelope, kdf
from chamber.errors import (
    BadRequest,
    ChamberError,
    Conflict,
    KmsError,
    TooManyAttempts,
    Unauthorized,
    Unavailable,
)
from chamber.vault import states
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.interfaces import KmsProvider
from chamber.vault.kms import KmsSet
from chamber.vault.limiter import AttemptLimiter
from chamber.vault.local_kms import LocalKms
from chamber.vault.master import MasterKey
from chamber.vault.records import RECORD_KEY, KmsShare, VaultRecord
from chamber.vault.service import TOMBSTONE, KeyCheckFailed, Vault, VaultHooks, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from chamber.vault.states import State

SMALL_ARGON2 = kdf.Argon2Params(memory_kib=1024, iterations=1, parallelism=1)
KEYS = ["local:kms-a", "local:kms-b", "local:kms-c"]
OPERATORS = ["alice", "bob", "carol"]
HANG_SECONDS = 20.0

#: (from, to) pairs some event of the table allows.
ALLOWED_PAIRS = {(src, dst) for (src, _event), dst in states.TRANSITIONS.items()}
#: Pairs excluded from the per-test table check (none: every move the vault makes is an event).
KNOWN_TABLE_GAPS: set[tuple[str, str]] = set()


def passphrase(name: str) -> bytes:
    return f"{name}: correct horse battery staple".encode()


# ---------------------------------------------------------------------- test doubles and helpers


@dataclass
class KmsFaults:
    """Which KMS key ids fail or hang; shared by every provider instance of one chamber, so a
    fault outlives a restart, as an unreachable KMS region would."""

    failing: set[str] = field(default_factory=set)
    hanging: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    #: Set when a call starts hanging (so a test knows the hang really happened).
    hang_started: threading.Event = field(default_factory=threading.Event)
    #: Set when any KMS call starts.
    called: threading.Event = field(default_factory=threading.Event)
    #: Extra latency per key id, in seconds.
    delays: dict[str, float] = field(default_factory=dict)


class FaultyKms:
    """A ``KmsProvider`` wrapping the local file KMS that can be told to fail or hang per key."""

    name = "faulty-local"

    def __init__(self, directory: str, faults: KmsFaults) -> None:
        self._inner = LocalKms(directory)
        self._faults = faults

    @classmethod
    def handles(cls, key_id: str) -> bool:
        return LocalKms.handles(key_id)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        return cls(settings["directory"], settings["faults"])

    def validate_key_id(self, key_id: str) -> None:
        self._inner.validate_key_id(key_id)

    def _fault(self, key_id: str) -> None:
        self._faults.called.set()
        time.sleep(self._faults.delays.get(key_id, 0.0))
        if key_id in self._faults.hanging:
            self._faults.hang_started.set()
            # A real provider gives up after its bounded retries; so does the double (or when
            # the test ends and releases it).
            self._faults.release.wait(HANG_SECONDS)
            raise KmsError(key_id, "timed out (test double)")
        if key_id in self._faults.failing:
            raise KmsError(key_id, "access denied (test double)")

    def encrypt(self, key_id: str, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        self._fault(key_id)
        return self._inner.encrypt(key_id, plaintext, context)

    def decrypt(self, key_id: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        self._fault(key_id)
        return self._inner.decrypt(key_id, ciphertext, context)


_provider_check: type[KmsProvider] = FaultyKms  # the double honours the interface


class RecordingHooks(VaultHooks):
    def __init__(self, transitions: list[tuple[State, State]]) -> None:
        self.transitions = transitions
        self.failures: list[tuple[str, str]] = []
        self.steps: list[str] = []

    def state_changed(self, old: State, new: State) -> None:
        self.transitions.append((old, new))

    def ceremony_step(self, step: str, details: Mapping[str, Any]) -> None:
        self.steps.append(step)

    def credential_failure(self, operator: str, ceremony: str) -> None:
        self.failures.append((operator, ceremony))


class VaultLog(logging.Handler):
    """Collects the ``chamber.vault`` records: setup tokens and KMS warnings."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def setup_tokens(self) -> list[str]:
        return [str(r.__dict__["setup_token"]) for r in self.records if "setup_token" in r.__dict__]

    @property
    def latest_token(self) -> str:
        tokens = self.setup_tokens
        assert tokens, "no setup token was logged"
        return tokens[-1]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Chamber:
    """One chamber's files (state file, KMS key directory) and the vaults opened on them."""

    def __init__(self, root: Path, log: VaultLog) -> None:
        self.root = root
        self.state_path = root / "state.sqlite"
        self.kms_dir = root / "kms"
        self.log = log
        self.faults = KmsFaults()
        self.transitions: list[tuple[State, State]] = []
        self.vaults: list[Vault] = []

    def vault(
        self,
        *,
        faulty: bool = False,
        options: VaultOptions | None = None,
        limiter: AttemptLimiter | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Vault:
        store = SQLiteStateBackend(self.state_path)
        if faulty:
            kms = KmsSet(
                {"faulty-local": FaultyKms},
                {"faulty-local": {"directory": str(self.kms_dir), "faults": self.faults}},
            )
        else:
            kms = KmsSet({"local": LocalKms}, {"local": {"directory": str(self.kms_dir)}})
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        vault = Vault(
            store,
            kms,
            {"passphrase": PassphraseCredential},
            options=options or VaultOptions(argon2=SMALL_ARGON2, kms_retry_max_seconds=0.2),
            limiter=limiter,
            hooks=RecordingHooks(self.transitions),
            **extra,
        )
        self.vaults.append(vault)
        return vault

    def boot(self, **kw: Any) -> Vault:
        vault = self.vault(**kw)
        vault.boot()
        return vault

    def restart(self, old: Vault, **kw: Any) -> Vault:
        """Stop ``old`` as a process exit would, then boot a new vault on the same files."""
        self.shutdown(old)
        return self.boot(**kw)

    @staticmethod
    def shutdown(vault: Vault) -> None:
        vault.stop()
        vault.store.close()

    def close(self) -> None:
        self.faults.release.set()
        for vault in self.vaults:
            self.shutdown(vault)

    def stored(self) -> tuple[bytes, int] | None:
        store = SQLiteStateBackend(self.state_path)
        try:
            return store.get(RECORD_KEY)
        finally:
            store.close()

    def record(self) -> VaultRecord:
        found = self.stored()
        assert found is not None
        return VaultRecord.from_bytes(found[0])

    def rewrite(self, change: Callable[[VaultRecord], VaultRecord]) -> None:
        """Change the stored record the way an attacker with write access to the store could:
        through the store, with the right version."""
        store = SQLiteStateBackend(self.state_path)
        try:
            found = store.get(RECORD_KEY)
            assert found is not None
            raw, version = found
            store.put(RECORD_KEY, change(VaultRecord.from_bytes(raw)).to_bytes(), version)
        finally:
            store.close()


@pytest.fixture
def vault_log() -> Iterator[VaultLog]:
    handler = VaultLog()
    logger = logging.getLogger("chamber.vault")
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def chamber(tmp_path: Path, vault_log: VaultLog) -> Iterator[Chamber]:
    cham = Chamber(tmp_path, vault_log)
    try:
        yield cham
    finally:
        cham.close()
    outside = sorted(set(cham.transitions) - ALLOWED_PAIRS - KNOWN_TABLE_GAPS)
    assert not outside, f"transitions outside states.TRANSITIONS: {outside}"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_state(vault: Vault, state: str, timeout: float = 15.0) -> None:
    wait_for(lambda: vault.state == state, f"state {state} (now {vault.state})", timeout)


def retry_while_unavailable(call: Callable[[], dict[str, Any]], timeout: float = 15.0) -> Any:
    """What a client does with a 503: retry until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def refused(
    cls: type[ChamberError], status: int, fragment: str, *, field_name: str | None = None
) -> Iterator[None]:
    with pytest.raises(cls) as info:
        yield
    error = info.value
    assert error.status == status, error
    assert fragment in error.message, error.message
    if field_name is not None:
        assert error.field == field_name, (error.field, error.message)


@contextmanager
def unchanged(vault: Vault) -> Iterator[None]:
    """The stored record (bytes and version) and the vault's state are the same afterwards."""
    before = vault.store.get(RECORD_KEY)
    state = vault.state
    yield
    assert vault.store.get(RECORD_KEY) == before
    assert vault.state == state


def init_unseal(
    vault: Vault,
    token: str,
    *,
    keys: list[str] | None = None,
    kms_threshold: int = 2,
    operators: list[str] | None = None,
    threshold: int = 2,
) -> dict[str, str]:
    answer = vault.init(token, keys or KEYS, kms_threshold, operators or OPERATORS, threshold)
    assert answer["status"] == states.AWAITING_REGISTRATION
    tokens: dict[str, str] = answer["operator_tokens"]
    return tokens


def register_all(vault: Vault, tokens: Mapping[str, str]) -> None:
    for name, token in tokens.items():
        vault.register(name, token, passphrase(name))
    wait_state(vault, states.KMS_UNSEALED)


def ready_unseal_chamber(chamber: Chamber, **kw: Any) -> Vault:
    """An unseal-mode chamber with every operator registered, restarted with ``kw``: a vault in
    kms_unsealed."""
    first = chamber.boot()
    register_all(first, init_unseal(first, chamber.log.latest_token))
    vault = chamber.restart(first, **kw)
    assert vault.state == states.KMS_UNSEALED
    return vault


def kms_only_chamber(chamber: Chamber, keys: list[str] | None = None, threshold: int = 2) -> Vault:
    vault = chamber.boot()
    vault.init(chamber.log.latest_token, keys or KEYS, threshold)
    assert vault.state == states.UNSEALED
    return vault


def material(vault: Vault) -> bytes:
    master = vault.master_key
    assert master is not None
    return bytes(master.material)


def assert_kcv(vault: Vault) -> None:
    master = vault.master_key
    assert master is not None
    found = vault.store.get(RECORD_KEY)
    assert found is not None
    record = VaultRecord.from_bytes(found[0])
    assert envelope.verify_key_check(master.material, record.kcv)


# ---------------------------------------------------------------------- KMS-only mode


def test_kms_only_init_unseals_and_a_restart_rebuilds_the_same_master_key(
    chamber: Chamber,
) -> None:
    vault = chamber.boot()
    assert vault.state == states.UNINITIALIZED
    assert vault.status() == {"seal": {"status": "uninitialized"}, "keys": None}
    assert chamber.log.latest_token.startswith("cc-setup-")

    answer = vault.init(chamber.log.latest_token, KEYS, 2)
    assert answer == {"status": "unsealed", "validators_loaded": 0}
    assert vault.state == states.UNSEALED and vault.signing_allowed
    assert_kcv(vault)
    record = chamber.record()
    assert (record.mode, record.phase, record.operators) == ("kms_only", "ready", None)
    assert [s.key_id for s in record.kms.shares] == KEYS and record.kms.threshold == 2
    status = vault.status()
    assert status["seal"]["status"] == "unsealed"
    assert status["seal"]["kms"] == {"threshold": 2, "keys": 3}
    assert status["keys"] == {"loaded": 0}
    key = material(vault)

    restarted = chamber.restart(vault)
    assert restarted.state == states.UNSEALED and restarted.signing_allowed
    assert material(restarted) == key
    assert_kcv(restarted)
    # Restarts of an initialized chamber log no setup token.
    assert len(chamber.log.setup_tokens) == 1


# ---------------------------------------------------------------------- unseal mode


def test_unseal_mode_full_cycle(chamber: Chamber) -> None:
    vault = chamber.boot()
    tokens = init_unseal(vault, chamber.log.latest_token)
    assert sorted(tokens) == OPERATORS
    assert all(t.startswith("cc-reg-") for t in tokens.values())
    assert len(set(tokens.values())) == 3
    assert vault.master_key is None and not vault.signing_allowed
    seal = vault.status()["seal"]
    assert (seal["status"], seal["registered"], seal["remaining"]) == (
        "awaiting_registration",
        0,
        3,
    )

    assert vault.register("alice", tokens["alice"], passphrase("alice")) == {
        "registered": 1,
        "remaining": 2,
    }
    assert vault.register("carol", tokens["carol"], passphrase("carol")) == {
        "registered": 2,
        "remaining": 1,
    }
    assert vault.status()["seal"]["remaining"] == 1
    assert vault.register("bob", tokens["bob"], passphrase("bob")) == {
        "registered": 3,
        "remaining": 0,
        "status": "sealed",
    }
    # The chamber opens its KMS layer again by itself, as a restart would.
    wait_state(vault, states.KMS_UNSEALED)
    assert not vault.signing_allowed and vault.master_key is None
    seal = vault.status()["seal"]
    assert (seal["shares_received"], seal["shares_required"]) == (0, 2)
    assert chamber.record().phase == "ready"

    vault = chamber.restart(vault)
    assert vault.state == states.KMS_UNSEALED

    # Any order; the same operator twice does not count twice.
    assert vault.unseal("carol", passphrase("carol")) == {
        "shares_received": 1,
        "shares_required": 2,
    }
    again = vault.unseal("carol", passphrase("carol"))
    assert (again["shares_received"], again["shares_required"]) == (1, 2)
    assert "already submitted" in again["message"]
    assert vault.state == states.KMS_UNSEALED
    assert vault.status()["seal"]["shares_received"] == 1

    # unseal-reset really clears progress: carol's share is gone, so bob alone is 1 of 2.
    assert vault.unseal_reset() == {"shares_received": 0, "shares_required": 2}
    assert vault.status()["seal"]["shares_received"] == 0
    assert vault.unseal("bob", passphrase("bob"))["shares_received"] == 1
    assert vault.unseal("alice", passphrase("alice")) == {
        "status": "unsealed",
        "validators_loaded": 0,
    }
    assert vault.state == states.UNSEALED and vault.signing_allowed
    assert_kcv(vault)
    key = material(vault)

    # Another subset, another order, the same master key.
    vault = chamber.restart(vault)
    vault.unseal("carol", passphrase("carol"))
    vault.unseal("alice", passphrase("alice"))
    assert material(vault) == key

    # Seal: the very buffer holding the key is overwritten.
    master = vault.master_key
    assert master is not None
    buffer = master.material
    assert vault.seal() == {"status": "sealed"}
    assert buffer == bytearray(32)
    with pytest.raises(ValueError, match="zeroized"):
        _ = master.material
    assert vault.master_key is None
    assert not vault.signing_allowed
    assert vault.status() == {
        "seal": {
            "status": "sealed",
            "mode": "unseal",
            "kms": {"threshold": 2, "keys": 3},
            "operators": {"threshold": 2, "names": OPERATORS, "registered": 3},
        },
        "keys": None,
    }

    # Sealed is sticky: nothing reopens it in this process, not even another boot pass.
    time.sleep(0.3)
    vault.boot()
    assert vault.state == states.SEALED
    with refused(Unavailable, 503, "state sealed"):
        vault.unseal("alice", passphrase("alice"))
    assert vault.seal() == {"status": "sealed"}
    assert vault.state == states.SEALED and vault.master_key is None

    # A restart opens the KMS layer again and the ceremony starts over.
    vault = chamber.restart(vault)
    assert vault.state == states.KMS_UNSEALED


def test_seal_in_kms_unsealed_drops_the_partial_shares(chamber: Chamber) -> None:
    vault = ready_unseal_chamber(chamber)
    vault.unseal("alice", passphrase("alice"))
    assert vault.seal() == {"status": "sealed"}
    with refused(Unavailable, 503, "sealed"):
        vault.unseal("bob", passphrase("bob"))
    vault = chamber.restart(vault)
    # Alice's share did not survive: bob alone is 1 of 2.
    assert vault.unseal("bob", passphrase("bob"))["shares_received"] == 1


def test_kms_only_seal_zeroizes_and_stays_sealed(chamber: Chamber) -> None:
    vault = kms_only_chamber(chamber)
    buffer = vault.master_key.material  # type: ignore[union-attr]
    key = bytes(buffer)
    assert vault.seal() == {"status": "sealed"}
    assert buffer == bytearray(32)
    assert vault.master_key is None and not vault.signing_allowed
    assert vault.status()["keys"] is None
    vault.boot()
    time.sleep(0.2)
    assert vault.state == states.SEALED
    restarted = chamber.restart(vault)
    assert material(restarted) == key


# ---------------------------------------------------------------------- refusals change nothing


def test_wrong_passphrase(chamber: Chamber) -> None:
    vault = ready_unseal_chamber(chamber)
    vault.unseal("alice", passphrase("alice"))
    with unchanged(vault), refused(Unauthorized, 401, "wrong passphrase for operator 'bob'"):
        vault.unseal("bob", passphrase("alice"))
    with unchanged(vault), refused(Unauthorized, 401, "wrong passphrase"):
        vault.unseal("bob", passphrase("bob") + b"\n")
    with unchanged(vault), refused(Unauthorized, 401, "wrong passphrase"):
        vault.unseal("bob", b"")
    # The accepted share survives a refused one.
    assert vault.status()["seal"]["shares_received"] == 1
    with unchanged(vault), refused(BadRequest, 400, "unknown operator", field_name="operator"):
        vault.unseal("mallory", passphrase("mallory"))
    assert vault.unseal("bob", passphrase("bob"))["status"] == "unsealed"


def test_short_passphrase_does_not_consume_the_registration_token(chamber: Chamber) -> None:
    vault = chamber.boot()
    tokens = init_unseal(vault, chamber.log.latest_token)
    with (
        unchanged(vault),
        refused(BadRequest, 400, "passphrase too short", field_name="passphrase"),
    ):
        vault.register("alice", tokens["alice"], b"fifteen chars!!")
    assert vault.status()["seal"]["registered"] == 0
    # Sixteen code points are enough, even when they are more bytes.
    assert vault.register("alice", tokens["alice"], "sixteen chars éé".encode())["registered"] == 1


def test_registration_token_refusals(chamber: Chamber) -> None:
    vault = chamber.boot()
    tokens = init_unseal(vault, chamber.log.latest_token)
    vault.register("alice", tokens["alice"], passphrase("alice"))
    with unchanged(vault), refused(Conflict, 409, "already registered"):
        vault.register("alice", tokens["alice"], passphrase("alice"))
    with unchanged(vault), refused(Unauthorized, 401, "invalid registration token"):
        vault.register("bob", tokens["carol"], passphrase("bob"))
    with unchanged(vault), refused(Unauthorized, 401, "invalid registration token"):
        vault.register("bob", tokens["bob"] + "x", passphrase("bob"))
    with unchanged(vault), refused(Unauthorized, 401, "invalid registration token"):
        vault.register("bob", None, passphrase("bob"))
    with unchanged(vault), refused(BadRequest, 400, "unknown operator", field_name="operator"):
        vault.register("mallory", tokens["bob"], passphrase("bob"))
    with unchanged(vault), refused(BadRequest, 400, "credential_id", field_name="credential_id"):
        vault.register("bob", tokens["bob"], passphrase("bob"), credential_id="bad id!")
    with unchanged(vault), refused(BadRequest, 400, "not installed", field_name="credential_type"):
        vault.register("bob", tokens["bob"], passphrase("bob"), credential_type="yubikey")
    assert vault.register("bob", tokens["bob"], passphrase("bob"))["registered"] == 2


def test_wrong_setup_token(chamber: Chamber) -> None:
    vault = chamber.boot(limiter=AttemptLimiter(free_attempts=10))
    good = chamber.log.latest_token
    for bad in (None, "", good + "x", "cc-setup-guess"):
        with unchanged(vault), refused(Unauthorized, 401, "invalid setup token"):
            vault.init(bad, KEYS, 2)
    assert chamber.stored() is None
    assert vault.init(good, KEYS, 2)["status"] == "unsealed"


def test_second_init_is_refused_in_every_initialized_state(chamber: Chamber) -> None:
    vault = chamber.boot()
    token = chamber.log.latest_token
    tokens = init_unseal(vault, token)
    with unchanged(vault), refused(Conflict, 409, "already initialized"):
        vault.init(token, KEYS, 2)
    register_all(vault, tokens)
    with unchanged(vault), refused(Conflict, 409, "already initialized"):
        vault.init(token, KEYS, 2)
    vault.unseal("alice", passphrase("alice"))
    vault.unseal("bob", passphrase("bob"))
    with unchanged(vault), refused(Conflict, 409, "already initialized"):
        vault.init(token, KEYS, 1)
    vault.seal()
    with unchanged(vault), refused(Conflict, 409, "already initialized"):
        vault.init(token, KEYS, 1)


def test_ceremonies_in_the_wrong_state(chamber: Chamber) -> None:
    vault = chamber.boot()
    token = chamber.log.latest_token
    with unchanged(vault), refused(Conflict, 409, "cannot unseal in state uninitialized"):
        vault.unseal("alice", passphrase("alice"))
    with unchanged(vault), refused(Conflict, 409, "no unseal is in progress"):
        vault.unseal_reset()
    with unchanged(vault), refused(Conflict, 409, "nothing to seal"):
        vault.seal()
    with unchanged(vault), refused(Conflict, 409, "no registration is in progress"):
        vault.register("alice", "cc-reg-x", passphrase("alice"))

    tokens = init_unseal(vault, token)
    with unchanged(vault), refused(Conflict, 409, "cannot unseal in state awaiting_registration"):
        vault.unseal("alice", passphrase("alice"))
    with unchanged(vault), refused(Conflict, 409, "no unseal is in progress"):
        vault.unseal_reset()
    with unchanged(vault), refused(Conflict, 409, "nothing to seal"):
        vault.seal()

    register_all(vault, tokens)
    with unchanged(vault), refused(Conflict, 409, "no registration is in progress"):
        vault.register("alice", tokens["alice"], passphrase("alice"))
    vault.unseal("alice", passphrase("alice"))
    vault.unseal("bob", passphrase("bob"))
    with unchanged(vault), refused(Conflict, 409, "cannot unseal in state unsealed"):
        vault.unseal("carol", passphrase("carol"))
    with unchanged(vault), refused(Conflict, 409, "no unseal is in progress"):
        vault.unseal_reset()

    vault.seal()
    with unchanged(vault), refused(Unavailable, 503, "not open yet"):
        vault.unseal("carol", passphrase("carol"))
    with unchanged(vault), refused(Conflict, 409, "no unseal is in progress"):
        vault.unseal_reset()


def test_unseal_while_the_kms_layer_is_not_open_is_503(chamber: Chamber) -> None:
    first = chamber.boot()
    register_all(first, init_unseal(first, chamber.log.latest_token))
    chamber.shutdown(first)
    chamber.faults.failing.update(KEYS)
    vault = chamber.vault(faulty=True)
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "a KMS error in the status")
    with unchanged(vault), pytest.raises(Unavailable) as info:
        vault.unseal("alice", passphrase("alice"))
    assert info.value.status == 503 and info.value.retry_after >= 1
    assert "not open yet" in info.value.message


INIT_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("threshold 0", {"kms_threshold": 0}, "kms_threshold", "kms_threshold"),
    ("threshold above n", {"kms_threshold": 4}, "kms_threshold", "kms_threshold"),
    ("no KMS key", {"kms_key_ids": [], "kms_threshold": 1}, "kms_key_ids", "at least one"),
    (
        "duplicate KMS keys",
        {"kms_key_ids": ["local:kms-a", "local:kms-b", "local:kms-a"]},
        "kms_key_ids",
        "listed twice",
    ),
    (
        "malformed local key id",
        {"kms_key_ids": ["local:kms-a", "local:bad name"]},
        "kms_key_ids",
        "invalid local KMS key id",
    ),
    (
        "no provider for the key id",
        {"kms_key_ids": ["arn:aws:kms:us-east-1:111111111111:key/aaa", "local:kms-a"]},
        "kms_key_ids",
        "no KMS provider handles key id",
    ),
    ("empty key id", {"kms_key_ids": ["local:kms-a", " "]}, "kms_key_ids", "empty KMS key id"),
    (
        "duplicate operators",
        {"operators": ["alice", "bob", "alice"], "unseal_threshold": 2},
        "operators",
        "listed twice",
    ),
    (
        "unseal_threshold without operators",
        {"unseal_threshold": 2},
        "operators",
        "unseal_threshold: given without operators",
    ),
    (
        "operators without unseal_threshold",
        {"operators": ["alice", "bob"]},
        "unseal_threshold",
        "unseal_threshold: required",
    ),
    (
        "unseal_threshold 0",
        {"operators": ["alice", "bob"], "unseal_threshold": 0},
        "unseal_threshold",
        "unseal_threshold: must be between 1",
    ),
    (
        "unseal_threshold above operators",
        {"operators": ["alice", "bob"], "unseal_threshold": 3},
        "unseal_threshold",
        "unseal_threshold: must be between 1",
    ),
    (
        "bad operator name",
        {"operators": ["alice", "bob smith"], "unseal_threshold": 1},
        "operators",
        "not a valid operator name",
    ),
]


@pytest.mark.parametrize(
    ("changes", "field_name", "fragment"),
    [case[1:] for case in INIT_CASES],
    ids=[case[0] for case in INIT_CASES],
)
def test_init_with_bad_parameters(
    chamber: Chamber, changes: dict[str, Any], field_name: str, fragment: str
) -> None:
    vault = chamber.boot()
    token = chamber.log.latest_token
    args: dict[str, Any] = {"kms_key_ids": KEYS, "kms_threshold": 3, **changes}
    with unchanged(vault), refused(BadRequest, 400, fragment, field_name=field_name):
        vault.init(token, **args)
    assert chamber.stored() is None and vault.state == states.UNINITIALIZED
    # Parameters are checked before any KMS call, and the setup token is not used up.
    assert not chamber.kms_dir.exists() or not any(chamber.kms_dir.iterdir())
    assert vault.init(token, KEYS, 2)["status"] == "unsealed"


def test_init_with_a_failing_kms_key_stores_nothing(
    chamber: Chamber, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffers: list[bytearray] = []
    generate = MasterKey.generate

    def recording() -> MasterKey:
        key = generate()
        buffers.append(key.material)
        return key

    monkeypatch.setattr(MasterKey, "generate", staticmethod(recording))
    chamber.faults.failing.add("local:kms-b")
    vault = chamber.boot(faulty=True)
    token = chamber.log.latest_token
    with unchanged(vault), refused(KmsError, 502, "local:kms-b"):
        vault.init(token, KEYS, 2)
    with unchanged(vault), refused(KmsError, 502, "local:kms-b"):
        vault.init(token, KEYS, 2, OPERATORS, 2)
    assert chamber.stored() is None and vault.master_key is None
    # The master keys those inits generated were wiped, not left to the garbage collector.
    assert len(buffers) == 2 and all(b == bytearray(32) for b in buffers)
    chamber.faults.failing.clear()
    assert vault.init(token, KEYS, 2)["status"] == "unsealed"


def test_init_reset_refusals(chamber: Chamber) -> None:
    vault = chamber.boot()
    token = chamber.log.latest_token
    with unchanged(vault), refused(Conflict, 409, "only possible while awaiting_registration"):
        vault.init_reset(token)
    tokens = init_unseal(vault, token)
    for bad in (None, token + "x", "cc-setup-nope"):
        with unchanged(vault), refused(Unauthorized, 401, "invalid setup token"):
            vault.init_reset(bad)
    register_all(vault, tokens)
    with unchanged(vault), refused(Conflict, 409, "only possible while awaiting_registration"):
        vault.init_reset(token)
    vault.unseal("alice", passphrase("alice"))
    vault.unseal("bob", passphrase("bob"))
    with unchanged(vault), refused(Conflict, 409, "only possible while awaiting_registration"):
        vault.init_reset(token)

    other = Chamber(chamber.root / "kms-only", chamber.log)
    try:
        kms_vault = kms_only_chamber(other)
        with unchanged(kms_vault), refused(Conflict, 409, "awaiting_registration"):
            kms_vault.init_reset(chamber.log.latest_token)
    finally:
        other.close()


def test_init_reset_deletes_the_record_and_logs_a_new_setup_token(chamber: Chamber) -> None:
    vault = chamber.boot()
    old = chamber.log.latest_token
    tokens = init_unseal(vault, old)
    vault.register("alice", tokens["alice"], passphrase("alice"))
    version = chamber.stored()[1]  # type: ignore[index]
    assert vault.init_reset(old) == {"status": "uninitialized"}
    assert vault.state == states.UNINITIALIZED
    # The record is gone: what remains is the tombstone, under a newer version (versions never
    # restart, so a replica holding the old version cannot write over a newer init).
    assert chamber.stored() == (TOMBSTONE, version + 1)
    assert vault.status() == {"seal": {"status": "uninitialized"}, "keys": None}
    new = chamber.log.latest_token
    assert new != old and len(chamber.log.setup_tokens) == 2

    with unchanged(vault), refused(Unauthorized, 401, "invalid setup token"):
        vault.init(old, KEYS, 2, OPERATORS, 2)
    fresh = init_unseal(vault, new)
    # The first ceremony's registration tokens belong to a deleted record.
    with unchanged(vault), refused(Unauthorized, 401, "invalid registration token"):
        vault.register("bob", tokens["bob"], passphrase("bob"))
    register_all(vault, fresh)
    vault.unseal("alice", passphrase("alice"))
    assert vault.unseal("carol", passphrase("carol"))["status"] == "unsealed"


def test_a_restart_after_init_reset_is_uninitialized_with_a_new_token(chamber: Chamber) -> None:
    vault = chamber.boot()
    first = chamber.log.latest_token
    init_unseal(vault, first)
    vault.init_reset(first)
    second = chamber.log.latest_token
    vault = chamber.restart(vault)
    assert vault.state == states.UNINITIALIZED
    third = chamber.log.latest_token
    assert len({first, second, third}) == 3
    for stale in (first, second):
        with unchanged(vault), refused(Unauthorized, 401, "invalid setup token"):
            vault.init(stale, KEYS, 2)
    assert vault.init(third, KEYS, 2)["status"] == "unsealed"
    assert_kcv(vault)


# ---------------------------------------------------------------------- restarts mid-ceremony


def test_restart_in_the_middle_of_registration(chamber: Chamber) -> None:
    vault = chamber.boot()
    tokens = init_unseal(vault, chamber.log.latest_token)
    vault.register("alice", tokens["alice"], passphrase("alice"))

    vault = chamber.restart(vault)
    assert vault.state == states.AWAITING_REGISTRATION
    seal = vault.status()["seal"]
    assert (seal["registered"], seal["remaining"]) == (1, 2)
    # init-reset needs a setup token: this start logged one.
    assert len(chamber.log.setup_tokens) == 2

    with unchanged(vault), refused(Conflict, 409, "already registered"):
        vault.register("alice", tokens["alice"], passphrase("alice"))
    assert vault.register("bob", tokens["bob"], passphrase("bob")) == {
        "registered": 2,
        "remaining": 1,
    }
    vault = chamber.restart(vault)
    assert vault.register("carol", tokens["carol"], passphrase("carol"))["status"] == "sealed"
    wait_state(vault, states.KMS_UNSEALED)
    vault.unseal("alice", passphrase("alice"))
    assert vault.unseal("carol", passphrase("carol"))["status"] == "unsealed"
    assert_kcv(vault)


def test_restart_mid_registration_with_the_kms_down(chamber: Chamber) -> None:
    vault = chamber.boot()
    tokens = init_unseal(vault, chamber.log.latest_token)
    chamber.shutdown(vault)
    chamber.faults.failing.update({"local:kms-a", "local:kms-b"})
    vault = chamber.vault(faulty=True)
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "a KMS error in the status")
    assert vault.state == states.AWAITING_REGISTRATION
    # The registration tries the KMS layer itself and says why it cannot be stored.
    with unchanged(vault), refused(KmsError, 502, "required KMS keys could decrypt"):
        vault.register("alice", tokens["alice"], passphrase("alice"))
    chamber.faults.failing.clear()
    wait_for(lambda: "kms_error" not in vault.status()["seal"], "the KMS layer to open")
    assert vault.register("alice", tokens["alice"], passphrase("alice"))["registered"] == 1


def test_boot_into_registration_is_a_table_transition(chamber: Chamber) -> None:
    vault = chamber.boot()
    init_unseal(vault, chamber.log.latest_token)
    chamber.transitions.clear()
    restarted = chamber.restart(vault)
    assert restarted.state == states.AWAITING_REGISTRATION
    assert chamber.transitions, "the boot changed the state without telling the hooks"
    outside = set(chamber.transitions) - ALLOWED_PAIRS
    assert not outside, f"transitions outside states.TRANSITIONS: {outside}"


# ---------------------------------------------------------------------- KMS faults


def test_kms_only_restart_with_one_key_failing(chamber: Chamber) -> None:
    vault = kms_only_chamber(chamber)
    key = material(vault)
    chamber.faults.failing.add("local:kms-c")
    # The answering keys are a little slow, so the failure is seen before the threshold is met
    # (after it, the unwrap no longer waits for the remaining keys).
    chamber.faults.delays.update({"local:kms-a": 0.2, "local:kms-b": 0.2})
    vault = chamber.restart(vault, faulty=True)
    assert vault.state == states.UNSEALED
    assert material(vault) == key
    warned = [r for r in chamber.log.records if getattr(r, "kms_key_id", None) == "local:kms-c"]
    assert warned and "access denied" in warned[0].__dict__["reason"]


def test_unseal_mode_restart_with_one_key_failing(chamber: Chamber) -> None:
    vault = ready_unseal_chamber(chamber)
    chamber.faults.failing.add("local:kms-a")
    vault = chamber.restart(vault, faulty=True)
    assert vault.state == states.KMS_UNSEALED
    vault.unseal("bob", passphrase("bob"))
    assert vault.unseal("carol", passphrase("carol"))["status"] == "unsealed"


@pytest.mark.parametrize("mode", ["kms_only", "unseal"])
def test_a_hanging_key_does_not_delay_the_unseal(chamber: Chamber, mode: str) -> None:
    if mode == "kms_only":
        vault = kms_only_chamber(chamber)
        expected: str = states.UNSEALED
    else:
        vault = ready_unseal_chamber(chamber)
        expected = states.KMS_UNSEALED
    chamber.faults.hanging.add("local:kms-b")
    # The answering keys are a little slow, so the hanging call has surely begun before the
    # threshold is reached.
    chamber.faults.delays.update({"local:kms-a": 0.2, "local:kms-c": 0.2})
    started = time.monotonic()
    vault = chamber.restart(vault, faulty=True)
    elapsed = time.monotonic() - started
    assert chamber.faults.hang_started.is_set()
    assert vault.state == expected
    assert elapsed < 5.0, f"boot waited {elapsed:.1f} s for a hanging KMS key"


@pytest.mark.parametrize("mode", ["kms_only", "unseal"])
def test_too_few_keys_keep_it_sealed_until_the_kms_recovers(chamber: Chamber, mode: str) -> None:
    if mode == "kms_only":
        first = kms_only_chamber(chamber)
        expected: str = states.UNSEALED
    else:
        first = ready_unseal_chamber(chamber)
        expected = states.KMS_UNSEALED
    chamber.shutdown(first)
    chamber.faults.failing.update({"local:kms-a", "local:kms-c"})
    vault = chamber.vault(faulty=True)
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "a KMS error in the status")
    seal = vault.status()["seal"]
    assert seal["status"] == "sealed"
    assert "only 1 of the 2 required KMS keys" in seal["kms_error"]
    assert "local:kms-a" in seal["kms_error"] and "local:kms-c" in seal["kms_error"]
    assert vault.master_key is None and not vault.signing_allowed
    time.sleep(0.3)
    assert vault.state == states.SEALED

    chamber.faults.failing.discard("local:kms-c")  # one region is back: 2 of 3 answer
    wait_state(vault, expected)
    assert "kms_error" not in vault.status()["seal"]
    if mode == "kms_only":
        assert_kcv(vault)


def test_an_operator_seal_during_kms_retries_is_not_undone_by_the_retry(chamber: Chamber) -> None:
    chamber.shutdown(kms_only_chamber(chamber))
    chamber.faults.failing.update({"local:kms-a", "local:kms-b"})
    vault = chamber.vault(faulty=True)
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "a KMS error in the status")
    assert vault.seal() == {"status": "sealed"}
    chamber.faults.failing.clear()
    time.sleep(2.0)  # the first retry comes after 1 s, the next ones every 0.2 s
    assert vault.state == states.SEALED and vault.master_key is None


def test_an_operator_seal_during_a_slow_kms_open_is_not_undone(chamber: Chamber) -> None:
    chamber.shutdown(kms_only_chamber(chamber))
    chamber.faults.delays.update(dict.fromkeys(KEYS, 0.6))
    vault = chamber.vault(faulty=True)
    vault.start()
    assert chamber.faults.called.wait(10)  # the KMS calls are in flight, outside the lock
    assert vault.state == states.SEALED
    assert vault.seal() == {"status": "sealed"}
    time.sleep(1.5)
    assert vault.state == states.SEALED and vault.master_key is None


# ---------------------------------------------------------------------- tampering


def test_a_tampered_key_check_value_stops_a_kms_only_boot(chamber: Chamber) -> None:
    chamber.shutdown(kms_only_chamber(chamber))
    chamber.rewrite(lambda r: r.evolve(kcv=bytes([r.kcv[0] ^ 1]) + r.kcv[1:]))
    vault = chamber.vault()
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "a KMS error in the status")
    assert "key check" in vault.status()["seal"]["kms_error"]
    time.sleep(0.3)
    assert vault.state == states.SEALED and vault.master_key is None


def test_a_tampered_key_check_value_stops_the_operator_unseal(chamber: Chamber) -> None:
    vault = ready_unseal_chamber(chamber)
    chamber.shutdown(vault)
    chamber.rewrite(lambda r: r.evolve(kcv=bytes(32)))
    vault = chamber.boot()
    assert vault.state == states.KMS_UNSEALED
    vault.unseal("alice", passphrase("alice"))
    with refused(KeyCheckFailed, 500, "key check"):
        vault.unseal("bob", passphrase("bob"))
    assert vault.state == states.KMS_UNSEALED and vault.master_key is None
    assert vault.status()["seal"]["shares_received"] == 0


def test_a_corrupt_record_keeps_the_chamber_sealed(chamber: Chamber) -> None:
    chamber.shutdown(kms_only_chamber(chamber))
    store = SQLiteStateBackend(chamber.state_path)
    try:
        _, version = store.get(RECORD_KEY)  # type: ignore[misc]
        store.put(RECORD_KEY, b'{"format": 1, "kms": 7}', version)
    finally:
        store.close()
    vault = chamber.vault()
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "an error in the status")
    assert "malformed" in vault.status()["seal"]["kms_error"]
    assert vault.state == states.SEALED and vault.master_key is None
    # Never mistaken for an uninitialized chamber: no setup token, no init.
    assert len(chamber.log.setup_tokens) == 1
    with refused(Conflict, 409, "already initialized"):
        vault.init(chamber.log.latest_token, KEYS, 2)


def _swap_ciphertexts(record: VaultRecord) -> VaultRecord:
    s = record.kms.shares
    shares = (
        KmsShare(s[0].key_id, s[0].index, s[1].ciphertext),
        KmsShare(s[1].key_id, s[1].index, s[0].ciphertext),
        *s[2:],
    )
    return record.evolve(kms=record.kms.__class__(record.kms.threshold, shares))


def _swap_indices(record: VaultRecord) -> VaultRecord:
    """Each key keeps its own ciphertext but claims the other share's index: only the
    encryption context (which names the share index) tells."""
    s = record.kms.shares
    shares = (
        KmsShare(s[0].key_id, s[1].index, s[0].ciphertext),
        KmsShare(s[1].key_id, s[0].index, s[1].ciphertext),
        *s[2:],
    )
    return record.evolve(kms=record.kms.__class__(record.kms.threshold, shares))


@pytest.mark.parametrize(
    "tamper", [_swap_ciphertexts, _swap_indices], ids=["ciphertexts", "indices"]
)
def test_swapped_kms_shares_do_not_decrypt(
    chamber: Chamber, tamper: Callable[[VaultRecord], VaultRecord]
) -> None:
    chamber.shutdown(kms_only_chamber(chamber))
    chamber.rewrite(tamper)
    vault = chamber.vault()
    vault.start()
    wait_for(lambda: "kms_error" in vault.status()["seal"], "a KMS error in the status")
    error = vault.status()["seal"]["kms_error"]
    assert "only 1 of the 2 required" in error
    assert error.count("decryption failed: wrong key or encryption context") == 2
    assert vault.state == states.SEALED and vault.master_key is None


def test_the_encryption_context_binds_chamber_purpose_and_index(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path)
    context = {"chamber": "c1", "purpose": "master-key", "share_index": "1"}
    blob = kms.encrypt("local:k", b"share", context)
    assert kms.decrypt("local:k", blob, context) == b"share"
    for change in ({"share_index": "2"}, {"chamber": "c2"}, {"purpose": "outer-key"}):
        with pytest.raises(KmsError, match="encryption context"):
            kms.decrypt("local:k", blob, {**context, **change})


# ---------------------------------------------------------------------- brute force


def test_unseal_brute_force_is_slowed_per_operator(
    chamber: Chamber, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(free_attempts=3, base_delay=10, max_delay=300, clock=clock)
    vault = ready_unseal_chamber(chamber, limiter=limiter)
    hooks = vault.hooks
    assert isinstance(hooks, RecordingHooks)
    wrong = b"not alice's passphrase at all"

    for _ in range(4):  # three free failures, the fourth is evaluated and starts a lock
        with unchanged(vault), refused(Unauthorized, 401, "wrong passphrase"):
            vault.unseal("alice", wrong)
    with unchanged(vault), refused(TooManyAttempts, 429, "retry in 10 s"):
        vault.unseal("alice", wrong)

    # While locked, even the right passphrase is refused without being evaluated.
    derivations: list[int] = []
    real_derive = kdf.derive_wrapping_key

    def counting(*args: Any) -> bytes:
        derivations.append(1)
        return real_derive(*args)

    monkeypatch.setattr(kdf, "derive_wrapping_key", counting)
    with pytest.raises(TooManyAttempts) as locked:
        vault.unseal("alice", passphrase("alice"))
    assert locked.value.retry_after == 10
    assert derivations == []
    assert vault.status()["seal"]["shares_received"] == 0

    # Another operator is not affected.
    assert vault.unseal("bob", passphrase("bob"))["shares_received"] == 1

    clock.advance(10.5)
    with refused(Unauthorized, 401, "wrong passphrase"):
        vault.unseal("alice", wrong)
    with pytest.raises(TooManyAttempts) as longer:
        vault.unseal("alice", passphrase("alice"))
    assert longer.value.retry_after == 20  # the delay grows
    assert hooks.failures == [("alice", "unseal")] * 5
    assert limiter.failures("alice") == 5

    clock.advance(20.5)
    assert vault.unseal("alice", passphrase("alice"))["status"] == "unsealed"
    assert limiter.failures("alice") == 0


def test_setup_token_brute_force_is_slowed(chamber: Chamber) -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(free_attempts=3, base_delay=5, max_delay=300, clock=clock)
    vault = chamber.boot(limiter=limiter)
    good = chamber.log.latest_token
    hooks = vault.hooks
    assert isinstance(hooks, RecordingHooks)
    for _ in range(4):
        with unchanged(vault), refused(Unauthorized, 401, "invalid setup token"):
            vault.init("cc-setup-guess", KEYS, 2)
    with unchanged(vault), refused(TooManyAttempts, 429, "setup token"):
        vault.init("cc-setup-guess", KEYS, 2)
    with unchanged(vault), refused(TooManyAttempts, 429, "retry in 5 s"):
        vault.init(good, KEYS, 2)
    clock.advance(5.5)
    with unchanged(vault), refused(Unauthorized, 401, "invalid setup token"):
        vault.init("cc-setup-guess", KEYS, 2)
    with pytest.raises(TooManyAttempts) as longer:
        vault.init(good, KEYS, 2)
    assert longer.value.retry_after == 10
    assert hooks.failures == [("setup-token", "setup")] * 5
    clock.advance(10.5)
    assert vault.init(good, KEYS, 2)["status"] == "unsealed"
    assert limiter.failures("setup-token") == 0


def test_registration_token_brute_force_is_slowed(chamber: Chamber) -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(free_attempts=2, base_delay=30, max_delay=300, clock=clock)
    vault = chamber.boot(limiter=limiter)
    tokens = init_unseal(vault, chamber.log.latest_token)
    for _ in range(3):
        with unchanged(vault), refused(Unauthorized, 401, "invalid registration token"):
            vault.register("alice", "cc-reg-guess", passphrase("alice"))
    with unchanged(vault), refused(TooManyAttempts, 429, "registration"):
        vault.register("alice", tokens["alice"], passphrase("alice"))
    assert vault.register("bob", tokens["bob"], passphrase("bob"))["registered"] == 1
    clock.advance(31)
    assert vault.register("alice", tokens["alice"], passphrase("alice"))["registered"] == 2
    hooks = vault.hooks
    assert isinstance(hooks, RecordingHooks)
    assert hooks.failures == [("alice", "register")] * 3


# ---------------------------------------------------------------------- partial unseal timeout


def test_partial_unseal_shares_expire(chamber: Chamber) -> None:
    clock = FakeClock()
    options = VaultOptions(argon2=SMALL_ARGON2, unseal_timeout_seconds=60)
    vault = ready_unseal_chamber(chamber, options=options, clock=clock)
    hooks = vault.hooks
    assert isinstance(hooks, RecordingHooks)
    assert vault.unseal("alice", passphrase("alice"))["shares_received"] == 1
    clock.advance(59)
    assert vault.status()["seal"]["shares_received"] == 1
    clock.advance(2)
    assert vault.status()["seal"]["shares_received"] == 0
    assert "unseal_timeout" in hooks.steps
    # The next submission starts a new round; alice's expired share does not count.
    assert vault.unseal("bob", passphrase("bob"))["shares_received"] == 1
    # Expiry is also applied by a submission itself, without a status call in between.
    # and the answer says why the count restarted.
    clock.advance(61)
    answer = vault.unseal("carol", passphrase("carol"))
    assert answer["shares_received"] == 1
    assert answer["message"].startswith("unseal timeout expired: 1 earlier share(s) were cleared")
    assert vault.unseal("alice", passphrase("alice"))["status"] == "unsealed"


def test_partial_unseal_timeout_zero_disables_it(chamber: Chamber) -> None:
    clock = FakeClock()
    options = VaultOptions(argon2=SMALL_ARGON2, unseal_timeout_seconds=0)
    vault = ready_unseal_chamber(chamber, options=options, clock=clock)
    vault.unseal("alice", passphrase("alice"))
    clock.advance(365 * 24 * 3600)
    assert vault.status()["seal"]["shares_received"] == 1
    assert vault.unseal("bob", passphrase("bob"))["status"] == "unsealed"


# ---------------------------------------------------------------------- two replicas


def _race_init(chamber: Chamber, unseal_mode: bool) -> None:
    replicas = [chamber.boot(), chamber.boot()]
    setup = chamber.log.setup_tokens[-2:]
    assert setup[0] != setup[1]
    barrier = threading.Barrier(2)
    results: list[dict[str, Any] | ChamberError | None] = [None, None]

    def run(i: int) -> None:
        barrier.wait()
        try:
            if unseal_mode:
                results[i] = replicas[i].init(setup[i], KEYS[:2], 1, ["alice", "bob"], 1)
            else:
                results[i] = replicas[i].init(setup[i], KEYS[:2], 1)
        except ChamberError as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    losers = [i for i, r in enumerate(results) if isinstance(r, ChamberError)]
    assert len(winners) == 1 and len(losers) == 1, results
    loser_error = results[losers[0]]
    assert isinstance(loser_error, Conflict) and loser_error.status == 409
    winner, loser = replicas[winners[0]], replicas[losers[0]]
    answer = results[winners[0]]
    assert isinstance(answer, dict)
    record = chamber.record()
    # The loser follows the stored record instead of staying uninitialized.
    if unseal_mode:
        wait_state(loser, states.AWAITING_REGISTRATION)
        assert winner.state == states.AWAITING_REGISTRATION
        assert record.mode == "unseal"
        # The stored registration tokens are the ones the winner handed out.
        register_all(winner, answer["operator_tokens"])
        winner.unseal("alice", passphrase("alice"))
        assert_kcv(winner)
    else:
        assert winner.state == states.UNSEALED
        assert envelope.verify_key_check(winner.master_key.material, record.kcv)  # type: ignore[union-attr]
    if not unseal_mode:
        wait_state(loser, states.UNSEALED)
        assert material(loser) == material(winner)


@pytest.mark.parametrize("unseal_mode", [False, True], ids=["kms_only", "unseal"])
def test_two_replicas_racing_init_one_wins(
    tmp_path: Path, vault_log: VaultLog, unseal_mode: bool
) -> None:
    for round_ in range(10):
        cham = Chamber(tmp_path / f"round-{round_}", vault_log)
        try:
            _race_init(cham, unseal_mode)
        finally:
            cham.close()
        outside = set(cham.transitions) - ALLOWED_PAIRS - KNOWN_TABLE_GAPS
        assert not outside, outside


def test_the_losing_replica_cannot_overwrite_the_winner_by_retrying(chamber: Chamber) -> None:
    winner, loser = chamber.boot(), chamber.boot()
    winner_token, loser_token = chamber.log.setup_tokens[-2:]
    winner.init(winner_token, KEYS, 2)
    stored = chamber.stored()
    # The loser still believes it is uninitialized; it reads the record before writing, follows
    # it, and refuses: it can never write over the winner's record, however often it is asked.
    for _ in range(2):
        with refused(Conflict, 409, "already initialized"):
            loser.init(loser_token, KEYS, 2)
    assert chamber.stored() == stored, "the winner's record was overwritten"
    wait_state(loser, states.UNSEALED)
    assert material(loser) == material(winner)


def test_a_compare_and_set_lost_to_another_replica_is_a_409_and_followed(chamber: Chamber) -> None:
    """A write that races another replica's (the store's version moved between the read and
    the compare-and-set) is refused with 409 and the loser follows the stored record."""
    first = chamber.boot()
    tokens = init_unseal(first, chamber.log.latest_token)
    second = chamber.boot()
    assert second.state == states.AWAITING_REGISTRATION
    real_sync = second._sync
    second._sync = lambda: None  # type: ignore[method-assign]  # the race: no catch-up read
    first.register("alice", tokens["alice"], passphrase("alice"))
    with unchanged(first), refused(Conflict, 409, "another replica"):
        second.register("bob", tokens["bob"], passphrase("bob"))
    second._sync = real_sync  # type: ignore[method-assign]
    assert second.status()["seal"]["registered"] == 1
    assert second.register("bob", tokens["bob"], passphrase("bob")) == {
        "registered": 2,
        "remaining": 1,
    }


def test_a_replica_that_lost_track_of_registrations_catches_up(chamber: Chamber) -> None:
    first = chamber.boot()
    tokens = init_unseal(first, chamber.log.latest_token)
    second = chamber.boot()  # another replica, started while operators register
    assert second.state == states.AWAITING_REGISTRATION
    first.register("alice", tokens["alice"], passphrase("alice"))
    # The second replica's copy is stale; it reads the record before writing and bob's
    # registration lands on top of alice's, then carol's through the first replica on top of it.
    assert second.register("bob", tokens["bob"], passphrase("bob")) == {
        "registered": 2,
        "remaining": 1,
    }
    assert first.register("carol", tokens["carol"], passphrase("carol"))["remaining"] == 0
    wait_state(first, states.KMS_UNSEALED)
    first.unseal("alice", passphrase("alice"))
    assert first.unseal("bob", passphrase("bob"))["status"] == "unsealed"


# ---------------------------------------------------------------------- the transition table


def test_transitions_seen_in_a_full_life_cycle_are_all_in_the_table(chamber: Chamber) -> None:
    vault = chamber.boot()
    token = chamber.log.latest_token
    init_unseal(vault, token)
    vault.init_reset(token)
    tokens = init_unseal(vault, chamber.log.latest_token)
    register_all(vault, tokens)
    vault.unseal("alice", passphrase("alice"))
    vault.unseal("bob", passphrase("bob"))
    vault.seal()
    vault = chamber.restart(vault)
    vault.seal()
    seen = set(chamber.transitions)
    assert seen == {
        (states.SEALED, states.UNINITIALIZED),
        (states.UNINITIALIZED, states.AWAITING_REGISTRATION),
        (states.AWAITING_REGISTRATION, states.UNINITIALIZED),
        (states.AWAITING_REGISTRATION, states.SEALED),
        (states.SEALED, states.KMS_UNSEALED),
        (states.KMS_UNSEALED, states.UNSEALED),
        (states.UNSEALED, states.SEALED),
        (states.KMS_UNSEALED, states.SEALED),
    }
    assert seen <= ALLOWED_PAIRS


def test_opened_kms_layer_and_registration_steps_never_show_secrets_in_repr() -> None:
    from chamber.vault.records import BundleEntry, OperatorLayer
    from chamber.vault.service import _Opened, _Registration

    outer = bytearray(b"\xab" * 32)
    share = b"\xcd" * 33
    bundle = {"alice": BundleEntry(pending_share=share)}
    opened = _Opened(outer=outer, bundle=bundle)
    step = _Registration(OperatorLayer(1, (), b""), bundle, 0, 1)
    for text in (repr(opened), repr(step)):
        assert "abab" not in text and "\\xab" not in text
        assert "cdcd" not in text and "\\xcd" not in text
