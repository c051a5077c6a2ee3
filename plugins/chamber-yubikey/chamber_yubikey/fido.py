"""The plugin's conversations with FIDO2 security keys, through Yubico's ``fido2`` package (2.x).

- Keys are USB HID devices (``fido2.hid.CtapHidDevice``), or, for tests only, whatever the
  ``module:function`` in ``CHAMBER_YUBIKEY_DEVICE_FACTORY`` returns.
- Which plugged-in key holds a credential is asked without a touch: a CTAP2 getAssertion with
  ``up: false`` and an allow list of that one credential id answers NO_CREDENTIALS or not.
- Registering and answering go through ``fido2.client.Fido2Client`` with the
  ``HmacSecretExtension`` (``hmacCreateSecret`` / ``hmacGetSecret``): the client agrees a shared
  secret with the key (ClientPIN getKeyAgreement, ECDH P-256), sends the salt encrypted and
  decrypts the output. User verification is discouraged; user presence (a touch) is always
  required.
- Registering with several keys plugged in: they all blink and the one the operator touches is
  registered (``Fido2Client.selection``), as a browser does.

Every failure becomes a :class:`chamber.errors.BadRequest` whose message the CLI shows as is;
no message ever contains the salt's output.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import importlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fido2.client import (
    ClientError,
    DefaultClientDataCollector,
    Fido2Client,
    PinRequiredError,
    UserInteraction,
)
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.base import Ctap2
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin
from fido2.hid import CAPABILITY, CtapHidDevice
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from chamber.errors import BadRequest
from chamber_yubikey.credential import DEVICE_FACTORY_ENV, MATERIAL_BYTES, Candidate

RP_NAME = "Containment Chamber"
ES256, EDDSA = -7, -8
ERR = CtapError.ERR

#: How long to wait for the operator to pick one of several keys by touching it (a key
#: gives up by itself after about 30 s).
SELECTION_SECONDS = 60.0


def _say(text: str) -> None:
    print(f"containment-chamber: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- devices


def _from_factory(spec: str) -> list[CtapDevice]:
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise BadRequest(f"{DEVICE_FACTORY_ENV}: expected module:function, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise BadRequest(
            f"{DEVICE_FACTORY_ENV}: cannot load {spec!r} ({type(error).__name__})"
        ) from None
    found = factory()
    if isinstance(found, CtapDevice):
        return [found]
    devices = list(found)
    if not all(isinstance(d, CtapDevice) for d in devices):
        raise BadRequest(f"{DEVICE_FACTORY_ENV}: {spec} returned something not a CtapDevice")
    return devices


def _plugged_in() -> list[CtapDevice]:
    spec = os.environ.get(DEVICE_FACTORY_ENV)
    if spec:
        return _from_factory(spec)
    try:
        return list(CtapHidDevice.list_devices())
    except OSError as error:
        raise BadRequest(
            f"cannot open the USB security keys ({error.strerror or type(error).__name__}); "
            "on Linux, check that the udev rules for FIDO keys are installed"
        ) from None


@dataclass
class _Key:
    device: CtapDevice
    ctap2: Ctap2


def _usable(devices: Iterable[CtapDevice], hint: str) -> list[_Key]:
    """The CTAP2 keys with hmac-secret among ``devices``; a clear error when there is none."""
    keys: list[_Key] = []
    unsupported = 0
    for device in devices:
        try:
            if not device.capabilities & CAPABILITY.CBOR:
                unsupported += 1
                continue
            ctap2 = Ctap2(device)
        except (CtapError, ValueError, OSError):
            unsupported += 1
            continue
        if HmacSecretExtension.NAME not in ctap2.info.extensions:
            unsupported += 1
            continue
        keys.append(_Key(device, ctap2))
    if keys:
        return keys
    if unsupported:
        raise BadRequest(
            "the plugged-in security key does not support the FIDO2 hmac-secret extension "
            "(a U2F-only or older key; the YubiKey 5 series, the Security Key series and "
            f"other FIDO2 keys listing hmac-secret do); {hint}"
        )
    raise BadRequest(f"no FIDO2 security key is plugged in; {hint}")


def _close(devices: Iterable[CtapDevice]) -> None:
    for device in devices:
        with contextlib.suppress(OSError):
            device.close()


def _holds(key: _Key, rp_id: str, credential_id: bytes) -> bool | None:
    """Whether the key holds the credential, asked without a touch (``up: false``); None when
    the key would not say without user verification."""
    try:
        key.ctap2.get_assertion(
            rp_id,
            os.urandom(32),
            [{"type": "public-key", "id": credential_id}],
            options={"up": False},
        )
    except CtapError as error:
        if error.code == ERR.NO_CREDENTIALS:
            return False
        return None
    return True


# ---------------------------------------------------------------------- the client


class _Interaction(UserInteraction):
    """The CLI prints its own touch prompt before each request; a PIN is asked for only when
    the key insists on user verification."""

    def __init__(self) -> None:
        self._pin: str | None = None

    def prompt_up(self) -> None:
        return None

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        if self._pin is None:
            self._pin = getpass.getpass("PIN for your security key: ")
        return self._pin

    def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
        return True


def _client(key: _Key, rp_id: str) -> Fido2Client:
    return Fido2Client(
        key.device,
        client_data_collector=DefaultClientDataCollector(f"https://{rp_id}"),
        user_interaction=_Interaction(),
        extensions=[HmacSecretExtension(allow_hmac_secret=True)],  # type: ignore[no-untyped-call]
    )


def _failure(error: ClientError, what: str) -> BadRequest | None:
    """A client error as the message the operator sees; None for "not this key's credential"."""
    cause = error.cause
    if isinstance(error, PinRequiredError):
        return BadRequest(f"{what}: the security key requires its PIN and none was entered")
    if isinstance(cause, CtapError):
        code = cause.code
        if code == ERR.NO_CREDENTIALS:
            return None
        if code in (ERR.USER_ACTION_TIMEOUT, ERR.ACTION_TIMEOUT, ERR.KEEPALIVE_CANCEL):
            return BadRequest(f"{what}: the security key was not touched in time")
        if code == ERR.OPERATION_DENIED:
            return BadRequest(f"{what}: the touch was refused on the security key")
        if code == ERR.PIN_INVALID:
            return BadRequest(f"{what}: wrong PIN for the security key")
        if code in (ERR.PIN_BLOCKED, ERR.PIN_AUTH_BLOCKED):
            return BadRequest(
                f"{what}: the security key's PIN is blocked (unplug and replug it, or reset it)"
            )
        name = code.name if isinstance(code, ERR) else hex(int(code))
        return BadRequest(f"{what}: the security key answered CTAP error {name}")
    if error.code == ClientError.ERR.TIMEOUT:
        return BadRequest(f"{what}: the security key was not touched in time")
    if error.code == ClientError.ERR.DEVICE_INELIGIBLE:
        return None
    detail = f": {cause}" if isinstance(cause, str) else ""
    return BadRequest(f"{what}: the security key could not be used ({error.code.name}{detail})")


def _hmac_output(results: Any, what: str) -> bytes:
    output = getattr(results, "hmac_get_secret", None)
    value = getattr(output, "output1", None)
    if not isinstance(value, bytes) or len(value) != MATERIAL_BYTES:
        raise BadRequest(f"{what}: the security key returned no {MATERIAL_BYTES}-byte hmac-secret")
    return value


def _assert(key: _Key, candidate: Candidate, what: str) -> bytes | None:
    """The key's hmac-secret output for the candidate's salt (one touch); None when the key
    does not hold the credential after all."""
    options = PublicKeyCredentialRequestOptions(
        challenge=os.urandom(32),
        rp_id=candidate.rp_id,
        allow_credentials=[
            PublicKeyCredentialDescriptor(
                type=PublicKeyCredentialType.PUBLIC_KEY, id=candidate.credential_id
            )
        ],
        user_verification=UserVerificationRequirement.DISCOURAGED,
        extensions={"hmacGetSecret": {"salt1": candidate.salt}},
    )
    try:
        selection = _client(key, candidate.rp_id).get_assertion(options)
        response = selection.get_response(0)
    except ClientError as error:
        failure = _failure(error, what)
        if failure is None:
            return None
        raise failure from None
    return _hmac_output(response.client_extension_results, what)


def _lost(what: str, error: OSError) -> BadRequest:
    reason = error.strerror or type(error).__name__
    return BadRequest(f"{what}: lost contact with the security key ({reason}; unplugged?)")


def _select_by_touch(keys: Sequence[_Key], rp_id: str, what: str) -> _Key:
    """Several keys are plugged in: all blink, and the one the operator touches is chosen (as a
    browser does: CTAP 2.1 authenticatorSelection, or a dummy request on older keys); the
    others are cancelled."""
    _say(f"{len(keys)} security keys are plugged in: touch the one to register")
    cancel = threading.Event()
    chosen: list[_Key] = []
    lock = threading.Lock()

    def wait_for_touch(key: _Key) -> None:
        try:
            _client(key, rp_id).selection(cancel)
        except (ClientError, CtapError, OSError):
            return
        with lock:
            if not chosen:
                chosen.append(key)
        cancel.set()

    threads = [
        threading.Thread(target=wait_for_touch, args=(key,), name="yubikey-select", daemon=True)
        for key in keys
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + SELECTION_SECONDS
    while not cancel.is_set() and any(t.is_alive() for t in threads):
        if time.monotonic() > deadline:
            break
        cancel.wait(0.05)
    cancel.set()
    for thread in threads:
        thread.join(5)
    if not chosen:
        raise BadRequest(
            f"{what}: none of the {len(keys)} plugged-in security keys was touched; touch the "
            "one to register when they blink, or unplug all but that one"
        )
    return chosen[0]


def _user_id(operator: str) -> bytes:
    return hashlib.sha256(b"containment-chamber operator\x00" + operator.encode()).digest()[:16]


# ---------------------------------------------------------------------- enroll / obtain


def register(rp_id: str, operator: str, name: str, salt: bytes) -> tuple[bytes, bytes]:
    """A new credential on the plugged-in key: ``(credential id, hmac-secret output)``."""
    what = "registering the security key"
    devices = _plugged_in()
    try:
        keys = _usable(devices, "plug in the security key to register")
        key = keys[0] if len(keys) == 1 else _select_by_touch(keys, rp_id, what)
        label = f"operator {operator!r}" + (f" (credential {name!r})" if name else "")
        _say(f"touch your security key to register it as {label}")
        options = PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(id=rp_id, name=RP_NAME),
            user=PublicKeyCredentialUserEntity(
                id=_user_id(operator), name=operator, display_name=f"{operator} ({RP_NAME})"
            ),
            challenge=os.urandom(32),
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
                for alg in (ES256, EDDSA)
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.DISCOURAGED,
            ),
            attestation=AttestationConveyancePreference.NONE,
            # hmacGetSecret too: a key with hmac-secret-mc (CTAP 2.2) answers it right away.
            extensions={"hmacCreateSecret": True, "hmacGetSecret": {"salt1": salt}},
        )
        try:
            result = _client(key, rp_id).make_credential(options)
        except ClientError as error:
            failure = _failure(error, what)
            raise failure or BadRequest(f"{what}: the security key refused") from None
        results = result.client_extension_results
        if results.hmac_create_secret is not True:
            raise BadRequest(
                f"{what}: the security key did not enable hmac-secret for the new credential"
            )
        credential_id = bytes(result.raw_id)
        if getattr(results, "hmac_get_secret", None) is not None:
            return credential_id, _hmac_output(results, what)
        _say("touch your security key again to derive the credential's secret")
        output = _assert(key, Candidate(credential_id, salt, rp_id, name), what)
        if output is None:
            raise BadRequest(f"{what}: the security key lost the credential it just made")
        return credential_id, output
    except OSError as error:
        raise _lost(what, error) from None
    finally:
        _close(devices)


def answer(operator: str, candidates: Sequence[Candidate]) -> bytes:
    """The hmac-secret output of the first of ``candidates`` that a plugged-in key holds."""
    what = f"unlocking with the security key of operator {operator!r}"
    devices = _plugged_in()
    try:
        keys = _usable(devices, f"plug in a registered security key of operator {operator!r}")
        for key in keys:
            for candidate in candidates:
                if _holds(key, candidate.rp_id, candidate.credential_id) is False:
                    continue
                label = f" ({candidate.name})" if candidate.name else ""
                _say(f"touch your security key{label} for operator {operator!r}")
                output = _assert(key, candidate, what)
                if output is not None:
                    return output
        names = ", ".join(c.name or "unnamed" for c in candidates)
        keys_text = "keys hold" if len(keys) > 1 else "key holds"
        raise BadRequest(
            f"no registered hardware key of operator {operator!r} is plugged in (the plugged-in "
            f"security {keys_text} none of its yubikey credentials: {names})"
        )
    except OSError as error:
        raise _lost(what, error) from None
    finally:
        _close(devices)
