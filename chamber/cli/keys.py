"""``containment-chamber keys ...``: validator key files, and the keys of a running signer.

``keys check`` loads key directories exactly as the server's filesystem key source would (same
parser, same decryption, same duplicate rule), so an operator can validate a directory before
pointing a running signer at it. Output is one line per key file, never secret material.

The other commands are HTTP clients of a running, unsealed signer's chamber key API
(``/api/v1/chamber/keys``), in the style of ``containment-chamber operator``: ``--signer-url``
(plain ``http://`` only to loopback unless ``--allow-plaintext-signer``), ``--auth-token env:VAR``
or ``-`` (never the token itself), the signer's JSON answer on standard output, problems as one
``containment-chamber: ...`` line on standard error; exit 2 for a usage error, 1 when the signer
refused or a key failed.

- ``keys generate``: new keys from BIP-39 mnemonics inside the signer; their deposit data is
  written as staking-deposit-cli writes it (``deposit_data-<unix seconds>.json``).
- ``keys import``: EIP-2335 keystores and raw secret keys, in batches of the signer's limit.
- ``keys list``: the encrypted stores' keys, as a table or JSON.
- ``keys activate`` / ``keys deactivate`` / ``keys delete``: by public key; ``delete`` writes the
  keys' slashing-protection interchange (EIP-3076) to a file, since a validator needs it to move.

Secrets (raw keys, keystore passwords, tokens) are read from files, the environment, standard
input or a prompt and never printed.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

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

keys_app = cyclopts.App(
    name="keys",
    help="Validator keys: check key files offline; generate, import, list, activate, "
    "deactivate and delete the keys of a running signer.",
)

BASE = "/api/v1/chamber/keys"
DEFAULT_SIGNER_URL = "http://localhost:9000"
#: The signer's default limit of keys per import request (``chamber.keys.import``); larger
#: selections are sent in batches.
IMPORT_BATCH = 100
#: The signer's default limit of public keys per activate / deactivate / delete request
#: (``chamber.keys.lifecycle``).
LIFECYCLE_BATCH = 500
MAX_PASSWORD_FILE_BYTES = 64 << 10
MAX_PUBKEYS_FILE_BYTES = 64 << 20
#: Seconds to wait for an answer to a key-changing request: just beyond the signer's default
#: ``request_timeout_seconds`` (600), after which it answers the keys not reached as timed out.
WRITE_TIMEOUT = 630.0
GWEI_PER_ETH = 10**9
#: Statuses of a per-key result that make a lifecycle command exit 1.
FAILED_STATUSES = frozenset({"error", "not_found"})
_SECRET_HEX = re.compile(r"(0[xX])?[0-9a-fA-F]{64}")

SignerUrl = Annotated[
    str, Parameter(name="--signer-url", help="Base URL of the signer's HTTP API.")
]
AllowPlaintext = Annotated[
    bool,
    Parameter(
        name="--allow-plaintext-signer",
        negative=(),
        help="Allow plain http:// to a signer that is not on this machine (trusted networks).",
    ),
]


def _token(scope: str) -> Parameter:
    return Parameter(
        name="--auth-token",
        allow_leading_hyphen=True,  # "-" (standard input) is a value, not a flag
        help=f"Token of a policy with the {scope} scope: env:VAR, or - for stdin.",
    )


ListToken = Annotated[str | None, _token("chamber_keys_list")]
GenerateToken = Annotated[str | None, _token("chamber_keys_generate")]
WriteToken = Annotated[str | None, _token("chamber_keys_write")]
DeleteToken = Annotated[str | None, _token("chamber_keys_delete")]
Store = Annotated[
    str | None,
    Parameter(name="--store", help="The encrypted key store (default: the signer's first)."),
]
PubkeysFile = Annotated[
    Path | None,
    Parameter(
        name="--pubkeys-file",
        help="File of public keys, one per line (blank lines and # comments ignored).",
    ),
]


def _batch_size(setting: str) -> Parameter:
    return Parameter(
        name="--batch-size",
        help=f"Keys per request (default: the signer's default limit; lower it if the signer's "
        f"{setting}.max_items_per_request is lower).",
    )


ImportBatch = Annotated[int, _batch_size("chamber.keys.import")]
LifecycleBatch = Annotated[int, _batch_size("chamber.keys.lifecycle")]


# ---------------------------------------------------------------------- keys check


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


# ---------------------------------------------------------------------- shared helpers


def _client(
    signer_url: str, allow_plaintext: bool, auth_token: str | None, timeout: float = 60
) -> SignerClient:
    """A client for the signer; the URL is checked before the token is read."""
    if auth_token is None:
        raise CliError("--auth-token env:VAR is required", 2)
    url = check_signer_url(signer_url, allow_plaintext)
    return SignerClient(url, resolve_secret_flag(auth_token, "--auth-token"), timeout)


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _note(message: str) -> None:
    print(f"containment-chamber: {message}", file=sys.stderr, flush=True)


def _results(answer: Any, expected: int, what: str) -> list[dict[str, Any]]:
    """The per-key results of an answer: a list of ``expected`` objects, in request order."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if (
        not isinstance(data, list)
        or len(data) != expected
        or not all(isinstance(entry, dict) for entry in data)
    ):
        raise CliError(f"the signer's answer has no per-{what} results")
    return data


def _batches(count: int, size: int) -> Iterator[tuple[int, int, int]]:
    """``(number, total, start)`` of each batch; progress goes to standard error."""
    total = (count + size - 1) // size
    for number, start in enumerate(range(0, count, size), start=1):
        if total > 1:
            end = min(start + size, count)
            _note(f"batch {number}/{total}: keys {start + 1}-{end} of {count}")
        yield number, total, start


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise CliError("--batch-size must be at least 1", 2)


def _shown(value: str) -> str:
    """``value`` for an error message, unless it looks like a secret key (32 bytes of hex)."""
    if _SECRET_HEX.fullmatch(value.strip()):
        return "a 32-byte hex value (not shown: is it a secret key?)"
    return repr(value if len(value) <= 120 else value[:117] + "...")


def _read_limited(path: Path, flag: str, limit: int) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {path}: {exc.strerror or exc}", 2) from None
    if len(raw) > limit:
        raise CliError(f"{flag}: {path} is larger than {limit} bytes", 2)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CliError(f"{flag}: {path} is not UTF-8 text", 2) from None


def _pubkeys(command: str, values: Sequence[str], pubkeys_file: Path | None) -> list[str]:
    """The public keys named on the command line and in ``--pubkeys-file``, normalized and
    without repeats; a malformed one is a usage error naming it."""
    from chamber.keys import normalize_pubkey_hex

    entries = [(f"argument {number}", value) for number, value in enumerate(values, start=1)]
    if pubkeys_file is not None:
        text = _read_limited(pubkeys_file, "--pubkeys-file", MAX_PUBKEYS_FILE_BYTES)
        for number, line in enumerate(text.splitlines(), start=1):
            value = line.split("#", 1)[0].strip()
            if value:
                entries.append((f"--pubkeys-file {pubkeys_file} line {number}", value))
    found: list[str] = []
    seen: set[str] = set()
    for where, value in entries:
        normalized = normalize_pubkey_hex(value)
        if normalized is None:
            raise CliError(
                f"keys {command}: {where}: {_shown(value)} is not a public key (0x and 96 hex "
                "digits: a 48-byte BLS public key)",
                2,
            )
        if normalized not in seen:
            seen.add(normalized)
            found.append(normalized)
    if not found:
        raise CliError(
            f"keys {command}: give at least one public key (as arguments or --pubkeys-file)", 2
        )
    return found


def _check_directory(directory: Path, flag: str) -> None:
    if not directory.is_dir():
        raise CliError(f"{flag}: {directory} is not a directory", 2)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CliError(f"{flag}: cannot create files in {directory} (permission denied)", 2)


def _write_new(path: Path, text: str, mode: int | None = None) -> None:
    """Create ``path`` with ``text``; never replaces an existing file (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
        if mode is not None:
            os.fchmod(handle.fileno(), mode)


def _write_stamped(
    directory: Path, name: Callable[[int], str], text: str, mode: int | None = None
) -> Path:
    """Write ``text`` to ``directory/name(<unix seconds>)``; if that file exists, the next
    second's name, and so on: an existing file is never replaced."""
    now = int(time.time())
    for stamp in range(now, now + 1000):
        path = directory / name(stamp)
        try:
            _write_new(path, text, mode)
        except FileExistsError:
            continue
        return path
    raise OSError(f"every file name from {name(now)} on is taken")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ---------------------------------------------------------------------- keys generate


@keys_app.command
def generate(
    *,
    count: Annotated[int, Parameter(name="--count", help="How many keys to generate.")],
    store: Store = None,
    withdrawal_address: Annotated[
        str | None,
        Parameter(
            name="--withdrawal-address",
            help="Execution address (EIP-55 mixed case) for 0x01 withdrawal credentials; the "
            "deposit data is written to --output-dir.",
        ),
    ] = None,
    compounding: Annotated[
        bool,
        Parameter(
            name="--compounding",
            negative=(),
            help="0x02 (compounding) credentials for --withdrawal-address instead of 0x01.",
        ),
    ] = False,
    bls_withdrawal: Annotated[
        bool,
        Parameter(
            name="--bls-withdrawal",
            negative=(),
            help="0x00 (BLS) withdrawal credentials from each key's mnemonic; the signer needs "
            "chamber.keys.generate.backup for these.",
        ),
    ] = False,
    amount_gwei: Annotated[
        int | None,
        Parameter(
            name="--amount-gwei",
            help="Deposit amount per key in gwei (default 32 ETH; up to 2048 ETH with "
            "--compounding).",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        Parameter(
            name="--output-dir",
            help="Where to write deposit_data-TIMESTAMP.json (TIMESTAMP: Unix seconds; default: "
            "the current directory).",
        ),
    ] = None,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    auth_token: GenerateToken = None,
    allow_plaintext_signer: AllowPlaintext = False,
) -> int:
    """Generate keys inside the signer, each from a new BIP-39 mnemonic that never leaves it
    (needs the chamber_keys_generate scope and chamber.keys.generate.enabled).

    Prints one result per key (generated or error) and, with --withdrawal-address or
    --bls-withdrawal, writes their deposit data as staking-deposit-cli does, never replacing an
    existing file. Exits 1 if any key failed.
    """
    try:
        wants_deposit = withdrawal_address is not None or bls_withdrawal
        body = _generate_body(
            count, store, withdrawal_address, compounding, bls_withdrawal, amount_gwei
        )
        directory = output_dir if output_dir is not None else Path()
        if wants_deposit:
            _check_directory(directory, "--output-dir")
        client = _client(signer_url, allow_plaintext_signer, auth_token, WRITE_TIMEOUT)
        answer = client.request("POST", f"{BASE}/generate", body)
        results = _results(answer, count, "key")
    except CliError as error:
        fail(error)
    except KeyboardInterrupt:
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        return 130
    output: dict[str, Any] = {"data": results, "mnemonic": answer.get("mnemonic")}
    deposits = answer.get("deposit_data")
    failed = any(result.get("status") != "generated" for result in results)
    if isinstance(deposits, list) and deposits:
        from chamber.crypto.derivation import deposit_data_filename, deposit_data_json

        try:
            # Read-only for owner and group, as staking-deposit-cli leaves it.
            path = _write_stamped(
                directory, deposit_data_filename, deposit_data_json(deposits), 0o440
            )
        except OSError as exc:
            output["deposit_data"] = deposits
            _print_json(output)
            _note(
                f"could not write the deposit data to {directory}: {_reason(exc)}; it is in the "
                "output above (deposit_data): save it, the signer does not keep it"
            )
            return 1
        output["deposit_data_file"] = str(path)
        _note(f"deposit data of {len(deposits)} keys written to {path}")
    _print_json(output)
    unprotected = [r for r in results if r.get("status") == "generated" and not r.get("backup")]
    if unprotected:
        _note(
            f"warning: no backup of the mnemonics of {len(unprotected)} generated keys exists "
            "(chamber.keys.generate.backup is off). Each key exists only in the encrypted key "
            "store: losing the store or the master key (all KMS keys, or the operators' "
            "credentials) loses the key for good"
        )
    return 1 if failed else 0


def _generate_body(
    count: int,
    store: str | None,
    withdrawal_address: str | None,
    compounding: bool,
    bls_withdrawal: bool,
    amount_gwei: int | None,
) -> dict[str, Any]:
    """The request body, with the checks that need no signer done here (exit 2)."""
    if count < 1:
        raise CliError("--count must be at least 1", 2)
    if withdrawal_address is not None and bls_withdrawal:
        raise CliError("give --withdrawal-address or --bls-withdrawal, not both", 2)
    if compounding and withdrawal_address is None:
        raise CliError("--compounding needs --withdrawal-address", 2)
    body: dict[str, Any] = {"count": count}
    if store is not None:
        body["store"] = store
    if withdrawal_address is not None:
        from chamber.crypto.derivation import DerivationError, execution_withdrawal_credentials

        try:
            execution_withdrawal_credentials(withdrawal_address, compounding=compounding)
        except DerivationError as error:
            raise CliError(f"--withdrawal-address: {error}", 2) from None
        body["withdrawal_address"] = withdrawal_address
        if compounding:
            body["compounding"] = True
    if bls_withdrawal:
        body["bls_withdrawal"] = True
    if amount_gwei is not None:
        if withdrawal_address is None and not bls_withdrawal:
            raise CliError(
                "--amount-gwei is the deposit amount: give --withdrawal-address or "
                "--bls-withdrawal too",
                2,
            )
        cap = (2048 if compounding else 32) * GWEI_PER_ETH
        if not GWEI_PER_ETH <= amount_gwei <= cap:
            raise CliError(f"--amount-gwei: must be between {GWEI_PER_ETH} and {cap}", 2)
        body["amount_gwei"] = amount_gwei
    return body


# ---------------------------------------------------------------------- keys import


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


@dataclass(frozen=True)
class _ImportEntry:
    """One key to import: a keystore's text, or a raw key's secret (``0x`` hex)."""

    file: str
    keystore: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    document: int | None = None

    def label(self) -> dict[str, Any]:
        found: dict[str, Any] = {"file": self.file}
        if self.document is not None:
            found["document"] = self.document
        return found


def _raw_key_entries(path: Path) -> list[_ImportEntry]:
    """The secret key(s) of a ``--raw-key-file`` (see
    :func:`chamber.keys.filesystem.read_raw_key_file`); problems never quote the content."""
    from chamber.keys.filesystem import KeyFileError, read_raw_key_file

    try:
        found = read_raw_key_file(path)
    except KeyFileError as exc:
        raise CliError(f"--raw-key-file {path}: {exc}", 2) from None
    return [
        _ImportEntry(str(path), secret="0x" + secret.hex(), document=document)
        for document, secret in found
    ]


@keys_app.command(name="import")
def import_(
    *files: Annotated[Path, cyclopts.Parameter(help="EIP-2335 keystore files (JSON).")],
    raw_key_file: Annotated[
        list[Path] | None,
        Parameter(
            name="--raw-key-file",
            negative=(),
            help="A file holding one raw secret key (0x + 64 hex digits) or a Web3Signer "
            "'type: file-raw' YAML descriptor; repeat for more.",
        ),
    ] = None,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    auth_token: WriteToken = None,
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
    batch_size: ImportBatch = IMPORT_BATCH,
    allow_plaintext_signer: AllowPlaintext = False,
) -> int:
    """Import EIP-2335 keystores (one password for all) and raw secret keys into a running,
    unsealed signer's encrypted key store (needs the chamber_keys_write scope).

    Prints the signer's result for each key (imported, duplicate or error) with its file; exits
    1 if any key could not be imported (a duplicate is not an error).
    """
    results: list[dict[str, Any]] = []
    try:
        if not files and not raw_key_file:
            raise CliError("keys import: give at least one keystore file or --raw-key-file", 2)
        _check_batch_size(batch_size)
        if auth_token is None:
            raise CliError("--auth-token env:VAR is required", 2)
        if auth_token == "-" and password_stdin and files:  # noqa: S105 (the stdin marker)
            raise CliError(
                "--auth-token - and --password-stdin would both read standard input; pass the "
                "token as env:VAR",
                2,
            )
        client = _client(signer_url, allow_plaintext_signer, auth_token, WRITE_TIMEOUT)
        entries: list[_ImportEntry] = []
        for path in files:
            try:
                entries.append(_ImportEntry(str(path), keystore=path.read_text("utf-8-sig")))
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise CliError(f"cannot read {path}: {reason}", 2) from None
        for path in raw_key_file or []:
            entries.extend(_raw_key_entries(path))
        password = _keystore_password(password_file, password_stdin) if files else ""
        for _number, _total, start in _batches(len(entries), batch_size):
            batch = entries[start : start + batch_size]
            keystores = [entry for entry in batch if entry.keystore is not None]
            raw = [entry for entry in batch if entry.secret is not None]
            body: dict[str, Any] = {}
            if keystores:
                body["keystores"] = [entry.keystore for entry in keystores]
                body["passwords"] = [password] * len(keystores)
            if raw:
                body["raw_keys"] = [{"secret": entry.secret} for entry in raw]
            if store is not None:
                body["store"] = store
            answer = client.request("POST", f"{BASE}/import", body)
            data = _results(answer, len(batch), "key")
            # The signer answers the keystores first, then the raw keys, each in order.
            for entry, result in zip([*keystores, *raw], data, strict=True):
                results.append({**entry.label(), **result})
    except CliError as error:
        _print_results(results)  # the batches already sent are done: say which
        fail(error)
    except KeyboardInterrupt:
        _print_results(results)
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        return 130
    _print_results(results)
    return 1 if any(r.get("status") == "error" for r in results) else 0


def _print_results(results: list[dict[str, Any]], **extra: Any) -> None:
    if results:
        _print_json({"data": results, **extra})


# ---------------------------------------------------------------------- keys list


@keys_app.command(name="list")
def list_(
    *,
    status: Annotated[
        Literal["active", "inactive"] | None,
        Parameter(name="--status", help="Only keys of this status."),
    ] = None,
    store: Store = None,
    json_output: Annotated[
        bool,
        Parameter(name="--json", negative=(), help="The signer's JSON answer instead of a table."),
    ] = False,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    auth_token: ListToken = None,
    allow_plaintext_signer: AllowPlaintext = False,
) -> int:
    """List the keys of the signer's encrypted key stores (needs the chamber_keys_list scope):
    public key, store, status, origin, creation time, whether a mnemonic backup exists and
    whether the key is loaded for signing on this replica."""
    params: list[tuple[str, str]] = [("status", status)] if status is not None else []
    if store is not None:
        params.append(("store", store))
    try:
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        answer = client.request("GET", BASE, params=params)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
            raise CliError("the signer's answer has no list of keys")
    except CliError as error:
        fail(error)
    except KeyboardInterrupt:
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        return 130
    if json_output:
        _print_json({"data": data})
    else:
        print(_table(data))
    return 0


def _table(keys: list[dict[str, Any]]) -> str:
    def created(value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
        return "-"

    def yes(value: Any) -> str:
        return "yes" if value else "no"

    header = ("PUBKEY", "STORE", "STATUS", "ORIGIN", "CREATED (UTC)", "BACKUP", "LOADED")
    rows = [header] + [
        (
            str(key.get("pubkey", "-")),
            str(key.get("store", "-")),
            str(key.get("status", "-")),
            str(key.get("origin", "-")),
            created(key.get("created_at")),
            yes(key.get("backup")),
            yes(key.get("loaded")),
        )
        for key in keys
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    counts: dict[str, int] = {}
    for key in keys:
        counts[str(key.get("status"))] = counts.get(str(key.get("status")), 0) + 1
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    lines.append(f"{len(keys)} keys" + (f" ({summary})" if summary else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------- activate, deactivate


def _set_status(
    command: str,
    status: str,
    pubkeys: Sequence[str],
    pubkeys_file: Path | None,
    signer_url: str,
    auth_token: str | None,
    allow_plaintext_signer: bool,
    batch_size: int,
) -> int:
    results: list[dict[str, Any]] = []
    try:
        selected = _pubkeys(command, pubkeys, pubkeys_file)
        _check_batch_size(batch_size)
        client = _client(signer_url, allow_plaintext_signer, auth_token, WRITE_TIMEOUT)
        for _number, _total, start in _batches(len(selected), batch_size):
            batch = selected[start : start + batch_size]
            answer = client.request("PATCH", BASE, {"pubkeys": batch, "status": status})
            results.extend(_results(answer, len(batch), "key"))
    except CliError as error:
        _print_results(results)
        fail(error)
    except KeyboardInterrupt:
        _print_results(results)
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        return 130
    _print_results(results)
    return 1 if any(r.get("status") in FAILED_STATUSES for r in results) else 0


Pubkeys = Annotated[str, Parameter(help="Public keys (0x + 96 hex digits).")]


@keys_app.command
def activate(
    *pubkeys: Pubkeys,
    pubkeys_file: PubkeysFile = None,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    auth_token: WriteToken = None,
    batch_size: LifecycleBatch = LIFECYCLE_BATCH,
    allow_plaintext_signer: AllowPlaintext = False,
) -> int:
    """Activate stored keys: they load and sign again, on every replica (needs the
    chamber_keys_write scope; unsealed).

    Prints one result per key (activated, unchanged, not_found or error); exits 1 if any key
    was not found or failed.
    """
    return _set_status(
        "activate",
        "active",
        pubkeys,
        pubkeys_file,
        signer_url,
        auth_token,
        allow_plaintext_signer,
        batch_size,
    )


@keys_app.command
def deactivate(
    *pubkeys: Pubkeys,
    pubkeys_file: PubkeysFile = None,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    auth_token: WriteToken = None,
    batch_size: LifecycleBatch = LIFECYCLE_BATCH,
    allow_plaintext_signer: AllowPlaintext = False,
) -> int:
    """Deactivate stored keys: they stop signing (the answer comes once no signing request
    holds them) but stay in the store (needs the chamber_keys_write scope).

    Prints one result per key (deactivated, unchanged, not_found or error); exits 1 if any key
    was not found or failed.
    """
    return _set_status(
        "deactivate",
        "inactive",
        pubkeys,
        pubkeys_file,
        signer_url,
        auth_token,
        allow_plaintext_signer,
        batch_size,
    )


# ---------------------------------------------------------------------- delete


def _confirm_delete(pubkeys: Sequence[str], url: str, export: str) -> bool:
    shown = "\n".join(f"  {pubkey}" for pubkey in pubkeys[:10])
    more = f"\n  ... and {len(pubkeys) - 10} more" if len(pubkeys) > 10 else ""
    print(
        f"Delete {len(pubkeys)} key(s) from the signer at {url}:\n{shown}{more}\n"
        "They stop signing at once and are removed from the encrypted key store; without another "
        f"copy (keystore, mnemonic backup) they are gone for good. Their slashing-protection "
        f"history will be written to {export}.\nType 'yes' to delete: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


@keys_app.command
def delete(
    *pubkeys: Pubkeys,
    pubkeys_file: PubkeysFile = None,
    slashing_export: Annotated[
        Path | None,
        Parameter(
            name="--slashing-export",
            help="Where to write the keys' slashing-protection interchange (EIP-3076); never "
            "replaced if it exists. Default: slashing-export-TIMESTAMP.json (Unix seconds) here.",
        ),
    ] = None,
    yes: Annotated[
        bool,
        Parameter(
            name="--yes",
            negative=(),
            help="Delete without asking (required when standard input is not a terminal).",
        ),
    ] = False,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    auth_token: DeleteToken = None,
    batch_size: LifecycleBatch = LIFECYCLE_BATCH,
    allow_plaintext_signer: AllowPlaintext = False,
) -> int:
    """Delete keys from the signer's encrypted key stores (needs the chamber_keys_delete scope).

    Asks for confirmation unless --yes. The signer answers once nothing can sign with the keys
    any more, with their slashing-protection history, which is written to --slashing-export:
    import it wherever the keys will sign next. Prints one result per key (deleted, not_found or
    error); exits 1 if any key was not found or failed.
    """
    results: list[dict[str, Any]] = []
    interchange: dict[str, Any] | None = None
    try:
        selected = _pubkeys("delete", pubkeys, pubkeys_file)
        _check_batch_size(batch_size)
        if slashing_export is not None:
            if slashing_export.exists() or slashing_export.is_symlink():
                raise CliError(
                    f"--slashing-export: {slashing_export} exists; refusing to replace it "
                    "(choose a new file name)",
                    2,
                )
            _check_directory(slashing_export.parent, "--slashing-export")
        else:
            _check_directory(Path(), "--slashing-export (default: the current directory)")
        if not yes and not sys.stdin.isatty():
            raise CliError(
                "keys delete: standard input is not a terminal, so there is nobody to confirm "
                "the deletion; pass --yes to delete without asking",
                2,
            )
        client = _client(signer_url, allow_plaintext_signer, auth_token, WRITE_TIMEOUT)
        if not yes:
            where = str(slashing_export or "slashing-export-<unix seconds>.json")
            if not _confirm_delete(selected, client.url, where):
                raise CliError("keys delete: not confirmed; nothing was deleted")
        for _number, _total, start in _batches(len(selected), batch_size):
            batch = selected[start : start + batch_size]
            answer = client.request("DELETE", BASE, {"pubkeys": batch})
            batch_results = _results(answer, len(batch), "key")
            exported = answer.get("slashing_protection")
            if not isinstance(exported, dict) or not isinstance(exported.get("data"), list):
                raise CliError("the signer's answer has no slashing_protection interchange")
            results.extend(batch_results)
            if interchange is None:
                interchange = {"metadata": exported.get("metadata"), "data": []}
            interchange["data"].extend(exported["data"])
    except CliError as error:
        _finish_delete(results, interchange, slashing_export)
        fail(error)
    except KeyboardInterrupt:
        _finish_delete(results, interchange, slashing_export)
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        return 130
    saved = _finish_delete(results, interchange, slashing_export)
    failed = any(r.get("status") in FAILED_STATUSES for r in results)
    return 1 if failed or not saved else 0


def _finish_delete(
    results: list[dict[str, Any]], interchange: dict[str, Any] | None, target: Path | None
) -> bool:
    """Write the slashing-protection interchange of what was answered, then print the results;
    ``False`` if it could not be written (it is printed instead)."""
    if interchange is None:
        _print_results(results)
        return True
    text = orjson.dumps(interchange, option=orjson.OPT_INDENT_2).decode() + "\n"
    try:
        if target is not None:
            _write_new(target, text)
            path = target
        else:
            path = _write_stamped(Path(), lambda stamp: f"slashing-export-{stamp}.json", text)
    except OSError as exc:
        where = target if target is not None else "the current directory"
        _print_results(results, slashing_protection=interchange)
        _note(
            f"could not write the slashing-protection interchange to {where}: {_reason(exc)}; "
            "it is in the output above (slashing_protection): save it before the keys sign "
            "anywhere else"
        )
        return False
    _print_results(results, slashing_protection_file=str(path))
    _note(
        f"slashing-protection history of {len(interchange['data'])} of the keys written to "
        f"{path}: import it wherever they sign next"
    )
    return True
