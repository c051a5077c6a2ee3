"""The entry point of chamber-credential-example (group ``containment_chamber``).

One hook, one credential type. Loading plugins imports every installed one (the server, and
the CLI whenever it needs a credential type), so the provider class is imported only when the
hook is called.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import CredentialType


@hookimpl
def chamber_credential_types() -> Mapping[str, type[CredentialType]]:
    from chamber_credential_example.credential import KeyfilePinCredential

    return {"keyfile-pin": KeyfilePinCredential}
