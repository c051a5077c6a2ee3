"""The vault's HTTP API under ``/api/v1/chamber/`` (operator ceremonies and key import).

Authentication differs per route, as the runbook has it: ``status`` needs ``chamber_status``;
``seal`` and ``unseal-reset`` need ``chamber_seal``; ``init`` and ``init-reset`` are proven by the
setup token; ``register`` by the operator's registration token; ``unseal`` by the operator's
credential. Secrets arrive only in JSON bodies, never in URLs, and are never logged.
"""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import falcon
import orjson

from chamber.api.eth2 import read_body
from chamber.crypto.keystore import decrypt_worker
from chamber.errors import BadRequest, ChamberError, KeyNotFound, Unavailable
from chamber.keys.encrypted import EncryptedKeySource
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


# ---------------------------------------------------------------------- minimal key import


class KeysImportResource(_VaultResource):
    """``POST /api/v1/chamber/keys/import``: EIP-2335 keystores into an encrypted store.

    Body ``{"keystores": [<keystore JSON text>...], "passwords": [...], "store": <source name>?}``;
    answer ``{"data": [{"status": "imported"|"duplicate"|"error", "pubkey"?, "message"?}]}``,
    one result per keystore, each independent of the others.
    """

    def __init__(self, signer: Signer, pool: Callable[[], ProcessPoolExecutor]) -> None:
        super().__init__(signer)
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_keys_write")
        vault = self.vault
        master = vault.master_key
        if not vault.signing_allowed or master is None:
            raise Unavailable(f"signer is sealed (state {vault.state}); unseal it first")
        data = _body(req, MAX_IMPORT_BODY)
        keystores = _str_list(data, "keystores")
        passwords = _str_list(data, "passwords")
        assert keystores is not None and passwords is not None
        if len(keystores) != len(passwords):
            raise BadRequest("passwords: one password per keystore", field="passwords")
        if not keystores or len(keystores) > MAX_IMPORT_KEYS:
            raise BadRequest(
                f"keystores: between 1 and {MAX_IMPORT_KEYS} keystores per request",
                field="keystores",
            )
        source = self._store(_str(data, "store", required=False))
        # scrypt is slow on purpose: it runs in worker processes, not on the server's threads.
        jobs: list[Future[tuple[bytes | None, str | None]] | str] = []
        for keystore, password in zip(keystores, passwords, strict=True):
            try:
                parsed = orjson.loads(keystore)
            except orjson.JSONDecodeError:
                jobs.append("not valid JSON")
                continue
            if not isinstance(parsed, dict):
                jobs.append("not a JSON object")
                continue
            jobs.append(self._pool().submit(decrypt_worker, (parsed, password)))
        results: list[dict[str, Any]] = []
        for index, job in enumerate(jobs):
            if isinstance(job, str):
                results.append({"status": "error", "message": f"keystore {index}: {job}"})
                continue
            secret, reason = job.result()
            if secret is None:
                results.append({"status": "error", "message": f"keystore {index}: {reason}"})
                continue
            if not vault.signing_allowed or vault.master_key is not master:
                raise Unavailable(f"signer was sealed during the import (state {vault.state})")
            try:
                key, inserted = source.import_secret(master.material, secret)
            except ChamberError as error:
                results.append({"status": "error", "message": f"keystore {index}: {error.message}"})
                continue
            if inserted:
                self.signer.registry.add(key)
            results.append(
                {"status": "imported" if inserted else "duplicate", "pubkey": key.pubkey_hex}
            )
        audit.info(
            "keys imported",
            extra={
                "policy": policy.name,
                "store": source.name,
                "imported": sum(1 for r in results if r["status"] == "imported"),
                "duplicate": sum(1 for r in results if r["status"] == "duplicate"),
                "error": sum(1 for r in results if r["status"] == "error"),
            },
        )
        _answer(resp, {"data": results})

    def _store(self, name: str | None) -> EncryptedKeySource:
        stores = {
            n: s for n, s in self.signer.key_sources.items() if isinstance(s, EncryptedKeySource)
        }
        if not stores:
            raise BadRequest(
                "no encrypted key store is configured (key_sources.sqlite or a plugin's store)",
                field="store",
            )
        if name is None:
            return next(iter(stores.values()))
        found = stores.get(name)
        if found is None:
            raise BadRequest(
                f"store: no encrypted key store named {name!r} (configured: "
                f"{', '.join(sorted(stores))})",
                field="store",
            )
        return found


def add_routes(app: falcon.App[falcon.Request, falcon.Response], signer: Signer) -> None:
    pool: list[ProcessPoolExecutor] = []

    def get_pool() -> ProcessPoolExecutor:
        if not pool:
            pool.append(
                ProcessPoolExecutor(
                    max_workers=max(1, min(4, os.cpu_count() or 1)),
                    mp_context=multiprocessing.get_context("spawn"),
                )
            )
        return pool[0]

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
    app.add_route(f"{base}/keys/import", KeysImportResource(signer, get_pool))
