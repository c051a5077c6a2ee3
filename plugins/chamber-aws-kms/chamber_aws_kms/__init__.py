"""AWS KMS provider for Containment Chamber: wraps the vault's Shamir shares with KMS keys."""

__version__ = "0.1.0"
