"""The operator CLI's side of credential types: choosing one, and calling its plugin safely.

A credential type (``chamber_credential_types``) runs its ``enroll`` / ``obtain`` on the
operator's machine. Plugins are code we do not control, so each call runs in a forked
child process with a time limit; an exception, a hang or a result of the wrong type becomes
one clear error naming the type and the distribution that provides it. Exception text from a
plugin is shown only when the plugin raised a :class:`chamber.errors.ChamberError` on purpose
(its message is the plugin's contract); anything else is reported by class name, since its
text could quote secret material.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

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
_distributions: dict[str, str] = {}


def installed_types() -> dict[str, Provider]:
    """Every installed credential type by name (built-in and plugins), loaded once."""
    global _cache
    if _cache is None:
        try:
            manager = load_plugins()
            found = dict(manager.providers("chamber_credential_types"))
        except ChamberError as error:  # not cached: a broken plugin is not "no types"
            raise CliError(f"the installed plugins failed to load: {error.message}", 1) from None
        for provider in found.values():
            _distributions[provider.plugin] = manager.distribution(provider.plugin)
        _cache = found
    return _cache


def _label(name: str, provider: Provider) -> str:
    return (
        f"credential type {name!r} (plugin {_distributions.get(provider.plugin, provider.plugin)})"
    )


def describe_installed() -> str:
    """For ``--help``: the installed types and where each comes from."""
    try:
        types = installed_types()
    except Exception:  # help text must never fail
        return "installed: unknown (plugins failed to load)"
    if not types:
        return "installed: none"
    return "installed: " + ", ".join(
        f"{name} ({_distributions.get(provider.plugin, provider.plugin)})"
        for name, provider in sorted(types.items())
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


def _call(name: str, what: str, action: str, args: tuple[Any, ...], timeout: float) -> Any:
    """Run ``<type>().<action>(*args)`` in a forked child process and return its result.

    A child, not a thread: a plugin that hangs inside a C call holding the GIL (a device
    library, say) can still be stopped, and a plugin that crashes cannot take the CLI with it.
    The child inherits the terminal (prompts work) and hands back only the result, encoded;
    an exception comes back as its class name, plus its message for a ChamberError.
    """
    provider = _provider(name)
    label = _label(name, provider)
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        code = 0
        try:
            payload = _run_in_child(provider, action, args)
        except BaseException:  # pragma: no cover - last resort, reported as a failure
            payload = {"error": "internal"}
            code = 1
        try:
            with os.fdopen(write_end, "wb") as out:
                out.write(orjson.dumps(payload))
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CliError(f"{label} did not {what} within {timeout:g} s; giving up", 1)
                ready, _, _ = select.select([pipe], [], [], left)
                if not ready:
                    continue
                chunk = pipe.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:
        _kill(pid)
        raise
    _reap(pid)
    try:
        payload = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise CliError(f"{label} ended without an answer (it crashed)", 1) from None
    return _decode(payload, label, what)


def _run_in_child(provider: Provider, action: str, args: tuple[Any, ...]) -> dict[str, Any]:
    try:
        result = getattr(provider.cls(), action)(*args)
    except ChamberError as error:
        return {"error": "chamber", "message": error.message}
    except EOFError:
        return {"error": "eof"}
    except KeyboardInterrupt:
        return {"error": "interrupted"}
    except BaseException as error:
        return {"error": "other", "class": type(error).__name__}
    if isinstance(result, Enrollment):
        material, public = result.material, result.public
        if (
            not isinstance(material, bytes | bytearray)
            or not material
            or not isinstance(public, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in public.items())
        ):
            return {"error": "garbage", "class": "Enrollment"}
        return {
            "enrollment": base64.b64encode(bytes(material)).decode("ascii"),
            "public": dict(public),
        }
    if isinstance(result, bytes | bytearray) and result:
        return {"material": base64.b64encode(bytes(result)).decode("ascii")}
    return {"error": "garbage", "class": type(result).__name__}


def _decode(payload: Any, label: str, what: str) -> Any:
    error = payload.get("error") if isinstance(payload, dict) else "internal"
    if error == "chamber":
        raise CliError(f"{label}: {payload.get('message')}", 1)
    if error == "eof":
        raise CliError(f"{label}: nothing was entered", 2)
    if error == "interrupted":
        raise KeyboardInterrupt
    if error == "garbage":
        raise CliError(
            f"{label} returned a {payload.get('class')} that is not valid credential material "
            "(non-empty bytes, or an Enrollment of bytes and string parameters); nothing was sent",
            1,
        )
    if error is not None:
        raise CliError(f"{label} failed to {what} ({payload.get('class', 'internal error')})", 1)
    if "enrollment" in payload:
        return Enrollment(base64.b64decode(payload["enrollment"]), dict(payload["public"]))
    return base64.b64decode(payload["material"])


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def enroll(choice: Choice, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Enrollment:
    """A new credential of the chosen type (material + public parameters)."""
    result = _call(choice.name, "enroll a credential", "enroll", (choice.options,), timeout)
    if not isinstance(result, Enrollment):
        raise CliError(f"{_label(choice.name, _provider(choice.name))} did not enroll", 1)
    return result


def obtain(
    choice: Choice,
    candidates: Sequence[Mapping[str, str]],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """The material of an existing credential of the chosen type."""
    result = _call(
        choice.name,
        "produce the credential",
        "obtain",
        (choice.options, [dict(c) for c in candidates]),
        timeout,
    )
    if not isinstance(result, bytes):
        raise CliError(
            f"{_label(choice.name, _provider(choice.name))} returned an enrollment where "
            "credential material was expected",
            1,
        )
    return result


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
