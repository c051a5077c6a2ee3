"""Plugins: built-ins through the same hooks, entry-point discovery of a real installed
distribution, duplicate names refused at start-up naming both plugins, event hooks isolated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from chamber.errors import PluginError
from chamber.hookspecs import hookimpl
from chamber.plugins import PluginManager, load_plugins
from tests.harness import TOKEN, Client, SubprocessSigner, base_config, make_keys, write_raw_keys

PLUGIN_MODULE = '''
"""A throwaway third-party plugin: one key source with a fixed key, and an audit event hook."""
import os
from chamber.errors import KeyLoadError
from chamber.hookspecs import hookimpl
from chamber.keys import KeyLoadResult, ValidatorKey


class StaticKeySource:
    name = "static-test"
    requires_unseal = False

    def __init__(self, secret_hex, bls):
        self.secret_hex = secret_hex
        self.bls = bls

    @classmethod
    def from_config(cls, settings, bls):
        return cls(settings["secret_hex"], bls)

    def load(self, master_key=None):
        handle = self.bls.secret_key(bytes.fromhex(self.secret_hex))
        key = ValidatorKey(self.bls.public_key(handle), self.name, handle)
        return KeyLoadResult([key], [KeyLoadError("static://broken", "demo error")])


@hookimpl
def chamber_key_sources():
    return {"static-test": StaticKeySource}


@hookimpl
def chamber_signing_outcome(pubkey, request_type, outcome, reason):
    with open(os.environ["CC_AUDIT_FILE"], "a") as fh:
        fh.write(f"{pubkey} {request_type} {outcome}\\n")
'''

DUPLICATE_MODULE = '''
from chamber.hookspecs import hookimpl

class Other:
    name = "noop"

@hookimpl
def chamber_slashing_backends():
    return {"noop": Other}
'''


def build_and_install(tmp_path: Path, dist: str, module: str, source: str) -> Path:
    """Build a real distribution with an entry point and pip-install it into its own dir."""
    src = tmp_path / f"src-{dist}"
    src.mkdir()
    (src / f"{module}.py").write_text(source)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "1.2.3"

        [project.entry-points.containment_chamber]
        {module} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
    """))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chamber", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )


def test_builtins_register_through_the_hooks() -> None:
    pm = load_plugins(entry_points_enabled=False)
    assert set(pm.providers("chamber_bls_backends")) >= {"blspy", "milagro", "py_ecc"}
    assert "filesystem" in pm.providers("chamber_key_sources")
    assert "noop" in pm.providers("chamber_slashing_backends")
    names = {info.name for info in pm.describe()}
    assert {"bls", "filesystem", "noop_slashing"} <= names


def test_plugins_command_lists_builtins_versions_and_bls_backend() -> None:
    out = run_cli(["plugins"])
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    by_name = {p["name"]: p for p in listing["plugins"]}
    assert by_name["filesystem"]["provides"] == {"key_sources": ["filesystem"]}
    assert by_name["bls"]["version"]
    assert listing["bls_backends"]["default"] == "blspy"
    assert set(listing["bls_backends"]["available"]) == {"blspy", "milagro", "py_ecc"}


def test_duplicate_provider_name_is_an_error_naming_both() -> None:
    class First:
        @hookimpl
        def chamber_key_sources(self) -> dict[str, type]:
            return {"same": object}

    class Second:
        @hookimpl
        def chamber_key_sources(self) -> dict[str, type]:
            return {"same": object}

    pm = PluginManager()
    pm.register(First(), "first-plugin", "1", None)
    pm.register(Second(), "second-plugin", "1", None)
    with pytest.raises(PluginError) as err:
        pm.check_all()
    assert "first-plugin" in err.value.message and "second-plugin" in err.value.message
    assert "'same'" in err.value.message


def test_provider_hook_returning_garbage_names_the_plugin() -> None:
    class Bad:
        @hookimpl
        def chamber_slashing_backends(self) -> list[str]:
            return ["not", "a", "mapping"]

    pm = PluginManager()
    pm.register(Bad(), "bad-plugin", "1", None)
    with pytest.raises(PluginError, match="bad-plugin"):
        pm.check_all()


def test_event_hook_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    class Broken:
        @hookimpl
        def chamber_signing_outcome(self, pubkey: str, request_type: str, outcome: str,
                                    reason: str | None) -> None:
            raise RuntimeError("boom")

    class Working:
        @hookimpl
        def chamber_signing_outcome(self, pubkey: str, request_type: str, outcome: str,
                                    reason: str | None) -> None:
            calls.append(outcome)

    pm = PluginManager()
    pm.register(Broken(), "broken", "1", None)
    pm.register(Working(), "working", "1", None)
    pm.emit("chamber_signing_outcome", pubkey="0x", request_type="X", outcome="signed", reason=None)
    assert calls == ["signed"]
    assert any(getattr(r, "plugin", None) == "broken" for r in caplog.records)


@pytest.mark.slow
def test_installed_distribution_is_discovered_and_used(tmp_path: Path) -> None:
    site = build_and_install(tmp_path, "chamber-static-test", "chamber_static_test", PLUGIN_MODULE)
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    listing = json.loads(run_cli(["plugins"], env).stdout)
    ours = next(p for p in listing["plugins"] if p["name"] == "chamber_static_test")
    assert ours["distribution"] == "chamber-static-test"
    assert ours["version"] == "1.2.3"
    assert ours["provides"]["key_sources"] == ["static-test"]
    assert "signing_outcome" in ours["provides"]["events"]

    # Used: the plugin's key source serves a key the real server signs with, and its event hook
    # sees the outcome.
    key = make_keys(1, seed="plugin")[0]
    keys_dir = tmp_path / "keys"
    write_raw_keys(keys_dir, [])
    config = base_config(keys_dir)
    config["key_sources"]["static-test"] = {"secret_hex": key.secret_hex[2:]}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    audit = tmp_path / "audit.log"
    signer = SubprocessSigner(cfg, env={**env, "CC_AUDIT_FILE": str(audit)})
    try:
        client = Client(signer.wait_ready(), TOKEN)
        assert client.request("GET", "/api/v1/eth2/publicKeys").json() == [key.pubkey_hex]
        body = {
            "type": "RANDAO_REVEAL",
            "fork_info": {
                "fork": {"previous_version": "0x03000000", "current_version": "0x04000000",
                         "epoch": "269568"},
                "genesis_validators_root":
                    "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
            },
            "randao_reveal": {"epoch": "300000"},
        }
        assert client.sign(key.pubkey_hex, body).status == 200
    finally:
        assert signer.stop() == 0
    assert audit.read_text().split() == [key.pubkey_hex, "RANDAO_REVEAL", "signed"]
    assert "static://broken" in signer.output()  # per-item errors are reported


@pytest.mark.slow
def test_installed_duplicate_name_stops_start_up_naming_both(tmp_path: Path) -> None:
    site = build_and_install(tmp_path, "chamber-dup-test", "chamber_dup_test", DUPLICATE_MODULE)
    out = run_cli(["plugins"], {"PYTHONPATH": str(site)})
    assert out.returncode == 2
    assert "'noop'" in out.stderr
    assert "noop_slashing" in out.stderr and "chamber_dup_test" in out.stderr
