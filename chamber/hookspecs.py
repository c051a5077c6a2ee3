"""Every pluggy hook of Containment Chamber, each documented as its contract.

Plugins (built-in and third-party alike) implement these with ``@hookimpl``::

    from chamber.hookspecs import hookimpl

    @hookimpl
    def chamber_key_sources():
        return {"my-source": MySource}

Provider hooks return a mapping ``name -> provider class``; after collection, selection by the
name used in the configuration is a plain dictionary look-up. A name provided by two plugins is a
start-up error naming both (see :mod:`chamber.plugins`). Each provider class follows the
``typing.Protocol`` declared in the core module that consumes it; the protocols are re-exported
here so that an integrator finds every contract in one place.

Event hooks are notifications. They run after the outcome they describe is decided, each
implementation isolated: an exception in one is logged and never reaches the signing path or the
other implementations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

from chamber.crypto.bls import BlsBackend
from chamber.keys import KeySource
from chamber.slashing import SlashingBackend
from chamber.vault.interfaces import CredentialType, KmsProvider, StateBackend, TeeBackend

PROJECT_NAME = "containment_chamber"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "PROJECT_NAME",
    "BlsBackend",
    "CredentialType",
    "KeySource",
    "KmsProvider",
    "SlashingBackend",
    "StateBackend",
    "TeeBackend",
    "hookimpl",
    "hookspec",
]


# --------------------------------------------------------------------------- provider hooks


@hookspec
def chamber_bls_backends() -> Mapping[str, type[BlsBackend]]:
    """BLS12-381 signature backends, by name (``blspy``, ``milagro``, ``py_ecc``).

    Each class implements :class:`chamber.crypto.bls.BlsBackend` for the ciphersuite
    ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`` and must produce byte-identical signatures to
    the ``py_ecc`` reference. ``available()`` says whether its native library imports on this
    machine; an unavailable backend is listed but never selected.
    """


@hookspec
def chamber_key_sources() -> Mapping[str, type[KeySource]]:
    """Validator key sources, by the name used under ``key_sources.<name>`` in the configuration.

    Each class implements :class:`chamber.keys.KeySource`: ``from_config`` receives that section
    (the plugin validates it and raises :class:`chamber.errors.ConfigError` naming the key path);
    ``load`` returns every key it could load plus one error per item it could not, never raising
    for a single bad item. Sources with ``requires_unseal = True`` are loaded only while the
    chamber is unsealed and are dropped when it seals.
    """


@hookspec
def chamber_slashing_backends() -> Mapping[str, type[SlashingBackend]]:
    """Slashing-protection backends, by the name used in ``anti_slashing.backend``.

    Each class implements :class:`chamber.slashing.SlashingBackend`: ``check_and_record_*`` must
    decide and durably record in one atomic step (EIP-3076 rules) before returning; a refusal
    raises :class:`chamber.errors.SlashingRefused` naming the conflicting record; any other
    failure raises and the signature is not produced.
    """


@hookspec
def chamber_credential_types() -> Mapping[str, type[CredentialType]]:
    """Operator credential types (passphrase, hardware key, secrets manager, ...), by name.

    Each class implements :class:`chamber.vault.interfaces.CredentialType`: how the operator CLI
    obtains the secret material, and what the server requires of it before deriving a wrapping key.
    """


@hookspec
def chamber_kms_providers() -> Mapping[str, type[KmsProvider]]:
    """Key-management providers, by name (``local``, ``aws-kms``).

    Each class implements :class:`chamber.vault.interfaces.KmsProvider`; ``handles(key_id)`` says
    whether a key identifier (``local:NAME``, ``arn:aws:kms:...``) belongs to it.
    """


@hookspec
def chamber_tee_backends() -> Mapping[str, type[TeeBackend]]:
    """Trusted-execution backends for auto-unseal (``none``, ``nitro``), by name."""


@hookspec
def chamber_state_backends() -> Mapping[str, type[StateBackend]]:
    """Vault state stores with versioned compare-and-set (``sqlite``, ``dynamodb``), by name."""


# --------------------------------------------------------------------------- event hooks


@hookspec
def chamber_seal_state_changed(old_state: str, new_state: str) -> None:
    """The chamber moved from ``old_state`` to ``new_state`` (names of SPEC §5)."""


@hookspec
def chamber_ceremony_step(step: str, details: Mapping[str, Any]) -> None:
    """A ceremony step happened (``init``, ``register``, ``unseal_share``, ``seal``, ...).

    ``details`` holds public facts only (operator name, progress counts), never secrets.
    """


@hookspec
def chamber_signing_outcome(
    pubkey: str, request_type: str, outcome: str, reason: str | None
) -> None:
    """A signing request was decided.

    ``outcome`` is ``signed`` | ``refused`` (slashing protection) | ``denied`` (policy, network
    guard) | ``failed`` (internal error or bad request). Called after the response is decided;
    use it for audit trails and canary-key alerting.
    """


@hookspec
def chamber_keys_loaded(source: str, loaded: int, failed: int) -> None:
    """A key source finished loading ``loaded`` keys; ``failed`` items were reported as errors."""
