"""``containment-chamber keys ...``: validator key files.

``keys check`` loads key directories exactly as the server's filesystem key source would (same
parser, same decryption, same duplicate rule), so an operator can validate a directory before
pointing a running signer at it. Output is one line per key file, never secret material.

``keys import`` sends EIP-2335 keystores to a running, unsealed signer, which decrypts them and
stores them in one of its encrypted key stores (``POST /api/v1/chamber/keys/import``).
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import cyclopts
import orjson

from chamber.cli.remote import (
    CliError,
    SignerClient,
    check_signer_url,
    fail,
    resolve_secret_flag,
)

keys_app = cyclopts.App(
    name="keys",
    help="Validator key files: check them offline, import keystores into a running signer.",
)

#: The signer's limit of keystores per import request; larger selections are sent in batches.
IMPORT_BATCH = 100
MAX_PASSWORD_FILE_BYTES = 64 << 10


@keys_app.command
def check(
    *paths: Annotated[Path, cyclopts.Parameter(help="Directories (non-recursive) or key files.")],
    concurrency: Annotated[
        int | None,
        cyclopts.Parameter(help="Keystores decrypted in parallel (default: CPU count)."),
    ] = None,
) -> int:
    """Load key files as the server would; print one line per file; exit 1 if any failed.

    Each line is ``ok <path> <pubkey>`` or ``error <path>: <reason>``. An empty selection also
    exits 1: checking a directory that holds no keys is almost always a wrong path.
    """
    from chamber.keys.filesystem import check_paths

    if not paths:
        print("keys check: give at least one directory or key file", file=sys.stderr)
        return 2
    if concurrency is not None and concurrency < 1:
        print("keys check: --concurrency must be at least 1", file=sys.stderr)
        return 2

    show_progress = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rdecrypting keystores: {done}/{total}", end=end, file=sys.stderr, flush=True)

    statuses = check_paths(
        [str(path) for path in paths],
        load_concurrency=concurrency,
        progress=progress if show_progress else None,
    )
    failed = 0
    for status in statuses:
        if status.status == "ok":
            print(f"ok     {status.path}  {status.pubkey}")
        else:
            failed += 1
            print(f"error  {status.path}: {status.reason}")
    loaded = len(statuses) - failed
    if not statuses:
        print("no key files found (looked for *.yaml, *.yml, *.json)")
        return 1
    print(f"{loaded} ok, {failed} failed")
    return 1 if failed else 0


def _keystore_password(password_file: Path | None, password_stdin: bool) -> str:
    password = _read_keystore_password(password_file, password_stdin)
    try:
        password.encode("utf-8")
    except UnicodeError:
        raise CliError("the keystore password is not valid UTF-8 text", 2) from None
    return password


def _read_keystore_password(password_file: Path | None, password_stdin: bool) -> str:
    if password_file is not None and password_stdin:
        raise CliError("give --password-file or --password-stdin, not both", 2)
    if password_file is not None:
        try:
            raw = password_file.read_bytes()
        except OSError as exc:
            raise CliError(
                f"--password-file: cannot read {password_file}: {exc.strerror}", 2
            ) from None
        if len(raw) > MAX_PASSWORD_FILE_BYTES:
            raise CliError(f"--password-file: {password_file} is too large for a password", 2)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CliError(f"--password-file: {password_file} is not UTF-8 text", 2) from None
        # EIP-2335 normalisation drops control characters anyway; a trailing newline is the
        # usual way such files end.
        return text.rstrip("\r\n")
    if password_stdin:
        try:
            line = sys.stdin.readline()
        except UnicodeError:
            raise CliError("--password-stdin: the input is not valid UTF-8 text", 2) from None
        if not line:
            raise CliError("--password-stdin: nothing was read from standard input", 2)
        return line.rstrip("\r\n")
    try:
        return getpass.getpass("Keystore password: ")
    except EOFError:
        raise CliError("no keystore password was entered", 2) from None


@keys_app.command(name="import")
def import_(
    *files: Annotated[Path, cyclopts.Parameter(help="EIP-2335 keystore files (JSON).")],
    signer_url: Annotated[
        str, cyclopts.Parameter(name="--signer-url", help="Base URL of the signer's HTTP API.")
    ] = "http://localhost:9000",
    auth_token: Annotated[
        str | None,
        cyclopts.Parameter(
            name="--auth-token",
            allow_leading_hyphen=True,  # "-" (standard input) is a value, not a flag
            help="Token of a policy with the chamber_keys_write scope: env:VAR, or - for stdin.",
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        cyclopts.Parameter(
            name="--password-file", help="File holding the password of every keystore given."
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        cyclopts.Parameter(
            name="--password-stdin",
            negative=(),
            help="Read the keystores' password from one line of standard input.",
        ),
    ] = False,
    store: Annotated[
        str | None,
        cyclopts.Parameter(
            name="--store", help="The encrypted key store to import into (default: the first)."
        ),
    ] = None,
    allow_plaintext_signer: Annotated[
        bool,
        cyclopts.Parameter(
            name="--allow-plaintext-signer",
            negative=(),
            help="Allow plain http:// to a signer that is not on this machine.",
        ),
    ] = False,
) -> int:
    """Import EIP-2335 keystores (one password for all) into a running, unsealed signer.

    Prints the signer's result for each file (imported, duplicate or error); exits 1 if any
    keystore could not be imported (a duplicate is not an error).
    """
    results: list[dict[str, Any]] = []
    try:
        if not files:
            raise CliError("keys import: give at least one keystore file", 2)
        if auth_token is None:
            raise CliError("--auth-token env:VAR is required", 2)
        if auth_token == "-" and password_stdin:  # noqa: S105 (the stdin marker)
            raise CliError(
                "--auth-token - and --password-stdin would both read standard input; pass the "
                "token as env:VAR",
                2,
            )
        client = SignerClient(
            check_signer_url(signer_url, allow_plaintext_signer),
            resolve_secret_flag(auth_token, "--auth-token"),
        )
        texts: list[str] = []
        for path in files:
            try:
                texts.append(path.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise CliError(f"cannot read {path}: {reason}", 2) from None
        password = _keystore_password(password_file, password_stdin)
        for start in range(0, len(texts), IMPORT_BATCH):
            batch = texts[start : start + IMPORT_BATCH]
            body: dict[str, Any] = {"keystores": batch, "passwords": [password] * len(batch)}
            if store is not None:
                body["store"] = store
            answer = client.request("POST", "/api/v1/chamber/keys/import", body)
            data = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(data, list) or len(data) != len(batch):
                raise CliError("the signer's answer has no per-keystore results")
            for offset, result in enumerate(data):
                results.append({"file": str(files[start + offset]), **result})
    except CliError as error:
        _print_results(results)  # the batches already sent are done: say which
        fail(error)
    except KeyboardInterrupt:
        _print_results(results)
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        return 130
    _print_results(results)
    return 1 if any(r.get("status") == "error" for r in results) else 0


def _print_results(results: list[dict[str, Any]]) -> None:
    if results:
        print(orjson.dumps({"data": results}, option=orjson.OPT_INDENT_2).decode())
