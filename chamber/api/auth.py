"""Access control: token -> policy, scopes, key and operation restrictions (SPEC §6).

Tokens are held only as HMAC-SHA256 digests under a random per-process key, and a presented
token's digest is compared with every policy's digest in constant time (no early exit), so
neither the comparison nor the policy count of a match leaks through timing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from chamber.config import AuthPolicyConfig
from chamber.errors import ConfigError, Forbidden, Unauthorized

#: Scopes a request may use without a token when ``allow_unauthenticated_signing`` is set.
UNAUTHENTICATED_SIGNING_SCOPES = frozenset({"sign", "public_keys"})


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    scopes: frozenset[str]
    keys: frozenset[str] | None
    operations: frozenset[str] | None

    def allows_key(self, pubkey_hex: str) -> bool:
        return self.keys is None or pubkey_hex in self.keys

    def allows_operation(self, request_type: str) -> bool:
        return self.operations is None or request_type in self.operations


#: The policy in force for unauthenticated signing: only the signing scopes, every key.
ANONYMOUS = Policy("anonymous", UNAUTHENTICATED_SIGNING_SCOPES, None, None)


class Authenticator:
    def __init__(
        self, policies: Mapping[str, AuthPolicyConfig], *, allow_unauthenticated_signing: bool
    ) -> None:
        self._hmac_key = secrets.token_bytes(32)
        self._entries: list[tuple[bytes, Policy]] = []
        seen: dict[bytes, str] = {}
        for name, cfg in policies.items():
            digest = self._digest(cfg.token.get_secret_value())
            if digest in seen:
                raise ConfigError(
                    f"auth_policies.{name}.token: same token as policy {seen[digest]!r}; "
                    "give each policy its own token"
                )
            seen[digest] = name
            policy = Policy(
                name,
                frozenset(cfg.allowed_scopes),
                frozenset(cfg.keys) if cfg.keys is not None else None,
                frozenset(cfg.operations) if cfg.operations is not None else None,
            )
            self._entries.append((digest, policy))
        self.allow_unauthenticated_signing = allow_unauthenticated_signing

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._hmac_key, token.encode(), hashlib.sha256).digest()

    @staticmethod
    def _token_from_header(header: str) -> str:
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return value
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed Basic credentials") from None
            _user, sep, password = decoded.partition(":")
            if sep and password:
                return password
            raise Unauthorized("Basic credentials must carry the token as the password")
        raise Unauthorized("Authorization must be 'Bearer <token>' or HTTP Basic")

    def identify(self, header: str | None) -> Policy | None:
        """The policy a token belongs to; ``None`` when no token was presented.

        A presented token that matches no policy is 401 even where anonymous access is allowed.
        """
        if not header:
            return None
        digest = self._digest(self._token_from_header(header))
        found: Policy | None = None
        for stored, policy in self._entries:
            if hmac.compare_digest(stored, digest):
                found = policy
        if found is None:
            raise Unauthorized("invalid token")
        return found

    def require(self, header: str | None, scope: str) -> Policy:
        """The caller's policy if it grants ``scope``; 401 without a usable token, 403 otherwise."""
        policy = self.identify(header)
        if policy is None:
            if self.allow_unauthenticated_signing and scope in UNAUTHENTICATED_SIGNING_SCOPES:
                return ANONYMOUS
            raise Unauthorized(f"a token with scope '{scope}' is required")
        if scope not in policy.scopes:
            raise Forbidden(f"policy {policy.name!r} does not grant scope '{scope}'")
        return policy
