"""Issue 6's acceptance for chamber-secretsmanager, in a fresh virtual environment holding only
the core (``tests/fresh_venv.py``): the plugin installs alone on top of it, appears in
``containment-chamber plugins``, and an operator registers and unseals end to end with that
venv's own CLI and server; after ``pip uninstall`` the core still works, the operator's
credential is listed as ``"available": false`` and ``--secrets-manager-id`` is a clear
"not installed" error, not a crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from secretsmanager_support import ENDPOINT_ENV

from tests.fresh_venv import FreshVenv, core_venv, plugin_installed
from tests.harness import SubprocessSigner
from tests.vault_support import Chamber, CliResult

pytest.importorskip("moto", reason="install plugins/chamber-secretsmanager[test]")

PLUGIN_DIR = Path(__file__).resolve().parents[1]
SECRET = "fresh-venv unseal secret, 0123456789abcdef"  # noqa: S105 (test data)


def _env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment (the moto credentials) without the test venv leaking in."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    return {**env, **extra}


class FreshSigner(SubprocessSigner):
    """``containment-chamber server`` from the fresh venv (its console script)."""

    def __init__(self, venv: FreshVenv, config_path: Path, env: dict[str, str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.proc = subprocess.Popen(  # noqa: S603 (our own venv's console script)
            [str(venv.cli), "server", "-c", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(env),
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@dataclass
class FreshChamber(Chamber):
    """A :class:`Chamber` whose server and CLI both come from the fresh venv."""

    venv: FreshVenv | None = None

    def start(self) -> str:
        assert self.signer is None and self.venv is not None
        self.signer = FreshSigner(self.venv, self.config_path, self.env, self.root)
        return self.signer.wait_listening()

    def run_cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        assert self.venv is not None
        out = self.venv.run(
            *args, stdin=stdin if stdin is not None else "", env={**self.env, **(env or {})}
        )
        result = CliResult(list(args), out.returncode, out.stdout, out.stderr)
        label = " ".join(args[:2])
        self.transcript.append((f"{label} stdout", result.stdout))
        self.transcript.append((f"{label} stderr", result.stderr))
        return result


def plugins_of(venv: FreshVenv) -> dict[str, dict[str, Any]]:
    out = venv.run("plugins")
    assert out.returncode == 0, out.stderr
    return {row["name"]: row for row in json.loads(out.stdout)["plugins"]}


@pytest.mark.slow
def test_installs_alone_unseals_end_to_end_and_uninstalls_cleanly(
    tmp_path: Path, moto_endpoint: str, new_secret: Callable[..., str]
) -> None:
    arn = new_secret(SECRET)
    venv = core_venv()
    chamber = FreshChamber(tmp_path / "chamber", venv=venv)
    chamber.env[ENDPOINT_ENV] = moto_endpoint
    public = {"secret_arn": arn, "version_stage": "AWSCURRENT"}
    try:
        with plugin_installed(venv, PLUGIN_DIR) as distribution:
            assert distribution == "chamber-secretsmanager"
            assert {d for d in venv.distributions() if d.startswith("chamber-")} == {
                "chamber-secretsmanager"
            }
            row = plugins_of(venv)["chamber_secretsmanager"]
            assert row["distribution"] == "chamber-secretsmanager"
            assert row["version"] == "0.1.0"
            assert row["provides"] == {"credential_types": ["secretsmanager"]}

            chamber.start()
            tokens = chamber.operator(
                "init",
                "--setup-token",
                "env:SETUP_TOKEN",
                "--kms-key-arns",
                "local:fresh-a",
                "--kms-threshold",
                "1",
                "--unseal-threshold",
                "1",
                "--operators",
                "alice",
                env={"SETUP_TOKEN": chamber.wait_setup_token()},
            ).json()["operator_tokens"]
            chamber.operator(
                "register",
                "--operator",
                "alice",
                "--registration-token",
                "env:REGISTRATION_TOKEN",
                "--credential-id",
                "sm-alice",
                "--secrets-manager-id",
                arn,
                env={"REGISTRATION_TOKEN": tokens["alice"]},
            ).json()
            chamber.wait_state("kms_unsealed")
            chamber.restart()
            chamber.wait_state("kms_unsealed")
            answer = chamber.operator(
                "unseal", "--operator", "alice", "--secrets-manager-id", arn
            ).json()
            assert answer == {"status": "unsealed", "validators_loaded": 0}
            chamber.stop()

        # Uninstalled: the core alone, with a stored credential of a type it no longer has.
        assert not {d for d in venv.distributions() if d.startswith("chamber-")}
        assert "chamber_secretsmanager" not in plugins_of(venv)
        chamber.start()
        chamber.wait_state("kms_unsealed")
        listing = chamber.run_cli(
            "operator", "credentials", "list", "--signer-url", chamber.url, "--operator", "alice"
        ).json()
        assert listing["credentials"] == [
            {
                "credential_id": "sm-alice",
                "type": "secretsmanager",
                "public": public,
                "available": False,
            }
        ]
        before = chamber.state_rows()
        result = chamber.operator("unseal", "--operator", "alice", "--secrets-manager-id", arn)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert result.stderr.startswith(
            "containment-chamber: credential type 'secretsmanager' is not installed on this machine"
        ), result.stderr
        assert "pip install chamber-secretsmanager" in result.stderr
        assert chamber.state_rows() == before
        assert chamber.status()["seal"]["status"] == "kms_unsealed"
    finally:
        chamber.stop()
    for _, text in chamber.transcript:
        assert SECRET not in text
