"""Built-in ``passphrase`` operator credential type."""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import CredentialType


@hookimpl
def chamber_credential_types() -> Mapping[str, type[CredentialType]]:
    from chamber.vault.credentials import PassphraseCredential

    return {"passphrase": PassphraseCredential}
