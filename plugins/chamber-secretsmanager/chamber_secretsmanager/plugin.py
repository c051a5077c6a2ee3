"""pluggy entry point of the chamber-secretsmanager distribution (group ``containment_chamber``).

The credential type is imported lazily, so that installing the plugin costs nothing (no boto3
import) unless a Secrets Manager credential is actually used.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import CredentialType


@hookimpl
def chamber_credential_types() -> Mapping[str, type[CredentialType]]:
    from chamber_secretsmanager.credential import SecretsManagerCredential

    return {"secretsmanager": SecretsManagerCredential}
