"""Contracts of the vault's pluggable parts: KMS providers, credential types, state stores, TEE.

Each protocol states what an implementation must guarantee. Built-in implementations
(``local`` KMS, ``passphrase`` credential, ``sqlite`` state) register through the same hooks as
plugins (``chamber.builtin``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self


class KmsProvider(Protocol):
    """Wraps and unwraps small secrets (Shamir shares) with a key held by a KMS.

    Contract:
    - ``handles(key_id)`` says whether an identifier belongs to this provider
      (``local:NAME`` → ``local``; ``arn:aws:kms:…`` → ``aws-kms``).
    - ``validate_key_id(key_id)`` raises :class:`chamber.errors.BadRequest`
      (``field="kms_key_ids"``) for a malformed identifier, naming the expected form
      ("invalid KMS ARN: expected arn:aws:kms:<region>:<account-id>:key/<key-id>"). No network
      call.
    - ``encrypt`` / ``decrypt`` bind ``context`` (the encryption context naming the chamber and the
      share index) so a ciphertext cannot be replayed as another share. They retry transient
      failures with backoff within a bounded time and then raise :class:`chamber.errors.KmsError`
      naming the key id and the reason (unreachable, access denied, disabled, wrong context...).
    - Never logs or puts plaintext in an exception. Thread-safe.
    """

    name: str

    @classmethod
    def handles(cls, key_id: str) -> bool: ...

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self: ...

    def validate_key_id(self, key_id: str) -> None: ...

    def encrypt(self, key_id: str, plaintext: bytes, context: Mapping[str, str]) -> bytes: ...

    def decrypt(self, key_id: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A new credential as the operator CLI produced it: the secret material (sent once to
    the server, never stored or printed) and public parameters the server keeps beside the
    credential and hands back to the CLI later (a hardware key's credential id and salt)."""

    material: bytes = field(repr=False)
    public: Mapping[str, str] = field(default_factory=dict)


class CredentialType(Protocol):
    """An operator credential type: how the CLI obtains secret material, what the server demands.

    Both halves live in one class so one plugin distribution adds a type everywhere.

    Operator CLI (runs on the operator's machine; may talk to a device or a service):
    - ``enroll(options)`` creates a new credential (``operator register`` and
      ``credentials add``) and returns an :class:`Enrollment`.
    - ``obtain(options, candidates)`` returns the material of an existing credential.
      ``candidates`` are the public parameters of the operator's credentials of this type, as
      the server stores them (the unseal names no credential; the type picks the one it can
      answer, e.g. the hardware key that is plugged in).
    - ``options`` carries the CLI's flags (``stdin``, ``prompt``, ``secret_id``, ...).

    Server:
    - ``validate(material)`` runs before a key is derived and raises
      :class:`chamber.errors.BadRequest` naming the requirement that failed ("passphrase too
      short").

    Secret material never appears in ``repr``, logs or exception text. The CLI calls ``enroll``
    and ``obtain`` with a time limit and reports a failure, a hang or a result that is not bytes
    as an error naming the plugin.
    """

    name: str
    description: str

    def enroll(self, options: Mapping[str, Any]) -> Enrollment: ...

    def obtain(
        self, options: Mapping[str, Any], candidates: Sequence[Mapping[str, str]] = ()
    ) -> bytes: ...

    def validate(self, material: bytes) -> None: ...


class StateBackend(Protocol):
    """A tiny key-value store with versioned compare-and-set for the vault's records.

    Contract:
    - ``get(key)`` → ``(value, version)`` or ``None`` when absent. Versions are positive integers.
    - ``put(key, value, expected_version)`` stores ``value`` only if the stored version equals
      ``expected_version`` (``0`` = the key must be absent) and returns the new version; otherwise
      it raises :class:`chamber.errors.Conflict` and changes nothing. Atomic and durable when it
      returns: two replicas can never both initialise or both complete a rotation.
    - ``delete(key, expected_version)`` removes the key under the same condition (Conflict
      otherwise).
    - ``close()`` releases connections. Errors reaching the store raise
      :class:`chamber.errors.Unavailable` naming the store.
    """

    name: str

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self: ...

    def get(self, key: str) -> tuple[bytes, int] | None: ...

    def put(self, key: str, value: bytes, expected_version: int) -> int: ...

    def delete(self, key: str, expected_version: int) -> None: ...

    def close(self) -> None: ...


class TeeBackend(Protocol):
    """Trusted execution for auto-unseal: seal a blob to the enclave's measurements.

    Contract: ``unseal_blob`` returns ``None`` (never raises) when the measurements changed, so the
    chamber falls back to the ceremony and re-seals a new blob afterwards.
    """

    name: str

    def seal_blob(self, secret: bytes) -> bytes: ...

    def unseal_blob(self, blob: bytes) -> bytes | None: ...
