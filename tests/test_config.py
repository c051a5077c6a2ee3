"""Configuration: file < environment < CLI, env:VAR secrets, errors naming the key path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chamber.config import Settings, env_overrides, load_settings, redacted
from chamber.errors import ConfigError

TOKEN = "a-long-enough-token-123"


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_use_the_documented_names_and_ports() -> None:
    s = Settings()
    assert s.server.listen_port == 9000
    assert s.metrics.listen_port == 3000
    assert s.network == "mainnet"
    assert s.anti_slashing.backend == "sqlite"
    assert s.allow_unauthenticated_signing is False


def test_precedence_file_then_environment_then_cli(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        {"server": {"listen_port": 9100, "listen_address": "127.0.0.2"}, "network": "sepolia"},
    )
    s = load_settings(cfg, environ={})
    assert (s.server.listen_port, s.server.listen_address, s.network) == (
        9100,
        "127.0.0.2",
        "sepolia",
    )

    env = {"CONTAINMENT_SERVER__LISTEN_PORT": "9200", "CONTAINMENT_NETWORK": "hoodi"}
    s = load_settings(cfg, environ=env)
    assert (s.server.listen_port, s.server.listen_address, s.network) == (
        9200,
        "127.0.0.2",
        "hoodi",
    )

    s = load_settings(cfg, environ=env, overrides={"server.listen_port": 9300, "network": None})
    assert (s.server.listen_port, s.network) == (9300, "hoodi")


def test_environment_lists_and_nesting() -> None:
    tree = env_overrides(
        {
            "CONTAINMENT_KEY_SOURCES__FILESYSTEM__PATHS": '["/a", "/b"]',
            "CONTAINMENT_ANTI_SLASHING__BACKEND": "noop",
            "UNRELATED": "x",
        }
    )
    assert tree == {
        "key_sources": {"filesystem": {"paths": ["/a", "/b"]}},
        "anti_slashing": {"backend": "noop"},
    }
    s = load_settings(None, environ={"CONTAINMENT_KEY_SOURCES__FILESYSTEM__PATHS": '["/a"]'})
    assert s.key_sources.filesystem is not None
    assert [str(p) for p in s.key_sources.filesystem.paths] == ["/a"]


def test_env_secret_is_resolved_and_never_shown(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        {"auth_policies": {"vc": {"token": "env:CC_TEST_TOKEN", "allowed_scopes": ["sign"]}}},
    )
    os.environ["CC_TEST_TOKEN"] = TOKEN
    try:
        s = load_settings(cfg, environ={})
    finally:
        del os.environ["CC_TEST_TOKEN"]
    assert s.auth_policies["vc"].token.get_secret_value() == TOKEN
    assert TOKEN not in repr(s)
    assert TOKEN not in str(redacted(s))


def test_unset_env_secret_names_key_and_variable(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        {"auth_policies": {"vc": {"token": "env:CC_SURELY_UNSET", "allowed_scopes": ["sign"]}}},
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert "auth_policies.vc.token" in err.value.message
    assert "CC_SURELY_UNSET" in err.value.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"server": {"listen_prot": 1}}, "server.listen_prot: unknown key"),
        ({"servr": {}}, "servr: unknown key"),
        ({"server": {"listen_port": 70000}}, "server.listen_port"),
        ({"metrics": {"listen_port": "many"}}, "metrics.listen_port"),
        ({"network": "goerli"}, "unknown network 'goerli'"),
        ({"network": "custom"}, "custom_network"),
        (
            {"auth_policies": {"vc": {"token": "short", "allowed_scopes": ["sign"]}}},
            "auth_policies.vc.token: token must be at least 16 characters",
        ),
        (
            {"auth_policies": {"vc": {"token": TOKEN, "allowed_scopes": ["sing"]}}},
            "auth_policies.vc.allowed_scopes: unknown scope(s) sing",
        ),
        (
            {
                "auth_policies": {
                    "vc": {"token": TOKEN, "allowed_scopes": ["sign"], "keys": ["0x12"]}
                }
            },
            "auth_policies.vc.keys",
        ),
        ({"canary_keys": ["nope"]}, "canary_keys"),
        (
            {
                "custom_network": {
                    "genesis_validators_root": "0x00",
                    "genesis_fork_version": "0x00000000",
                },
                "network": "custom",
            },
            "custom_network.genesis_validators_root: Value error, must be 32 bytes",
        ),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path / "c.yaml", data), environ={})
    assert expected.replace("Value error, ", "") in err.value.message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(tmp_path / "absent.yaml", environ={})
    top = tmp_path / "list.yaml"
    top.write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(top, environ={})


def test_config_check_cli_prints_effective_settings_redacted(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        {
            "network": "hoodi",
            "auth_policies": {"vc": {"token": "env:CC_CHECK_TOKEN", "allowed_scopes": ["sign"]}},
        },
    )
    env = {**os.environ, "CC_CHECK_TOKEN": TOKEN, "CONTAINMENT_SERVER__LISTEN_PORT": "9555"}
    out = subprocess.run(
        [sys.executable, "-m", "chamber", "config", "check", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert shown["network"] == "hoodi"
    assert shown["server"]["listen_port"] == 9555
    assert shown["auth_policies"]["vc"]["token"] == "**********"
    assert TOKEN not in out.stdout + out.stderr

    bad = write(tmp_path / "bad.yaml", {"server": {"listen_prot": 1}})
    out = subprocess.run(
        [sys.executable, "-m", "chamber", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "server.listen_prot: unknown key" in out.stderr
