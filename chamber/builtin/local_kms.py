"""Built-in file KMS (``local:NAME`` key ids), for development and the quick start."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import KmsProvider


@hookimpl
def chamber_kms_providers() -> Mapping[str, type[KmsProvider]]:
    from chamber.vault.local_kms import LocalKms

    return {"local": LocalKms}
