"""The WSGI application: a back-pressure gate in front of the Falcon app.

The gate is plain WSGI (cheaper than Falcon middleware on the hot path). It gives every request an
id, answers 503 + ``Retry-After`` for requests the server's admission control marked overloaded
(more than ``server.max_concurrent_requests`` running or queued) instead of letting them wait,
refuses new work while draining for shutdown, and counts what is in flight so that SIGTERM can
wait for it. ``/upcheck`` and ``/healthcheck`` skip the gate: probes must answer when
the signer is saturated.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import falcon
import orjson

from chamber.api import chamber, keys, slashing
from chamber.api.eth2 import (
    HealthcheckResource,
    PublicKeysResource,
    SignResource,
    UpcheckResource,
)
from chamber.errors import ChamberError, TooManyAttempts, Unauthorized, Unavailable
from chamber.logs import request_id
from chamber.signer import Signer

log = logging.getLogger("chamber.api")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

EXEMPT_PATHS = frozenset({"/upcheck", "/healthcheck"})


def _error_handler(signer: Signer) -> Callable[..., None]:
    def handle(
        req: falcon.Request, resp: falcon.Response, error: ChamberError, params: Any
    ) -> None:
        resp.status = error.status
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(error.to_json())
        if isinstance(error, Unavailable | TooManyAttempts):
            resp.set_header("Retry-After", str(error.retry_after))
        if isinstance(error, Unauthorized):
            resp.set_header("WWW-Authenticate", 'Bearer realm="containment-chamber"')
            signer.metrics.auth_rejections.labels("401").inc()
        elif error.status == 403:
            signer.metrics.auth_rejections.labels("403").inc()

    return handle


def _unexpected_handler(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    if isinstance(error, falcon.HTTPError):  # falcon's own (404 route, 405 method, ...)
        resp.status = error.status
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            {"error": error.title, "message": error.description or error.title}
        )
        return
    log.error("internal error", exc_info=error)
    resp.status = falcon.HTTP_500
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(
        {
            "error": "internal error",
            "message": "internal error; see the signer log",
            "request_id": request_id.get(),
        }
    )


def create_falcon_app(signer: Signer) -> falcon.App[falcon.Request, falcon.Response]:
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/api/v1/eth2/sign/{identifier}", SignResource(signer))
    app.add_route("/api/v1/eth2/publicKeys", PublicKeysResource(signer))
    app.add_route("/upcheck", UpcheckResource())
    app.add_route("/healthcheck", HealthcheckResource(signer))
    slashing.add_routes(app, signer)
    chamber.add_routes(app, signer)
    keys.add_routes(app, signer)
    app.add_error_handler(Exception, _unexpected_handler)
    # Falcon registers its own HTTPError handler; ours keeps every error body one shape.
    app.add_error_handler(falcon.HTTPError, _unexpected_handler)
    app.add_error_handler(ChamberError, _error_handler(signer))
    return app


class Gate:
    """WSGI wrapper: request ids, refusal of overloaded requests, draining, in-flight count.

    Admission itself is decided when waitress queues the request (see
    ``chamber.server.AdmissionDispatcher``); the gate answers 503 for requests marked overloaded.
    """

    def __init__(self, app: WsgiApp, signer: Signer) -> None:
        self.app = app
        self.metrics = signer.metrics
        self.retry_after = str(signer.settings.server.retry_after_seconds)
        self._lock = threading.Lock()
        self._inflight = 0
        signer.metrics.inflight.set_function(lambda: self._inflight)
        self._idle = threading.Condition(self._lock)
        self.draining = False
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    @property
    def inflight(self) -> int:
        return self._inflight

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is in flight (True) or ``timeout`` seconds pass (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def _refuse(self, start_response: StartResponse, reason: str, message: str) -> list[bytes]:
        self.metrics.backpressure_rejections.labels(reason).inc()
        body = orjson.dumps({"error": "service unavailable", "message": message})
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", self.retry_after),
        ]
        if self.draining:
            headers.append(("Connection", "close"))
        start_response("503 Service Unavailable", headers)
        return [body]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rid = environ.get("HTTP_X_REQUEST_ID") or f"{self._id_prefix}-{next(self._ids)}"
        token = request_id.set(rid[:64])

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-Id", rid[:64]))
            return start_response(status, headers, exc_info)

        try:
            if environ.get("PATH_INFO") in EXEMPT_PATHS:
                return self.app(environ, start)
            disconnected = environ.get("waitress.client_disconnected")
            overloaded = getattr(
                getattr(disconnected, "__self__", None), "chamber_overloaded", False
            )
            with self._lock:
                if self.draining:
                    refuse = "draining"
                elif overloaded:
                    refuse = "overloaded"
                else:
                    refuse = ""
                    self._inflight += 1
            if refuse:
                message = (
                    "the signer is shutting down; retry on another replica"
                    if refuse == "draining"
                    else "too many concurrent requests; retry shortly"
                )
                return self._refuse(start, refuse, message)
            try:
                # Falcon has built the whole body by the time it returns (resp.data), so the
                # slot is released only after the work is really done.
                return self.app(environ, start)
            finally:
                with self._lock:
                    self._inflight -= 1
                    if self._inflight == 0:
                        self._idle.notify_all()
        finally:
            request_id.reset(token)


def create_app(signer: Signer) -> Gate:
    return Gate(create_falcon_app(signer), signer)
