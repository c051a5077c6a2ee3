"""The ``keyfile-pin`` credential type: something the operator has, and something they know.

The secret material is ``HMAC-SHA256(key = the key file's 32 bytes, message = the PIN)``. The
key file lives on removable media (a USB stick kept in a safe), the PIN in the operator's head:
neither alone opens the operator's share. The signer never sees either of them; it receives the
32-byte HMAC during a ceremony and derives its wrapping key from it with Argon2id, like any
other credential's material.

Where the key file is: the environment variable ``CHAMBER_KEYFILE``, for example
``CHAMBER_KEYFILE=/media/alice/CHAMBER/alice.key``. Enrolling (``operator register`` or
``operator credentials add``) creates it, 32 random bytes with mode 0600, when it does not exist
yet; an existing key file is reused and never overwritten.

What the signer stores beside the credential is public: a fingerprint of the key file (the
start of its SHA-256). When the operator unseals, the fingerprint lets this plugin say "this is
not the key file registered for operator alice" instead of letting a wrong stick look like a
wrong PIN.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chamber.errors import BadRequest
from chamber.vault.interfaces import Enrollment

#: The environment variable that names the key file on the removable medium.
KEYFILE_ENV = "CHAMBER_KEYFILE"
KEY_BYTES = 32
#: HMAC-SHA256 output: what the signer receives, and all that ``validate`` accepts.
MATERIAL_BYTES = 32
MIN_PIN_CHARACTERS = 4
#: The public parameter stored beside the credential.
FINGERPRINT = "keyfile_fingerprint"
#: 16 hex digits (64 bits) of SHA-256 tell two key files apart; a hash of 256 random bits
#: reveals nothing about them.
FINGERPRINT_HEX_DIGITS = 16


class KeyfilePinCredential:
    """A key file on removable media plus a PIN.

    The operator CLI calls ``enroll`` and ``obtain`` in a child process with a time limit; the
    signer calls ``validate``. Every problem is raised as a :class:`chamber.errors.BadRequest`:
    the CLI shows the message of a ``ChamberError`` to the operator, so each message says what
    to do and never quotes the key, the PIN or the material (a file path is not secret). Any
    other exception is reported by its class name only.
    """

    name = "keyfile-pin"
    description = f"a key file on removable media (path in ${KEYFILE_ENV}) and a PIN"

    # ------------------------------------------------------------------ operator CLI

    def enroll(self, options: Mapping[str, Any]) -> Enrollment:
        """A new credential: create (or reuse) the key file, ask for a new PIN twice."""
        path = keyfile_path()
        try:
            key = create_keyfile(path)
        except FileExistsError:
            # Never overwrite: an existing key file is reused (one stick may serve several
            # credentials), and anything else at that path is refused by read_keyfile.
            key = read_keyfile(path)
        pin = read_pin(options, confirm=True)
        if len(pin) < MIN_PIN_CHARACTERS:
            raise BadRequest(f"PIN too short: at least {MIN_PIN_CHARACTERS} characters")
        return Enrollment(derive(key, pin), {FINGERPRINT: fingerprint(key)})

    def obtain(
        self, options: Mapping[str, Any], candidates: Sequence[Mapping[str, str]] = ()
    ) -> bytes:
        """The material of an existing credential: the key file is checked against the
        fingerprints the signer stores for this operator before the PIN is asked for."""
        path = keyfile_path()
        key = read_keyfile(path)
        found = fingerprint(key)
        registered = [c[FINGERPRINT] for c in candidates if FINGERPRINT in c]
        if registered and found not in registered:
            operator = options.get("operator", "this operator")
            raise BadRequest(
                f"{path} (fingerprint {found}) is not the key file registered for operator "
                f"{operator!r} (registered: {', '.join(registered)}); is the right medium in?"
            )
        return derive(key, read_pin(options, confirm=False))

    # ------------------------------------------------------------------ signer

    def validate(self, material: bytes) -> None:
        """The signer's only check: the material has the length of an HMAC-SHA256."""
        if len(material) != MATERIAL_BYTES:
            raise BadRequest(
                f"keyfile-pin: the material must be {MATERIAL_BYTES} bytes (HMAC-SHA256), "
                f"got {len(material)}",
                field="secret",
            )


# ---------------------------------------------------------------------- small pure helpers


def derive(key: bytes, pin: str) -> bytes:
    """The secret material: HMAC-SHA256 keyed by the key file, over the PIN (NFC, UTF-8)."""
    message = unicodedata.normalize("NFC", pin).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def keyfile_path() -> Path:
    value = os.environ.get(KEYFILE_ENV, "").strip()
    if not value:
        raise BadRequest(
            f"{KEYFILE_ENV} is not set: set it to the key file's path on the removable "
            "medium, e.g. /media/alice/CHAMBER/alice.key"
        )
    return Path(value).expanduser()


def read_keyfile(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read(KEY_BYTES + 1)  # one byte more: a longer file is not a key file
    except FileNotFoundError:
        raise BadRequest(f"key file {path} not found: is the removable medium mounted?") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BadRequest(f"cannot read key file {path}: {reason}") from None
    if len(key) != KEY_BYTES:
        raise BadRequest(
            f"{path} exists but is not a {KEY_BYTES}-byte key file; refusing to use or "
            "overwrite it (point CHAMBER_KEYFILE elsewhere)"
        )
    return key


def create_keyfile(path: Path) -> bytes:
    """A new random key written to ``path``; raises FileExistsError if ``path`` exists
    (``O_EXCL``: even a file created a moment ago by someone else is never overwritten)."""
    key = secrets.token_bytes(KEY_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BadRequest(
            f"cannot create key file {path}: {reason} (is the removable medium mounted?)"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())  # removable media get unplugged: make it durable now
    except OSError as exc:
        path.unlink(missing_ok=True)  # a partial key file would be refused forever after
        reason = exc.strerror or type(exc).__name__
        raise BadRequest(f"cannot write key file {path}: {reason}") from None
    return key


def read_pin(options: Mapping[str, Any], *, confirm: bool) -> str:
    """The PIN: one line of standard input with ``--passphrase-stdin`` (``options["stdin"]``),
    otherwise a prompt without echo (twice when ``confirm``)."""
    if options.get("stdin"):
        line = sys.stdin.readline()
        if not line:
            raise EOFError  # the CLI reports it as "nothing was entered"
        return line.rstrip("\r\n")
    operator = options.get("operator", "this operator")
    pin = getpass.getpass(f"PIN for {operator}'s key file: ")
    if confirm and getpass.getpass("Repeat the PIN: ") != pin:
        raise BadRequest("the two PINs differ")
    return pin
