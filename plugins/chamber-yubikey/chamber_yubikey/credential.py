"""The ``yubikey`` credential type: a FIDO2 security key's ``hmac-secret`` answer.

Enrolment (operator CLI, ``operator register --yubikey`` / ``credentials add --yubikey``): the
plugged-in key makes a non-resident FIDO2 credential for the relying party
``containment-chamber`` with the ``hmac-secret`` extension, then answers one assertion with a
fresh random 32-byte salt. Its 32-byte output, ``HMAC-SHA-256(CredRandom, salt)`` computed
inside the key, is the credential's secret material: sent once to the signer, which derives a
wrapping key from it with Argon2id like a passphrase, and never stored. The public parameters
(credential id, salt, relying party id, the credential's name) are stored by the signer beside
the credential and handed back to the CLI at unseal time.

Unseal (``operator unseal --yubikey``): for each of the operator's yubikey credentials the CLI
asks each plugged-in key, without a touch, whether it holds that credential; the first key
that does is asked (with a touch) for the hmac-secret output of that credential's salt.

Every answer that needs the key asks for a touch (user presence), and the CLI says so on
standard error. A PIN is asked for only if the key itself insists on user verification.

Server side (``validate``): the material must be exactly 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chamber.errors import BadRequest
from chamber.vault.interfaces import Enrollment

#: The FIDO relying party of every chamber credential (a FIDO credential is bound to it).
RP_ID = "containment-chamber"
#: hmac-secret outputs (and the salts) are 32 bytes.
MATERIAL_BYTES = 32
SALT_BYTES = 32
#: For tests only: ``module:function`` returning the FIDO2 device(s) to use instead of USB HID.
DEVICE_FACTORY_ENV = "CHAMBER_YUBIKEY_DEVICE_FACTORY"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One stored yubikey credential, as the signer hands its public parameters back."""

    credential_id: bytes
    salt: bytes
    rp_id: str
    name: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_candidates(candidates: Sequence[Mapping[str, str]]) -> list[Candidate]:
    """The usable candidates; a malformed one (edited by hand, another plugin's) is skipped."""
    parsed = []
    for public in candidates:
        try:
            credential_id = _unb64url(str(public["credential_id"]))
            salt = base64.b64decode(str(public["salt"]), validate=True)
        except (KeyError, ValueError, binascii.Error):
            continue
        if not credential_id or len(salt) != SALT_BYTES:
            continue
        parsed.append(
            Candidate(
                credential_id=credential_id,
                salt=salt,
                rp_id=str(public.get("rp_id") or RP_ID),
                name=str(public.get("name") or ""),
            )
        )
    return parsed


class YubikeyCredential:
    name = "yubikey"
    description = (
        "a FIDO2 security key (YubiKey 5, ...) answering an hmac-secret challenge; touch required"
    )

    def enroll(self, options: Mapping[str, Any]) -> Enrollment:
        from chamber_yubikey import fido

        operator = str(options.get("operator") or "operator")
        name = str(options.get("credential_id") or "")
        salt = os.urandom(SALT_BYTES)
        credential_id, material = fido.register(RP_ID, operator, name, salt)
        public = {
            "credential_id": _b64url(credential_id),
            "salt": base64.b64encode(salt).decode("ascii"),
            "rp_id": RP_ID,
        }
        if name:
            public["name"] = name
        return Enrollment(material, public)

    def obtain(
        self, options: Mapping[str, Any], candidates: Sequence[Mapping[str, str]] = ()
    ) -> bytes:
        from chamber_yubikey import fido

        operator = str(options.get("operator") or "operator")
        parsed = parse_candidates(candidates)
        if not parsed:
            raise BadRequest(
                f"operator {operator!r} has no usable yubikey credential (the signer's stored "
                "public parameters lack a credential id or a 32-byte salt)",
                field="credential_public",
            )
        return fido.answer(operator, parsed)

    def validate(self, material: bytes) -> None:
        if len(material) != MATERIAL_BYTES:
            raise BadRequest(
                f"yubikey: the security key's hmac-secret response must be exactly "
                f"{MATERIAL_BYTES} bytes, got {len(material)}",
                field="secret",
            )
