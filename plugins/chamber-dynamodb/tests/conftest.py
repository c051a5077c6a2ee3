"""A real moto DynamoDB server over HTTP for the chamber-dynamodb tests.

One server per test session on 127.0.0.1 (a free port), boto3 pointed at it with
``endpoint_url`` and dummy credentials from the environment; a fresh table per test.

moto applies a ``TransactWriteItems`` as a sequence of Python steps (and restores a deep copy of
the table when one fails), so two requests handled at the same time by its threaded server could
interleave in ways DynamoDB never does. DynamoDB is serializable per transaction; the server
here gets that by handling one request at a time (connections are still accepted concurrently,
so client-side races are real: many threads and several backend instances issue requests whose
order the server decides).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

GVR = bytes(range(32))


class _QuietHandler:
    """Mixed into moto's request handler: no access log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _OneAtATime:
    """WSGI middleware: one request at a time, its whole response produced under the lock."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    handler = type("QuietMotoRequestHandler", (_QuietHandler, MotoRequestHandler), {})
    app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def settings(moto_endpoint: str) -> dict[str, Any]:
    """Backend settings for a table of its own (created by the first backend that opens it)."""
    return {
        "table": f"slashing-{uuid.uuid4().hex[:12]}",
        "region": "us-east-1",
        "endpoint_url": moto_endpoint,
        "create_table": True,
    }


@pytest.fixture
def raw(settings: dict[str, Any]) -> Any:
    """A plain boto3 client on the same server, to look at (or damage) the items directly."""
    import boto3

    return boto3.session.Session().client(
        "dynamodb", region_name="us-east-1", endpoint_url=settings["endpoint_url"]
    )
