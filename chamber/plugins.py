"""The plugin manager: built-in plugins plus the entry-point group ``containment_chamber``.

Built-ins register through the same hooks as third-party plugins, so there is one path. Provider
hooks are collected into ``name -> provider`` dictionaries once; a name offered by two plugins is a
start-up error naming both. Event hooks are called one implementation at a time so that a failing
plugin is logged and can never break the caller (the signing path above all).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from chamber import __version__, hookspecs
from chamber.errors import PluginError

log = logging.getLogger("chamber.plugins")

BUILTIN_MODULES = (
    "chamber.builtin.bls",
    "chamber.builtin.filesystem",
    "chamber.builtin.local_kms",
    "chamber.builtin.noop_slashing",
    "chamber.builtin.passphrase",
    "chamber.builtin.sqlite_slashing",
    "chamber.builtin.sqlite_keys",
    "chamber.builtin.sqlite_state",
)

PROVIDER_HOOKS = (
    "chamber_bls_backends",
    "chamber_key_sources",
    "chamber_slashing_backends",
    "chamber_credential_types",
    "chamber_kms_providers",
    "chamber_tee_backends",
    "chamber_state_backends",
)


@dataclass(frozen=True)
class Provider:
    name: str
    cls: Any
    plugin: str


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str | None
    provides: dict[str, list[str]] = field(default_factory=dict)


class PluginManager:
    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._versions: dict[str, tuple[str, str | None]] = {}
        self._providers: dict[str, dict[str, Provider]] = {}

    # ------------------------------------------------------------------ registration

    def register(self, plugin: object, name: str, version: str, dist: str | None) -> None:
        if self._pm.has_plugin(name):
            raise PluginError(f"two plugins are named {name!r}")
        self._pm.register(plugin, name=name)
        self._versions[name] = (version, dist)
        self._providers.clear()

    def register_builtins(self) -> None:
        for module_name in BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            self.register(module, module_name.rsplit(".", 1)[1], __version__, None)

    def load_entry_points(self) -> None:
        for ep in entry_points(group=hookspecs.PROJECT_NAME):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else "unknown"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (distribution {dist}) failed to load: "
                    f"{exc.__class__.__name__}: {exc}"
                ) from None
            self.register(plugin, ep.name, version, dist)

    def distribution(self, plugin_name: str) -> str:
        """The distribution that installed a plugin (``containment-chamber`` for built-ins)."""
        found = self._versions.get(plugin_name)
        return (found[1] if found else None) or "containment-chamber"

    # ------------------------------------------------------------------ providers

    def providers(self, hook_name: str) -> dict[str, Provider]:
        """``name -> Provider`` for one provider hook; duplicate names are a PluginError."""
        cached = self._providers.get(hook_name)
        if cached is not None:
            return cached
        collected: dict[str, Provider] = {}
        hook = getattr(self._pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order
            try:
                offered = impl.function()
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                    f"{exc.__class__.__name__}: {exc}"
                ) from None
            if offered is None:
                continue
            if not isinstance(offered, Mapping) or not all(isinstance(k, str) for k in offered):
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook_name} must return a mapping "
                    f"of names to providers, got {type(offered).__name__}"
                )
            for name, cls in offered.items():
                if name in collected:
                    raise PluginError(
                        f"{hook_name}: name {name!r} is provided by both plugin "
                        f"{collected[name].plugin!r} and plugin {impl.plugin_name!r}; "
                        "uninstall one of them"
                    )
                collected[name] = Provider(name, cls, impl.plugin_name)
        self._providers[hook_name] = collected
        return collected

    def provider(self, hook_name: str, name: str, config_key: str) -> Provider:
        available = self.providers(hook_name)
        found = available.get(name)
        if found is None:
            names = ", ".join(sorted(available)) or "none"
            raise PluginError(
                f"{config_key}: no installed plugin provides {name!r} (available: {names})"
            )
        return found

    def check_all(self) -> None:
        """Collect every provider hook once, so duplicate names fail at start-up."""
        for hook_name in PROVIDER_HOOKS:
            self.providers(hook_name)

    # ------------------------------------------------------------------ events

    def has_listeners(self, hook_name: str) -> bool:
        return bool(getattr(self._pm.hook, hook_name).get_hookimpls())

    def emit(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of an event hook; a failure is logged, never raised."""
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**kwargs)
            except Exception as exc:
                log.error(
                    "plugin event hook failed",
                    extra={
                        "plugin": impl.plugin_name,
                        "hook": hook_name,
                        "error": exc.__class__.__name__,
                    },
                )

    # ------------------------------------------------------------------ listing

    def describe(self) -> list[PluginInfo]:
        infos = {
            name: PluginInfo(name, version, dist)
            for name, (version, dist) in self._versions.items()
        }
        for hook_name in PROVIDER_HOOKS:
            for provider in self.providers(hook_name).values():
                kind = hook_name.removeprefix("chamber_")
                infos[provider.plugin].provides.setdefault(kind, []).append(provider.name)
        for hook_name in hookspecs_event_hooks():
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                infos[impl.plugin_name].provides.setdefault("events", []).append(
                    hook_name.removeprefix("chamber_")
                )
        return list(infos.values())


def hookspecs_event_hooks() -> Iterable[str]:
    return (
        name
        for name in dir(hookspecs)
        if name.startswith("chamber_") and name not in PROVIDER_HOOKS
    )


def load_plugins(*, entry_points_enabled: bool = True) -> PluginManager:
    pm = PluginManager()
    pm.register_builtins()
    if entry_points_enabled:
        pm.load_entry_points()
    pm.check_all()
    return pm
