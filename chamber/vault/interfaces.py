"""Contracts of the vault's pluggable parts. Implementations arrive with the vault issue.

They are declared now so that the hook specifications are complete and plugins can be written
against stable shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self


class KmsProvider(Protocol):
    """Wraps and unwraps small secrets (Shamir shares) with a key held by a KMS.

    Contract: ``encrypt`` / ``decrypt`` bind ``context`` (the encryption context naming the chamber
    and the share index) so that a ciphertext cannot be replayed as another share; both may raise
    ``chamber.errors.Unavailable`` for a transient failure (callers retry with backoff) and
    ``chamber.errors.BadRequest`` for a key id the provider rejects ("invalid KMS key id").
    Neither ever logs or puts plaintext in an exception.
    """

    name: str

    @classmethod
    def handles(cls, key_id: str) -> bool: ...

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self: ...

    def encrypt(self, key_id: str, plaintext: bytes, context: Mapping[str, str]) -> bytes: ...

    def decrypt(self, key_id: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes: ...


class CredentialType(Protocol):
    """An operator credential type: how the CLI obtains secret material, what the server demands.

    Contract: ``obtain`` runs in the operator CLI and returns the secret material (never printed);
    ``validate`` runs on the server before a key is derived and raises
    ``chamber.errors.BadRequest`` naming the requirement that failed (e.g. "passphrase too short").
    """

    name: str

    def obtain(self, options: Mapping[str, Any]) -> bytes: ...

    def validate(self, material: bytes) -> None: ...


class StateBackend(Protocol):
    """A tiny key-value store with versioned compare-and-set for the vault's records.

    Contract: ``put(key, value, expected_version)`` succeeds only if the stored version equals
    ``expected_version`` (``0`` = absent) and raises ``chamber.errors.Conflict`` otherwise, so two
    replicas can never both initialise or both complete a rotation.
    """

    name: str

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self: ...

    def get(self, key: str) -> tuple[bytes, int] | None: ...

    def put(self, key: str, value: bytes, expected_version: int) -> int: ...


class TeeBackend(Protocol):
    """Trusted execution for auto-unseal: seal a blob to the enclave's measurements.

    Contract: ``unseal_blob`` returns ``None`` (never raises) when the measurements changed, so the
    chamber falls back to the ceremony and re-seals a new blob afterwards.
    """

    name: str

    def seal_blob(self, secret: bytes) -> bytes: ...

    def unseal_blob(self, blob: bytes) -> bytes | None: ...
