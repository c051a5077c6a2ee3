"""Start real signers for tests: in-process (waitress in a thread) or as a CLI subprocess.

Both listen on a random loopback port. Keys are deterministic raw keys written as Web3Signer
``file-raw`` descriptors, so tests don't pay for scrypt.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import yaml
from py_ecc.bls import G2ProofOfPossession as reference_bls

from tests.support import REPO_ROOT

CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
TOKEN = "test-token-0123456789abcdef"
MAINNET_GVR = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"


@dataclass(frozen=True)
class TestKey:
    secret: int
    pubkey: bytes

    @property
    def pubkey_hex(self) -> str:
        return "0x" + self.pubkey.hex()

    @property
    def secret_hex(self) -> str:
        return "0x" + self.secret.to_bytes(32, "big").hex()


def make_keys(count: int, seed: str = "chamber-test") -> list[TestKey]:
    keys = []
    for i in range(count):
        secret = int.from_bytes(hashlib.sha256(f"{seed}-{i}".encode()).digest(), "big")
        secret = secret % (CURVE_ORDER - 1) + 1
        keys.append(TestKey(secret, reference_bls.SkToPk(secret)))
    return keys


def write_raw_keys(directory: Path, keys: list[TestKey]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        (directory / f"key-{i}.yaml").write_text(
            yaml.safe_dump({"type": "file-raw", "privateKey": key.secret_hex})
        )


def base_config(keys_dir: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"listen_address": "127.0.0.1", "listen_port": 0},
        "metrics": {"listen_address": "127.0.0.1", "listen_port": 0},
        "logging": {"level": "INFO", "format": "json"},
        "network": "mainnet",
        "key_sources": {"filesystem": {"paths": [str(keys_dir)]}},
        "anti_slashing": {"backend": "noop"},
        "auth_policies": {
            "validator": {"token": TOKEN, "allowed_scopes": ["sign", "public_keys"]},
        },
    }
    return _merge(config, overrides)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Response:
    status: int
    headers: Message  # case-insensitive, as HTTP header names are
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    base_url: str
    token: str | None = TOKEN
    extra_headers: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | bool | None = True,
    ) -> Response:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        hdrs = {"Content-Type": "application/json", **self.extra_headers, **(headers or {})}
        use = self.token if token is True else (token or None)
        if use:
            hdrs["Authorization"] = f"Bearer {use}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, err.headers, err.read())

    def sign(self, pubkey_hex: str, body: dict[str, Any], **kw: Any) -> Response:
        return self.request("POST", f"/api/v1/eth2/sign/{pubkey_hex}", body, **kw)


@dataclass
class InProcessSigner:
    url: str
    metrics_url: str | None
    server: Any
    client: Client


@contextmanager
def in_process_signer(
    config: dict[str, Any],
    wait_keys: bool = True,
    extra_plugins: Mapping[str, object] | None = None,
) -> Iterator[InProcessSigner]:
    """A real waitress server in a background thread of this process."""
    from chamber.config import Settings
    from chamber.plugins import load_plugins
    from chamber.server import SignerServer
    from chamber.signer import build_signer

    settings = Settings.model_validate(config)
    plugins = load_plugins(entry_points_enabled=False)
    for name, plugin in (extra_plugins or {}).items():
        plugins.register(plugin, name, "test", None)
    signer = build_signer(settings, plugins)
    server = SignerServer(signer)
    server.start_background()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if wait_keys:
        assert signer.keys_loaded.wait(60), "keys did not load"
    url = f"http://127.0.0.1:{server.port}"
    metrics_url = f"http://127.0.0.1:{server.metrics_port}" if server.metrics_port else None
    try:
        yield InProcessSigner(url, metrics_url, server, Client(url))
    finally:
        server.shutdown("test finished")
        thread.join(15)


class SubprocessSigner:
    """``containment-chamber server -c CONFIG`` as a child process; its log lines are kept."""

    def __init__(
        self,
        config_path: Path,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.lines: list[str] = []
        self.port: int | None = None
        self.metrics_port: int | None = None
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chamber", "server", "-c", str(config_path), *(args or [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
            cwd=cwd or REPO_ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == "signer listening":
                self.port = entry["port"]
            elif entry.get("message") == "metrics listening":
                self.metrics_port = entry["port"]

    def wait_listening(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while self.port is None:
            if self.proc.poll() is not None:
                raise AssertionError("signer exited:\n" + "\n".join(self.lines))
            if time.monotonic() > deadline:
                raise AssertionError("signer did not listen:\n" + "\n".join(self.lines))
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> str:
        url = self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/healthcheck", timeout=5) as resp:
                    if resp.status == 200:
                        return url
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("signer not ready:\n" + "\n".join(self.lines))
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reader.join(5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def output(self) -> str:
        return "\n".join(self.lines)


def install_fake_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """Lay out a module plus the ``.dist-info`` pip would write, with our entry point.

    Cheaper than a pip install for tests that only need *a* plugin in a subprocess; the test of
    plugin discovery itself builds and installs a real distribution with pip.
    """
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[containment_chamber]\n{module} = {module}\n")
