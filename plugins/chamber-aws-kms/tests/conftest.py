"""A real moto KMS server over HTTP, and a misbehaving one, for the chamber-aws-kms tests.

``moto_endpoint``: one moto server per test session on 127.0.0.1 (a free port); boto3 talks to it
with ``endpoint_url`` and dummy credentials from the environment. moto 5 does not check a key's
state on Encrypt / Decrypt (AWS answers ``DisabledException`` / ``KMSInvalidStateException``), so
the server's backend is given that check here; its error messages echo an IAM role, as AWS's
can, so that tests can prove the provider never repeats them.

``moto_module``: a module's own moto server on the same backends, serving KMS and DynamoDB one
request at a time (DynamoDB's per-transaction atomicity), where a test can delay chosen requests
(which KMS key answers last, a slow table); the AWS runbook test drives real signers through it.

``fake_kms``: a tiny local HTTP server that counts requests and either drops every connection or
answers every request with a fixed status and AWS error code: the retry tests count attempts
on the wire, so botocore retries that were not turned off would show up.
"""

from __future__ import annotations

import io
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

ACCOUNT = "123456789012"
LEAKY_ROLE = "arn:aws:iam::123456789012:role/do-not-echo-this-role"


class _QuietHandler:
    """Mixed into moto's request handler: no access log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _enforce_key_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.kms.models import KmsBackend

    def check(backend: Any, key_id: str | None) -> None:
        if not key_id:
            return
        key = backend.keys.get(backend.any_id_to_key_id(key_id))
        if key is None:
            return
        if key.key_state == "Disabled":
            raise JsonRESTError("DisabledException", f"{key.arn} is disabled ({LEAKY_ROLE}).")
        if key.key_state != "Enabled":
            raise JsonRESTError(
                "KMSInvalidStateException", f"{key.arn} is {key.key_state} ({LEAKY_ROLE})."
            )

    encrypt, decrypt = KmsBackend.encrypt, KmsBackend.decrypt

    def checked_encrypt(self: Any, key_id: str, *args: Any, **kwargs: Any) -> Any:
        check(self, key_id)
        return encrypt(self, key_id, *args, **kwargs)

    def checked_decrypt(self: Any, *args: Any, **kwargs: Any) -> Any:
        check(self, kwargs.get("key_id"))
        return decrypt(self, *args, **kwargs)

    monkeypatch.setattr(KmsBackend, "encrypt", checked_encrypt)
    monkeypatch.setattr(KmsBackend, "decrypt", checked_decrypt)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("moto", reason="install plugins/chamber-aws-kms[test]")
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
    patches = pytest.MonkeyPatch()
    _enforce_key_state(patches)
    handler = type("QuietMotoRequestHandler", (_QuietHandler, MotoRequestHandler), {})
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        patches.undo()
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class ModuleMoto:
    """``moto_module``: the server's URL, and waits to put in front of chosen requests."""

    url: str
    #: ``(operation, fragment) -> seconds``: a request whose operation (the end of its
    #: ``X-Amz-Target``, e.g. ``Decrypt``, ``Scan``) matches and whose body contains ``fragment``
    #: (a key ARN, a table name) waits that long before moto sees it, without holding up the
    #: others. Lets a test decide which KMS key answers last, or make a table slow.
    delays: dict[tuple[str, str], float] = field(default_factory=dict)


class _OneAtATime:
    """WSGI middleware: one request at a time, its whole response produced under the lock.

    moto applies a DynamoDB ``TransactWriteItems`` in several Python steps, which DynamoDB does
    not; serialising the requests gives the server the per-transaction atomicity of the real
    service (clients still race each other: the server decides the order). Requests matching
    one of ``moto.delays`` first wait, outside the lock."""

    def __init__(self, app: Any, moto: ModuleMoto) -> None:
        self.app = app
        self.moto = moto
        self.lock = threading.Lock()

    def _delay(self, environ: dict[str, Any]) -> None:
        if not self.moto.delays:
            return
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        operation = str(environ.get("HTTP_X_AMZ_TARGET", "")).rsplit(".", 1)[-1]
        text = body.decode(errors="replace")
        wait = max(
            (
                seconds
                for (op, fragment), seconds in list(self.moto.delays.items())
                if op == operation and fragment in text
            ),
            default=0.0,
        )
        if wait:
            time.sleep(wait)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self._delay(environ)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


@pytest.fixture(scope="module")
def moto_module(moto_endpoint: str) -> Iterator[ModuleMoto]:
    """A moto server of the module's own, serving KMS *and* DynamoDB on one endpoint, one request
    at a time (see ``_OneAtATime``), with optional per-request waits (``ModuleMoto.delays``).

    It shares moto's in-process backends with ``moto_endpoint`` (whose fixture provides the
    dummy credentials and the key-state check, both still in force): a key disabled through
    either endpoint is disabled on both."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    handler = type("QuietMotoRequestHandler", (_QuietHandler, MotoRequestHandler), {})
    moto = ModuleMoto(url="")
    app = _OneAtATime(DomainDispatcherApplication(create_backend_app), moto)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
    moto.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="moto-module", daemon=True)
    thread.start()
    try:
        yield moto
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def kms_admin(moto_endpoint: str) -> Callable[[str], Any]:
    """``kms_admin(region)``: a plain boto3 KMS client on the moto server, to create keys."""
    import boto3

    session = boto3.session.Session()
    clients: dict[str, Any] = {}

    def client(region: str = "us-east-1") -> Any:
        if region not in clients:
            clients[region] = session.client("kms", region_name=region, endpoint_url=moto_endpoint)
        return clients[region]

    return client


@pytest.fixture
def new_key(kms_admin: Callable[[str], Any]) -> Callable[..., str]:
    """``new_key(region)``: the ARN of a fresh symmetric key in that region."""

    def create(region: str = "us-east-1") -> str:
        arn: str = kms_admin(region).create_key(Description="chamber test")["KeyMetadata"]["Arn"]
        return arn

    return create


# --------------------------------------------------------------------------- a broken endpoint


@dataclass
class FakeKms:
    """What the fake endpoint does with every request, and how many it saw."""

    url: str
    #: ``None``: read the request and close the connection without answering; otherwise the
    #: HTTP status of the answer, whose body carries the AWS error ``code``.
    status: int | None = None
    code: str = ""
    #: Seconds to wait before doing the above (longer than the client's read timeout: a hang).
    delay: float = 0.0
    requests: int = 0


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeKms


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            self._serve(self.server.fake)
        except OSError:  # the client gave up first (read timeout)
            return

    def _serve(self, fake: FakeKms) -> None:
        while True:
            if not self._read_request():
                return
            fake.requests += 1
            if fake.delay:
                time.sleep(fake.delay)
            if fake.status is None:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = b'{"__type":"%s","message":"%s"}' % (fake.code.encode(), LEAKY_ROLE.encode())
            self.wfile.write(
                b"HTTP/1.1 %d Error\r\nContent-Type: application/x-amz-json-1.1\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (fake.status, len(body), body)
            )
            self.wfile.flush()

    def _read_request(self) -> bool:
        length = 0
        line = self.rfile.readline()
        if not line:
            return False
        while True:
            header = self.rfile.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        self.rfile.read(length)
        return True


@pytest.fixture
def fake_kms(moto_endpoint: str) -> Iterator[FakeKms]:
    """A local endpoint that drops connections or answers errors (uses the dummy credentials)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeKms(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-kms", daemon=True
    )
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
