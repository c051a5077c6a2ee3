"""Fixtures for the PostgreSQL backend tests: a real server, one fresh schema per test.

The server comes from ``CHAMBER_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When it cannot be reached every test here
*fails* with that message: a slashing-protection backend must never pass by skipping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from chamber_postgres.backend import PostgresSlashingBackend
from pg_support import (
    GVR,
    BackendMaker,
    Conn,
    drop_schema,
    new_schema_name,
    safe_url,
    server_url,
    table_snapshot,
)


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = server_url()
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"the chamber-postgres tests need a PostgreSQL server, and {safe_url(url)} is "
            f"unreachable ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}). Start "
            "PostgreSQL (15+) or point CHAMBER_TEST_POSTGRES_URL at one.",
            pytrace=False,
        )
    return url


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    """A unique schema name for this test; dropped (with everything in it) afterwards."""
    name = new_schema_name()
    yield name
    drop_schema(pg_url, name)


@pytest.fixture
def make_backend(pg_url: str, schema: str) -> Iterator[BackendMaker]:
    """``make_backend(gvr=GVR, **settings)``: a backend on this test's schema, closed afterwards."""
    made: list[PostgresSlashingBackend] = []

    def make(gvr: bytes = GVR, **settings: Any) -> PostgresSlashingBackend:
        config = {"url": pg_url, "schema": schema, "pool_size": 2, **settings}
        backend = PostgresSlashingBackend.from_config(config, gvr)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def db(pg_url: str, schema: str) -> Iterator[Conn]:
    """A plain connection whose search_path is this test's schema (for inspecting rows)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        yield conn


@pytest.fixture
def snapshot(db: Conn) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    return lambda: table_snapshot(db)
