"""The running signer: settings, plugins and the live objects the API serves from.

``build_signer`` turns validated settings into a :class:`Signer` (network, BLS backend, key
sources, slashing backend, authenticator, metrics) and fails with a start-up error naming the
problem before anything listens. Key loading happens in the background after the HTTP server is
up, so ``/upcheck`` answers from the first moment and signing answers 503 until keys are loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chamber.api.auth import Authenticator
from chamber.api.metrics import Metrics
from chamber.config import Settings
from chamber.crypto.bls import BlsBackend, select_backend
from chamber.crypto.kdf import Argon2Params
from chamber.errors import ConfigError
from chamber.eth.networks import Network, custom_network, get_network
from chamber.keys import KeyRegistry, KeySource
from chamber.plugins import PluginManager
from chamber.slashing import SlashingBackend
from chamber.vault.kms import KmsSet
from chamber.vault.limiter import AttemptLimiter
from chamber.vault.service import Vault, VaultHooks, VaultOptions

if TYPE_CHECKING:
    from chamber.keys.manager import KeyManager
    from chamber.vault.master import MasterKey

log = logging.getLogger("chamber.signer")


@dataclass
class Signer:
    settings: Settings
    plugins: PluginManager
    network: Network
    bls: BlsBackend
    registry: KeyRegistry
    slashing: SlashingBackend
    auth: Authenticator
    metrics: Metrics
    key_sources: dict[str, KeySource]
    canary_keys: frozenset[str] = frozenset()
    vault: Vault | None = None
    keys_loaded: threading.Event = field(default_factory=threading.Event)
    key_load_errors: dict[str, int] = field(default_factory=dict)
    #: Every change to keys (import, generate, lifecycle, refresh, seal / unseal) goes through it.
    keys: KeyManager | None = None

    def load_keys(self) -> None:
        """Load every key source that does not need the vault; errors are reported per item."""
        for name, source in self.key_sources.items():
            if not source.requires_unseal:
                self.load_source(name, source, None)
        self.keys_loaded.set()

    @property
    def manager(self) -> KeyManager:
        assert self.keys is not None, "build_signer attaches the key manager"
        return self.keys

    def load_unsealed_keys(self, master: MasterKey) -> int:
        """Load the sources that need the master key (the chamber just unsealed)."""
        return self.manager.load_unsealed(master)

    def drop_unsealed_keys(self) -> None:
        self.manager.drop_unsealed()

    def load_source(self, name: str, source: KeySource, master: bytearray | None) -> None:
        """(Re)load one key source into the registry, with its metrics, logs and event."""
        started = time.perf_counter()
        result = source.load(master) if master is not None else source.load()
        elapsed = time.perf_counter() - started
        self.registry.replace_source(name, result.keys)
        self.key_load_errors[name] = len(result.errors)
        self.metrics.keys_active.labels(name).set(len(result.keys))
        self.metrics.key_loading_duration.labels(name).set(elapsed)
        if result.errors:
            self.metrics.key_load_failures.labels(name).inc(len(result.errors))
        for error in result.errors:
            log.error(
                "key failed to load",
                extra={"source": name, "path": error.path, "reason": error.reason},
            )
        log.info(
            "keys loaded",
            extra={
                "source": name,
                "loaded": len(result.keys),
                "failed": len(result.errors),
                "seconds": round(elapsed, 3),
            },
        )
        self.plugins.emit(
            "chamber_keys_loaded",
            source=name,
            loaded=len(result.keys),
            failed=len(result.errors),
        )

    def close(self) -> None:
        if self.keys is not None:
            self.keys.stop()
        if self.vault is not None:
            self.vault.stop()
            self.vault.store.close()
        self.slashing.close()


class SignerVaultHooks(VaultHooks):
    """Connects the vault to the signer: key loading, plugin events, metrics."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def keys_unsealed(self, master: MasterKey) -> int:
        return self.signer.load_unsealed_keys(master)

    def keys_sealed(self) -> None:
        self.signer.drop_unsealed_keys()

    def key_count(self) -> int | None:
        return len(self.signer.registry)

    def state_changed(self, old: str, new: str) -> None:
        self.signer.metrics.set_seal_state(new)
        self.signer.plugins.emit("chamber_seal_state_changed", old_state=old, new_state=new)

    def ceremony_step(self, step: str, details: Any) -> None:
        self.signer.metrics.ceremony_steps.labels(step).inc()
        if step == "rotation_complete":
            self.signer.metrics.rotations.labels(str(details.get("kind", "unknown"))).inc()
        self.signer.plugins.emit("chamber_ceremony_step", step=step, details=dict(details))

    def credential_failure(self, operator: str, ceremony: str) -> None:
        self.signer.metrics.credential_failures.labels(ceremony).inc()


def resolve_network(settings: Settings) -> Network:
    if settings.network == "custom":
        custom = settings.custom_network
        assert custom is not None  # enforced by Settings validation
        return custom_network(
            custom.genesis_validators_root,
            custom.genesis_fork_version,
            custom.fork_versions or None,
            custom.slots_per_epoch,
        )
    return get_network(settings.network)


def build_signer(settings: Settings, plugins: PluginManager) -> Signer:
    network = resolve_network(settings)

    bls = select_backend(
        settings.bls.backend,
        {name: p.cls for name, p in plugins.providers("chamber_bls_backends").items()},
    )

    slashing_name = settings.anti_slashing.backend
    slashing_provider = plugins.provider(
        "chamber_slashing_backends", slashing_name, "anti_slashing.backend"
    )
    slashing: SlashingBackend = slashing_provider.cls.from_config(
        settings.anti_slashing.backend_settings(), network.genesis_validators_root
    )
    if slashing_name == "noop":
        log.warning(
            "SLASHING PROTECTION IS DISABLED (anti_slashing.backend: noop). "
            "Use this only for tests and benchmarks, never with live validator keys."
        )

    key_sources: dict[str, KeySource] = {}
    for name, section in settings.key_sources.sections().items():
        provider = plugins.provider("chamber_key_sources", name, f"key_sources.{name}")
        key_sources[name] = provider.cls.from_config(section, bls)

    if not settings.auth_policies and not settings.allow_unauthenticated_signing:
        raise ConfigError(
            "auth_policies: no policy is configured, so nothing could call the signer; add a "
            "policy with the 'sign' scope, or set allow_unauthenticated_signing: true"
        )
    auth = Authenticator(
        settings.auth_policies,
        allow_unauthenticated_signing=settings.allow_unauthenticated_signing,
    )
    if settings.allow_unauthenticated_signing:
        log.warning(
            "allow_unauthenticated_signing is set: anyone who can reach the API can request "
            "signatures and list public keys"
        )

    metrics = Metrics()
    metrics.bls_backend.labels(bls.name).set(1)
    metrics.concurrency_limit.set(settings.server.max_concurrent_requests)
    log.info("BLS backend selected", extra={"bls_backend": bls.name})
    signer = Signer(
        settings=settings,
        plugins=plugins,
        network=network,
        bls=bls,
        registry=KeyRegistry(),
        slashing=slashing,
        auth=auth,
        metrics=metrics,
        key_sources=key_sources,
        canary_keys=frozenset(settings.canary_keys),
    )
    needs_vault = [name for name, source in key_sources.items() if source.requires_unseal]
    if settings.signer_state is None:
        if needs_vault:
            raise ConfigError(
                f"key_sources.{needs_vault[0]}: this key source is encrypted under the vault's "
                "master key, so the vault must be configured: add a signer_state section "
                "(e.g. signer_state: {backend: sqlite, path: ./chamber-state.sqlite})"
            )
    else:
        vault = build_vault(settings, plugins, SignerVaultHooks(signer))
        signer.vault = vault
        metrics.set_seal_state(vault.state)
        metrics.unseal_shares.set_function(lambda: vault.shares_received)
    from chamber.keys.manager import KeyManager

    signer.keys = KeyManager(signer)
    return signer


def build_vault(settings: Settings, plugins: PluginManager, hooks: VaultHooks) -> Vault:
    state = settings.signer_state
    assert state is not None
    provider = plugins.provider("chamber_state_backends", state.backend, "signer_state.backend")
    store = provider.cls.from_config(state.backend_settings())
    kms = KmsSet(
        {name: p.cls for name, p in plugins.providers("chamber_kms_providers").items()},
        settings.kms,
    )
    credential_types = {
        name: p.cls for name, p in plugins.providers("chamber_credential_types").items()
    }
    argon2 = settings.vault.argon2
    brute = settings.vault.brute_force
    try:
        params = Argon2Params(
            memory_kib=argon2.memory_kib,
            iterations=argon2.iterations,
            parallelism=argon2.parallelism,
        )
    except ValueError as error:
        raise ConfigError(f"vault.argon2: {error}") from None
    kms.check_config()
    options = VaultOptions(
        argon2=params,
        unseal_timeout_seconds=state.unseal_timeout_minutes * 60,
        kms_retry_max_seconds=settings.vault.kms_retry_max_seconds,
        refresh_interval_seconds=state.refresh_interval_seconds,
    )
    limiter = AttemptLimiter(
        free_attempts=brute.free_attempts,
        base_delay=brute.base_delay_seconds,
        max_delay=brute.max_delay_seconds,
    )
    return Vault(store, kms, credential_types, options=options, limiter=limiter, hooks=hooks)
