"""Built-in BLS backends: blspy (default), milagro, py_ecc (reference)."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.crypto import bls
from chamber.hookspecs import hookimpl


@hookimpl
def chamber_bls_backends() -> Mapping[str, type[bls.BlsBackend]]:
    return dict(bls.BACKENDS)
