"""pluggy entry point of the chamber-yubikey distribution (group ``containment_chamber``).

The credential type's module imports no ``fido2`` at import time: the signer only calls
``validate`` (a length check), and the operator CLI loads ``fido2`` when it talks to a key.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import CredentialType


@hookimpl
def chamber_credential_types() -> Mapping[str, type[CredentialType]]:
    from chamber_yubikey.credential import YubikeyCredential

    return {"yubikey": YubikeyCredential}
