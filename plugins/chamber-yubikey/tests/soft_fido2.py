"""A software CTAP2 authenticator with the ``hmac-secret`` extension, behind fido2's device API.

:class:`SoftAuthenticator` is a :class:`fido2.ctap.CtapDevice`: the real ``fido2`` client code
(``Fido2Client``, ``Ctap2``, ``ClientPin``, ``HmacSecretExtension``) talks to it exactly as it
talks to a USB security key, with CTAPHID_CBOR messages. It implements what hmac-secret needs:

- ``authenticatorGetInfo`` (CTAP 2.1, PIN/UV auth protocols 2 and 1, extension ``hmac-secret``,
  no PIN set, no built-in user verification);
- ``authenticatorMakeCredential`` (ES256 credentials, ``hmac-secret: true``, exclude list);
- ``authenticatorGetAssertion`` (allow list, ``up`` true or false, the ``hmac-secret`` input:
  the platform's key-agreement key, the salts encrypted under the ECDH shared secret and their
  MAC; the outputs ``HMAC-SHA-256(CredRandom, salt)`` come back encrypted the same way);
- ``authenticatorClientPIN`` ``getKeyAgreement`` (an ephemeral P-256 key per "power-up", i.e.
  per device object) and ``getPinRetries``.

Everything is done with ``cryptography`` (ECDH P-256, HKDF, AES-256-CBC, HMAC, ECDSA).

State: the device secret (from which each credential's CredRandom is derived, so two keys
answer differently even for the same credential id and salt), the credentials it made, the
signature counter, the touch behaviour and how many touches were asked for live in a JSON file,
re-read on every command and written after every change, so a key "stays plugged in" across
CLI processes. The CLI finds it through the plugin's test hook::

    CHAMBER_YUBIKEY_DEVICE_FACTORY=soft_fido2:devices_from_env
    SOFT_FIDO2_STATE=/tmp/key-a.json[:/tmp/key-b.json]   # os.pathsep-separated: several keys
    PYTHONPATH=<this directory>

Settings (:meth:`SoftAuthenticator.configure`, kept in the state file): ``mc: true`` makes the
key also offer ``hmac-secret-mc`` (CTAP 2.2: the first output comes with the new credential,
one touch instead of two); ``hmac_secret: false`` makes it a FIDO2 key without hmac-secret;
``protocols`` lists the PIN/UV auth protocols it offers (``[1]``: an older key).

``touch`` in the state file: ``"approve"`` (the user touches the key), ``"deny"`` (the key
answers CTAP2_ERR_OPERATION_DENIED), ``"timeout"`` (CTAP2_ERR_USER_ACTION_TIMEOUT) or
``"ignore"`` (nobody touches it: it blinks until the platform cancels the request,
CTAP2_ERR_KEEPALIVE_CANCEL, or ``ignore_seconds`` pass, USER_ACTION_TIMEOUT).
``touch_script``: a list of those modes used for the next touches, one each, before ``touch``
applies again (which key a person touches at which step of one CLI command).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from threading import Event
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fido2 import cbor
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

STATE_ENV = "SOFT_FIDO2_STATE"
FACTORY = "soft_fido2:devices_from_env"
TOUCH_MODES = ("approve", "deny", "timeout", "ignore")

# CTAP2 commands and status codes.
MAKE_CREDENTIAL = 0x01
GET_ASSERTION = 0x02
GET_INFO = 0x04
CLIENT_PIN = 0x06
GET_NEXT_ASSERTION = 0x08
SELECTION = 0x0B

ERR = CtapError.ERR
UP, UV, AT, ED = 0x01, 0x04, 0x40, 0x80
ES256 = -7
ECDH_ES_HKDF_256 = -25


class _Failure(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _cose_ec2(public: ec.EllipticCurvePublicKey, alg: int) -> dict[int, Any]:
    numbers = public.public_numbers()
    return {
        1: 2,  # kty: EC2
        3: alg,
        -1: 1,  # crv: P-256
        -2: numbers.x.to_bytes(32, "big"),
        -3: numbers.y.to_bytes(32, "big"),
    }


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


class _PinProtocol:
    """PIN/UV auth protocol 1 or 2 (CTAP 2.1 §6.5.6, §6.5.7), the authenticator's side."""

    def __init__(self, version: int) -> None:
        if version not in (1, 2):
            raise _Failure(ERR.INVALID_PARAMETER)
        self.version = version

    def kdf(self, z: bytes) -> bytes:
        if self.version == 1:
            return _sha256(z)
        return b"".join(
            HKDF(hashes.SHA256(), 32, b"\x00" * 32, info).derive(z)
            for info in (b"CTAP2 HMAC key", b"CTAP2 AES key")
        )

    def encrypt(self, shared: bytes, data: bytes) -> bytes:
        if self.version == 1:
            return _cbc(shared, b"\x00" * 16, data, encrypt=True)
        iv = os.urandom(16)
        return iv + _cbc(shared[32:], iv, data, encrypt=True)

    def decrypt(self, shared: bytes, data: bytes) -> bytes:
        if len(data) % 16 or (self.version == 2 and len(data) < 32):
            raise _Failure(ERR.INVALID_LENGTH)
        if self.version == 1:
            return _cbc(shared, b"\x00" * 16, data, encrypt=False)
        return _cbc(shared[32:], data[:16], data[16:], encrypt=False)

    def verify(self, shared: bytes, message: bytes, signature: bytes) -> bool:
        if self.version == 1:
            return hmac.compare_digest(_hmac(shared, message)[:16], signature)
        return hmac.compare_digest(_hmac(shared[:32], message), signature)


class SoftAuthenticator(CtapDevice):
    """One software security key; its state lives in ``state_path`` (created on first use)."""

    AAGUID = bytes.fromhex("5c0b2d9e7a8f4c31b6e2a1d0c9f8e7d6")

    def __init__(self, state_path: Path, **settings: Any) -> None:
        self.state_path = Path(state_path)
        if not self.state_path.exists():
            self._save(
                {
                    "secret": os.urandom(32).hex(),
                    "counter": 0,
                    "touch": "approve",
                    "touches": 0,
                    "credentials": {},
                    "mc": False,
                }
            )
        if settings:
            self.configure(**settings)
        # The key-agreement key is regenerated at every power-up, here: every device object.
        self._agreement = ec.generate_private_key(ec.SECP256R1())

    def __repr__(self) -> str:
        return f"SoftAuthenticator({self.state_path.name})"

    # ------------------------------------------------------------------ state helpers

    def _load(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def _save(self, state: Mapping[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.state_path)

    def configure(self, **settings: Any) -> None:
        """Change the key's behaviour: ``touch`` (see above), ``mc`` (offer hmac-secret-mc),
        ``hmac_secret`` (False: a FIDO2 key without hmac-secret), ``protocols`` (the PIN/UV
        auth protocols it offers, e.g. ``[1]`` for an older key)."""
        known = {"touch", "touch_script", "ignore_seconds", "mc", "hmac_secret", "protocols"}
        assert not set(settings) - known, settings
        modes = [settings.get("touch", "approve"), *settings.get("touch_script", [])]
        assert all(mode in TOUCH_MODES for mode in modes), settings
        state = self._load()
        state.update(settings)
        self._save(state)

    @property
    def touches(self) -> int:
        """How many times the key asked for a touch (user presence) so far."""
        return int(self._load()["touches"])

    @property
    def credential_ids(self) -> list[bytes]:
        return [bytes.fromhex(k) for k in self._load()["credentials"]]

    def replace_secret(self, secret: bytes | None = None) -> None:
        """Keep the credentials but change the device secret: the key still recognises its
        credential ids but answers with different hmac-secret outputs (a counterfeit, or a key
        whose secret was reset under the same credential)."""
        state = self._load()
        state["secret"] = (secret or os.urandom(32)).hex()
        self._save(state)

    # ------------------------------------------------------------------ CtapDevice

    @property
    def capabilities(self) -> int:
        return int(CAPABILITY.CBOR | CAPABILITY.NMSG)

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: Event | None = None,
        on_keepalive: Callable[..., None] | None = None,
    ) -> bytes:
        if cmd != CTAPHID.CBOR:
            raise CtapError(ERR.INVALID_COMMAND)
        if not data:
            return bytes([ERR.INVALID_LENGTH])
        command, body = data[0], data[1:]
        try:
            params = cbor.decode(body) if body else {}
            if not isinstance(params, dict):
                raise _Failure(ERR.INVALID_CBOR)
            handler = {
                GET_INFO: self._get_info,
                MAKE_CREDENTIAL: self._make_credential,
                GET_ASSERTION: self._get_assertion,
                CLIENT_PIN: self._client_pin,
                SELECTION: self._selection,
            }.get(command)
            if handler is None:
                raise _Failure(
                    ERR.NOT_ALLOWED if command == GET_NEXT_ASSERTION else ERR.INVALID_COMMAND
                )
            answer = handler(params, on_keepalive, event)
        except _Failure as failure:
            return bytes([failure.code])
        return b"\x00" + (cbor.encode(answer) if answer is not None else b"")

    def close(self) -> None:
        return None

    @classmethod
    def list_devices(cls) -> Any:
        return iter(devices_from_env())

    # ------------------------------------------------------------------ commands

    def _get_info(self, params: Mapping[int, Any], _keepalive: Any, _event: Any) -> dict[int, Any]:
        return {
            1: ["FIDO_2_0", "FIDO_2_1"],
            2: self._extensions(self._load()),
            3: self.AAGUID,
            4: {
                "rk": True,
                "up": True,
                "plat": False,
                "clientPin": False,
                "makeCredUvNotRqd": True,
            },
            5: 1200,
            6: list(self._load().get("protocols", [2, 1])),
            7: 8,  # maxCredentialCountInList
            8: 128,  # maxCredentialIdLength
        }

    @staticmethod
    def _extensions(state: Mapping[str, Any]) -> list[str]:
        if not state.get("hmac_secret", True):
            return []
        return ["hmac-secret", "hmac-secret-mc"] if state.get("mc") else ["hmac-secret"]

    def _touch(
        self,
        state: dict[str, Any],
        keepalive: Callable[..., None] | None,
        event: Event | None = None,
    ) -> None:
        """Collect user presence as the state file says (every request is counted)."""
        state["touches"] = int(state["touches"]) + 1
        script = list(state.get("touch_script") or [])
        mode = script.pop(0) if script else state["touch"]
        state["touch_script"] = script
        self._save(state)
        if keepalive is not None:
            keepalive(STATUS.UPNEEDED)  # the client's "touch your key" prompt
        if mode == "ignore":
            if (event or Event()).wait(float(state.get("ignore_seconds", 30))):
                raise _Failure(ERR.KEEPALIVE_CANCEL)
            raise _Failure(ERR.USER_ACTION_TIMEOUT)
        if mode == "deny":
            raise _Failure(ERR.OPERATION_DENIED)
        if mode == "timeout":
            raise _Failure(ERR.USER_ACTION_TIMEOUT)

    @staticmethod
    def _reject_uv(options: Mapping[str, Any]) -> None:
        if options.get("uv"):  # no built-in user verification, no PIN set
            raise _Failure(ERR.INVALID_OPTION)

    def _make_credential(
        self, params: Mapping[int, Any], keepalive: Callable[..., None] | None, event: Any
    ) -> dict[int, Any]:
        try:
            client_data_hash, rp, user, algorithms_ = params[1], params[2], params[3], params[4]
        except KeyError:
            raise _Failure(ERR.MISSING_PARAMETER) from None
        state = self._load()
        if params.get(8) == b"":  # the platform's "touch to select this key" probe
            self._touch(state, keepalive, event)
            raise _Failure(ERR.PIN_NOT_SET)
        options = params.get(7) or {}
        self._reject_uv(options)
        if not any(a.get("alg") == ES256 for a in algorithms_):
            raise _Failure(ERR.UNSUPPORTED_ALGORITHM)
        rp_id_hash = _sha256(rp["id"].encode())
        for excluded in params.get(5) or []:
            known = state["credentials"].get(bytes(excluded["id"]).hex())
            if known is not None and known["rp_id_hash"] == rp_id_hash.hex():
                self._touch(state, keepalive, event)
                raise _Failure(ERR.CREDENTIAL_EXCLUDED)
        self._touch(state, keepalive, event)

        credential_id = os.urandom(64)
        private = ec.generate_private_key(ec.SECP256R1())
        state["credentials"][credential_id.hex()] = {
            "rp_id_hash": rp_id_hash.hex(),
            "rp_id": rp["id"],
            "user": str(user.get("name", "")),
            "private": hex(private.private_numbers().private_value),
            "resident": bool(options.get("rk")),
        }
        state["counter"] = int(state["counter"]) + 1
        extensions = params.get(6) or {}
        ext_out: dict[str, Any] = {}
        if extensions.get("hmac-secret") is True and self._extensions(state):
            ext_out["hmac-secret"] = True
            if state.get("mc") and "hmac-secret-mc" in extensions:
                # CTAP 2.2 hmac-secret-mc: the first output comes with the new credential.
                ext_out["hmac-secret-mc"] = self._hmac_secret(
                    extensions["hmac-secret-mc"], bytes.fromhex(state["secret"]), credential_id
                )
        flags = UP | AT | (ED if ext_out else 0)
        auth_data = (
            rp_id_hash
            + bytes([flags])
            + struct.pack(">I", state["counter"])
            + self.AAGUID
            + struct.pack(">H", len(credential_id))
            + credential_id
            + cbor.encode(_cose_ec2(private.public_key(), ES256))
            + (cbor.encode(ext_out) if ext_out else b"")
        )
        self._save(state)
        signature = private.sign(auth_data + client_data_hash, ec.ECDSA(hashes.SHA256()))
        return {1: "packed", 2: auth_data, 3: {"alg": ES256, "sig": signature}}

    def _get_assertion(
        self, params: Mapping[int, Any], keepalive: Callable[..., None] | None, event: Any
    ) -> dict[int, Any]:
        try:
            rp_id, client_data_hash = params[1], params[2]
        except KeyError:
            raise _Failure(ERR.MISSING_PARAMETER) from None
        state = self._load()
        if params.get(6) == b"":
            self._touch(state, keepalive, event)
            raise _Failure(ERR.PIN_NOT_SET)
        options = params.get(5) or {}
        self._reject_uv(options)
        rp_id_hash = _sha256(rp_id.encode())
        allow = params.get(3) or []
        found: tuple[bytes, dict[str, Any]] | None = None
        if allow:
            for descriptor in allow:
                credential_id = bytes(descriptor["id"])
                known = state["credentials"].get(credential_id.hex())
                if known is not None and known["rp_id_hash"] == rp_id_hash.hex():
                    found = (credential_id, known)
                    break
        else:
            for hex_id, known in state["credentials"].items():
                if known["resident"] and known["rp_id_hash"] == rp_id_hash.hex():
                    found = (bytes.fromhex(hex_id), known)
                    break
        if found is None:
            raise _Failure(ERR.NO_CREDENTIALS)
        credential_id, known = found
        user_present = options.get("up", True)
        if user_present:
            self._touch(state, keepalive, event)

        extensions = params.get(4) or {}
        ext_out: dict[str, Any] = {}
        if "hmac-secret" in extensions and self._extensions(state):
            ext_out["hmac-secret"] = self._hmac_secret(
                extensions["hmac-secret"], bytes.fromhex(state["secret"]), credential_id
            )
        state["counter"] = int(state["counter"]) + 1
        flags = (UP if user_present else 0) | (ED if ext_out else 0)
        auth_data = (
            rp_id_hash
            + bytes([flags])
            + struct.pack(">I", state["counter"])
            + (cbor.encode(ext_out) if ext_out else b"")
        )
        self._save(state)
        private = ec.derive_private_key(int(known["private"], 16), ec.SECP256R1())
        signature = private.sign(auth_data + client_data_hash, ec.ECDSA(hashes.SHA256()))
        return {1: {"type": "public-key", "id": credential_id}, 2: auth_data, 3: signature}

    def _hmac_secret(self, given: Any, device_secret: bytes, credential_id: bytes) -> bytes:
        if not isinstance(given, dict) or not all(k in given for k in (1, 2, 3)):
            raise _Failure(ERR.MISSING_PARAMETER)
        protocol = _PinProtocol(int(given.get(4, 1)))
        if protocol.version not in self._load().get("protocols", [2, 1]):
            raise _Failure(ERR.INVALID_PARAMETER)
        shared = protocol.kdf(self._ecdh(given[1]))
        salt_enc, salt_auth = bytes(given[2]), bytes(given[3])
        if not protocol.verify(shared, salt_enc, salt_auth):
            raise _Failure(ERR.INVALID_PARAMETER)
        salts = protocol.decrypt(shared, salt_enc)
        if len(salts) not in (32, 64):
            raise _Failure(ERR.INVALID_LENGTH)
        # CredRandomWithoutUV: one secret per credential and device (never user-verified here).
        cred_random = _hmac(device_secret, b"CredRandomWithoutUV" + credential_id)
        outputs = b"".join(_hmac(cred_random, salts[i : i + 32]) for i in range(0, len(salts), 32))
        return protocol.encrypt(shared, outputs)

    def _ecdh(self, cose: Any) -> bytes:
        try:
            x, y = int.from_bytes(cose[-2], "big"), int.from_bytes(cose[-3], "big")
            peer = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except (KeyError, TypeError, ValueError):
            raise _Failure(ERR.INVALID_PARAMETER) from None
        return self._agreement.exchange(ec.ECDH(), peer)

    def _client_pin(
        self, params: Mapping[int, Any], _keepalive: Any, _event: Any
    ) -> dict[int, Any] | None:
        sub_command = params.get(2)
        if sub_command == 0x01:  # getPinRetries
            return {3: 8}
        if sub_command == 0x02:  # getKeyAgreement
            if int(params.get(1, 1)) not in self._load().get("protocols", [2, 1]):
                raise _Failure(ERR.INVALID_PARAMETER)
            return {1: _cose_ec2(self._agreement.public_key(), ECDH_ES_HKDF_256)}
        raise _Failure(ERR.PIN_NOT_SET if sub_command in (0x05, 0x09) else ERR.INVALID_SUBCOMMAND)

    def _selection(
        self, params: Mapping[int, Any], keepalive: Callable[..., None] | None, event: Any
    ) -> None:
        self._touch(self._load(), keepalive, event)
        return None


def expected_output(state_path: Path, credential_id: bytes, salt: bytes) -> bytes:
    """What the key at ``state_path`` answers for ``salt`` (white box, for the tests)."""
    secret = bytes.fromhex(json.loads(Path(state_path).read_text())["secret"])
    return _hmac(_hmac(secret, b"CredRandomWithoutUV" + credential_id), salt)


def devices_from_env() -> list[SoftAuthenticator]:
    """The plugin's device factory: one key per path in ``$SOFT_FIDO2_STATE``."""
    paths = [p for p in os.environ.get(STATE_ENV, "").split(os.pathsep) if p]
    return [SoftAuthenticator(Path(path)) for path in paths]


def no_devices() -> list[SoftAuthenticator]:
    """A factory for "nothing is plugged in"."""
    return []
