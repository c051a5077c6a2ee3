"""One-time tokens of the ceremonies: setup tokens (never stored) and registration tokens.

Tokens carry 256 random bits, so a plain SHA-256 digest is a safe stored form (no slow hash is
needed against guessing); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SETUP_PREFIX = "cc-setup-"
REGISTRATION_PREFIX = "cc-reg-"


def new_setup_token() -> str:
    return SETUP_PREFIX + secrets.token_urlsafe(32)


def new_registration_token() -> str:
    return REGISTRATION_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str | None, digest: str | None) -> bool:
    """Constant-time check of ``token`` against a stored hex digest (False if either is absent)."""
    if not token or not digest:
        return False
    try:
        expected = bytes.fromhex(digest)
    except ValueError:
        return False
    actual = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(actual, expected)
