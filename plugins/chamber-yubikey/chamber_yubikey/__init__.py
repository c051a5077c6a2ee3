"""FIDO2 security-key credentials for Containment Chamber operators (hmac-secret)."""

__version__ = "0.1.0"
