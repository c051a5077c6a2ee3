"""Two signer replicas on one DynamoDB state table (moto over real HTTP): real server processes,
the real CLI.

Replica A and replica B are two ``containment-chamber server`` processes sharing one DynamoDB
vault state table and one DynamoDB key table on the moto server of ``conftest.py``, with the
built-in ``local:`` KMS in one shared directory (so only this plugin is needed). Each has its own
port and its own SQLite slashing database (slashing is not what is tested here), and polls the
state table every 0.5 s (``signer_state.refresh_interval_seconds``).

The scenarios are those of ``tests/test_vault_replicas_sqlite.py`` (which runs them on one
SQLite state file), in file order on one pair of replicas; see that module for the list. This
covers the acceptance "a rotation made through replica A is used by replica B within 2 s, and a
restart of B unseals with the new configuration", and that inits, rotations, credential changes
and seals made through one replica are followed by the other within 2 s. The measured follow
latencies are printed (``pytest -s``) and recorded as test properties.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("chamber_dynamodb", reason="install plugins/chamber-dynamodb[test]")
pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")

from tests.test_vault_replicas_sqlite import (
    FAST_REFRESH_SECONDS,
    SCENARIOS,
    Replicas,
    check_no_secret_leaked,
    make_replica,
    start_pair,
    stop_pair,
    write_keystore,
)


def _stored_bytes(raw: Any, table: str) -> bytes:
    """Every attribute value of every item of ``table`` (a strongly consistent scan), as bytes."""
    parts: list[bytes] = []
    pages = raw.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    for page in pages:
        for item in page["Items"]:
            for value in item.values():
                if "B" in value:
                    parts.append(bytes(value["B"]))
                elif "S" in value:
                    parts.append(value["S"].encode())
                elif "N" in value:
                    parts.append(value["N"].encode())
    assert parts, f"table {table} is empty"
    return b"\0".join(parts)


@pytest.fixture(scope="module")
def dynamodb_replicas(
    moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    import boto3

    suffix = uuid.uuid4().hex[:12]
    client = {"region": "us-east-1", "endpoint_url": moto_endpoint, "create_table": True}
    state_table, key_table = f"replicas-state-{suffix}", f"replicas-keys-{suffix}"
    state = {
        "backend": "dynamodb",
        "table": state_table,
        "refresh_interval_seconds": FAST_REFRESH_SECONDS,
        **client,
    }
    keys = {"dynamodb": {"table": key_table, **client}}
    raw = boto3.session.Session().client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint
    )

    def at_rest() -> dict[str, bytes]:
        return {table: _stored_bytes(raw, table) for table in (state_table, key_table)}

    shared = tmp_path_factory.mktemp("replicas-shared")
    replicas = Replicas(
        backend="dynamodb",
        a=make_replica(tmp_path_factory.mktemp("replica-a"), shared, state, keys),
        b=make_replica(tmp_path_factory.mktemp("replica-b"), shared, state, keys),
        shared=shared,
        keystore=write_keystore(tmp_path_factory.mktemp("keystores")),
        at_rest=at_rest,
        refresh_seconds=FAST_REFRESH_SECONDS,
    )
    start_pair(replicas)
    try:
        yield replicas
    finally:
        stop_pair(replicas)
        raw.close()
        for note in replicas.notes:
            print(f"\n[dynamodb] note: {note}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.removeprefix("scenario_"))
def test_replicas_on_one_dynamodb_state_table(
    dynamodb_replicas: Replicas,
    scenario: Callable[[Replicas, Callable[[str, object], None]], None],
    record_property: Callable[[str, object], None],
) -> None:
    scenario(dynamodb_replicas, record_property)


def test_replicas_on_one_dynamodb_state_table_leak_nothing(dynamodb_replicas: Replicas) -> None:
    stop_pair(dynamodb_replicas)
    check_no_secret_leaked(dynamodb_replicas)
