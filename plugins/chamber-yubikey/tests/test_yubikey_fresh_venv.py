"""Issue 6's acceptance for chamber-yubikey: in a fresh virtual environment holding only the
core, the plugin installs alone, appears in ``containment-chamber plugins``, and registers and
unseals an operator end to end (the fresh venv's own signer and CLI); uninstalling it leaves the
core working, the operator's yubikey credential listed as unavailable, and ``unseal --yubikey``
a clear "not installed" error, not a traceback.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fido2", reason="install plugins/chamber-yubikey[test]")

import soft_fido2
from chamber_yubikey.credential import DEVICE_FACTORY_ENV
from soft_fido2 import SoftAuthenticator

from tests.fresh_venv import FreshVenv, _clean_env, core_venv, plugin_installed
from tests.harness import SubprocessSigner
from tests.vault_support import Chamber, CliResult

TESTS_DIR = Path(__file__).resolve().parent
PLUGIN_DIR = TESTS_DIR.parent
PASSPHRASE = "bob unseals the core without any plugin"  # noqa: S105 (test data)

pytestmark = pytest.mark.slow


class FreshSigner(SubprocessSigner):
    """``containment-chamber server`` run by the fresh venv's Python (not the test venv's)."""

    def __init__(self, venv: FreshVenv, config_path: Path, env: dict[str, str], cwd: Path):
        self.lines = []
        self.port = None
        self.metrics_port = None
        self.proc = subprocess.Popen(  # noqa: S603
            [str(venv.python), "-m", "chamber", "server", "-c", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@dataclass
class FreshChamber(Chamber):
    """A :class:`Chamber` whose signer and CLI both come from the fresh venv."""

    venv: Any = None

    def start(self) -> str:
        assert self.signer is None and self.venv is not None
        self.signer = FreshSigner(
            self.venv, self.config_path, {**_clean_env(), **self.env}, self.root
        )
        return self.signer.wait_listening()

    def run_cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        out = self.venv.run(*args, stdin=stdin or "", env={**self.env, **(env or {})})
        result = CliResult(list(args), out.returncode, out.stdout, out.stderr)
        self.transcript.append((" ".join(args[:2]) + " stdout", out.stdout))
        self.transcript.append((" ".join(args[:2]) + " stderr", out.stderr))
        return result


def plugins_listed(venv: FreshVenv) -> dict[str, Any]:
    result = venv.run("plugins")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_installs_alone_registers_unseals_and_uninstalls_cleanly(tmp_path: Path) -> None:
    venv = core_venv()
    key = SoftAuthenticator(tmp_path / "alice-key.json")
    keys_env = {
        DEVICE_FACTORY_ENV: soft_fido2.FACTORY,
        soft_fido2.STATE_ENV: str(key.state_path),
        "PYTHONPATH": str(TESTS_DIR),  # soft_fido2 (the fresh venv has fido2 from the plugin)
    }
    chamber = FreshChamber(tmp_path / "signer", venv=venv)
    try:
        with plugin_installed(venv, PLUGIN_DIR) as distribution:
            assert distribution == "chamber-yubikey"
            listed = plugins_listed(venv)["chamber_yubikey"]
            assert listed["distribution"] == "chamber-yubikey"
            assert listed["provides"] == {"credential_types": ["yubikey"]}

            chamber.start()
            init = chamber.operator(
                "init",
                "--setup-token",
                "env:SETUP_TOKEN",
                "--kms-key-arns",
                "local:fresh-a,local:fresh-b",
                "--kms-threshold",
                "2",
                "--unseal-threshold",
                "1",
                "--operators",
                "alice,bob",
                env={"SETUP_TOKEN": chamber.wait_setup_token()},
            ).json()
            tokens = init["operator_tokens"]
            assert chamber.operator(
                "register",
                "--operator",
                "alice",
                "--registration-token",
                "env:REGISTRATION_TOKEN",
                "--credential-id",
                "yubikey-1",
                "--yubikey",
                env={**keys_env, "REGISTRATION_TOKEN": tokens["alice"]},
            ).json() == {"registered": 1, "remaining": 1}
            chamber.operator(
                "register",
                "--operator",
                "bob",
                "--registration-token",
                "env:REGISTRATION_TOKEN",
                "--passphrase-stdin",
                stdin=PASSPHRASE + "\n",
                env={"REGISTRATION_TOKEN": tokens["bob"]},
            ).json()
            chamber.wait_state("kms_unsealed")
            assert chamber.operator(
                "unseal", "--operator", "alice", "--yubikey", env=keys_env
            ).json() == {"status": "unsealed", "validators_loaded": 0}
            assert key.touches == 3
            chamber.stop()

        # Uninstalled: the core still lists its plugins and runs.
        listed_after = plugins_listed(venv)
        assert "chamber_yubikey" not in listed_after
        assert "chamber-yubikey" not in venv.distributions()
        chamber.start()
        chamber.wait_state("kms_unsealed")
        answer = chamber.run_cli(
            "operator", "credentials", "list", "--operator", "alice", "--signer-url", chamber.url
        ).json()
        [credential] = answer["credentials"]
        assert credential["credential_id"] == "yubikey-1"
        assert credential["type"] == "yubikey"
        assert credential["available"] is False

        refused = chamber.operator("unseal", "--operator", "alice", "--yubikey", env=keys_env)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        assert refused.stderr.startswith(
            "containment-chamber: credential type 'yubikey' is not installed on this machine"
        ), refused.stderr
        assert "pip install chamber-yubikey" in refused.stderr
        assert chamber.status()["seal"]["shares_received"] == 0

        # Another operator's passphrase still unseals: the core is unharmed.
        assert chamber.operator(
            "unseal", "--operator", "bob", "--passphrase-stdin", stdin=PASSPHRASE + "\n"
        ).json() == {"status": "unsealed", "validators_loaded": 0}
    finally:
        chamber.stop()
