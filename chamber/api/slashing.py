"""Slashing-protection operations over HTTP: interchange import/export, dry-run check, prune,
watermark repair. Routes under ``/api/v1/slashing/``; scopes ``slashing_import`` (writes),
``slashing_export`` (reads) and ``sign`` (the dry-run check).
"""

from __future__ import annotations

import logging
from typing import Any

import falcon
import orjson

from chamber.api.eth2 import read_body
from chamber.errors import BadRequest, Forbidden
from chamber.eth.requests import prepare_signing
from chamber.keys import normalize_pubkey_hex
from chamber.signer import Signer
from chamber.slashing import dry_run
from chamber.slashing.rules import MAX_STORED, Refused

audit = logging.getLogger("chamber.audit")

#: Interchange files with complete history for many validators are far larger than requests.
#: (Waitress buffers a body before the application sees it, so this also bounds what an
#: unauthenticated client can make the server buffer.)
MAX_INTERCHANGE_BYTES = 64 * 1024 * 1024


def _pubkey(value: str, field: str) -> bytes:
    text = normalize_pubkey_hex(value)
    if text is None:
        raise BadRequest(f"{field}: must be a 0x-prefixed 48-byte hex BLS public key", field=field)
    return bytes.fromhex(text[2:])


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _optional_uint(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_STORED:
        raise BadRequest(f"{key}: must be a decimal integer between 0 and {MAX_STORED}", field=key)
    return value


class ImportResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "slashing_import")
        report = self.signer.slashing.import_interchange(read_body(req, MAX_INTERCHANGE_BYTES))
        audit.warning(
            "slashing interchange imported",
            extra={
                "policy": policy.name,
                "validators": report.validators,
                "blocks_written": report.blocks_written,
                "attestations_written": report.attestations_written,
            },
        )
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            {
                "validators": report.validators,
                "blocks_written": report.blocks_written,
                "attestations_written": report.attestations_written,
            }
        )


class ExportResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "slashing_export")
        values = req.get_param_as_list("pubkey") or []
        pubkeys = [_pubkey(v, "pubkey") for v in values] or None
        if policy.keys is not None:
            allowed = [bytes.fromhex(k[2:]) for k in policy.keys]
            pubkeys = [p for p in (pubkeys or allowed) if p in allowed]
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(self.signer.slashing.export_interchange(pubkeys))


class CheckResource:
    """Dry run for distributed-validator middleware: would signing this be slashable?"""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_post(self, req: falcon.Request, resp: falcon.Response, identifier: str) -> None:
        signer = self.signer
        policy = signer.auth.require(req.get_header("Authorization"), "sign")
        pubkey = _pubkey(identifier, "identifier")
        if not policy.allows_key("0x" + pubkey.hex()):
            raise Forbidden(f"policy {policy.name!r} may not use key 0x{pubkey.hex()}")
        job = prepare_signing(read_body(req, signer.settings.server.max_body_bytes), signer.network)
        answer: dict[str, Any] = {"type": job.type, "signing_root": "0x" + job.signing_root.hex()}
        try:
            answer["slashing_relevant"] = dry_run(signer.slashing, pubkey, job)
            answer["slashable"] = False
        except Refused as refusal:
            answer.update(
                slashing_relevant=True,
                slashable=True,
                reason=str(refusal.reason),
                message=refusal.message,
            )
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(answer)


class PruneResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "slashing_import")
        data = _json_object(read_body(req, 4096))
        keep = _optional_uint(data, "keep_epochs")
        if keep is None:
            raise BadRequest("keep_epochs: required", field="keep_epochs")
        report = self.signer.slashing.prune(keep, self.signer.network.slots_per_epoch)
        audit.warning(
            "slashing history pruned",
            extra={
                "policy": policy.name,
                "keep_epochs": keep,
                "blocks_deleted": report.blocks_deleted,
                "attestations_deleted": report.attestations_deleted,
            },
        )
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            {
                "blocks_deleted": report.blocks_deleted,
                "attestations_deleted": report.attestations_deleted,
            }
        )


class WatermarkResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "slashing_import")
        data = _json_object(read_body(req, 4096))
        unknown = sorted(set(data) - {"pubkey", "slot", "source_epoch", "target_epoch"})
        if unknown:
            raise BadRequest(f"{unknown[0]}: unknown field", field=unknown[0])
        if not isinstance(data.get("pubkey"), str):
            raise BadRequest("pubkey: required", field="pubkey")
        pubkey = _pubkey(data["pubkey"], "pubkey")
        slot = _optional_uint(data, "slot")
        source = _optional_uint(data, "source_epoch")
        target = _optional_uint(data, "target_epoch")
        if slot is None and source is None and target is None:
            raise BadRequest("give at least one of slot, source_epoch, target_epoch")
        self.signer.slashing.set_watermark(
            pubkey, block_slot=slot, source_epoch=source, target_epoch=target
        )
        audit.warning(
            "slashing watermark set",
            extra={
                "policy": policy.name,
                "pubkey": "0x" + pubkey.hex(),
                "slot": slot,
                "source_epoch": source,
                "target_epoch": target,
            },
        )
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            {
                "pubkey": "0x" + pubkey.hex(),
                "slot": slot,
                "source_epoch": source,
                "target_epoch": target,
            }
        )


def add_routes(app: falcon.App[falcon.Request, falcon.Response], signer: Signer) -> None:
    app.add_route("/api/v1/slashing/import", ImportResource(signer))
    app.add_route("/api/v1/slashing/export", ExportResource(signer))
    app.add_route("/api/v1/slashing/check/{identifier}", CheckResource(signer))
    app.add_route("/api/v1/slashing/prune", PruneResource(signer))
    app.add_route("/api/v1/slashing/watermark", WatermarkResource(signer))
