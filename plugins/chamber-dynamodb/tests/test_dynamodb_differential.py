"""Differential test: random histories give the same answers on DynamoDB and the SQLite reference.

Small numbers and two validators make conflicts (double proposals, double votes, surrounds,
floors, imports without signing roots, records with source > target, prunes, watermarks)
frequent. Every outcome (signed, refused and why, report) and the exports after every step must
be identical. ``CHAMBER_DIFFERENTIAL_EXAMPLES`` raises the number of examples for a deeper run.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chamber_dynamodb", reason="install plugins/chamber-dynamodb[test]")
pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")

from chamber_dynamodb.slashing import DynamoDBSlashingBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chamber.errors import ChamberError
from chamber.slashing.sqlite import SQLiteSlashingBackend

GVR = bytes(range(32))
KEYS = (b"\xa1" * 48, b"\xb2" * 48)

small = st.integers(0, 12)
roots = st.integers(0, 2).map(lambda i: bytes([i]) * 32)
pubkeys = st.sampled_from(KEYS)


def _root_json(r: bytes | None) -> dict[str, str]:
    return {} if r is None else {"signing_root": "0x" + r.hex()}


interchange_entry = st.builds(
    lambda pk, blocks, atts: {
        "pubkey": "0x" + pk.hex(),
        "signed_blocks": [{"slot": str(s), **_root_json(r)} for s, r in blocks],
        "signed_attestations": [
            {"source_epoch": str(s), "target_epoch": str(t), **_root_json(r)} for s, t, r in atts
        ],
    },
    pubkeys,
    st.lists(st.tuples(small, st.none() | roots), max_size=3),
    st.lists(st.tuples(small, small, st.none() | roots), max_size=3),
)

operation = st.one_of(
    st.tuples(st.just("check_and_record_block"), st.tuples(pubkeys, small, roots)),
    st.tuples(st.just("check_and_record_block"), st.tuples(pubkeys, small, roots)),
    st.tuples(
        st.just("check_and_record_attestation"), st.tuples(pubkeys, small, small, roots)
    ),
    st.tuples(
        st.just("check_and_record_attestation"), st.tuples(pubkeys, small, small, roots)
    ),
    st.tuples(
        st.just("check_and_record_attestation"), st.tuples(pubkeys, small, small, roots)
    ),
    st.tuples(st.just("check_block"), st.tuples(pubkeys, small, roots)),
    st.tuples(st.just("check_attestation"), st.tuples(pubkeys, small, small, roots)),
    st.tuples(
        st.just("import_interchange"),
        st.lists(interchange_entry, min_size=1, max_size=2).map(
            lambda data: (
                {
                    "metadata": {
                        "interchange_format_version": "5",
                        "genesis_validators_root": "0x" + GVR.hex(),
                    },
                    "data": data,
                },
            )
        ),
    ),
    st.tuples(st.just("prune"), st.tuples(st.integers(0, 4), st.integers(1, 4))),
    st.tuples(
        st.just("set_watermark"),
        st.tuples(pubkeys, st.none() | small, st.none() | small, st.none() | small),
    ),
)


def _apply(backend: Any, name: str, args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        if name == "set_watermark":
            pubkey, block, source, target = args
            result = backend.set_watermark(
                pubkey, block_slot=block, source_epoch=source, target_epoch=target
            )
        else:
            result = getattr(backend, name)(*args)
    except ChamberError as exc:
        return type(exc).__name__, getattr(exc, "reason", None) or exc.message
    return "ok", result


@settings(
    max_examples=int(os.environ.get("CHAMBER_DIFFERENTIAL_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=20))
def test_same_decisions_as_sqlite(moto_endpoint: str, operations: list[Any]) -> None:
    dynamo = DynamoDBSlashingBackend.from_config(
        {
            "table": f"diff-{uuid.uuid4().hex[:12]}",
            "region": "us-east-1",
            "endpoint_url": moto_endpoint,
            "create_table": True,
        },
        GVR,
    )
    with tempfile.TemporaryDirectory() as tmp:
        reference = SQLiteSlashingBackend(Path(tmp) / "ref.sqlite", GVR)
        try:
            for name, args in operations:
                expected = _apply(reference, name, args)
                assert _apply(dynamo, name, args) == expected, (name, args)
                assert dynamo.export_interchange() == reference.export_interchange(), (name, args)
            assert dynamo.integrity_check() == []
        finally:
            reference.close()
            dynamo.close()
