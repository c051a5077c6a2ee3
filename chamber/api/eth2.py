"""Web3Signer-compatible routes: sign, publicKeys, upcheck, healthcheck (SPEC §2).

Order of checks on the signing path: token and scope (401/403) -> key restriction (403) -> key
loaded (404) -> body parsed and validated (400/413) -> operation restriction (403) -> network
guard (403) -> slashing protection check-and-record queued -> BLS sign -> record durable (else
412, and the signature is discarded). Metrics and event hooks run after the answer is decided.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import falcon
import orjson

from chamber.errors import (
    BadRequest,
    ChamberError,
    Forbidden,
    KeyNotFound,
    PayloadTooLarge,
    SlashingRefused,
    Unauthorized,
    Unavailable,
)
from chamber.eth.requests import prepare_signing
from chamber.keys import normalize_pubkey_hex
from chamber.signer import Signer
from chamber.slashing import begin_protect

audit = logging.getLogger("chamber.audit")
log = logging.getLogger("chamber.api")


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond, before reading it all)."""
    length = req.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
    data: bytes = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return data


def _outcome(error: ChamberError) -> str:
    if isinstance(error, SlashingRefused):
        return "refused"
    if isinstance(error, (Unauthorized, Forbidden)):
        return "denied"
    return "failed"


class SignResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self._emit = signer.plugins.has_listeners("chamber_signing_outcome")
        self._limit = signer.settings.server.max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response, identifier: str) -> None:
        started = time.perf_counter()
        signer = self.signer
        request_type = "unknown"
        normalized = normalize_pubkey_hex(identifier)
        pubkey_hex = normalized or identifier[:100]  # for metrics and audit only
        try:
            policy = signer.auth.require(req.get_header("Authorization"), "sign")
            if normalized is None:
                raise BadRequest(
                    "identifier: must be a 0x-prefixed 48-byte hex BLS public key",
                    field="identifier",
                )
            if not policy.allows_key(pubkey_hex):
                raise Forbidden(f"policy {policy.name!r} may not use key {pubkey_hex}")
            vault = signer.vault
            if vault is not None and not vault.signing_allowed:
                raise Unavailable(
                    f"signer is sealed (state {vault.state}); see operator status and run "
                    "the unseal ceremony",
                    retry_after=5,
                )
            # Held until the record is durable: removing a key (delete, deactivate) waits
            # for requests that hold it, so none signs with it after that returns.
            with signer.registry.signing(pubkey_hex) as key:
                if key is None:
                    if not signer.keys_loaded.is_set():
                        raise Unavailable("keys are still loading", retry_after=1)
                    raise KeyNotFound(f"no key loaded for public key {pubkey_hex}")
                job = prepare_signing(read_body(req, self._limit), signer.network)
                request_type = job.type
                if not policy.allows_operation(request_type):
                    raise Forbidden(f"policy {policy.name!r} may not request {request_type}")
                # The record is queued before signing and must be durable before the signature
                # leaves: with group commit the BLS work overlaps other requests' batch writes
                # (the leader of a batch writes it here, before its own signing). The metric is
                # the time this request spent in slashing protection, signing excluded.
                db_started = time.perf_counter()
                durable = begin_protect(signer.slashing, key.pubkey, job)
                db_seconds = time.perf_counter() - db_started
                signature = signer.bls.sign(key.secret, job.signing_root)
                if durable is not None:
                    db_started = time.perf_counter()
                    durable()
                    db_seconds += time.perf_counter() - db_started
                    signer.metrics.slashing_db_duration.observe(db_seconds)
        except ChamberError as error:
            outcome = _outcome(error)
            signer.metrics.record_signing(request_type, outcome, time.perf_counter() - started)
            if outcome == "refused":
                signer.metrics.slashing_rejections.labels(
                    request_type, getattr(error, "reason", "other")
                ).inc()
            if outcome in ("refused", "denied"):
                audit.warning(
                    "signing %s",
                    outcome,
                    extra={
                        "pubkey": pubkey_hex,
                        "operation": request_type,
                        "status": error.status,
                        "reason": error.message,
                    },
                )
            if self._emit:
                signer.plugins.emit(
                    "chamber_signing_outcome",
                    pubkey=pubkey_hex,
                    request_type=request_type,
                    outcome=outcome,
                    reason=error.message,
                )
            raise
        signature_hex = "0x" + signature.hex()
        if "text/plain" in (req.accept or "") and "application/json" not in (req.accept or ""):
            resp.content_type = falcon.MEDIA_TEXT
            resp.data = signature_hex.encode()
        else:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = b'{"signature":"' + signature_hex.encode() + b'"}'
        signer.metrics.record_signing(request_type, "signed", time.perf_counter() - started)
        if pubkey_hex in signer.canary_keys:
            signer.metrics.canary_signing.inc()
            audit.critical(
                "CANARY KEY SIGNED: treat as a security incident",
                extra={"pubkey": pubkey_hex, "operation": request_type},
            )
        if self._emit:
            signer.plugins.emit(
                "chamber_signing_outcome",
                pubkey=pubkey_hex,
                request_type=request_type,
                outcome="signed",
                reason=None,
            )


class PublicKeysResource:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.signer.auth.require(req.get_header("Authorization"), "public_keys")
        resp.content_type = falcon.MEDIA_JSON
        if policy.keys is None:
            resp.data = self.signer.registry.public_keys_json()
        else:
            resp.data = orjson.dumps(
                [k for k in self.signer.registry.public_keys() if k in policy.keys]
            )


class UpcheckResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; charset=utf-8"
        resp.data = b"OK"


class HealthcheckResource:
    """Readiness: keys loaded and the slashing database reachable (the vault adds its check)."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        signer = self.signer
        try:
            slashing_ok = signer.slashing.healthy()
        except Exception:
            log.exception("slashing health check failed")
            slashing_ok = False
        checks: list[dict[str, Any]] = [
            {
                "id": "keys",
                "status": "UP" if signer.keys_loaded.is_set() else "DOWN",
                "data": {
                    "loaded": len(signer.registry),
                    "failed": sum(signer.key_load_errors.values()),
                },
            },
            {
                "id": "slashing_protection",
                "status": "UP" if slashing_ok else "DOWN",
                "data": {"backend": signer.settings.anti_slashing.backend},
            },
        ]
        if signer.vault is not None:
            state = signer.vault.state
            checks.append(
                {
                    "id": "vault",
                    "status": "UP" if signer.vault.signing_allowed else "DOWN",
                    "data": {"state": state},
                }
            )
        healthy = all(check["status"] == "UP" for check in checks)
        signer.metrics.healthy.set(1 if healthy else 0)
        outcome = "UP" if healthy else "DOWN"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"status": outcome, "checks": checks, "outcome": outcome})
