"""All 38 EIP-3076 interchange test files against the PostgreSQL backend (complete history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pg_support import BackendMaker
from tests.slashing_vectors import VECTOR_FILES, run_vector_file


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_interchange_vectors(path: Path, make_backend: BackendMaker) -> None:
    run_vector_file(path, lambda gvr: make_backend(gvr))
