"""``containment-chamber slashing``: interchange import/export, prune, watermark repair.

Each command runs either through a running signer's API (``--signer-url`` with
``--auth-token env:VAR``; needed for SQLite while the signer runs, since it holds the database)
or offline against the backend configured in ``-c CONFIG``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import cyclopts
import orjson
from cyclopts import Parameter

from chamber.cli.remote import (
    CliError,
    SignerClient,
    check_signer_url,
    fail,
    resolve_secret_flag,
)
from chamber.errors import ChamberError
from chamber.slashing import SlashingBackend

slashing_app = cyclopts.App(name="slashing", help="Slashing-protection data (EIP-3076).")

Config = Annotated[Path | None, Parameter(name=["--config", "-c"])]
SignerUrl = Annotated[str | None, Parameter(name="--signer-url")]
AuthToken = Annotated[
    str | None, Parameter(name="--auth-token", allow_leading_hyphen=True)  # "-" is stdin
]


@contextmanager
def _offline_backend(config: Path | None) -> Iterator[SlashingBackend]:
    from chamber.config import load_settings
    from chamber.plugins import load_plugins
    from chamber.signer import resolve_network

    settings = load_settings(config)
    network = resolve_network(settings)
    provider = load_plugins().provider(
        "chamber_slashing_backends", settings.anti_slashing.backend, "anti_slashing.backend"
    )
    backend: SlashingBackend = provider.cls.from_config(
        settings.anti_slashing.backend_settings(), network.genesis_validators_root
    )
    try:
        yield backend
    finally:
        backend.close()


def _run(
    config: Path | None,
    signer_url: str | None,
    auth_token: str | None,
    allow_plaintext_signer: bool,
    remote: Callable[[SignerClient], Any],
    offline: Callable[[SlashingBackend], Any],
) -> Any:
    try:
        if signer_url is not None:
            if auth_token is None:
                raise CliError("--auth-token env:VAR is required with --signer-url", 2)
            client = SignerClient(
                check_signer_url(signer_url, allow_plaintext_signer),
                resolve_secret_flag(auth_token, "--auth-token"),
            )
            return remote(client)
        if config is None:
            raise CliError("give -c CONFIG (offline) or --signer-url (through a running signer)", 2)
        with _offline_backend(config) as backend:
            return offline(backend)
    except CliError as error:
        fail(error)
    except ChamberError as error:
        fail(CliError(error.message, 2 if error.status >= 500 else 1))


def _print(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@slashing_app.command(name="import")
def import_(
    file: Path,
    /,
    *,
    config: Config = None,
    signer_url: SignerUrl = None,
    auth_token: AuthToken = None,
    allow_plaintext_signer: bool = False,
) -> None:
    """Import an EIP-3076 interchange FILE: all or nothing, for this network only."""
    try:
        document = file.read_bytes()
    except OSError as exc:
        fail(CliError(f"cannot read {file}: {exc.strerror}", 2))

    def offline(backend: SlashingBackend) -> dict[str, int]:
        report = backend.import_interchange(document)
        return {
            "validators": report.validators,
            "blocks_written": report.blocks_written,
            "attestations_written": report.attestations_written,
        }

    _print(
        _run(
            config,
            signer_url,
            auth_token,
            allow_plaintext_signer,
            lambda c: c.request("POST", "/api/v1/slashing/import", document),
            offline,
        )
    )


@slashing_app.command
def export(
    *,
    pubkey: list[str] | None = None,
    output: Annotated[Path | None, Parameter(name=["--output", "-o"])] = None,
    config: Config = None,
    signer_url: SignerUrl = None,
    auth_token: AuthToken = None,
    allow_plaintext_signer: bool = False,
) -> None:
    """Export slashing-protection history (complete EIP-3076 format), for --pubkey keys or all."""
    keys = [bytes.fromhex(p.lower().removeprefix("0x")) for p in pubkey or []]
    document = _run(
        config,
        signer_url,
        auth_token,
        allow_plaintext_signer,
        lambda c: c.request(
            "GET", "/api/v1/slashing/export", params=[("pubkey", p) for p in pubkey or []]
        ),
        lambda b: b.export_interchange(keys or None),
    )
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    if output is None:
        sys.stdout.write(text.decode() + "\n")
    else:
        output.write_bytes(text + b"\n")


@slashing_app.command
def prune(
    *,
    keep_epochs: int,
    config: Config = None,
    signer_url: SignerUrl = None,
    auth_token: AuthToken = None,
    allow_plaintext_signer: bool = False,
) -> None:
    """Delete history older than KEEP_EPOCHS before each validator's newest record.

    Floors are raised so that deleted history keeps protecting: nothing at or below it can be
    signed afterwards.
    """
    if keep_epochs < 0:
        fail(CliError("--keep-epochs must not be negative", 2))

    def offline(backend: SlashingBackend) -> dict[str, int]:
        report = backend.prune(keep_epochs)
        return {
            "blocks_deleted": report.blocks_deleted,
            "attestations_deleted": report.attestations_deleted,
        }

    _print(
        _run(
            config,
            signer_url,
            auth_token,
            allow_plaintext_signer,
            lambda c: c.request("POST", "/api/v1/slashing/prune", {"keep_epochs": keep_epochs}),
            offline,
        )
    )


@slashing_app.command(name="set-watermark")
def set_watermark(
    *,
    pubkey: str,
    slot: int | None = None,
    source_epoch: int | None = None,
    target_epoch: int | None = None,
    config: Config = None,
    signer_url: SignerUrl = None,
    auth_token: AuthToken = None,
    allow_plaintext_signer: bool = False,
) -> None:
    """After losing slashing data: refuse every block at or below SLOT and every attestation
    with target at or below TARGET_EPOCH (or source below SOURCE_EPOCH) for PUBKEY."""
    if slot is None and source_epoch is None and target_epoch is None:
        fail(CliError("give at least one of --slot, --source-epoch, --target-epoch", 2))
    body = {
        "pubkey": pubkey,
        "slot": slot,
        "source_epoch": source_epoch,
        "target_epoch": target_epoch,
    }

    def offline(backend: SlashingBackend) -> dict[str, Any]:
        key = bytes.fromhex(pubkey.lower().removeprefix("0x"))
        if len(key) != 48:
            raise CliError("--pubkey must be a 48-byte hex public key", 2)
        backend.set_watermark(
            key, block_slot=slot, source_epoch=source_epoch, target_epoch=target_epoch
        )
        return body

    _print(
        _run(
            config,
            signer_url,
            auth_token,
            allow_plaintext_signer,
            lambda c: c.request("POST", "/api/v1/slashing/watermark", body),
            offline,
        )
    )


@slashing_app.command(name="check-db")
def check_db(*, config: Config = None) -> None:
    """Integrity check of the configured slashing database (offline). Exit 1 on problems."""
    problems = _run(config, None, None, False, lambda c: None, lambda b: b.integrity_check())
    _print({"problems": problems})
    if problems:
        sys.exit(1)
