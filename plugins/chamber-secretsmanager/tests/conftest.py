"""A real moto Secrets Manager server over HTTP, and a misbehaving endpoint, for the
chamber-secretsmanager tests.

``moto_endpoint``: one moto server per test session on 127.0.0.1 (a free port); boto3 (in this
process, and the CLI subprocesses through ``CHAMBER_SECRETSMANAGER_ENDPOINT_URL``) talks to it
with dummy credentials from the environment.

Access denied: moto does not enforce IAM unless ``INITIAL_NO_AUTH_ACTION_COUNT`` is set, and
that setting is all or nothing (every request, the tests' own set-up calls included, must then be
signed by an IAM user created in moto, with a policy). Instead the server's Secrets Manager
backend is given a deny list here: ``GetSecretValue`` of a secret on it answers
``AccessDeniedException`` (HTTP 400, as AWS does) with a message that echoes an IAM role, as
AWS's does, so that tests can prove the plugin never repeats it. Everything else is moto's own
behaviour (a secret scheduled for deletion answers ``InvalidRequestException``, a missing
secret or stage ``ResourceNotFoundException``).

``fake_sm``: a tiny local HTTP server that counts requests and either drops every connection or
answers every request with a fixed status and AWS error code (after an optional delay): the retry
tests count attempts on the wire, so botocore retries that were not turned off would show up.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from secretsmanager_support import (
    AWS_ENV,
    DENIED,
    ENDPOINT_ENV,
    LEAKY_ROLE,
    FakeSecretsManager,
)


class _QuietHandler:
    """Mixed into moto's request handler: no access log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _enforce_deny_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.get_secret_value

    def checked(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
        denied = secret_id in DENIED
        if not denied and self._is_valid_identifier(secret_id):
            secret = self.secrets[secret_id]
            denied = secret.arn in DENIED or secret.name in DENIED
        if denied:
            raise JsonRESTError(
                "AccessDeniedException",
                f"User: {LEAKY_ROLE}/session is not authorized to perform: "
                f"secretsmanager:GetSecretValue on resource: {secret_id} because no "
                "identity-based policy allows the secretsmanager:GetSecretValue action",
            )
        return original(self, secret_id, *args, **kwargs)

    monkeypatch.setattr(SecretsManagerBackend, "get_secret_value", checked)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("moto", reason="install plugins/chamber-secretsmanager[test]")
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("AWS_") or name == ENDPOINT_ENV:
            del os.environ[name]
    os.environ.update(AWS_ENV)
    patches = pytest.MonkeyPatch()
    _enforce_deny_list(patches)
    handler = type("QuietMotoRequestHandler", (_QuietHandler, MotoRequestHandler), {})
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
    thread = threading.Thread(target=server.serve_forever, name="moto-sm", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        patches.undo()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def sm_admin(moto_endpoint: str) -> Callable[..., Any]:
    """``sm_admin(region)``: a plain boto3 Secrets Manager client on the moto server."""
    import boto3

    session = boto3.session.Session()
    clients: dict[str, Any] = {}

    def client(region: str = "us-east-1") -> Any:
        if region not in clients:
            clients[region] = session.client(
                "secretsmanager", region_name=region, endpoint_url=moto_endpoint
            )
        return clients[region]

    return client


@pytest.fixture
def new_secret(sm_admin: Callable[..., Any]) -> Callable[..., str]:
    """``new_secret(value, region=...)``: the full ARN of a fresh secret holding ``value``
    (``str``: SecretString, ``bytes``: SecretBinary)."""

    def create(value: str | bytes, region: str = "us-east-1", name: str | None = None) -> str:
        params: dict[str, Any] = {"Name": name or f"chamber/test-{uuid.uuid4().hex[:12]}"}
        if isinstance(value, bytes):
            params["SecretBinary"] = value
        else:
            params["SecretString"] = value
        arn: str = sm_admin(region).create_secret(**params)["ARN"]
        return arn

    return create


@pytest.fixture
def deny(moto_endpoint: str) -> Iterator[Callable[[str], None]]:
    """``deny(arn)``: the moto server refuses GetSecretValue of that secret (this test only)."""
    added: list[str] = []

    def add(arn: str) -> None:
        DENIED.add(arn)
        added.append(arn)

    try:
        yield add
    finally:
        for arn in added:
            DENIED.discard(arn)


@pytest.fixture
def endpoint_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The plugin finds the moto server through ``CHAMBER_SECRETSMANAGER_ENDPOINT_URL``."""
    monkeypatch.setenv(ENDPOINT_ENV, moto_endpoint)
    return moto_endpoint


# --------------------------------------------------------------------------- a broken endpoint


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeSecretsManager


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            self._serve(self.server.fake)
        except OSError:  # the client gave up first (read timeout)
            return

    def _serve(self, fake: FakeSecretsManager) -> None:
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
def fake_sm(moto_endpoint: str) -> Iterator[FakeSecretsManager]:
    """A local endpoint that drops connections or answers errors (uses the dummy credentials)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeSecretsManager(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-sm", daemon=True
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
