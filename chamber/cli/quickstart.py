"""``containment-chamber quickstart``: the embedded default, with a generated demo key.

On first run it creates DIR (default ``./quickstart-data``, mode 0700) holding a freshly generated
demo validator key as an EIP-2335 keystore with its password file, an API token, and a
configuration; files with secrets are created 0600. Then it prints how to call the signer with
curl and runs the server. Later runs reuse what is there.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import yaml
from cyclopts import Parameter

from chamber.crypto.bls import CURVE_ORDER, select_backend
from chamber.crypto.keystore import encrypt_keystore

MAINNET_GVR = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _create(directory: Path, port: int) -> None:
    directory.mkdir(mode=0o700, parents=True)
    keys = directory / "keys"
    keys.mkdir(mode=0o700)
    secret = 0
    while not 0 < secret < CURVE_ORDER:
        secret = int.from_bytes(secrets.token_bytes(32), "big")
    raw = secret.to_bytes(32, "big")
    bls = select_backend("auto")
    pubkey = bls.public_key(bls.secret_key(raw))
    password = secrets.token_urlsafe(24)
    keystore = encrypt_keystore(
        raw,
        password,
        kdf="pbkdf2",
        pubkey=pubkey,
        description="containment-chamber quickstart demo key",
    )
    _write_secret(keys / "demo-keystore.json", json.dumps(keystore, indent=2))
    _write_secret(keys / "demo-keystore.password", password)
    (keys / "demo.yaml").write_text(
        yaml.safe_dump(
            {
                "type": "file-keystore",
                "keystoreFile": "demo-keystore.json",
                "keystorePasswordFile": "demo-keystore.password",
            }
        )
    )
    token = secrets.token_urlsafe(32)
    _write_secret(directory / "token", token)
    config: dict[str, Any] = {
        "server": {"listen_address": "127.0.0.1", "listen_port": port},
        "metrics": {"listen_address": "127.0.0.1", "listen_port": 3000},
        "logging": {"level": "INFO", "format": "text"},
        "network": "mainnet",
        "key_sources": {"filesystem": {"paths": [str(keys.resolve())]}},
        "anti_slashing": {
            "backend": "sqlite",
            "path": str(directory / "slashing_protection.sqlite"),
        },
        "auth_policies": {
            "quickstart": {
                "token": "env:CC_QUICKSTART_TOKEN",
                "allowed_scopes": ["sign", "public_keys"],
            }
        },
    }
    _write_secret(directory / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    (directory / "pubkey").write_text("0x" + pubkey.hex() + "\n")


def _instructions(directory: Path, port: int) -> str:
    pubkey = (directory / "pubkey").read_text().strip()
    body = json.dumps(
        {
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
    )
    base = f"http://127.0.0.1:{port}"
    token = f'"Authorization: Bearer $(cat {directory}/token)"'
    return (
        f"Containment Chamber quick start: demo key {pubkey}\n"
        f"  data and config:  {directory}/ (token in {directory}/token, mode 0600)\n"
        f"  list keys:        curl -s -H {token} {base}/api/v1/eth2/publicKeys\n"
        f"  sign:             curl -s -H {token} -H 'Content-Type: application/json' \\\n"
        f"                      -d '{body}' \\\n"
        f"                      {base}/api/v1/eth2/sign/{pubkey}\n"
        f"  health:           curl -s {base}/healthcheck\n"
        f"  metrics:          curl -s http://127.0.0.1:3000/metrics\n"
        "Stop with Ctrl-C (in-flight requests are drained first).\n"
    )


def quickstart(
    *,
    directory: Annotated[Path, Parameter(name=["--dir"])] = Path("quickstart-data"),
    port: int = 9000,
) -> None:
    """Run the signer on the embedded default with a generated demo key; prints curl examples."""
    from chamber.cli.server import server

    directory = directory.resolve()
    if not (directory / "config.yaml").exists():
        if directory.exists() and any(directory.iterdir()):
            print(
                f"containment-chamber: {directory} exists but holds no config.yaml; "
                "choose another --dir",
                file=sys.stderr,
            )
            sys.exit(2)
        if directory.exists():
            directory.rmdir()
        _create(directory, port)
    os.environ["CC_QUICKSTART_TOKEN"] = (directory / "token").read_text().strip()
    print(_instructions(directory, port), flush=True)
    server(config=directory / "config.yaml")
