"""Helpers shared by the chamber-postgres tests (a uniquely named module: pytest imports the
test directories of several plugins side by side)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from chamber_postgres.backend import PostgresSlashingBackend

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
GVR = bytes(32)
OTHER_GVR = b"\x01" * 32

BackendMaker = Callable[..., PostgresSlashingBackend]
Conn = psycopg.Connection[tuple[Any, ...]]


def server_url() -> str:
    return os.environ.get("CHAMBER_TEST_POSTGRES_URL", DEFAULT_URL)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "(unparsable CHAMBER_TEST_POSTGRES_URL)"
    return (
        f"postgresql://{params.get('user', '')}@{params.get('host', 'localhost')}:"
        f"{params.get('port', 5432)}/{params.get('dbname', '')}"
    )


def new_schema_name() -> str:
    return "cc_test_" + uuid.uuid4().hex[:16]


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def table_snapshot(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: byte-for-byte database comparison."""
    return {
        "validators": conn.execute("SELECT * FROM validators ORDER BY id").fetchall(),
        "blocks": conn.execute("SELECT * FROM blocks ORDER BY validator_id, slot").fetchall(),
        "attestations": conn.execute(
            "SELECT * FROM attestations ORDER BY validator_id, target"
        ).fetchall(),
        "metadata": conn.execute("SELECT * FROM metadata ORDER BY key").fetchall(),
        "schema_migrations": conn.execute(
            "SELECT version, description FROM schema_migrations ORDER BY version"
        ).fetchall(),
    }
