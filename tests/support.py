"""Paths and small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: External vectors live beside the repository, never inside it.
VECTORS = (REPO_ROOT / ".." / "shared" / "vectors").resolve()
