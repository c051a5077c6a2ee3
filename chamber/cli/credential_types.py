"""The operator CLI's side of credential types: choosing one, and calling its plugin safely.

A credential type (``chamber_credential_types``) runs its ``enroll`` / ``obtain`` on the
operator's machine. Plugins are code we do not control, so each call runs in a worker thread
with a time limit; an exception, a hang or a result of the wrong type becomes one clear error
naming the type and the distribution that provides it. Exception text from a plugin is shown
only when the plugin raised a :class:`chamber.errors.ChamberError` on purpose (its message is
the plugin's contract); anything else is reported by class name, since its text could quote
secret material.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chamber.cli.remote import CliError
from chamber.errors import ChamberError
from chamber.plugins import Provider, load_plugins
from chamber.vault.interfaces import Enrollment

PASSPHRASE = "passphrase"  # noqa: S105 (the type name, not a secret)
#: Shortcut flags and the type each selects.
YUBIKEY = "yubikey"
SECRETS_MANAGER = "secretsmanager"
DEFAULT_TIMEOUT_SECONDS = 120.0

_cache: dict[str, Provider] | None = None


def installed_types() -> dict[str, Provider]:
    """Every installed credential type by name (built-in and plugins), loaded once."""
    global _cache
    if _cache is None:
        try:
            _cache = dict(load_plugins().providers("chamber_credential_types"))
        except ChamberError as error:  # not cached: a broken plugin is not "no types"
            raise CliError(f"the installed plugins failed to load: {error.message}", 1) from None
    return _cache


def describe_installed() -> str:
    """For ``--help``: the installed types and where each comes from."""
    try:
        types = installed_types()
    except Exception:  # help text must never fail
        return "installed: unknown (plugins failed to load)"
    if not types:
        return "installed: none"
    return "installed: " + ", ".join(
        f"{name} ({provider.plugin})" for name, provider in sorted(types.items())
    )


@dataclass(frozen=True, slots=True)
class Choice:
    """The credential type the operator chose and the options its plugin receives."""

    name: str
    options: dict[str, Any]


def choose(
    *,
    yubikey: bool = False,
    secrets_manager_id: str | None = None,
    secrets_manager_version_stage: str | None = None,
    credential_type: str | None = None,
    stdin: bool = False,
) -> Choice:
    chosen = [
        name
        for name, given in (
            (YUBIKEY, yubikey),
            (SECRETS_MANAGER, secrets_manager_id is not None),
            (credential_type, credential_type is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        raise CliError(
            "choose one credential type: --yubikey, --secrets-manager-id or --credential-type",
            2,
        )
    name = chosen[0] if chosen else PASSPHRASE
    assert name is not None
    options: dict[str, Any] = {"stdin": stdin}
    if secrets_manager_id is not None:
        options["secret_id"] = secrets_manager_id
    if secrets_manager_version_stage is not None:
        options["version_stage"] = secrets_manager_version_stage
    return Choice(name, options)


def _provider(name: str) -> Provider:
    provider = installed_types().get(name)
    if provider is None:
        raise CliError(
            f"credential type {name!r} is not installed on this machine ({describe_installed()}); "
            "install the plugin that provides it, e.g. pip install chamber-" + name,
            2,
        )
    return provider


def _call(
    name: str, what: str, fn: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> Any:
    provider = _provider(name)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as error:
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"credential-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    label = f"credential type {name!r} (plugin {provider.plugin})"
    if worker.is_alive():
        raise CliError(f"{label} did not {what} within {timeout:g} s; giving up", 1)
    error = outcome.get("error")
    if isinstance(error, KeyboardInterrupt):
        raise error
    if isinstance(error, CliError):
        raise error
    if isinstance(error, ChamberError):
        raise CliError(f"{label}: {error.message}", 1)
    if isinstance(error, EOFError):
        raise CliError(f"{label}: nothing was entered", 2)
    if error is not None:
        raise CliError(f"{label} failed to {what} ({type(error).__name__})", 1)
    return outcome.get("value")


def enroll(choice: Choice, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Enrollment:
    """A new credential of the chosen type (material + public parameters)."""
    instance = _provider(choice.name).cls()
    result = _call(
        choice.name, "enroll a credential", lambda: instance.enroll(choice.options), timeout
    )
    if (
        not isinstance(result, Enrollment)
        or not isinstance(result.material, bytes | bytearray)
        or not result.material
        or not isinstance(result.public, Mapping)
    ):
        provider = _provider(choice.name)
        raise CliError(
            f"credential type {choice.name!r} (plugin {provider.plugin}) returned something "
            "that is not an Enrollment with non-empty bytes; nothing was sent",
            1,
        )
    return Enrollment(bytes(result.material), {str(k): str(v) for k, v in result.public.items()})


def obtain(
    choice: Choice,
    candidates: Sequence[Mapping[str, str]],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """The material of an existing credential of the chosen type."""
    instance = _provider(choice.name).cls()
    result = _call(
        choice.name,
        "produce the credential",
        lambda: instance.obtain(choice.options, list(candidates)),
        timeout,
    )
    if not isinstance(result, bytes | bytearray) or not result:
        provider = _provider(choice.name)
        raise CliError(
            f"credential type {choice.name!r} (plugin {provider.plugin}) returned something "
            "that is not non-empty bytes; nothing was sent",
            1,
        )
    return bytes(result)


def material_fields(type_name: str, material: bytes, prefix: str = "") -> dict[str, str]:
    """The JSON fields carrying ``material``: a passphrase as text, anything else base64."""
    if type_name == PASSPHRASE:
        return {f"{prefix}passphrase": material.decode("utf-8")}
    return {f"{prefix}secret": base64.b64encode(material).decode("ascii")}


def candidates_of(listing: Any, type_name: str, operator: str) -> list[dict[str, str]]:
    """The public parameters of the operator's credentials of ``type_name`` (from the
    signer's credential listing)."""
    credentials = listing.get("credentials") if isinstance(listing, dict) else None
    if not isinstance(credentials, list):
        return []
    found = [
        dict(c.get("public") or {})
        for c in credentials
        if isinstance(c, dict) and c.get("type") == type_name
    ]
    if not found:
        raise CliError(
            f"operator {operator!r} has no {type_name} credential on this signer "
            "(see operator credentials list)",
            1,
        )
    return found


def credential_type_of(listing: Any, credential_id: str) -> tuple[str, dict[str, str]]:
    credentials = listing.get("credentials") if isinstance(listing, dict) else None
    for c in credentials or []:
        if isinstance(c, dict) and c.get("credential_id") == credential_id:
            return str(c.get("type") or PASSPHRASE), dict(c.get("public") or {})
    return PASSPHRASE, {}
