from __future__ import annotations

import pytest

from tests.support import VECTORS


def pytest_sessionstart(session: pytest.Session) -> None:
    if not VECTORS.is_dir():
        raise pytest.UsageError(
            f"external test vectors not found at {VECTORS}: "
            "clone the repository with ../shared beside it"
        )
