"""Crash consistency of every multi-step vault change: SIGKILL at each commit point, then restart.

For each change (init, init-reset, register, rotate kms, rotate unseal, each registration of a
rotation including the last one that swaps the operator set, rotate unseal-cancel, rotate mode
both ways, credential add / remove, seal) and each crash point (``<step>:before_commit``,
``<step>:after_commit``), a child process builds a vault on the chamber's files, reaches the
starting state (boot, unseal) and performs the change with ``CHAMBER_TEST_KILL_AT`` set in its
environment (``chamber.vault.faults`` reads it at import), so it SIGKILLs itself at that point.

Then a fresh vault in this process boots on the same files. The stored configuration must be
exactly the old one (killed before the commit) or exactly the new one (killed after it), and it
must be complete: the restart unseals with that configuration alone (its KMS keys only, its
operators' credentials), the other configuration's credentials are refused, the key check value
is the one from before, and the validator keys in the encrypted key store decrypt under the
master key. Where the change was a step of a ceremony, the ceremony can still be finished.

Real components throughout: SQLite state file, local file KMS, small Argon2, SQLite key store.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

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
from chamber.vault.service import DEFAULT_CREDENTIAL_ID, TOMBSTONE, Vault, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests.harness import make_keys
from tests.support import REPO_ROOT

ARGON2 = {"memory_kib": 1024, "iterations": 1, "parallelism": 1}
OPTIONS = VaultOptions(argon2=Argon2Params(**ARGON2), kms_retry_max_seconds=0.2)
OLD_KEYS = ["local:old-a", "local:old-b", "local:old-c"]
NEW_KEYS = ["local:new-d", "local:new-e"]
OLD_OPERATORS = ["alice", "bob"]
NEW_OPERATORS = ["carol", "dave"]
EXTRA_CREDENTIAL = "yubikey-backup"
VALIDATORS = make_keys(2, seed="vault-kill")
BLS = BlspyBackend()


def secret(operator: str, credential_id: str = DEFAULT_CREDENTIAL_ID) -> bytes:
    """Every credential's passphrase, known to the parent and the child alike."""
    return f"{operator}/{credential_id}: correct horse battery staple".encode()


# ---------------------------------------------------------------------- the child process

_CHILD = r"""
import json
import logging
import sys
from pathlib import Path

spec = json.loads(sys.argv[1])


class SetupTokens(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.tokens = []

    def emit(self, record):
        token = getattr(record, "setup_token", None)
        if token:
            self.tokens.append(token)


tokens = SetupTokens()
logger = logging.getLogger("chamber.vault")
logger.addHandler(tokens)
logger.setLevel(logging.INFO)

# Imported only now, with CHAMBER_TEST_KILL_AT already in this process's environment.
from chamber.crypto.kdf import Argon2Params
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.local_kms import LocalKms
from chamber.vault.service import Vault, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend

root = Path(spec["root"])
vault = Vault(
    SQLiteStateBackend(root / "state.sqlite"),
    KmsSet({"local": LocalKms}, {"local": {"directory": str(root / "kms")}}),
    {"passphrase": PassphraseCredential},
    options=VaultOptions(argon2=Argon2Params(**spec["argon2"]), kms_retry_max_seconds=0.2),
)
vault.boot()
for name, passphrase in spec["unseal"]:
    vault.unseal(name, passphrase.encode())
print("ready", vault.state, flush=True)
action, args = spec["action"], spec["args"]
if action == "init":
    answer = vault.init(
        tokens.tokens[-1],
        args["kms_key_ids"],
        args["kms_threshold"],
        args.get("operators"),
        args.get("unseal_threshold"),
    )
elif action == "init_reset":
    answer = vault.init_reset(tokens.tokens[-1])
elif action == "register":
    answer = vault.register(
        args["operator"], args["token"], args["passphrase"].encode(),
        credential_id=args["credential_id"],
    )
elif action == "rotate_kms":
    answer = vault.rotate_kms(args["kms_key_ids"], args["kms_threshold"])
elif action == "rotate_unseal":
    answer = vault.rotate_unseal(args["operators"], args["unseal_threshold"])
elif action == "rotate_unseal_cancel":
    answer = vault.rotate_unseal_cancel()
elif action == "rotate_mode":
    answer = vault.rotate_mode(args["mode"], args.get("operators"), args.get("unseal_threshold"))
elif action == "add_credential":
    answer = vault.add_credential(
        args["operator"], args["existing_id"], args["existing"].encode(),
        args["new_id"], args["new"].encode(),
    )
elif action == "remove_credential":
    answer = vault.remove_credential(
        args["operator"], args["existing_id"], args["existing"].encode(), args["remove_id"],
    )
elif action == "seal":
    answer = vault.seal()
else:
    raise SystemExit(f"unknown action {action}")
# Reached only when the crash point did not fire.
print("done", json.dumps(answer, default=str), flush=True)
"""


@dataclass(frozen=True)
class Child:
    """What the child does: unseal with these credentials, then ``action(**args)``."""

    action: str
    args: Mapping[str, Any]
    unseal: Sequence[tuple[str, bytes]] = ()


# ---------------------------------------------------------------------- the chamber's files


#: (operator, its credential ids)...
Operators = tuple[tuple[str, tuple[str, ...]], ...]
#: (threshold, ((operator, registered)...))
Rotation = tuple[int, tuple[tuple[str, bool], ...]]


@dataclass(frozen=True)
class Config:
    """A stored configuration, in the terms an operator team knows it by."""

    mode: str | None  # None: uninitialized (no record, or the init-reset tombstone)
    phase: str | None = None
    kms: tuple[tuple[str, ...], int] | None = None
    threshold: int | None = None
    #: (operator, its credential ids), in the record's order; a pending operator has none.
    operators: Operators | None = None
    #: The operator rotation in progress: (threshold, (operator, registered)...).
    rotation: Rotation | None = None
    seal_generation: int = 0

    def evolve(self, **changes: Any) -> Config:
        return replace(self, **changes)


def config_of(record: VaultRecord | None) -> Config:
    if record is None:
        return Config(mode=None)
    ops = record.operators
    rotation = record.rotation
    return Config(
        mode=record.mode,
        phase=record.phase,
        kms=(tuple(record.kms.key_ids), record.kms.threshold),
        threshold=None if ops is None else ops.threshold,
        operators=None
        if ops is None
        else tuple(
            (op.name, tuple(c.credential_id for c in op.credentials)) for op in ops.operators
        ),
        rotation=None
        if rotation is None
        else (
            rotation.operators.threshold,
            tuple((op.name, op.registered) for op in rotation.operators.operators),
        ),
        seal_generation=record.seal_generation,
    )


def registered(names: Sequence[str], credential_id: str = DEFAULT_CREDENTIAL_ID) -> Operators:
    return tuple((name, (credential_id,)) for name in names)


class _SetupTokens(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.tokens: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        token = getattr(record, "setup_token", None)
        if token:
            self.tokens.append(str(token))


class Lab:
    """One chamber's files (state, KMS keys, encrypted key store) and the vaults opened on them
    in this process."""

    def __init__(self, root: Path, log: _SetupTokens) -> None:
        self.root = root
        self.log = log
        self.kms_dir = root / "kms"
        self.source = SQLiteKeySource.from_config({"path": str(root / "keys.sqlite")}, BLS)
        self.vaults: list[Vault] = []
        self.views = 0
        self.pubkeys: set[bytes] = set()

    # -------------------------------------------------------------- vaults

    def vault(self, kms_dir: Path | None = None) -> Vault:
        vault = Vault(
            SQLiteStateBackend(self.root / "state.sqlite"),
            KmsSet({"local": LocalKms}, {"local": {"directory": str(kms_dir or self.kms_dir)}}),
            {"passphrase": PassphraseCredential},
            options=OPTIONS,
            # Refusals are asserted here; never lock an operator out.
            limiter=AttemptLimiter(free_attempts=1_000_000),
        )
        self.vaults.append(vault)
        return vault

    def boot(self) -> Vault:
        vault = self.vault()
        vault.boot()
        return vault

    def boot_with_only_its_kms_keys(self) -> Vault:
        """Boot with a KMS directory holding only the key files the stored record names, so the
        restart proves the configuration is complete with its own KMS keys alone."""
        record = self.record()
        assert record is not None
        names = set(record.kms.key_ids)
        if record.rotation is not None:
            names |= set(record.rotation.kms.key_ids)
        self.views += 1
        view = self.root / f"kms-view-{self.views}"
        view.mkdir(mode=0o700)
        for key_id in names:
            name = key_id.removeprefix("local:") + ".key"
            shutil.copy2(self.kms_dir / name, view / name)
        vault = self.vault(view)
        vault.boot()
        return vault

    @staticmethod
    def close(vault: Vault) -> None:
        vault.stop()
        vault.store.close()

    def close_all(self) -> None:
        for vault in self.vaults:
            self.close(vault)
        self.source.close()

    # -------------------------------------------------------------- stored state

    def record(self) -> VaultRecord | None:
        store = SQLiteStateBackend(self.root / "state.sqlite")
        try:
            found = store.get(RECORD_KEY)
        finally:
            store.close()
        if found is None or found[0] == TOMBSTONE:
            return None
        return VaultRecord.from_bytes(found[0])

    def config(self) -> Config:
        return config_of(self.record())

    def kcv(self) -> bytes:
        record = self.record()
        assert record is not None
        return record.kcv

    # -------------------------------------------------------------- ceremonies

    def setup_token(self) -> str:
        assert self.log.tokens, "no setup token was logged"
        return self.log.tokens[-1]

    def unseal(self, vault: Vault, names: Sequence[str], expect: str = states.UNSEALED) -> None:
        """``names`` (exactly the threshold) each submit a credential: ``name`` its default
        one, ``name/credential_id`` that one."""
        assert vault.state == states.KMS_UNSEALED, vault.state
        for i, entry in enumerate(names):
            name, _, credential_id = entry.partition("/")
            answer = vault.unseal(name, secret(name, credential_id or DEFAULT_CREDENTIAL_ID))
            if i + 1 < len(names):
                assert answer["shares_received"] == i + 1, answer
        assert vault.state == expect, vault.state
        self.check_master(vault)

    def refused(self, vault: Vault, entries: Sequence[str]) -> None:
        """These credentials give no share (unknown operator, or not one of its credentials)."""
        before = vault.shares_received
        for entry in entries:
            name, _, credential_id = entry.partition("/")
            with pytest.raises((Unauthorized, BadRequest)):
                vault.unseal(name, secret(name, credential_id or DEFAULT_CREDENTIAL_ID))
        assert vault.shares_received == before

    def check_master(self, vault: Vault) -> None:
        """The master key verifies against the stored kcv and opens every validator key."""
        master = vault.master_key
        assert master is not None
        record = self.record()
        assert record is not None
        assert envelope.verify_key_check(master.material, record.kcv)
        result = self.source.load(master.material)
        assert result.errors == []
        assert {key.pubkey for key in result.keys} == self.pubkeys

    def import_keys(self, vault: Vault) -> None:
        master = vault.master_key
        assert master is not None
        for key in VALIDATORS:
            self.source.import_secret(master.material, key.secret.to_bytes(32, "big"))
            self.pubkeys.add(key.pubkey)
        self.check_master(vault)

    def register(self, vault: Vault, tokens: Mapping[str, str], names: Sequence[str]) -> Any:
        answer: Any = None
        for name in names:
            answer = vault.register(name, tokens[name], secret(name))
        return answer

    # -------------------------------------------------------------- prepared chambers

    def kms_only(self) -> Vault:
        """An initialised kms_only chamber holding the validator keys; the vault is open."""
        vault = self.boot()
        vault.init(self.setup_token(), OLD_KEYS, 2)
        self.import_keys(vault)
        return vault

    def unseal_mode(self) -> Vault:
        """An unseal-mode chamber (alice and bob, 2 of 2) holding the validator keys; the
        returned vault is unsealed."""
        first = self.boot()
        answer = first.init(self.setup_token(), OLD_KEYS, 2, OLD_OPERATORS, 2)
        self.register(first, answer["operator_tokens"], OLD_OPERATORS)
        wait_state(first, states.KMS_UNSEALED)
        self.close(first)
        vault = self.boot()
        self.unseal_and_import(vault)
        return vault

    def unseal_and_import(self, vault: Vault) -> None:
        """Unseal with alice and bob, then store the validator keys under the master key."""
        self.unseal(vault, OLD_OPERATORS)
        self.import_keys(vault)

    # -------------------------------------------------------------- the child

    def run_child(self, child: Child, kill_at: str) -> None:
        spec = {
            "root": str(self.root),
            "argon2": ARGON2,
            "action": child.action,
            "args": dict(child.args),
            "unseal": [[name, passphrase.decode()] for name, passphrase in child.unseal],
        }
        env = {**os.environ, "CHAMBER_TEST_KILL_AT": kill_at}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(spec)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "ready" in out.stdout, f"the child failed before the change:\n{out.stderr}"
        assert out.returncode == -signal.SIGKILL, (
            f"the child was not killed at {kill_at} (exit {out.returncode}):\n"
            f"{out.stdout}\n{out.stderr}"
        )
        assert "done" not in out.stdout


def wait_state(vault: Vault, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while vault.state != state:
        assert time.monotonic() < deadline, f"state {vault.state}, expected {state}"
        time.sleep(0.01)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    handler = _SetupTokens()
    logger = logging.getLogger("chamber.vault")
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    chamber = Lab(tmp_path, handler)
    try:
        yield chamber
    finally:
        chamber.close_all()
        logger.removeHandler(handler)
        logger.setLevel(level)


# ---------------------------------------------------------------------- scenarios
#
# Each scenario prepares the chamber in this process and returns the child's change, the old
# and the new configuration, and a check that runs after the configuration was recognised:
# ``finish(lab, committed)`` boots a fresh vault, unseals with that configuration and, for
# ceremonies, finishes them.

Finish = Callable[[Lab, bool], None]


@dataclass(frozen=True)
class Case:
    child: Child
    old: Config
    new: Config
    finish: Finish


def _kms_only_old() -> Config:
    return Config(mode="kms_only", phase="ready", kms=(tuple(OLD_KEYS), 2))


def _unseal_old() -> Config:
    return Config(
        mode="unseal",
        phase="ready",
        kms=(tuple(OLD_KEYS), 2),
        threshold=2,
        operators=registered(OLD_OPERATORS),
    )


def _pending(names: Sequence[str], done: Sequence[str], threshold: int = 2) -> Rotation:
    return (threshold, tuple((name, name in done) for name in names))


def init_kms_only(lab: Lab) -> Case:
    lab.close(lab.boot())  # the token this start logged is lost with the process

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot()
        if not committed:
            assert vault.state == states.UNINITIALIZED
            vault.init(lab.setup_token(), OLD_KEYS, 2)  # the operator simply runs init again
        assert vault.state == states.UNSEALED
        lab.import_keys(vault)
        lab.close(vault)
        lab.check_master(lab.boot_with_only_its_kms_keys())

    args = {"kms_key_ids": OLD_KEYS, "kms_threshold": 2}
    return Case(Child("init", args), Config(mode=None), _kms_only_old(), finish)


def init_unseal(lab: Lab) -> Case:
    lab.close(lab.boot())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot()
        if committed:
            # The registration tokens died with the process: init-reset (with the setup token
            # this start logged) and init again, as the runbook says.
            assert vault.state == states.AWAITING_REGISTRATION
            assert vault.init_reset(lab.setup_token()) == {"status": states.UNINITIALIZED}
        assert vault.state == states.UNINITIALIZED
        answer = vault.init(lab.setup_token(), OLD_KEYS, 2, OLD_OPERATORS, 2)
        lab.register(vault, answer["operator_tokens"], OLD_OPERATORS)
        wait_state(vault, states.KMS_UNSEALED)
        lab.close(vault)
        vault = lab.boot()
        lab.unseal_and_import(vault)

    args = {
        "kms_key_ids": OLD_KEYS,
        "kms_threshold": 2,
        "operators": OLD_OPERATORS,
        "unseal_threshold": 2,
    }
    new = Config(
        mode="unseal",
        phase="awaiting_registration",
        kms=(tuple(OLD_KEYS), 2),
        threshold=2,
        operators=tuple((name, ()) for name in OLD_OPERATORS),
    )
    return Case(Child("init", args), Config(mode=None), new, finish)


def _awaiting_registration(lab: Lab, done: Sequence[str]) -> dict[str, str]:
    vault = lab.boot()
    tokens: dict[str, str] = vault.init(lab.setup_token(), OLD_KEYS, 2, OLD_OPERATORS, 2)[
        "operator_tokens"
    ]
    lab.register(vault, tokens, done)
    lab.close(vault)
    return tokens


def _registration_config(done: Sequence[str]) -> Config:
    return Config(
        mode="unseal",
        phase="ready" if len(done) == len(OLD_OPERATORS) else "awaiting_registration",
        kms=(tuple(OLD_KEYS), 2),
        threshold=2,
        operators=tuple(
            (name, (DEFAULT_CREDENTIAL_ID,) if name in done else ()) for name in OLD_OPERATORS
        ),
    )


def init_reset(lab: Lab) -> Case:
    tokens = _awaiting_registration(lab, [])

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot()
        if committed:
            assert vault.state == states.UNINITIALIZED
            vault.init(lab.setup_token(), OLD_KEYS, 2)
            lab.import_keys(vault)
            return
        # Not reset: the registration tokens the operators hold still work.
        assert vault.state == states.AWAITING_REGISTRATION
        lab.register(vault, tokens, OLD_OPERATORS)
        wait_state(vault, states.KMS_UNSEALED)
        lab.unseal_and_import(vault)

    return Case(Child("init_reset", {}), _registration_config([]), Config(mode=None), finish)


def register_first(lab: Lab) -> Case:
    return _register_case(lab, done=[], registering="alice")


def register_last(lab: Lab) -> Case:
    return _register_case(lab, done=["alice"], registering="bob")


def _register_case(lab: Lab, done: list[str], registering: str) -> Case:
    tokens = _awaiting_registration(lab, done)

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot()
        rest = [n for n in OLD_OPERATORS if n not in done and (n != registering or not committed)]
        if committed:
            # Registration tokens are single-use: the committed one is spent.
            spent = "already registered" if rest else "no registration is in progress"
            with pytest.raises(Conflict, match=spent):
                vault.register(registering, tokens[registering], secret(registering))
        if rest:
            assert vault.state == states.AWAITING_REGISTRATION
            lab.register(vault, tokens, rest)
            wait_state(vault, states.KMS_UNSEALED)
        lab.close(vault)
        lab.unseal_and_import(lab.boot_with_only_its_kms_keys())

    child = Child(
        "register",
        {
            "operator": registering,
            "token": tokens[registering],
            "passphrase": secret(registering).decode(),
            "credential_id": DEFAULT_CREDENTIAL_ID,
        },
    )
    return Case(
        child, _registration_config(done), _registration_config([*done, registering]), finish
    )


def rotate_kms_kms_only(lab: Lab) -> Case:
    lab.close(lab.kms_only())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        assert vault.state == states.UNSEALED
        lab.check_master(vault)

    args = {"kms_key_ids": NEW_KEYS, "kms_threshold": 1}
    old = _kms_only_old()
    return Case(Child("rotate_kms", args), old, old.evolve(kms=(tuple(NEW_KEYS), 1)), finish)


def rotate_kms_unseal(lab: Lab) -> Case:
    lab.close(lab.unseal_mode())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        lab.unseal(vault, OLD_OPERATORS)

    args = {"kms_key_ids": NEW_KEYS, "kms_threshold": 2}
    old = _unseal_old()
    child = Child("rotate_kms", args, _old_operators_unseal())
    return Case(child, old, old.evolve(kms=(tuple(NEW_KEYS), 2)), finish)


def _old_operators_unseal() -> list[tuple[str, bytes]]:
    return [(name, secret(name)) for name in OLD_OPERATORS]


def rotate_unseal_start(lab: Lab) -> Case:
    lab.close(lab.unseal_mode())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        # The old operators stay the operators until the rotation completes.
        lab.refused(vault, NEW_OPERATORS)
        lab.unseal(vault, OLD_OPERATORS, states.AWAITING_ROTATION if committed else states.UNSEALED)
        if committed:
            # The new registration tokens died with the process: cancel and start again.
            assert vault.rotate_unseal_cancel() == {"status": states.UNSEALED}
            tokens = vault.rotate_unseal(NEW_OPERATORS, 2)["operator_tokens"]
            lab.register(vault, tokens, NEW_OPERATORS)
            assert vault.state == states.UNSEALED
            lab.close(vault)
            vault = lab.boot_with_only_its_kms_keys()
            lab.refused(vault, OLD_OPERATORS)
            lab.unseal(vault, NEW_OPERATORS)

    args = {"operators": NEW_OPERATORS, "unseal_threshold": 2}
    old = _unseal_old()
    new = old.evolve(rotation=_pending(NEW_OPERATORS, []))
    return Case(Child("rotate_unseal", args, _old_operators_unseal()), old, new, finish)


def _rotation_in_progress(lab: Lab, kind: str, done: Sequence[str]) -> dict[str, str]:
    """A chamber (unseal mode, or kms_only for kind "mode") with an operator rotation to carol
    and dave (2 of 2) in progress, ``done`` registered."""
    if kind == "mode":
        vault = lab.kms_only()
        answer = vault.rotate_mode("unseal", NEW_OPERATORS, 2)
    else:
        vault = lab.unseal_mode()
        answer = vault.rotate_unseal(NEW_OPERATORS, 2)
    tokens: dict[str, str] = answer["operator_tokens"]
    lab.register(vault, tokens, done)
    assert vault.state == states.AWAITING_ROTATION
    lab.close(vault)
    return tokens


def _register_rotation_case(lab: Lab, kind: str, done: list[str], registering: str) -> Case:
    tokens = _rotation_in_progress(lab, kind, done)
    last = len(done) + 1 == len(NEW_OPERATORS)
    current_operators = [] if kind == "mode" else OLD_OPERATORS

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        if committed and last:
            # The new operator set replaced the old one in the same compare-and-set.
            assert vault.state == states.KMS_UNSEALED
            lab.refused(vault, current_operators)
            lab.unseal(vault, NEW_OPERATORS)
            return
        # Still the old configuration, the rotation in progress; signing resumes with the
        # current operators (or by itself in kms_only mode), and the rotation can finish.
        if kind == "mode":
            assert vault.state == states.AWAITING_ROTATION
            lab.check_master(vault)
        else:
            lab.refused(vault, NEW_OPERATORS)
            lab.unseal(vault, current_operators, states.AWAITING_ROTATION)
        if committed:
            with pytest.raises(Conflict, match="already registered"):
                vault.register(registering, tokens[registering], secret(registering))
        rest = [n for n in NEW_OPERATORS if n not in done and (n != registering or not committed)]
        assert lab.register(vault, tokens, rest)["status"] == states.UNSEALED
        lab.close(vault)
        vault = lab.boot_with_only_its_kms_keys()
        lab.refused(vault, OLD_OPERATORS)
        lab.unseal(vault, NEW_OPERATORS)

    old_base = _kms_only_old() if kind == "mode" else _unseal_old()
    old = old_base.evolve(rotation=_pending(NEW_OPERATORS, done))
    if last:
        new = Config(
            mode="unseal",
            phase="ready",
            kms=(tuple(OLD_KEYS), 2),
            threshold=2,
            operators=registered(NEW_OPERATORS),
        )
    else:
        new = old_base.evolve(rotation=_pending(NEW_OPERATORS, [*done, registering]))
    child = Child(
        "register",
        {
            "operator": registering,
            "token": tokens[registering],
            "passphrase": secret(registering).decode(),
            "credential_id": DEFAULT_CREDENTIAL_ID,
        },
        [] if kind == "mode" else _old_operators_unseal(),
    )
    return Case(child, old, new, finish)


def register_rotation_first(lab: Lab) -> Case:
    return _register_rotation_case(lab, "unseal", [], "carol")


def register_rotation_last(lab: Lab) -> Case:
    return _register_rotation_case(lab, "unseal", ["carol"], "dave")


def register_rotation_last_of_mode_switch(lab: Lab) -> Case:
    return _register_rotation_case(lab, "mode", ["carol"], "dave")


def rotate_unseal_cancel(lab: Lab) -> Case:
    tokens = _rotation_in_progress(lab, "unseal", ["carol"])

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        lab.refused(vault, NEW_OPERATORS)
        lab.unseal(vault, OLD_OPERATORS, states.UNSEALED if committed else states.AWAITING_ROTATION)
        if committed:
            with pytest.raises(Conflict, match="no registration is in progress"):
                vault.register("dave", tokens["dave"], secret("dave"))
            return
        # Not cancelled: the rotation is intact and dave can still complete it.
        assert lab.register(vault, tokens, ["dave"])["status"] == states.UNSEALED
        lab.close(vault)
        lab.unseal(lab.boot_with_only_its_kms_keys(), NEW_OPERATORS)

    old = _unseal_old().evolve(rotation=_pending(NEW_OPERATORS, ["carol"]))
    child = Child("rotate_unseal_cancel", {}, _old_operators_unseal())
    return Case(child, old, _unseal_old(), finish)


def rotate_mode_to_unseal(lab: Lab) -> Case:
    lab.close(lab.kms_only())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        assert vault.state == (states.AWAITING_ROTATION if committed else states.UNSEALED)
        lab.check_master(vault)
        if committed:
            assert vault.rotate_unseal_cancel() == {"status": states.UNSEALED}
        tokens = vault.rotate_mode("unseal", NEW_OPERATORS, 2)["operator_tokens"]
        assert lab.register(vault, tokens, NEW_OPERATORS)["status"] == states.UNSEALED
        lab.close(vault)
        lab.unseal(lab.boot_with_only_its_kms_keys(), NEW_OPERATORS)

    args = {"mode": "unseal", "operators": NEW_OPERATORS, "unseal_threshold": 2}
    old = _kms_only_old()
    new = old.evolve(rotation=_pending(NEW_OPERATORS, []))
    return Case(Child("rotate_mode", args), old, new, finish)


def rotate_mode_to_kms_only(lab: Lab) -> Case:
    lab.close(lab.unseal_mode())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        if committed:
            assert vault.state == states.UNSEALED
            lab.check_master(vault)
        else:
            lab.unseal(vault, OLD_OPERATORS)

    args = {"mode": "kms_only"}
    old = _unseal_old()
    new = _kms_only_old()
    return Case(Child("rotate_mode", args, _old_operators_unseal()), old, new, finish)


def add_credential(lab: Lab) -> Case:
    """Added while kms_unsealed (the vault's open operator bundle)."""
    lab.close(lab.unseal_mode())

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        if committed:
            lab.unseal(vault, [f"alice/{EXTRA_CREDENTIAL}", "bob"])
        else:
            lab.refused(vault, [f"alice/{EXTRA_CREDENTIAL}"])
            lab.unseal(vault, OLD_OPERATORS)

    args = {
        "operator": "alice",
        "existing_id": DEFAULT_CREDENTIAL_ID,
        "existing": secret("alice").decode(),
        "new_id": EXTRA_CREDENTIAL,
        "new": secret("alice", EXTRA_CREDENTIAL).decode(),
    }
    old = _unseal_old()
    new = old.evolve(
        operators=(("alice", (DEFAULT_CREDENTIAL_ID, EXTRA_CREDENTIAL)), ("bob", ("password-1",)))
    )
    return Case(Child("add_credential", args), old, new, finish)


def remove_credential(lab: Lab) -> Case:
    """Removed while unsealed (the KMS layer reopened for the change)."""
    vault = lab.unseal_mode()
    vault.add_credential(
        "alice",
        DEFAULT_CREDENTIAL_ID,
        secret("alice"),
        EXTRA_CREDENTIAL,
        secret("alice", EXTRA_CREDENTIAL),
    )
    lab.close(vault)

    def finish(lab: Lab, committed: bool) -> None:
        vault = lab.boot_with_only_its_kms_keys()
        if committed:
            lab.refused(vault, ["alice"])
        lab.unseal(vault, [f"alice/{EXTRA_CREDENTIAL}", "bob"])
        if not committed:
            lab.close(vault)
            lab.unseal(lab.boot_with_only_its_kms_keys(), OLD_OPERATORS)

    args = {
        "operator": "alice",
        "existing_id": EXTRA_CREDENTIAL,
        "existing": secret("alice", EXTRA_CREDENTIAL).decode(),
        "remove_id": DEFAULT_CREDENTIAL_ID,
    }
    new = _unseal_old()
    old = new.evolve(
        operators=(("alice", (DEFAULT_CREDENTIAL_ID, EXTRA_CREDENTIAL)), ("bob", ("password-1",)))
    )
    new = new.evolve(operators=(("alice", (EXTRA_CREDENTIAL,)), ("bob", ("password-1",))))
    return Case(Child("remove_credential", args, _old_operators_unseal()), old, new, finish)


def seal(lab: Lab) -> Case:
    lab.close(lab.kms_only())

    def finish(lab: Lab, committed: bool) -> None:
        # A restart after a seal (recorded or not) opens a kms_only chamber by itself.
        vault = lab.boot_with_only_its_kms_keys()
        assert vault.state == states.UNSEALED
        lab.check_master(vault)

    old = _kms_only_old()
    return Case(Child("seal", {}), old, old.evolve(seal_generation=1), finish)


#: (test id, crash-point step, scenario)
SCENARIOS: list[tuple[str, str, Callable[[Lab], Case]]] = [
    ("init-kms_only", "init", init_kms_only),
    ("init-unseal", "init", init_unseal),
    ("init_reset", "init_reset", init_reset),
    ("register-first", "register", register_first),
    ("register-last", "register", register_last),
    ("rotate_kms-kms_only", "rotate_kms", rotate_kms_kms_only),
    ("rotate_kms-unseal", "rotate_kms", rotate_kms_unseal),
    ("rotate_unseal-start", "rotate_unseal", rotate_unseal_start),
    ("register_rotation-first", "register_rotation", register_rotation_first),
    ("register_rotation-last", "register_rotation", register_rotation_last),
    ("register_rotation-last-mode", "register_rotation", register_rotation_last_of_mode_switch),
    ("rotate_unseal_cancel", "rotate_unseal_cancel", rotate_unseal_cancel),
    ("rotate_mode-to_unseal", "rotate_mode", rotate_mode_to_unseal),
    ("rotate_mode-to_kms_only", "rotate_mode", rotate_mode_to_kms_only),
    ("credentials-add", "credentials", add_credential),
    ("credentials-remove", "credentials", remove_credential),
    ("seal", "seal", seal),
]


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
@pytest.mark.parametrize(
    ("step", "scenario"),
    [pytest.param(step, scenario, id=name) for name, step, scenario in SCENARIOS],
)
def test_killed_change_leaves_the_old_or_the_new_configuration(
    lab: Lab, step: str, scenario: Callable[[Lab], Case], point: str
) -> None:
    case = scenario(lab)
    assert case.old != case.new
    assert lab.config() == case.old, "the scenario did not prepare its starting point"
    kcv = lab.kcv() if case.old.mode is not None else None

    lab.run_child(case.child, f"{step}:{point}")

    committed = point == "after_commit"
    found = lab.config()
    assert found in (case.old, case.new), f"neither the old nor the new configuration: {found}"
    assert found == (case.new if committed else case.old)
    if kcv is not None and found.mode is not None:
        assert lab.kcv() == kcv, "the master key changed"
    case.finish(lab, committed)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_switch_to_unseal_mode_has_rotate_mode_crash_points(lab: Lab, point: str) -> None:
    case = rotate_mode_to_unseal(lab)
    lab.run_child(case.child, f"rotate_mode:{point}")
