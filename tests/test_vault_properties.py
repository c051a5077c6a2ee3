"""Properties of the unseal ceremony over random configurations (hypothesis).

For any KMS layer (1..5 keys, any threshold) and any operator set (1..5 operators, any
threshold): after init and every registration, a freshly booted vault unseals with any subset of
at least ``threshold`` operators submitting in any order, to a master key whose key check value
verifies; a subset smaller than the threshold never unseals it.

Real components: SQLite state file, local file KMS, small Argon2.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chamber.crypto import envelope
from chamber.crypto.kdf import Argon2Params
from chamber.vault import states
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.local_kms import LocalKms
from chamber.vault.records import RECORD_KEY, VaultRecord
from chamber.vault.service import Vault, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend

OPTIONS = VaultOptions(
    argon2=Argon2Params(memory_kib=1024, iterations=1, parallelism=1),
    kms_retry_max_seconds=0.2,
)
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,12}", fullmatch=True)


class _Tokens(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.tokens: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        token = getattr(record, "setup_token", None)
        if token:
            self.tokens.append(token)


@contextmanager
def setup_tokens() -> Iterator[_Tokens]:
    handler = _Tokens()
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


def passphrase(name: str) -> bytes:
    return f"passphrase of {name}, long enough".encode()


def new_vault(root: Path) -> Vault:
    return Vault(
        SQLiteStateBackend(root / "state.sqlite"),
        KmsSet({"local": LocalKms}, {"local": {"directory": str(root / "kms")}}),
        {"passphrase": PassphraseCredential},
        options=OPTIONS,
    )


def close(vault: Vault) -> None:
    vault.stop()
    vault.store.close()


def wait_state(vault: Vault, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while vault.state != state:
        assert time.monotonic() < deadline, f"state {vault.state}, expected {state}"
        time.sleep(0.01)


@st.composite
def ceremonies(draw: st.DrawFn) -> tuple[int, int, list[str], int, list[str], list[str]]:
    """(KMS keys, KMS threshold, operators, operator threshold, an unsealing subset in
    submission order, a too-small subset in submission order)."""
    kms_keys = draw(st.integers(1, 5))
    kms_threshold = draw(st.integers(1, kms_keys))
    operators = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    threshold = draw(st.integers(1, len(operators)))
    enough = draw(st.permutations(operators))[: draw(st.integers(threshold, len(operators)))]
    too_few = draw(st.permutations(operators))[: draw(st.integers(0, threshold - 1))]
    return kms_keys, kms_threshold, operators, threshold, enough, too_few


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ceremonies())
def test_threshold_subsets_unseal_and_smaller_ones_never_do(
    case: tuple[int, int, list[str], int, list[str], list[str]],
) -> None:
    kms_keys, kms_threshold, operators, threshold, enough, too_few = case
    key_ids = [f"local:key-{i}" for i in range(kms_keys)]
    with tempfile.TemporaryDirectory() as tmp, setup_tokens() as log:
        root = Path(tmp)
        first = new_vault(root)
        try:
            first.boot()
            assert first.state == states.UNINITIALIZED
            answer = first.init(log.tokens[-1], key_ids, kms_threshold, operators, threshold)
            tokens = answer["operator_tokens"]
            for i, name in enumerate(operators):
                progress = first.register(name, tokens[name], passphrase(name))
                assert progress["registered"] == i + 1
                assert progress["remaining"] == len(operators) - i - 1
            wait_state(first, states.KMS_UNSEALED)
        finally:
            close(first)

        # Fewer than the threshold: never unsealed, whatever the order.
        short = new_vault(root)
        try:
            short.boot()
            assert short.state == states.KMS_UNSEALED
            for i, name in enumerate(too_few):
                progress = short.unseal(name, passphrase(name))
                assert progress == {"shares_received": i + 1, "shares_required": threshold}
            assert short.state == states.KMS_UNSEALED
            assert short.master_key is None and not short.signing_allowed
        finally:
            close(short)

        # At least the threshold, any order: unsealed at exactly the threshold-th share.
        vault = new_vault(root)
        try:
            vault.boot()
            assert vault.state == states.KMS_UNSEALED
            for i, name in enumerate(enough[:threshold]):
                progress = vault.unseal(name, passphrase(name))
                if i + 1 < threshold:
                    assert vault.state == states.KMS_UNSEALED
                    assert progress["shares_received"] == i + 1
                else:
                    assert progress["status"] == states.UNSEALED
            assert vault.state == states.UNSEALED and vault.signing_allowed
            master = vault.master_key
            assert master is not None
            found = vault.store.get(RECORD_KEY)
            assert found is not None
            assert envelope.verify_key_check(master.material, VaultRecord.from_bytes(found[0]).kcv)
        finally:
            close(vault)
