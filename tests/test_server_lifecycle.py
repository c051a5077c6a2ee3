"""The ``server`` command as a real process: start-up refusals, JSON logs, SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests import bodies
from tests.harness import (
    TOKEN,
    Client,
    Response,
    SubprocessSigner,
    base_config,
    install_fake_distribution,
    make_keys,
    write_raw_keys,
)
from tests.support import REPO_ROOT

KEYS = make_keys(2, seed="lifecycle")


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_failure(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chamber", "server", "-c", str(write_config(tmp_path, config))],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )


def test_sqlite_is_the_default_slashing_backend(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    write_raw_keys(keys_dir, KEYS)
    config = base_config(keys_dir)
    del config["anti_slashing"]
    signer = SubprocessSigner(write_config(tmp_path, config), cwd=tmp_path)
    try:
        client = Client(signer.wait_ready())
        checks = {c["id"]: c for c in client.request("GET", "/healthcheck").json()["checks"]}
        assert checks["slashing_protection"]["data"]["backend"] == "sqlite"
        assert client.sign(KEYS[0].pubkey_hex, bodies.block_v2()).status == 200
    finally:
        assert signer.stop() == 0
    db = tmp_path / "slashing_protection.sqlite"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert "SLASHING PROTECTION IS DISABLED" not in signer.output()


def test_refuses_to_start_without_any_auth_policy(tmp_path: Path) -> None:
    config = base_config(tmp_path / "keys", auth_policies={})
    out = start_failure(tmp_path, config)
    assert out.returncode == 2
    assert "auth_policies" in out.stderr and "allow_unauthenticated_signing" in out.stderr


def test_unknown_config_key_stops_start_up(tmp_path: Path) -> None:
    config = base_config(tmp_path / "keys", server={"listen_prot": 1})
    out = start_failure(tmp_path, config)
    assert out.returncode == 2
    assert "server.listen_prot: unknown key" in out.stderr


def test_unauthenticated_signing_is_explicit_and_warned(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    write_raw_keys(keys_dir, KEYS)
    config = base_config(keys_dir, auth_policies={}, allow_unauthenticated_signing=True)
    signer = SubprocessSigner(write_config(tmp_path, config))
    try:
        client = Client(signer.wait_ready(), token=None)
        assert client.sign(KEYS[0].pubkey_hex, bodies.randao()).status == 200
        assert client.request("GET", "/api/v1/eth2/publicKeys").status == 200
        assert client.sign(KEYS[0].pubkey_hex, bodies.randao(),
                           token="not-a-configured-token-123").status == 401
    finally:
        assert signer.stop() == 0
    warnings = [json.loads(line) for line in signer.lines if '"WARNING"' in line]
    assert any("allow_unauthenticated_signing" in w["message"] for w in warnings)
    assert any("SLASHING PROTECTION IS DISABLED" in w["message"] for w in warnings)


def test_logs_are_json_with_request_ids_and_no_token(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    write_raw_keys(keys_dir, KEYS)
    config = base_config(keys_dir)
    signer = SubprocessSigner(write_config(tmp_path, config))
    try:
        client = Client(signer.wait_ready())
        client.sign(KEYS[0].pubkey_hex, bodies.randao(), token=False)  # 401: audited
    finally:
        assert signer.stop() == 0
    entries = [json.loads(line) for line in signer.lines]  # every line is JSON
    assert any(e["message"] == "BLS backend selected" and e["bls_backend"] == "blspy"
               for e in entries)
    denied = [e for e in entries if e["logger"] == "chamber.audit"]
    assert denied and denied[0]["status"] == 401 and denied[0]["request_id"]
    assert TOKEN not in signer.output()
    for key in KEYS:
        assert key.secret_hex[2:] not in signer.output()


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_fake_distribution(
        site, "chamber-slow-test", "chamber_slow_test",
        (REPO_ROOT / "tests" / "slow_plugin.py").read_text(),
    )
    keys_dir = tmp_path / "keys"
    write_raw_keys(keys_dir, KEYS)
    config = base_config(
        keys_dir, anti_slashing={"backend": "slow-test", "delay_seconds": 2.0}
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{REPO_ROOT}"}
    signer = SubprocessSigner(write_config(tmp_path, config), env=env)
    url = signer.wait_ready()
    client = Client(url)
    # A second keep-alive client that is idle during the drain.
    results: dict[str, Response] = {}

    def in_flight() -> None:
        results["block"] = client.sign(KEYS[0].pubkey_hex, bodies.block_v2())

    worker = threading.Thread(target=in_flight)
    worker.start()
    time.sleep(0.5)  # the block request is now inside slashing protection
    started = time.monotonic()
    signer.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # No new connections once draining.
    port = int(url.rsplit(":", 1)[1])
    refused = False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        refused = True
    worker.join(10)
    code = signer.proc.wait(15)
    elapsed = time.monotonic() - started
    signer.stop()
    assert results["block"].status == 200, results["block"].body
    assert refused, "the listening socket should be closed while draining"
    assert code == 0
    assert elapsed < 10
    messages = [json.loads(line)["message"] for line in signer.lines]
    assert "draining" in messages and "drained" in messages and "stopped" in messages
