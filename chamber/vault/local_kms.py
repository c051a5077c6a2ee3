"""The built-in file KMS (``local:NAME``), for development and the quick start only.

Each key name is one 256-bit key in ``<directory>/<NAME>.key`` (mode 0600, directory 0700),
created on the first ``encrypt`` that needs it. Shares are sealed with AES-256-GCM under a random
96-bit nonce; the additional data binds the key id and the encryption context, so a ciphertext
can neither move to another key name nor be replayed as another share.

Key files on the same disk as the state they protect are no protection against anyone who can
read that disk: ``from_config`` says so in a warning. Use a real KMS (``aws-kms``) in production.

Creating a key is race-safe across threads and processes: the key is written and fsynced to a
private temporary file, then hard-linked to its final name, which fails if the name exists. Only
complete key files ever appear under the final name, and a loser of the race uses the winner's.

Ciphertext layout: ``0x01 || nonce (12) || AES-GCM ciphertext || tag (16)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chamber.errors import BadRequest, ConfigError, KmsError

log = logging.getLogger("chamber.vault.local_kms")

PREFIX = "local:"
DEFAULT_DIRECTORY = "./chamber-kms"
SETTINGS = frozenset({"directory"})

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_VERSION = b"\x01"

_warned = False
_warn_lock = threading.Lock()


def _warn_once(directory: Path) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    log.warning(
        "the local file KMS is for development and the quick start only: its key files sit on "
        "the same disk as the shares they wrap, so they do not protect the master key; "
        "use a real KMS (aws-kms) in production",
        extra={"kms_directory": str(directory)},
    )


def _aad(key_id: str, context: Mapping[str, str]) -> bytes:
    """Canonical JSON (sorted keys, no whitespace) of the key id and the encryption context."""
    return json.dumps(
        {"context": dict(context), "key_id": key_id},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible everywhere (Windows); the key file itself was fsynced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalKms:
    """``local:NAME`` key ids: AES-256-GCM under key files in one directory."""

    name = "local"

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> None:
        self.directory = Path(directory).expanduser().absolute()

    def __repr__(self) -> str:
        return f"LocalKms(directory={str(self.directory)!r})"

    # ------------------------------------------------------------------ provider contract

    @classmethod
    def handles(cls, key_id: str) -> bool:
        return isinstance(key_id, str) and key_id.startswith(PREFIX)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Self:
        for key in settings:
            if key not in SETTINGS:
                raise ConfigError(
                    f"kms.local.{key}: unknown setting (known: {', '.join(sorted(SETTINGS))})"
                )
        directory = settings.get("directory", DEFAULT_DIRECTORY)
        if not isinstance(directory, str | os.PathLike) or not str(directory).strip():
            raise ConfigError("kms.local.directory: must be a directory path")
        kms = cls(directory)
        _warn_once(kms.directory)
        return kms

    def validate_key_id(self, key_id: str) -> None:
        self._key_name(key_id)

    def encrypt(self, key_id: str, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        key = self._load_or_create(key_id, self._key_name(key_id))
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, bytes(plaintext), _aad(key_id, context))
        return _VERSION + nonce + sealed

    def decrypt(self, key_id: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        path = self._path(self._key_name(key_id))
        key = self._read_key(key_id, path)
        if key is None:
            raise KmsError(key_id, f"key file {path} does not exist")
        blob = bytes(ciphertext)
        if len(blob) < 1 + _NONCE_BYTES + _TAG_BYTES or blob[:1] != _VERSION:
            raise KmsError(key_id, "ciphertext is malformed (not made by the local KMS)")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return AESGCM(key).decrypt(nonce, sealed, _aad(key_id, context))
        except InvalidTag:
            raise KmsError(key_id, "decryption failed: wrong key or encryption context") from None

    # ------------------------------------------------------------------ key files

    @staticmethod
    def _key_name(key_id: str) -> str:
        if isinstance(key_id, str) and key_id.startswith(PREFIX):
            name = key_id[len(PREFIX) :]
            if _NAME.fullmatch(name):
                return name
        shown = key_id[:200] if isinstance(key_id, str) else type(key_id).__name__
        raise BadRequest(
            "invalid local KMS key id: expected local:<name> with a <name> of 1-64 characters "
            f"A-Z a-z 0-9 _ . -, got {shown!r}",
            field="kms_key_ids",
        )

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def _read_key(self, key_id: str, path: Path) -> bytes | None:
        try:
            with open(path, "rb") as f:
                key = f.read(_KEY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KmsError(
                key_id, f"cannot read key file {path}: {exc.strerror or exc.__class__.__name__}"
            ) from None
        if len(key) != _KEY_BYTES:
            raise KmsError(key_id, f"key file {path} is not a {_KEY_BYTES}-byte key")
        return key

    def _load_or_create(self, key_id: str, name: str) -> bytes:
        path = self._path(name)
        key = self._read_key(key_id, path)
        if key is not None:
            return key
        try:
            self._create(path)
        except OSError as exc:
            raise KmsError(
                key_id,
                f"cannot create key file {path}: {exc.strerror or exc.__class__.__name__}",
            ) from None
        key = self._read_key(key_id, path)
        if key is None:  # deleted between creation and reading: never silently re-create
            raise KmsError(key_id, f"key file {path} disappeared while being created")
        return key

    def _create(self, path: Path) -> None:
        """Write a fresh key to ``path`` unless it exists (then another creator won: keep it)."""
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # mkdir's mode is filtered by the umask
                os.chmod(self.directory, 0o700)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(temp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(_KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temp, path)  # atomic, and fails if the name exists
            except FileExistsError:
                return
            log.info("created local KMS key file", extra={"kms_key_file": str(path)})
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        _fsync_directory(self.directory)
