"""Key management over HTTP: the chamber key API and the Ethereum keymanager API (SPEC §4, §6).

Chamber key API, under ``/api/v1/chamber/keys`` (limits in ``chamber.keys.<operation>``):

- ``GET    /api/v1/chamber/keys[?status=active|inactive&store=NAME]`` (``chamber_keys_list``):
  the encrypted stores' records, no secrets.
- ``POST   /api/v1/chamber/keys/generate`` (``chamber_keys_generate``): new keys from BIP-39
  mnemonics, optional age backup and deposit data.
- ``POST   /api/v1/chamber/keys/import`` (``chamber_keys_write``): EIP-2335 keystores and raw
  keys into an encrypted store.
- ``PATCH  /api/v1/chamber/keys`` (``chamber_keys_write``): activate / deactivate.
- ``DELETE /api/v1/chamber/keys`` (``chamber_keys_delete``): delete; answers with the keys'
  slashing-protection interchange.

Keymanager API (``http.key_manager_api.enabled``): ``GET | POST | DELETE /eth/v1/keystores``
with the scopes ``list_keys``, ``import_keystores``, ``delete_keys``, shaped exactly as the
keymanager OpenAPI specification has them.

Every handler parses and authorises the whole request first (400 naming the field, 401, 403),
then hands it to :class:`chamber.keys.manager.KeyManager`, which answers per key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import falcon
import orjson

from chamber.api.chamber import _answer, _body, _str, _str_list, _VaultResource
from chamber.config import KeyOperationConfig
from chamber.crypto.derivation import (
    GWEI_PER_ETH,
    DerivationError,
    execution_withdrawal_credentials,
)
from chamber.errors import BadRequest
from chamber.keys import normalize_pubkey_hex
from chamber.keys.manager import ImportItem, KeyManager
from chamber.signer import Signer

audit = logging.getLogger("chamber.audit")

#: Largest accepted body of a key request (100 scrypt keystores are ~100 KiB; a public key in
#: a list ~100 bytes, so the item limits, not this, bound PATCH and DELETE).
MAX_KEYS_BODY: Final = 16 * 1024 * 1024
DEFAULT_AMOUNT_GWEI: Final = 32 * GWEI_PER_ETH


def _pubkeys(data: dict[str, Any], field: str = "pubkeys") -> list[bytes]:
    values = _str_list(data, field)
    assert values is not None
    found = []
    for index, value in enumerate(values):
        normalized = normalize_pubkey_hex(value)
        if normalized is None:
            raise BadRequest(
                f"{field}[{index}]: not a 0x-prefixed 48-byte hex BLS public key", field=field
            )
        found.append(bytes.fromhex(normalized[2:]))
    return found


def _passwords(data: dict[str, Any], *, required: bool) -> list[str]:
    """``passwords``: a JSON list of strings, taken exactly as sent (a password may hold
    commas and spaces, so nothing is split or stripped)."""
    value = data.get("passwords")
    if value is None:
        if required:
            raise BadRequest("passwords: required, one per keystore", field="passwords")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("passwords: must be a list of strings", field="passwords")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key}: must be true or false", field=key)
    return value


def _keystores(data: dict[str, Any]) -> list[Mapping[str, Any] | str]:
    """``keystores``: JSON texts (as the keymanager specification has them) or objects. An
    entry that is not a keystore object becomes the reason, answered as that key's error."""
    value = data.get("keystores")
    if not isinstance(value, list):
        raise BadRequest("keystores: required, a list of EIP-2335 keystores", field="keystores")
    parsed: list[Mapping[str, Any] | str] = []
    for entry in value:
        if isinstance(entry, str):
            try:
                entry = orjson.loads(entry)
            except orjson.JSONDecodeError:
                parsed.append("not valid JSON")
                continue
        parsed.append(entry if isinstance(entry, dict) else "not a JSON object")
    return parsed


def _raw_keys(data: dict[str, Any]) -> list[ImportItem]:
    """``raw_keys``: ``[{"secret": "0x<64 hex>", "pubkey": "0x<96 hex>"?}]``. A malformed
    entry is that key's error; the secret itself never appears in an answer."""
    value = data.get("raw_keys", [])
    if not isinstance(value, list):
        raise BadRequest("raw_keys: must be a list of objects", field="raw_keys")
    items = []
    for index, entry in enumerate(value):
        label = f"raw key {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
            items.append(ImportItem(label, error='must be an object with a "secret" (hex)'))
            continue
        text = entry["secret"].strip()
        text = text[2:] if text.lower().startswith("0x") else text
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            items.append(ImportItem(label, error="secret: not hex"))
            continue
        if len(secret) != 32:
            items.append(ImportItem(label, error="secret: must be 32 bytes (64 hex digits)"))
            continue
        expected = None
        if entry.get("pubkey") is not None:
            normalized = (
                normalize_pubkey_hex(entry["pubkey"]) if isinstance(entry["pubkey"], str) else None
            )
            if normalized is None:
                items.append(ImportItem(label, error="pubkey: not a 48-byte hex public key"))
                continue
            expected = bytes.fromhex(normalized[2:])
        items.append(ImportItem(label, secret=secret, expected_pubkey=expected))
    return items


class _KeysResource(_VaultResource):
    """The chamber key routes belong to the vault: without one they answer its 404."""

    @property
    def manager(self) -> KeyManager:
        self.vault  # noqa: B018 -- raises the documented 404 when no vault is configured
        return self.signer.manager


def _summary(results: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


# ---------------------------------------------------------------------- chamber key API


class ChamberKeysResource(_KeysResource):
    """``/api/v1/chamber/keys``: list (GET), activate / deactivate (PATCH), delete (DELETE)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.signer.auth.require(req.get_header("Authorization"), "chamber_keys_list")
        self.vault  # noqa: B018 -- no vault: the documented 404, before the request is parsed
        status = req.get_param("status")
        if status is not None and status not in ("active", "inactive"):
            raise BadRequest("status: must be 'active' or 'inactive'", field="status")
        settings = self.manager.settings
        with self.manager.admit("list", settings.list, "chamber.keys.list"):
            found = self.manager.list_stored(status, req.get_param("store"))
        _answer(resp, {"data": found})

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_keys_write")
        self.vault  # noqa: B018 -- no vault: the documented 404, before the body is parsed
        data = _body(req, MAX_KEYS_BODY)
        pubkeys = _pubkeys(data)
        status = _str(data, "status")
        if status not in ("active", "inactive"):
            raise BadRequest("status: must be 'active' or 'inactive'", field="status")
        limits = self.manager.settings.lifecycle
        KeyManager.check_count(len(pubkeys), limits, "pubkeys", "chamber.keys.lifecycle")
        with self.manager.admit("lifecycle", limits, "chamber.keys.lifecycle") as deadline:
            results = self.manager.set_status(pubkeys, status, deadline)
        audit.warning(
            "keys %s",
            "activated" if status == "active" else "deactivated",
            extra={"policy": policy.name, **_summary(results)},
        )
        _answer(resp, {"data": results})

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_keys_delete")
        self.vault  # noqa: B018 -- no vault: the documented 404, before the body is parsed
        pubkeys = _pubkeys(_body(req, MAX_KEYS_BODY))
        limits = self.manager.settings.lifecycle
        KeyManager.check_count(len(pubkeys), limits, "pubkeys", "chamber.keys.lifecycle")
        with self.manager.admit("lifecycle", limits, "chamber.keys.lifecycle") as deadline:
            answer = self.manager.delete(pubkeys, deadline)
        audit.warning("keys deleted", extra={"policy": policy.name, **_summary(answer["data"])})
        _answer(resp, answer)


class KeysGenerateResource(_KeysResource):
    """``POST /api/v1/chamber/keys/generate``.

    Body ``{"count": n, "store"?: name, "withdrawal_address"?: "0x<EIP-55>",
    "compounding"?: bool, "bls_withdrawal"?: bool, "amount_gwei"?: int}``. With withdrawal
    credentials asked for, the answer's ``deposit_data`` is the content of a
    ``deposit_data-*.json`` file for the generated keys. Mnemonics are never returned: with
    ``chamber.keys.generate.backup`` each key's mnemonic is age-encrypted beside it.
    """

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_keys_generate")
        self.vault  # noqa: B018 -- no vault: the documented 404, before the body is parsed
        data = _body(req, MAX_KEYS_BODY)
        count = data.get("count")
        if isinstance(count, bool) or not isinstance(count, int):
            raise BadRequest("count: required, an integer", field="count")
        limits = self.manager.settings.generate
        KeyManager.require_enabled(limits, "chamber.keys.generate")
        KeyManager.check_count(count, limits, "count", "chamber.keys.generate")
        address = _str(data, "withdrawal_address", required=False)
        compounding = _bool(data, "compounding")
        bls_withdrawal = _bool(data, "bls_withdrawal")
        if address is not None and bls_withdrawal:
            raise BadRequest(
                "withdrawal_address: give an execution address or bls_withdrawal, not both",
                field="withdrawal_address",
            )
        credentials = None
        if address is not None:
            try:
                credentials = execution_withdrawal_credentials(address, compounding=compounding)
            except DerivationError as error:
                raise BadRequest(
                    f"withdrawal_address: {error}", field="withdrawal_address"
                ) from None
        elif compounding:
            raise BadRequest("compounding: needs a withdrawal_address", field="compounding")
        amount = data.get("amount_gwei", DEFAULT_AMOUNT_GWEI)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise BadRequest("amount_gwei: must be an integer", field="amount_gwei")
        cap = (2048 if compounding else 32) * GWEI_PER_ETH
        if not GWEI_PER_ETH <= amount <= cap:
            raise BadRequest(
                f"amount_gwei: must be between {GWEI_PER_ETH} and {cap} gwei", field="amount_gwei"
            )
        store = _str(data, "store", required=False)
        self.manager.store(store)  # 400 for an unknown store before any work
        with self.manager.admit("generate", limits, "chamber.keys.generate") as deadline:
            answer = self.manager.generate(
                count,
                store,
                withdrawal_credentials=credentials,
                bls_withdrawal=bls_withdrawal,
                amount_gwei=amount,
                deadline=deadline,
            )
        audit.warning(
            "keys generated",
            extra={"policy": policy.name, "count": count, **_summary(answer["data"])},
        )
        _answer(resp, answer)


class KeysImportResource(_KeysResource):
    """``POST /api/v1/chamber/keys/import``.

    Body ``{"keystores"?: [...], "passwords"?: [...], "raw_keys"?: [{"secret", "pubkey"?}],
    "store"?: name}``; answer ``{"data": [...]}``, one result per keystore then per raw key:
    ``imported`` | ``duplicate`` (already in that store) | ``error`` with its own message.
    """

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "chamber_keys_write")
        self.vault  # noqa: B018 -- no vault: the documented 404, before the body is parsed
        data = _body(req, MAX_KEYS_BODY)
        keystores = _keystores(data) if data.get("keystores") is not None else []
        passwords = _passwords(data, required=bool(keystores))
        if len(keystores) != len(passwords):
            raise BadRequest("passwords: one password per keystore", field="passwords")
        raw = _raw_keys(data)
        limits = self.manager.settings.import_
        field = "keystores" if keystores or not raw else "raw_keys"
        KeyManager.check_count(len(keystores) + len(raw), limits, field, "chamber.keys.import")
        store = self.manager.store(_str(data, "store", required=False))
        self.manager._master()  # 503 while sealed, before decrypting anything
        with self.manager.admit("import", limits, "chamber.keys.import") as deadline:
            items = self.manager.decrypt_keystores(
                keystores, passwords, deadline, "chamber.keys.import.request_timeout_seconds"
            )
            results = self.manager.import_keys(items + raw, store.name, duplicate_if_loaded=False)
        audit.info(
            "keys imported", extra={"policy": policy.name, "store": store.name, **_summary(results)}
        )
        _answer(resp, {"data": results})


# ---------------------------------------------------------------------- keymanager API


class KeystoresResource(_KeysResource):
    """``/eth/v1/keystores`` (Ethereum keymanager API); works without a vault (memory keys)."""

    @property
    def manager(self) -> KeyManager:
        return self.signer.manager

    def _limits(self, kind: str) -> KeyOperationConfig:
        api = self.signer.settings.http.key_manager_api
        return KeyOperationConfig(
            enabled=True,
            max_items_per_request=api.max_items_per_request,
            max_concurrent_requests=(
                api.max_concurrent_writes if kind == "write" else api.max_concurrent_reads
            ),
            request_timeout_seconds=api.request_timeout_seconds,
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "list_keys")
        deletable = {"memory", self.manager.keymanager_store}
        registry = self.signer.registry
        with self.manager.admit("keymanager_read", self._limits("read"), "http.key_manager_api"):
            data = [
                {
                    "validating_pubkey": pubkey,
                    "readonly": not registry.sources_of(pubkey) <= deletable,
                }
                for pubkey in registry.public_keys()
                if policy.allows_key(pubkey)
            ]
        _answer(resp, {"data": data})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "import_keystores")
        data = _body(req, MAX_KEYS_BODY)
        keystores = _keystores(data)
        passwords = _passwords(data, required=True)
        if len(keystores) != len(passwords):
            raise BadRequest("passwords: one password per keystore", field="passwords")
        limits = self._limits("write")
        KeyManager.check_count(len(keystores), limits, "keystores", "http.key_manager_api")
        protection = data.get("slashing_protection")
        if protection is not None and not isinstance(protection, (str, dict)):
            raise BadRequest(
                "slashing_protection: must be an EIP-3076 interchange (JSON text)",
                field="slashing_protection",
            )
        target = self.manager.keymanager_store
        if target != "memory":
            self.manager._master()  # 503 while sealed, before touching anything
        with self.manager.admit("keymanager_write", limits, "http.key_manager_api") as deadline:
            if protection is not None:
                # History first: a key must never become signable without it. An invalid or
                # slashable interchange refuses the whole request (400), importing nothing.
                document = protection.encode() if isinstance(protection, str) else protection
                try:
                    self.signer.slashing.import_interchange(document)
                except BadRequest as error:
                    raise BadRequest(
                        f"slashing_protection: {error.message}", field="slashing_protection"
                    ) from None
            items = self.manager.decrypt_keystores(
                keystores, passwords, deadline, "http.key_manager_api.request_timeout_seconds"
            )
            results = self.manager.import_keys(items, target, duplicate_if_loaded=True)
        audit.info(
            "keystores imported (keymanager API)",
            extra={"policy": policy.name, "store": target, **_summary(results)},
        )
        _answer(resp, {"data": [_keymanager_import(r) for r in results]})

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "delete_keys")
        pubkeys = _pubkeys(_body(req, MAX_KEYS_BODY))
        limits = self._limits("read")
        if pubkeys:  # an empty list is a valid request with an empty answer
            KeyManager.check_count(len(pubkeys), limits, "pubkeys", "http.key_manager_api")
        with self.manager.admit("keymanager_read", limits, "http.key_manager_api") as deadline:
            answer = self.manager.delete_keymanager(pubkeys, deadline)
        audit.warning(
            "keys deleted (keymanager API)",
            extra={"policy": policy.name, **_summary(answer["data"])},
        )
        _answer(
            resp,
            {
                "data": [
                    {k: v for k, v in entry.items() if k != "pubkey"} for entry in answer["data"]
                ],
                "slashing_protection": orjson.dumps(answer["slashing_protection"]).decode(),
            },
        )


def _keymanager_import(result: dict[str, Any]) -> dict[str, Any]:
    entry = {"status": result["status"]}
    if result["status"] == "error":
        entry["message"] = result.get("message", "error")
    return entry


def add_routes(app: falcon.App[falcon.Request, falcon.Response], signer: Signer) -> None:
    base = "/api/v1/chamber/keys"
    app.add_route(base, ChamberKeysResource(signer))
    app.add_route(f"{base}/generate", KeysGenerateResource(signer))
    app.add_route(f"{base}/import", KeysImportResource(signer))
    if signer.settings.http.key_manager_api.enabled:
        app.add_route("/eth/v1/keystores", KeystoresResource(signer))
