"""Validator keys from files: Web3Signer YAML descriptors and EIP-2335 keystores.

Each configured path is a directory (scanned non-recursively; dot-files are ignored) or a single
file. Three kinds of file are recognised:

``*.yaml`` / ``*.yml`` -- Web3Signer key configuration files, one or more documents separated by
    ``---``. ``type: file-raw`` carries ``privateKey`` (hex, ``0x`` optional);
    ``type: file-keystore`` names ``keystoreFile`` and ``keystorePasswordFile``, relative paths
    being resolved against the YAML file's directory (as Web3Signer does). ``keyType``, when
    present, must be ``BLS``. Any other ``type`` is an error naming it. A keystore referenced by a
    descriptor is not loaded a second time as a standalone keystore.

``*.json`` -- standalone EIP-2335 keystores. The password is read from a sibling file with the
    same stem: ``<stem>.txt`` first, then ``<stem>.password``. ``.txt`` is the convention of
    Web3Signer's and Teku's bulk keystore loading (``--keystores-passwords-path`` /
    ``--validator-keys``: "same name as the keystore, ``.txt`` extension"); ``.password`` is the
    name our own descriptor examples use. Password files are read as UTF-8 (a leading BOM is
    dropped) and otherwise used verbatim: EIP-2335 normalisation already strips the trailing
    newline, being a control code. A ``deposit_data-*.json`` list written by the deposit CLI next
    to the keystores is recognised and skipped rather than reported.

Decryption is the slow part (scrypt at n=2^18 costs ~0.6 s of one core and 256 MiB each), so the
keystores are decrypted in a :class:`~concurrent.futures.ProcessPoolExecutor` started with
``spawn`` (safe in a process that already runs server threads, unlike ``fork``). Workers only
return the 32-byte secrets or an error reason; BLS handles and public keys are built here, in the
parent, with the configured backend. No pool is started for zero or one keystore, and the pool
is capped so the scrypt working sets fit in available memory.

Threads vs processes, measured on a 2-core machine at the real n=2^18 (best of 4-6 runs; the
machine was shared, medians were noisier): 4 keystores serial 2.41 s, 2 threads 1.26 s,
2 spawn processes 1.31 s; 8 keystores 4.77 / 2.55 / 2.59 s. ``hashlib.scrypt`` releases the GIL
(CPython wraps ``EVP_PBE_scrypt`` in ``Py_BEGIN_ALLOW_THREADS``), so both scale ~1.85x and differ
only by the pool's ~0.1 s start-up. Processes are kept: equal throughput, and a worker killed by
the OOM killer takes down that worker, not the signer (what it had not finished is then retried
serially in this process, one scrypt working set at a time).

Every file that fails yields one :class:`~chamber.errors.KeyLoadError` ``(path, reason)``; the rest
load. Secret bytes and passwords never appear in messages or logs: YAML and JSON parse errors are
rebuilt from the parser's problem and position only, because their default text quotes the
offending line, which for a ``file-raw`` descriptor is the private key.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import yaml

from chamber.crypto.bls import CURVE_ORDER, BlsBackend
from chamber.crypto.keystore import KeystoreError, decrypt_worker, kdf_memory, validate_keystore
from chamber.errors import ConfigError, KeyLoadError
from chamber.keys import KeyLoadResult, ValidatorKey

__all__ = [
    "FileStatus",
    "FilesystemKeySource",
    "KeyFileError",
    "LoadStats",
    "ProgressCallback",
    "check_paths",
    "read_raw_key_file",
]

log = logging.getLogger("chamber.keys.filesystem")

#: ``progress(done, total)``: called in the loading thread after each keystore decryption.
ProgressCallback = Callable[[int, int], None]

_YAML_SUFFIXES = frozenset({".yaml", ".yml"})
_JSON_SUFFIXES = frozenset({".json"})
_PASSWORD_SUFFIXES = (".txt", ".password")
#: Far above any real descriptor file or keystore (~1 KB); guards against reading a stray
#: multi-gigabyte file into memory because it happens to end in ``.json``.
_MAX_FILE_BYTES = 16 << 20
_MAX_PASSWORD_BYTES = 64 << 10
_SECRET_LENGTH = 32
_PUBKEY_LENGTH = 48


@dataclass(frozen=True, slots=True)
class FileStatus:
    """One line of ``keys check``: a file (or descriptor document) and whether it loaded."""

    path: str
    status: Literal["ok", "error"]
    pubkey: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LoadStats:
    """What the last load did; logged, and lets tests see that the pool was really used."""

    loaded: int
    failed: int
    decrypted: int
    workers: int
    elapsed: float


@dataclass(slots=True)
class _Job:
    """A key found by the scan, not yet turned into a BLS key.

    ``secret`` is set for raw keys; keystores carry ``keystore`` and ``password`` until the
    decryption pass fills ``secret`` in. ``context`` prefixes reasons for keys that come through a
    descriptor ("keystoreFile x.json: ...") so the operator sees which file is at fault.
    """

    path: str
    secret: bytes | None = field(default=None, repr=False)
    keystore: Mapping[str, Any] | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    expected_pubkey: bytes | None = None
    context: str = ""
    error: str | None = None


class _FileProblem(Exception):
    """Internal: one file's reason for failing, turned into a KeyLoadError by the scanner."""


# --------------------------------------------------------------------------------------------
# Reading files without ever quoting their content


def _read_bytes(path: Path, limit: int = _MAX_FILE_BYTES) -> bytes:
    """The file's bytes; problems are worded to follow a file name ("x.json: does not exist")."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise _FileProblem("does not exist") from None
    except IsADirectoryError:
        raise _FileProblem("is a directory") from None
    except OSError as exc:
        raise _FileProblem(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        raise _FileProblem(f"larger than {limit} bytes, not a key file")
    return data


def _decode(data: bytes, encoding: str = "utf-8") -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        # The exception text quotes the offending byte; give the offset only.
        raise _FileProblem(f"not valid UTF-8 (byte {exc.start})") from None


def _read_password(path: Path, label: str) -> str:
    """A password file's text (BOM dropped); problems name ``label`` and the path."""
    try:
        return _decode(_read_bytes(path, _MAX_PASSWORD_BYTES), "utf-8-sig")
    except _FileProblem as exc:
        raise _FileProblem(f"{label} {path}: {exc}") from None


def _read_json(path: Path) -> Any:
    text = _decode(_read_bytes(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _FileProblem(
            f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise _FileProblem("invalid JSON: nested too deeply") from None


def _yaml_documents(path: Path) -> list[Any]:
    text = _decode(_read_bytes(path))
    try:
        # BaseLoader: every scalar stays a string, so an unquoted ``privateKey: 0x...`` is not
        # turned into an int (or, for some digit strings, a float) and nothing else is constructed.
        documents = list(yaml.load_all(text, Loader=yaml.BaseLoader))
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        raise _FileProblem(f"invalid YAML: {exc.problem}{where}") from None
    except yaml.YAMLError as exc:
        raise _FileProblem(f"invalid YAML ({type(exc).__name__})") from None
    return [doc for doc in documents if doc not in (None, "")]


def _parse_hex_secret(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _FileProblem("privateKey must be a hex string")
    body = value.strip()
    body = body[2:] if body[:2] in ("0x", "0X") else body
    if len(body) != 2 * _SECRET_LENGTH:
        raise _FileProblem(f"privateKey must be {_SECRET_LENGTH} bytes of hex")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise _FileProblem("privateKey is not valid hex") from None


def _keystore_pubkey(keystore: Mapping[str, Any]) -> bytes | None:
    """The keystore's optional ``pubkey`` field, checked later against the derived key."""
    value = keystore.get("pubkey")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _FileProblem("keystore pubkey field must be a hex string")
    body = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        pubkey = bytes.fromhex(body)
    except ValueError:
        raise _FileProblem("keystore pubkey field is not valid hex") from None
    if len(pubkey) != _PUBKEY_LENGTH:
        raise _FileProblem(f"keystore pubkey field must be {_PUBKEY_LENGTH} bytes")
    return pubkey


def _keystore_job(path: str, keystore: Any, password: str | None, context: str = "") -> _Job:
    try:
        validate_keystore(keystore)
    except KeystoreError as exc:
        raise _FileProblem(f"{context}{exc}") from None
    try:
        expected = _keystore_pubkey(keystore)
    except _FileProblem as exc:
        raise _FileProblem(f"{context}{exc}") from None
    return _Job(
        path, keystore=keystore, password=password, expected_pubkey=expected, context=context
    )


def _is_deposit_data(document: Any) -> bool:
    """A deposit CLI ``deposit_data-*.json``: a list of objects with ``deposit_data_root``."""
    return (
        isinstance(document, list)
        and bool(document)
        and all(isinstance(item, dict) and "deposit_data_root" in item for item in document)
    )


# --------------------------------------------------------------------------------------------
# Scanning


def _resolved(path: Path) -> Path:
    """Identity of a file for de-duplication (symlinks followed where possible)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # symlink loop: keep the path; reading it will fail
        return path.absolute()


def _candidate_files(
    paths: Sequence[str],
) -> tuple[list[tuple[int, Path]], list[tuple[int, KeyLoadError]]]:
    """Files to look at, in a stable order (paths as given, directory entries sorted by name)."""
    files: list[tuple[int, Path]] = []
    errors: list[tuple[int, KeyLoadError]] = []
    seen: set[Path] = set()
    order = 0

    def add(path: Path) -> None:
        nonlocal order
        resolved = _resolved(path)
        if resolved not in seen:
            seen.add(resolved)
            files.append((order, path))
            order += 1

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                entries = sorted(os.scandir(path), key=lambda entry: entry.name)
            except OSError as exc:
                errors.append(
                    (order, KeyLoadError(str(path), f"cannot list directory: {exc.strerror}"))
                )
                order += 1
                continue
            for entry in entries:
                suffix = Path(entry.name).suffix.lower()
                if entry.name.startswith(".") or suffix not in _YAML_SUFFIXES | _JSON_SUFFIXES:
                    continue
                try:
                    is_file = entry.is_file()
                except OSError:
                    is_file = False
                if is_file:
                    add(path / entry.name)
        elif path.exists():
            if path.suffix.lower() in _YAML_SUFFIXES | _JSON_SUFFIXES:
                add(path)
            else:
                errors.append((order, KeyLoadError(str(path), "not a .yaml, .yml or .json file")))
                order += 1
        else:
            errors.append((order, KeyLoadError(str(path), "no such file or directory")))
            order += 1
    return files, errors


def _descriptor_jobs(path: Path) -> tuple[list[_Job | KeyLoadError], set[Path]]:
    """Parse one YAML descriptor file; return its keys/errors and the keystores it references."""
    out: list[_Job | KeyLoadError] = []
    referenced: set[Path] = set()
    try:
        documents = _yaml_documents(path)
    except _FileProblem as exc:
        return [KeyLoadError(str(path), str(exc))], referenced
    if not documents:
        return [KeyLoadError(str(path), "empty descriptor file")], referenced
    for index, document in enumerate(documents, start=1):
        prefix = f"document {index}: " if len(documents) > 1 else ""
        try:
            out.append(_descriptor_job(path, document, referenced))
        except _FileProblem as exc:
            out.append(KeyLoadError(str(path), f"{prefix}{exc}"))
    return out, referenced


def _descriptor_job(path: Path, document: Any, referenced: set[Path]) -> _Job:
    if not isinstance(document, dict):
        raise _FileProblem("descriptor must be a YAML mapping")
    kind = document.get("type")
    if kind is None:
        raise _FileProblem("missing 'type' (expected 'file-raw' or 'file-keystore')")
    key_type = document.get("keyType", "BLS")
    if not isinstance(key_type, str) or key_type.upper() != "BLS":
        raise _FileProblem(f"unsupported keyType {key_type!r} (only 'BLS')")
    if kind == "file-raw":
        if "privateKey" not in document:
            raise _FileProblem("missing 'privateKey'")
        return _Job(str(path), secret=_parse_hex_secret(document["privateKey"]))
    if kind == "file-keystore":
        names = {}
        for name in ("keystoreFile", "keystorePasswordFile"):
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise _FileProblem(f"missing '{name}'")
            names[name] = path.parent / Path(value).expanduser()
        keystore_path = names["keystoreFile"]
        referenced.add(_resolved(keystore_path))
        context = f"keystoreFile {keystore_path}: "
        try:
            keystore = _read_json(keystore_path)
        except _FileProblem as exc:
            raise _FileProblem(f"{context}{exc}") from None
        password = _read_password(names["keystorePasswordFile"], "keystorePasswordFile")
        return _keystore_job(str(path), keystore, password, context)
    raise _FileProblem(f"unsupported type {kind!r} (supported: 'file-raw', 'file-keystore')")


def _standalone_job(path: Path) -> _Job | KeyLoadError | None:
    """A standalone keystore and its sibling password file; ``None`` for deposit data."""
    try:
        document = _read_json(path)
        if _is_deposit_data(document):
            log.debug("skipping deposit data file %s", path)
            return None
        job = _keystore_job(str(path), document, None)
        for suffix in _PASSWORD_SUFFIXES:
            candidate = path.with_suffix(suffix)
            if candidate.is_file():
                job.password = _read_password(candidate, "password file")
                return job
        raise _FileProblem(
            f"missing password file: expected {path.with_suffix(_PASSWORD_SUFFIXES[0])}"
            f" (or {path.with_suffix(_PASSWORD_SUFFIXES[1]).name})"
        )
    except _FileProblem as exc:
        return KeyLoadError(str(path), str(exc))


def _scan(paths: Sequence[str]) -> list[_Job | KeyLoadError]:
    files, early_errors = _candidate_files(paths)
    ordered: list[tuple[int, int, _Job | KeyLoadError]] = [(o, 0, e) for o, e in early_errors]
    referenced: set[Path] = set()
    descriptors: dict[int, list[_Job | KeyLoadError]] = {}
    # Descriptors first: they decide which keystores are not standalone.
    for order, path in files:
        if path.suffix.lower() in _YAML_SUFFIXES:
            descriptors[order], refs = _descriptor_jobs(path)
            referenced |= refs
    for order, path in files:
        if order in descriptors:
            ordered.extend((order, i, item) for i, item in enumerate(descriptors[order]))
        elif _resolved(path) not in referenced:
            item = _standalone_job(path)
            if item is not None:
                ordered.append((order, 0, item))
    ordered.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in ordered]


# --------------------------------------------------------------------------------------------
# Decryption


_Result = tuple[bytes | None, str | None]


def _decrypt_all(
    jobs: list[_Job], concurrency: int, progress: ProgressCallback | None
) -> tuple[list[_Result], int]:
    """Decrypt every job's keystore; return per-job ``(secret, reason)`` and the pool size.

    If the pool cannot start or breaks (a worker killed by the OOM killer, an embedding program
    whose ``__main__`` is not import-safe under ``spawn``), whatever is left is decrypted here,
    serially: slower, but every key still gets its own outcome.
    """
    total = len(jobs)
    results: list[_Result | None] = [None] * total
    work = [(job.keystore or {}, job.password or "") for job in jobs]
    done = 0

    def finish(index: int, result: _Result) -> None:
        nonlocal done, progress
        results[index] = result
        done += 1
        if progress is not None:
            try:
                progress(done, total)
            except Exception:  # a display problem must not stop key loading
                log.warning("progress callback failed; no further progress reports", exc_info=True)
                progress = None

    workers = _pool_size(work, concurrency)
    if workers > 1:
        try:
            _decrypt_in_pool(work, workers, finish)
        except Exception as exc:
            log.warning(
                "decryption worker pool failed (%s); decrypting the remaining keystores in"
                " this process",
                type(exc).__name__,
            )
    for index, item in enumerate(work):
        if results[index] is None:
            finish(index, decrypt_worker(item))
    return [result or (None, "not decrypted") for result in results], workers


def _available_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes; ``None`` where that does not exist."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _pool_size(work: list[tuple[Mapping[str, Any], str]], concurrency: int) -> int:
    """Workers to start: at most one per keystore, and no more than memory allows.

    Each scrypt run at n=2^18 holds 256 MiB; ``cpu_count`` of them on a many-core host with
    little RAM would invite the OOM killer, so the pool is capped to what ``MemAvailable`` holds
    (keeping a quarter in reserve).
    """
    workers = min(concurrency, len(work))
    if workers <= 1:
        return workers
    try:
        need = max(kdf_memory(keystore) for keystore, _ in work)
    except KeystoreError:  # not reached: the scan validated every keystore
        need = 0
    available = _available_memory()
    if need and available is not None:
        fits = max(1, (available * 3 // 4) // need)
        if fits < workers:
            log.info(
                "decrypting with %d worker(s) instead of %d: each scrypt run needs %d MiB and"
                " %d MiB are available",
                fits,
                workers,
                need >> 20,
                available >> 20,
            )
            workers = fits
    return workers


def _decrypt_in_pool(
    work: list[tuple[Mapping[str, Any], str]],
    workers: int,
    finish: Callable[[int, _Result], None],
) -> None:
    """Run :func:`decrypt_worker` over ``work`` in ``spawn`` processes; raise if the pool broke.

    ``spawn`` rather than ``fork``: the server may already run threads (forking those can
    deadlock), and a fresh interpreter importing only :mod:`chamber.crypto.keystore` is cheap.
    """
    failure: BaseException | None = None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures: dict[Future[_Result], int] = {
            pool.submit(decrypt_worker, item): index for index, item in enumerate(work)
        }
        for future in as_completed(futures):
            error = future.exception()
            if error is None:
                finish(futures[future], future.result())
            else:
                failure = error
    if failure is not None:
        raise failure


# --------------------------------------------------------------------------------------------
# The key source


class FilesystemKeySource:
    """Keys from Web3Signer descriptors and EIP-2335 keystores on local disk (see module doc)."""

    name = "filesystem"
    requires_unseal = False

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        bls: BlsBackend,
        *,
        load_concurrency: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.paths = [os.fspath(path) for path in paths]
        self.bls = bls
        self.load_concurrency = load_concurrency or os.cpu_count() or 1
        self.progress = progress
        self.last_stats: LoadStats | None = None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], bls: BlsBackend) -> Self:
        """``settings``: ``paths`` (list of directories/files), optional ``load_concurrency``."""
        paths = settings.get("paths")
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        if not isinstance(paths, list | tuple) or not all(
            isinstance(path, str | os.PathLike) for path in paths
        ):
            raise ConfigError(
                "key_sources.filesystem.paths must be a list of directories or files",
                field="key_sources.filesystem.paths",
            )
        concurrency = settings.get("load_concurrency")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigError(
                "key_sources.filesystem.load_concurrency must be a positive integer",
                field="key_sources.filesystem.load_concurrency",
            )
        return cls(paths, bls, load_concurrency=concurrency)

    def load(
        self,
        master_key: bytes | bytearray | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> KeyLoadResult:
        """Load every key under the configured paths; never raises for a bad file."""
        del master_key  # plain files need no master key
        result = KeyLoadResult()
        for _, item in self.load_items(progress=progress):
            if isinstance(item, KeyLoadError):
                log.warning("key not loaded: %s", item.message)
                result.errors.append(item)
            else:
                result.keys.append(item)
        return result

    def load_items(
        self, *, progress: ProgressCallback | None = None
    ) -> list[tuple[str, ValidatorKey | KeyLoadError]]:
        """Like :meth:`load` but keeps each key's file path, in scan order (for ``keys check``)."""
        started = time.perf_counter()
        items = _scan(self.paths)
        pending = [item for item in items if isinstance(item, _Job) and item.secret is None]
        decrypted, workers = _decrypt_all(
            pending, self.load_concurrency, progress if progress is not None else self.progress
        )
        for job, (secret, reason) in zip(pending, decrypted, strict=True):
            job.secret = secret
            job.keystore = job.password = None  # drop the password as soon as possible
            if reason is not None:
                job.error = f"{job.context}{reason}"

        out: list[tuple[str, ValidatorKey | KeyLoadError]] = []
        first_path: dict[bytes, str] = {}
        for item in items:
            if isinstance(item, KeyLoadError):
                out.append((item.path, item))
                continue
            built = item.error if item.error is not None else self._build(item)
            if isinstance(built, ValidatorKey) and built.pubkey in first_path:
                built = f"duplicate of {first_path[built.pubkey]} (pubkey {built.pubkey_hex})"
            if isinstance(built, str):
                out.append((item.path, KeyLoadError(item.path, built)))
            else:
                first_path[built.pubkey] = item.path
                out.append((item.path, built))

        loaded = sum(1 for _, item in out if isinstance(item, ValidatorKey))
        self.last_stats = LoadStats(
            loaded=loaded,
            failed=len(out) - loaded,
            decrypted=len(pending),
            workers=workers,
            elapsed=time.perf_counter() - started,
        )
        log.info(
            "filesystem keys: loaded %d, failed %d, decrypted %d keystores with %d worker(s)"
            " in %.2fs",
            loaded,
            len(out) - loaded,
            len(pending),
            workers,
            self.last_stats.elapsed,
        )
        return out

    def _build(self, job: _Job) -> ValidatorKey | str:
        """BLS handle and public key for a job's secret, or the reason it is unusable."""
        secret = job.secret
        if secret is None or len(secret) != _SECRET_LENGTH:
            return f"{job.context}secret is not {_SECRET_LENGTH} bytes"
        value = int.from_bytes(secret, "big")
        if value == 0:
            return f"{job.context}secret key is zero"
        if value >= CURVE_ORDER:
            return f"{job.context}secret key is not below the BLS12-381 curve order"
        try:
            handle = self.bls.secret_key(secret)
            pubkey = bytes(self.bls.public_key(handle))
        except Exception as exc:  # the backend's message is not ours to vouch for; type only
            backend = self.bls.name
            return f"{job.context}BLS backend {backend!r} rejected the key ({type(exc).__name__})"
        if job.expected_pubkey is not None and job.expected_pubkey != pubkey:
            return (
                f"{job.context}pubkey mismatch: keystore says 0x{job.expected_pubkey.hex()},"
                f" the decrypted secret gives 0x{pubkey.hex()}"
            )
        return ValidatorKey(pubkey=pubkey, source=self.name, secret=handle)


def check_paths(
    paths: Sequence[str | os.PathLike[str]],
    bls: BlsBackend | None = None,
    *,
    load_concurrency: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[FileStatus]:
    """Load ``paths`` exactly as the server would and report each file's outcome.

    ``bls`` defaults to the best available backend, like the server's ``auto`` setting.
    """
    if bls is None:
        from chamber.crypto.bls import select_backend

        bls = select_backend("auto")
    source = FilesystemKeySource(paths, bls, load_concurrency=load_concurrency)
    statuses: list[FileStatus] = []
    for path, item in source.load_items(progress=progress):
        if isinstance(item, KeyLoadError):
            statuses.append(FileStatus(path, "error", reason=item.reason))
        else:
            statuses.append(FileStatus(path, "ok", pubkey=item.pubkey_hex))
    return statuses


# --------------------------------------------------------------------------------------------
# One raw key file, for the CLI's ``keys import --raw-key-file``

_HEX_TEXT = re.compile(r"(0[xX])?[0-9a-fA-F]*")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message never quotes the file's content."""


def read_raw_key_file(path: Path) -> list[tuple[int | None, bytes]]:
    """The secret key(s) of a raw key file: one ``0x``-hex 32-byte secret, or a Web3Signer
    ``type: file-raw`` YAML descriptor (several ``---`` documents: one key each), parsed exactly
    as the filesystem key source parses descriptors. Returns ``(document number or None,
    secret)`` per key; :class:`KeyFileError` names the problem without quoting the content."""
    try:
        text = _decode(_read_bytes(path), "utf-8-sig").strip()
        if not text:
            raise _FileProblem("is empty")
        if _HEX_TEXT.fullmatch(text):
            digits = len(text) - (2 if text[:2] in ("0x", "0X") else 0)
            if digits != 64:
                raise _FileProblem(
                    f"a hex secret key is 32 bytes (64 hex digits); this one has {digits}"
                )
            return [(None, bytes.fromhex(text[-64:]))]
        documents = _yaml_documents(path)
        if not documents or not all(isinstance(doc, dict) for doc in documents):
            raise _FileProblem(
                "neither a 0x-hex 32-byte secret key nor a Web3Signer 'type: file-raw' YAML "
                "descriptor"
            )
        found: list[tuple[int | None, bytes]] = []
        for number, document in enumerate(documents, start=1):
            where = f"document {number}: " if len(documents) > 1 else ""
            if "crypto" in document and "type" not in document:
                raise _FileProblem(
                    "an EIP-2335 keystore: give keystores as arguments, not --raw-key-file"
                )
            if document.get("type") != "file-raw":
                kind = document.get("type")
                raise _FileProblem(
                    f"{where}type {kind!r}: only 'type: file-raw' descriptors hold a raw key"
                    + (" (import the keystore file itself)" if kind == "file-keystore" else "")
                )
            try:
                job = _descriptor_job(path, document, set())
            except _FileProblem as exc:
                raise _FileProblem(f"{where}{exc}") from None
            assert job.secret is not None
            found.append((number if len(documents) > 1 else None, job.secret))
        return found
    except _FileProblem as exc:
        raise KeyFileError(str(exc)) from None
