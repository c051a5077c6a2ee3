"""``containment-chamber quickstart``: the embedded default with the whole vault, on loopback.

The settings are the repository's ``examples/quickstart.yaml`` (paths under ``./quickstart-data``,
relative to the current directory). On the first run the command creates ``./quickstart-data``
(mode 0700) with two API tokens in 0600 files: ``token`` (sign, public_keys) for validator
clients and ``operator-token`` (chamber_status, chamber_seal, chamber_keys_write). It puts them in
its own environment for the configuration's ``env:VAR`` references and runs the signer in this
process.

Because a quick start is one developer on loopback, the command then performs the KMS-only
``operator init`` itself, with three ``local:`` KMS keys and a threshold of 2, using the setup
token that the vault logs while uninitialized: a filter on the vault's logger takes the token
from the log record and puts a placeholder in its place, so it is never printed. Once unsealed it
imports a freshly generated demo key into the encrypted SQLite key store and prints the curl
commands to list keys and sign.

Later runs reuse ``./quickstart-data``: the vault unseals from the local KMS by itself and the
demo key is loaded from the store again.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, NoReturn

from cyclopts import Parameter

import chamber
from chamber.errors import ChamberError, StartupError

if TYPE_CHECKING:
    from chamber.server import SignerServer

log = logging.getLogger("chamber.quickstart")

DATA_DIR: Final = Path("quickstart-data")
#: Environment variables named by the example configuration's ``env:VAR`` tokens, and the files
#: (in the data directory) that hold their values.
TOKEN_FILES: Final = {
    "CC_QUICKSTART_TOKEN": "token",
    "CC_QUICKSTART_OPERATOR_TOKEN": "operator-token",
}
KMS_KEY_IDS: Final = ("local:quickstart-1", "local:quickstart-2", "local:quickstart-3")
KMS_THRESHOLD: Final = 2
#: How long to wait for the vault to be ready before telling the developer what is wrong.
READY_TIMEOUT_SECONDS: Final = 120.0

MAINNET_GVR: Final = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
SETUP_TOKEN_PLACEHOLDER: Final = "(taken by quickstart for its own init; not shown)"  # noqa: S105


def example_config_path() -> Path:
    """``examples/quickstart.yaml`` of the repository this package runs from."""
    return Path(chamber.__file__).resolve().parent.parent / "examples" / "quickstart.yaml"


def _fail(message: str) -> NoReturn:
    print(f"containment-chamber: {message}", file=sys.stderr)
    sys.exit(2)


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def prepare_data_dir(directory: Path) -> dict[str, str]:
    """Create ``directory`` (0700) and any missing token file (0600); return ``VAR -> token``."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    elif not directory.is_dir():
        raise StartupError(f"{directory} exists and is not a directory; move it away")
    tokens: dict[str, str] = {}
    for variable, name in TOKEN_FILES.items():
        path = directory / name
        if not path.exists():
            _write_secret(path, secrets.token_urlsafe(32))
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise StartupError(f"{path} does not hold a token; delete it to get a new one")
        tokens[variable] = token
    return tokens


class SetupTokenCapture(logging.Filter):
    """Takes the setup token from the vault's log record and hides it from every handler."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._token: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        token = getattr(record, "setup_token", None)
        if isinstance(token, str) and token != SETUP_TOKEN_PLACEHOLDER:
            with self._lock:
                self._token = token
            record.setup_token = SETUP_TOKEN_PLACEHOLDER
        return True

    def take(self) -> str | None:
        with self._lock:
            token, self._token = self._token, None
        return token


def quickstart(
    *,
    port: Annotated[
        int | None, Parameter(help="API port (default: examples/quickstart.yaml; 0 = any free).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        Parameter(help="Metrics port (default: examples/quickstart.yaml; 0 = any free)."),
    ] = None,
) -> None:
    """Run the signer with the whole vault locally (examples/quickstart.yaml) and a demo key.

    First run: creates ./quickstart-data (tokens in 0600 files), initializes the vault with three
    local KMS keys (2 of 3) and imports a generated demo key into the encrypted SQLite store.
    Later runs unseal by themselves. Prints the curl commands to list keys and sign.
    """
    from chamber.config import load_settings
    from chamber.logs import configure_logging
    from chamber.plugins import load_plugins
    from chamber.server import SignerServer
    from chamber.signer import build_signer

    config_path = example_config_path()
    if not config_path.is_file():
        _fail(
            f"{config_path} is missing: quickstart runs the repository's examples/quickstart.yaml, "
            "so run it from a clone of the repository installed with `pip install -e .`"
        )
    capture = SetupTokenCapture()
    try:
        os.environ.update(prepare_data_dir(DATA_DIR))
        settings = load_settings(
            config_path,
            overrides={"server.listen_port": port, "metrics.listen_port": metrics_port},
        )
        configure_logging(settings.logging.level, settings.logging.format)
        logging.getLogger("chamber.vault").addFilter(capture)
        signer = build_signer(settings, load_plugins())
        server = SignerServer(signer)
    except StartupError as error:
        _fail(error.message)
    except OSError as error:
        _fail(f"cannot prepare {DATA_DIR.resolve()}: {error.strerror or error}")
    server.install_signal_handlers()
    server.start_background()
    threading.Thread(
        target=_prepare_chamber, args=(server, capture), name="quickstart", daemon=True
    ).start()
    server.run()


def _prepare_chamber(server: SignerServer, capture: SetupTokenCapture) -> None:
    """Init the vault (first run), wait until it is unsealed with its keys loaded, make sure the
    demo key is in the encrypted store, and print the instructions."""
    try:
        pubkey = _ensure_demo_key(server, _wait_unsealed(server, capture))
    except ChamberError as error:
        print(f"containment-chamber quickstart: {error.message}", file=sys.stderr, flush=True)
        return
    except Exception:
        log.exception("quickstart set-up failed")
        return
    print(instructions(server, pubkey), flush=True)


def _wait_unsealed(server: SignerServer, capture: SetupTokenCapture) -> bool:
    """Block until the chamber signs and its encrypted keys are loaded; ``True`` if this call
    initialized it."""
    vault = server.signer.vault
    assert vault is not None  # examples/quickstart.yaml configures signer_state
    initialized = False
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if vault.signing_allowed and vault.status()["keys"] is not None:
            return initialized
        state = vault.state
        if state == "uninitialized":
            token = capture.take()
            if token is not None:
                vault.init(token, list(KMS_KEY_IDS), KMS_THRESHOLD)
                initialized = True
                log.info(
                    "quickstart: vault initialized (KMS-only, 2 of 3 local KMS keys)",
                    extra={"kms_key_ids": list(KMS_KEY_IDS)},
                )
                continue
        elif state in ("awaiting_registration", "kms_unsealed"):
            raise ChamberError(
                f"the chamber is in state {state}: it was initialized with operators, so it "
                "needs the operator ceremony (containment-chamber operator register / unseal); "
                "or delete ./quickstart-data to start over"
            )
        if time.monotonic() > deadline:
            error = vault.status()["seal"].get("kms_error")
            raise ChamberError(
                f"the chamber is still {state} after {READY_TIMEOUT_SECONDS:.0f} s"
                + (f" ({error})" if error else "")
                + "; see the log above"
            )
        time.sleep(0.05)


def _ensure_demo_key(server: SignerServer, fresh: bool) -> str:
    """The demo key's public key; generated and imported when the store does not have it."""
    from chamber.crypto.bls import CURVE_ORDER
    from chamber.keys.encrypted import EncryptedKeySource

    signer = server.signer
    pubkey_file = DATA_DIR / "pubkey"
    if not fresh and pubkey_file.exists():
        pubkey = pubkey_file.read_text(encoding="utf-8").strip()
        if signer.registry.get(pubkey) is not None:
            return pubkey
    source = signer.key_sources.get("sqlite")
    vault = signer.vault
    master = vault.master_key if vault is not None else None
    if not isinstance(source, EncryptedKeySource) or master is None:
        raise ChamberError("the encrypted SQLite key store is not configured or not unsealed")
    secret = 0
    while not 0 < secret < CURVE_ORDER:
        secret = int.from_bytes(secrets.token_bytes(32), "big")
    key, _inserted = source.import_secret(master.material, secret.to_bytes(32, "big"))
    signer.registry.add(key)
    signer.metrics.keys_active.labels(source.name).set(
        signer.registry.count_by_source().get(source.name, 0)
    )
    pubkey_file.write_text(key.pubkey_hex + "\n", encoding="utf-8")
    log.info(
        "quickstart: demo key generated and imported into the encrypted SQLite store",
        extra={"pubkey": key.pubkey_hex},
    )
    return key.pubkey_hex


def instructions(server: SignerServer, pubkey: str) -> str:
    import json

    data = DATA_DIR
    base = f"http://127.0.0.1:{server.port}"
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
    token = f'"Authorization: Bearer $(cat {data}/token)"'
    operator = f'"Authorization: Bearer $(cat {data}/operator-token)"'
    cli_token = f'CC_AUTH_TOKEN="$(cat {data}/operator-token)"'
    lines = [
        f"Containment Chamber quick start: signer at {base}, demo key {pubkey}",
        f"  data:       ./{data}/ (tokens in {data}/token and {data}/operator-token, mode 0600)",
        f"  list keys:  curl -s -H {token} {base}/api/v1/eth2/publicKeys",
        f"  sign:       curl -s -H {token} -H 'Content-Type: application/json' \\",
        f"                -d '{body}' \\",
        f"                {base}/api/v1/eth2/sign/{pubkey}",
        f"  vault:      curl -s -H {operator} {base}/api/v1/chamber/status",
        f"              {cli_token} containment-chamber operator status \\",
        f"                --auth-token env:CC_AUTH_TOKEN --signer-url {base}",
        f"  health:     curl -s {base}/healthcheck",
    ]
    if server.metrics_port is not None:
        lines.append(f"  metrics:    curl -s http://127.0.0.1:{server.metrics_port}/metrics")
    lines.append("Stop with Ctrl-C (in-flight requests are drained first); the next start unseals")
    lines.append("by itself. Development only: docs/vault.md says what production needs.")
    return "\n".join(lines) + "\n"
