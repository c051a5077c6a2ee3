"""``containment-chamber quickstart``: examples/quickstart.yaml, KMS-only init, restart."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chamber.cli.quickstart import example_config_path
from chamber.config import load_settings
from tests.support import REPO_ROOT

MAINNET_GVR = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
READY = re.compile(
    r"^Containment Chamber quick start: signer at (http://127\.0\.0\.1:\d+), "
    r"demo key (0x[0-9a-f]{96})$"
)
RANDAO = {
    "type": "RANDAO_REVEAL",
    "fork_info": {
        "fork": {
            "previous_version": "0x04000000",
            "current_version": "0x05000000",
            "epoch": "364032",
        },
        "genesis_validators_root": MAINNET_GVR,
    },
    "randao_reveal": {"epoch": "400000"},
}


class Quickstart:
    """``containment-chamber quickstart`` as a child process in ``cwd``."""

    def __init__(self, cwd: Path) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chamber", "quickstart", "--port", "0", "--metrics-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(["--- stdout", *self.out, "--- stderr", *self.err])

    def wait_ready(self, timeout: float = 120) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.out):
                match = READY.match(line)
                if match:
                    return match.group(1), match.group(2)
            if self.proc.poll() is not None:
                raise AssertionError("quickstart exited:\n" + self.output())
            if time.monotonic() > deadline:
                raise AssertionError("quickstart printed no instructions:\n" + self.output())
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for reader in self._readers:
                reader.join(5)


def _call(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_QUICKSTART_TOKEN", "a" * 32)
    monkeypatch.setenv("CC_QUICKSTART_OPERATOR_TOKEN", "b" * 32)
    path = example_config_path()
    assert path == REPO_ROOT / "examples" / "quickstart.yaml"
    settings = load_settings(path, environ={})
    assert settings.server.listen_address == "127.0.0.1"
    assert settings.signer_state is not None
    assert settings.signer_state.backend == "sqlite"
    assert settings.signer_state.backend_settings()["path"].startswith("./quickstart-data/")
    assert settings.key_sources.sections()["sqlite"]["path"].startswith("./quickstart-data/")
    assert settings.kms["local"]["directory"].startswith("./quickstart-data/")
    assert settings.anti_slashing.backend == "sqlite"


@pytest.mark.slow
def test_quickstart_inits_signs_and_restarts_unsealed(tmp_path: Path) -> None:
    first = Quickstart(tmp_path)
    try:
        base, pubkey = first.wait_ready()
        data = tmp_path / "quickstart-data"
        assert _mode(data) == 0o700
        for name in ("token", "operator-token"):
            assert _mode(data / name) == 0o600
        token = (data / "token").read_text().strip()
        operator_token = (data / "operator-token").read_text().strip()

        status, keys = _call(base + "/api/v1/eth2/publicKeys", token)
        assert (status, keys) == (200, [pubkey])
        status, answer = _call(base + f"/api/v1/eth2/sign/{pubkey}", token, RANDAO)
        assert status == 200, answer
        assert re.fullmatch(r"0x[0-9a-f]{192}", answer["signature"])
        signature = answer["signature"]

        status, vault = _call(base + "/api/v1/chamber/status", operator_token)
        assert status == 200
        assert vault["seal"]["status"] == "unsealed"
        assert vault["seal"]["mode"] == "kms_only"
        assert vault["seal"]["kms"] == {"threshold": 2, "keys": 3}
        # The signing token has no chamber scope.
        assert _call(base + "/api/v1/chamber/status", token)[0] == 403
    finally:
        assert first.stop() == 0, first.output()
    assert "cc-setup-" not in first.output()

    second = Quickstart(tmp_path)
    try:
        base, again = second.wait_ready()
        assert again == pubkey
        assert _call(base + "/api/v1/eth2/publicKeys", token) == (200, [pubkey])
        status, answer = _call(base + f"/api/v1/eth2/sign/{pubkey}", token, RANDAO)
        assert (status, answer["signature"]) == (200, signature)
    finally:
        assert second.stop() == 0, second.output()
    assert "cc-setup-" not in second.output()
    assert "Setup token generated" not in "\n".join(second.err)
