"""Run the EIP-3076 interchange test vectors against any slashing backend.

Shared by the SQLite tests here and the PostgreSQL / DynamoDB plugin tests. A wrong refusal fails
just like a wrong acceptance. Backends that keep full history are held to
``should_succeed_complete``.

Steps marked ``contains_slashable_data`` may be refused by an implementation (EIP-3076); when ours
refuses one, the database must be unchanged, and that step's checks and every later step are
skipped, as the vectors' README specifies. Every other step must import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chamber.errors import BadRequest, SlashingRefused
from chamber.slashing import SlashingBackend
from tests.support import VECTORS

VECTOR_DIR = VECTORS / "slashing-protection-interchange-tests" / "tests" / "generated"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*.json"))
assert len(VECTOR_FILES) == 38, f"expected 38 interchange test files in {VECTOR_DIR}"

BackendFactory = Callable[[bytes], SlashingBackend]


@dataclass
class Outcome:
    checks: int = 0
    imports_refused_as_slashable: int = 0


def _hex(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def run_vector_file(path: Path, factory: BackendFactory) -> Outcome:
    case: dict[str, Any] = json.loads(path.read_text())
    backend = factory(_hex(case["genesis_validators_root"]))
    outcome = Outcome()
    try:
        complete = backend.keeps_full_history
        for number, step in enumerate(case["steps"]):
            where = f"{path.name} step {number}"
            before = backend.export_interchange()
            try:
                backend.import_interchange(json.dumps(step["interchange"]).encode())
                imported = True
            except BadRequest as error:
                imported = False
                assert backend.export_interchange() == before, (
                    f"{where}: refused import changed the db"
                )
                if step["should_succeed"] and not step["contains_slashable_data"]:
                    raise AssertionError(f"{where}: import refused: {error.message}") from None
                if step["should_succeed"]:
                    outcome.imports_refused_as_slashable += 1
                    return outcome  # allowed: skip this step's checks and all later steps
            if imported and not step["should_succeed"]:
                raise AssertionError(f"{where}: import should have failed")
            for block in step["blocks"]:
                expected = block["should_succeed_complete" if complete else "should_succeed"]
                _attempt(
                    where,
                    f"block slot {block['slot']}",
                    expected,
                    lambda b=block: backend.check_and_record_block(
                        _hex(b["pubkey"]), int(b["slot"]), _hex(b["signing_root"])
                    ),
                )
                outcome.checks += 1
            for att in step["attestations"]:
                expected = att["should_succeed_complete" if complete else "should_succeed"]
                _attempt(
                    where,
                    f"attestation ({att['source_epoch']}, {att['target_epoch']})",
                    expected,
                    lambda a=att: backend.check_and_record_attestation(
                        _hex(a["pubkey"]),
                        int(a["source_epoch"]),
                        int(a["target_epoch"]),
                        _hex(a["signing_root"]),
                    ),
                )
                outcome.checks += 1
    finally:
        backend.close()
    return outcome


def _attempt(where: str, what: str, expected: bool, call: Callable[[], None]) -> None:
    try:
        call()
        signed = True
        reason = ""
    except SlashingRefused as refusal:
        signed = False
        reason = refusal.message
    if signed and not expected:
        raise AssertionError(f"{where}: {what} was signed but must be refused")
    if not signed and expected:
        raise AssertionError(f"{where}: {what} was refused but must be signed ({reason})")
