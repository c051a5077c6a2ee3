"""The example credential plugin (``examples/chamber-credential-example``), installed alone on top
of the core in a fresh virtual environment (``tests/fresh_venv.py``), registers and unseals end
to end against a real signer started from that environment (issue 6).

The ceremony: an operator registers a ``keyfile-pin`` credential (the key file is created on a
"removable medium", a temporary directory named by ``CHAMBER_KEYFILE``; the PIN is one line of
standard input), a wrong PIN is refused with 401 and changes nothing stored, a wrong key file is
reported by the plugin before anything is sent, and the right PIN unseals. Once the plugin is
uninstalled, the signer still starts and lists the credential as ``"available": false``, and the
CLI says the type is not installed. Nothing secret (the PIN, the key file, the material) shows up
in anything that left the processes.

The example's own unit tests (``examples/chamber-credential-example/tests``) run here too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fresh_venv import FreshVenv, _clean_env, core_venv, plugin_installed
from tests.harness import SubprocessSigner
from tests.support import REPO_ROOT
from tests.vault_support import Chamber, CliResult, encodings

EXAMPLE_DIR = REPO_ROOT / "examples" / "chamber-credential-example"
DISTRIBUTION = "chamber-credential-example"
PLUGIN = "chamber_credential_example"
TYPE = "keyfile-pin"
PIN = "2718-2818-28"
WRONG_PIN = "2718-2818-29"
KMS_KEYS = "local:example-a,local:example-b"

pytestmark = pytest.mark.slow


class VenvSigner(SubprocessSigner):
    """``containment-chamber server`` run by the fresh venv's own entry-point script."""

    def __init__(self, venv: FreshVenv, config_path: Path, env: dict[str, str], cwd: Path):
        self.lines = []
        self.port = None
        self.metrics_port = None
        self.proc = subprocess.Popen(
            [str(venv.cli), "server", "-c", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**_clean_env(), **env},
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@dataclass
class VenvChamber(Chamber):
    """:class:`tests.vault_support.Chamber` with the server and the CLI from the fresh venv."""

    venv: FreshVenv | None = None
    cli_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> str:
        assert self.signer is None and self.venv is not None
        self.signer = VenvSigner(self.venv, self.config_path, self.env, self.root)
        return self.signer.wait_listening()

    def run_cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        assert self.venv is not None
        out = self.venv.run(
            *args, stdin=stdin or "", env={**self.env, **self.cli_env, **(env or {})}, timeout=60
        )
        label = " ".join(args[:2])
        self.transcript.append((f"{label} stdout", out.stdout))
        self.transcript.append((f"{label} stderr", out.stderr))
        return CliResult(list(args), out.returncode, out.stdout, out.stderr)


def test_the_examples_own_unit_tests_pass() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout


def test_installed_from_examples_it_registers_and_unseals_end_to_end(tmp_path: Path) -> None:
    venv = core_venv()
    medium = tmp_path / "usb-stick"
    medium.mkdir()
    keyfile = medium / "alice.key"
    chamber = VenvChamber(tmp_path / "chamber", venv=venv)
    chamber.cli_env = {"CHAMBER_KEYFILE": str(keyfile)}

    with plugin_installed(venv, EXAMPLE_DIR) as name:
        assert name == DISTRIBUTION
        listing = json.loads(venv.run("plugins").stdout)
        [ours] = [p for p in listing["plugins"] if p["distribution"] == DISTRIBUTION]
        assert ours["name"] == PLUGIN
        assert ours["version"] == "0.1.0"
        assert ours["provides"] == {"credential_types": [TYPE]}
        helped = venv.run("operator", "register", "--help", env={"COLUMNS": "400"})
        assert f"{TYPE} ({DISTRIBUTION})" in re.sub(r"[\s│]+", " ", helped.stdout), helped.stdout

        chamber.start()
        try:
            material = _ceremony(chamber, keyfile, medium)
            listed = chamber.run_cli("operator", "credentials", "list", "--operator", "alice",
                                     "--signer-url", chamber.url).json()
            [credential] = listed["credentials"]
            assert credential["type"] == TYPE and credential["available"] is True
            fingerprint = hashlib.sha256(keyfile.read_bytes()).hexdigest()[:16]
            assert credential["public"] == {"keyfile_fingerprint": fingerprint}
        finally:
            chamber.stop()

    # Uninstalled: the core alone still starts, keeps the credential and says it is unavailable.
    assert DISTRIBUTION not in venv.distributions()
    listing = json.loads(venv.run("plugins").stdout)
    assert all(p["distribution"] != DISTRIBUTION for p in listing["plugins"])
    chamber.start()
    try:
        chamber.wait_state("kms_unsealed")
        listed = chamber.run_cli("operator", "credentials", "list", "--operator", "alice",
                                 "--signer-url", chamber.url).json()
        [credential] = listed["credentials"]
        assert credential["type"] == TYPE
        assert credential["available"] is False
        refused = chamber.operator("unseal", "--operator", "alice", "--credential-type", TYPE,
                                   "--passphrase-stdin", stdin=PIN + "\n")
        assert refused.returncode == 2, refused
        assert f"credential type '{TYPE}' is not installed on this machine" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        chamber.stop()

    _assert_nothing_secret_left(chamber, keyfile.read_bytes(), material)


def _ceremony(chamber: VenvChamber, keyfile: Path, medium: Path) -> bytes:
    """init → register (keyfile-pin) → wrong PIN, wrong key file → unseal; returns the
    credential's material, for the leak check."""
    init = chamber.operator(
        "init", "--setup-token", "env:SETUP_TOKEN", "--kms-key-arns", KMS_KEYS,
        "--kms-threshold", "2", "--unseal-threshold", "1", "--operators", "alice",
        env={"SETUP_TOKEN": chamber.wait_setup_token()},
    ).json()
    token = init["operator_tokens"]["alice"]

    registered = chamber.operator(
        "register", "--operator", "alice", "--registration-token", "env:REGISTRATION_TOKEN",
        "--credential-type", TYPE, "--passphrase-stdin",
        stdin=PIN + "\n", env={"REGISTRATION_TOKEN": token},
    ).json()
    assert registered["remaining"] == 0, registered
    key = keyfile.read_bytes()
    assert len(key) == 32
    assert keyfile.stat().st_mode & 0o777 == 0o600
    material = hmac.new(key, PIN.encode(), hashlib.sha256).digest()
    chamber.wait_state("kms_unsealed")

    # A wrong PIN reaches the signer, which refuses it and stores nothing.
    before = chamber.state_rows()
    wrong = chamber.operator("unseal", "--operator", "alice", "--credential-type", TYPE,
                             "--passphrase-stdin", stdin=WRONG_PIN + "\n")
    assert wrong.returncode == 1, wrong
    assert wrong.stderr.startswith("containment-chamber: the signer answered 401: "), wrong.stderr
    assert "Traceback" not in wrong.stderr and wrong.stdout == ""
    assert chamber.state_rows() == before
    assert chamber.status()["seal"]["status"] == "kms_unsealed"

    # Another stick: the plugin says so (naming itself) before the PIN is read or sent.
    other = medium / "bob.key"
    other.write_bytes(bytes(range(32)))
    stick = chamber.operator("unseal", "--operator", "alice", "--credential-type", TYPE,
                             "--passphrase-stdin", stdin=PIN + "\n",
                             env={"CHAMBER_KEYFILE": str(other)})
    assert stick.returncode == 1, stick
    assert stick.stderr.startswith(f"containment-chamber: credential type '{TYPE}' ")
    assert f"plugin {DISTRIBUTION}" in stick.stderr, stick.stderr
    assert f"{other} (fingerprint " in stick.stderr
    assert "is not the key file registered for operator 'alice'" in stick.stderr
    assert stick.stderr.count("\n") == 1 and "Traceback" not in stick.stderr
    assert chamber.state_rows() == before

    unsealed = chamber.operator("unseal", "--operator", "alice", "--credential-type", TYPE,
                                "--passphrase-stdin", stdin=PIN + "\n").json()
    assert unsealed["status"] == "unsealed", unsealed
    assert chamber.status()["seal"]["status"] == "unsealed"
    return material


def _assert_nothing_secret_left(chamber: VenvChamber, key: bytes, material: bytes) -> None:
    secrets = [PIN, WRONG_PIN, *encodings(key), *encodings(material)]
    for where, text in chamber.transcript:
        for secret in secrets:
            assert secret not in text, f"a secret appeared in {where}"
    for name, data in chamber.files_at_rest().items():
        for secret in (PIN.encode(), key, material):
            assert secret not in data, f"a secret is stored in {name}"
