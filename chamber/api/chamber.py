"""The vault's HTTP API under ``/api/v1/chamber/`` (operator ceremonies and key import).

Authentication differs per route, as the runbook has it: ``status`` needs ``chamber_status``;
``seal`` and ``unseal-reset`` need ``chamber_seal``; ``init`` and ``init-reset`` are proven by the
setup token; ``register`` by the operator's registration token; ``unseal`` by the operator's
credential. Secrets arrive only in JSON bodies, never in URLs, and are never logged.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import falcon
import orjson

from chamber.api.eth2 import read_body
from chamber.errors import BadRequest, KeyNotFound
from chamber.signer import Signer
from chamber.vault.credentials import normalize_passphrase
from chamber.vault.service import Vault

audit = logging.getLogger("chamber.audit")

MAX_CEREMONY_BODY = 64 * 1024
MAX_IMPORT_BODY = 16 * 1024 * 1024
MAX_IMPORT_KEYS = 100


def _body(req: falcon.Request, limit: int = MAX_CEREMONY_BODY) -> dict[str, Any]:
    raw = read_body(req, limit)
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"{key}: required", field=key)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key}: must be a string", field=key)
    return value


def _int(data: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"{key}: required", field=key)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key}: must be an integer", field=key)
    return value


def _str_list(data: dict[str, Any], key: str, *, required: bool = True) -> list[str] | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"{key}: required", field=key)
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{key}: must be a list of strings", field=key)
    return value


def _public(data: dict[str, Any]) -> dict[str, str] | None:
    value = data.get("credential_public")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("credential_public: must be an object", field="credential_public")
    return value


def _secret(data: dict[str, Any], key: str = "passphrase") -> bytes:
    """Credential material: ``<key>`` (a passphrase, as text) or ``<key with secret>`` (any
    other credential type's bytes, base64)."""
    alternative = key.replace("passphrase", "secret")
    if data.get(alternative) is not None:
        if data.get(key) is not None:
            raise BadRequest(f"{key}: give {key} or {alternative}, not both", field=key)
        encoded = _str(data, alternative)
        assert encoded is not None
        try:
            material = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise BadRequest(f"{alternative}: must be base64", field=alternative) from None
        if not material:
            raise BadRequest(f"{alternative}: empty", field=alternative)
        return material
    text = _str(data, key)
    assert text is not None
    return normalize_passphrase(text)


def _answer(resp: falcon.Response, body: dict[str, Any], status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(body)


class _VaultResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    @property
    def vault(self) -> Vault:
        vault = self.signer.vault
        if vault is None:
            raise KeyNotFound(
                "the vault is not configured on this signer: add a signer_state section "
                "(and an encrypted key source) to the configuration"
            )
        return vault


class StatusResource(_VaultResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.signer.auth.require(req.get_header("Authorization"), "chamber_status")
        _answer(resp, self.vault.status())


class InitResource(_VaultResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        data = _body(req)
        key_ids = _str_list(data, "kms_key_ids")
        threshold = _int(data, "kms_threshold")
        assert key_ids is not None and threshold is not None
        _answer(
            resp,
            vault.init(
                _str(data, "setup_token"),
                key_ids,
                threshold,
                operators=_str_list(data, "operators", required=False),
                unseal_threshold=_int(data, "unseal_threshold", required=False),
            ),
        )


class InitResetResource(_VaultResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        data = _body(req)
        _answer(resp, vault.init_reset(_str(data, "setup_token")))


class RegisterResource(_VaultResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        data = _body(req)
        operator = _str(data, "operator")
        assert operator is not None
        _answer(
            resp,
            vault.register(
                operator,
                _str(data, "registration_token"),
                _secret(data),
                credential_id=_str(data, "credential_id", required=False) or "password-1",
                credential_type=_str(data, "credential_type", required=False) or "passphrase",
                credential_public=_public(data),
            ),
        )


class UnsealResource(_VaultResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        data = _body(req)
        operator = _str(data, "operator")
        assert operator is not None
        _answer(resp, vault.unseal(operator, _secret(data)))


class CredentialsResource(_VaultResource):
    """``/api/v1/chamber/unseal/credentials``: list (no authentication: ids are not secret),
    add and remove (each proven by an existing credential of the operator; no admin override)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        operator = req.get_param("operator")
        if not operator:
            raise BadRequest("operator: required query parameter", field="operator")
        _answer(resp, vault.list_credentials(operator))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        data = _body(req)
        operator = _str(data, "operator")
        existing = _str(data, "existing_credential_id")
        new = _str(data, "new_credential_id")
        assert operator is not None and existing is not None and new is not None
        _answer(
            resp,
            vault.add_credential(
                operator,
                existing,
                _secret(data, "existing_passphrase"),
                new,
                _secret(data, "new_passphrase"),
                credential_type=_str(data, "credential_type", required=False) or "passphrase",
                credential_public=_public(data),
            ),
        )

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self.vault
        data = _body(req)
        operator = _str(data, "operator")
        existing = _str(data, "existing_credential_id")
        remove = _str(data, "remove_credential_id")
        assert operator is not None and existing is not None and remove is not None
        _answer(
            resp,
            vault.remove_credential(
                operator, existing, _secret(data, "existing_passphrase"), remove
            ),
        )


class _RotateResource(_VaultResource):
    def _vault_for_rotation(self, req: falcon.Request) -> Vault:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_rotate")
        audit.warning("rotation requested", extra={"policy": policy.name, "path": req.path})
        return self.vault


class RotateKmsResource(_RotateResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self._vault_for_rotation(req)
        data = _body(req)
        key_ids = _str_list(data, "kms_key_ids")
        threshold = _int(data, "kms_threshold")
        assert key_ids is not None and threshold is not None
        _answer(resp, vault.rotate_kms(key_ids, threshold))


class RotateUnsealResource(_RotateResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self._vault_for_rotation(req)
        data = _body(req)
        operators = _str_list(data, "operators")
        threshold = _int(data, "unseal_threshold")
        assert operators is not None and threshold is not None
        _answer(resp, vault.rotate_unseal(operators, threshold))


class RotateUnsealCancelResource(_RotateResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self._vault_for_rotation(req)
        _answer(resp, vault.rotate_unseal_cancel())


class RotateModeResource(_RotateResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        vault = self._vault_for_rotation(req)
        data = _body(req)
        mode = _str(data, "mode")
        assert mode is not None
        _answer(
            resp,
            vault.rotate_mode(
                mode,
                operators=_str_list(data, "operators", required=False),
                unseal_threshold=_int(data, "unseal_threshold", required=False),
            ),
        )


class UnsealResetResource(_VaultResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_seal")
        vault = self.vault
        answer = vault.unseal_reset()
        audit.info("unseal reset requested", extra={"policy": policy.name})
        _answer(resp, answer)


class SealResource(_VaultResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_seal")
        vault = self.vault
        audit.warning("seal requested", extra={"policy": policy.name})
        _answer(resp, vault.seal())


def add_routes(app: falcon.App[falcon.Request, falcon.Response], signer: Signer) -> None:
    base = "/api/v1/chamber"
    app.add_route(f"{base}/status", StatusResource(signer))
    app.add_route(f"{base}/init", InitResource(signer))
    app.add_route(f"{base}/init-reset", InitResetResource(signer))
    app.add_route(f"{base}/register", RegisterResource(signer))
    app.add_route(f"{base}/unseal", UnsealResource(signer))
    app.add_route(f"{base}/unseal-reset", UnsealResetResource(signer))
    app.add_route(f"{base}/unseal/credentials", CredentialsResource(signer))
    app.add_route(f"{base}/rotate/kms", RotateKmsResource(signer))
    app.add_route(f"{base}/rotate/unseal", RotateUnsealResource(signer))
    app.add_route(f"{base}/rotate/unseal-cancel", RotateUnsealCancelResource(signer))
    app.add_route(f"{base}/rotate/mode", RotateModeResource(signer))
    app.add_route(f"{base}/seal", SealResource(signer))
