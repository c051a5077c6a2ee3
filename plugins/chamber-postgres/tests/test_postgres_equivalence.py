"""Property: the PostgreSQL backend behaves exactly like the SQLite reference backend.

Random sequences of signing requests (recorded and dry runs), imports (sometimes slashable),
watermarks and prunes go to both backends; every outcome (signed, or refused for the same
reason), every report, the exported history and the floors and maxima must agree.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chamber.errors import BadRequest, ChamberError
from chamber.slashing.rules import Refused
from chamber.slashing.sqlite import SQLiteSlashingBackend
from chamber_postgres.backend import PostgresSlashingBackend
from pg_support import GVR, BackendMaker, Conn

KEYS = [b"\xe1" * 48, b"\xe2" * 48]
ROOTS = [bytes([1]) * 32, bytes([2]) * 32]
FLOOR_COLUMNS = (
    "pubkey, import_block_floor, import_source_floor, import_target_floor, hard_block_floor, "
    "hard_source_floor, hard_target_floor, max_source, max_target"
)

keys = st.sampled_from(KEYS)
roots = st.sampled_from(ROOTS)
slots = st.integers(0, 40)
epochs = st.integers(0, 12)
maybe_root = st.one_of(st.none(), roots)

block_op = st.tuples(st.just("block"), keys, slots, roots, st.booleans())
att_op = st.tuples(st.just("att"), keys, epochs, epochs, roots, st.booleans())
watermark_op = st.tuples(
    st.just("watermark"), keys, st.one_of(st.none(), slots), st.one_of(st.none(), epochs),
    st.one_of(st.none(), epochs),
)  # fmt: skip
prune_op = st.tuples(st.just("prune"), st.integers(0, 5), st.sampled_from([1, 4, 32]))
entry = st.tuples(
    keys,
    st.lists(st.tuples(slots, maybe_root), max_size=4),
    st.lists(st.tuples(epochs, epochs, maybe_root), max_size=4),
)
import_op = st.tuples(st.just("import"), st.lists(entry, max_size=3))
operations = st.lists(
    st.one_of(block_op, block_op, att_op, att_op, att_op, watermark_op, prune_op, import_op),
    min_size=1,
    max_size=25,
)


def _document(entries: list[tuple[bytes, list[Any], list[Any]]]) -> bytes:
    def root_field(root: bytes | None) -> dict[str, str]:
        return {} if root is None else {"signing_root": "0x" + root.hex()}

    return json.dumps(
        {
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": "0x" + GVR.hex(),
            },
            "data": [
                {
                    "pubkey": "0x" + key.hex(),
                    "signed_blocks": [{"slot": str(s), **root_field(r)} for s, r in blocks],
                    "signed_attestations": [
                        {"source_epoch": str(s), "target_epoch": str(t), **root_field(r)}
                        for s, t, r in atts
                    ],
                }
                for key, blocks, atts in entries
            ],
        }
    ).encode()


def _apply(backend: Any, op: tuple[Any, ...]) -> object:
    """The outcome of one operation, comparable across backends."""
    try:
        match op:
            case ("block", key, slot, root, record):
                call = backend.check_and_record_block if record else backend.check_block
                call(key, slot, root)
                return "signed"
            case ("att", key, source, target, root, record):
                call = backend.check_and_record_attestation if record else backend.check_attestation
                call(key, source, target, root)
                return "signed"
            case ("watermark", key, block, source, target):
                backend.set_watermark(
                    key, block_slot=block, source_epoch=source, target_epoch=target
                )
                return "ok"
            case ("prune", keep, per_epoch):
                return backend.prune(keep, per_epoch)
            case ("import", entries):
                return backend.import_interchange(_document(entries))
    except Refused as refusal:
        return ("refused", refusal.reason)
    except BadRequest as error:
        return ("rejected", type(error).__name__)
    except ChamberError as error:
        return ("error", type(error).__name__, error.message)
    raise AssertionError(f"unknown operation {op}")


@pytest.fixture
def backend(make_backend: BackendMaker) -> PostgresSlashingBackend:
    """One backend for all examples; each example starts from empty tables."""
    return make_backend()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_postgres_matches_sqlite(
    backend: PostgresSlashingBackend, db: Conn, ops: list[Any]
) -> None:
    db.execute("TRUNCATE validators, blocks, attestations RESTART IDENTITY")
    with tempfile.TemporaryDirectory() as tmp:
        reference = SQLiteSlashingBackend(Path(tmp) / "reference.sqlite", GVR)
        try:
            for number, op in enumerate(ops):
                ours, theirs = _apply(backend, op), _apply(reference, op)
                assert ours == theirs, f"operation {number} {op}: postgres {ours}, sqlite {theirs}"
            assert backend.export_interchange() == reference.export_interchange()
            assert backend.export_interchange(KEYS[::-1]) == reference.export_interchange(
                KEYS[::-1]
            )
            pg_floors = db.execute(
                f"SELECT {FLOOR_COLUMNS} FROM validators ORDER BY pubkey"
            ).fetchall()
            sqlite_floors = reference._reader.execute(
                f"SELECT {FLOOR_COLUMNS} FROM validators ORDER BY pubkey"
            ).fetchall()
            assert pg_floors == sqlite_floors
            assert backend.integrity_check() == []
        finally:
            reference.close()
