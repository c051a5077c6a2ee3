"""Age-encrypted mnemonic backups: written by the signer, readable only by their recipients.

When ``chamber.keys.generate.backup`` is on, the mnemonic of every key the chamber generates is
encrypted to the configured ``age1…`` X25519 recipients (their public keys) and stored beside
the key, in the ``backup`` field of its encrypted-store row (:class:`chamber.keys.encrypted.
StoredKey`). The backup does not depend on the master key, the KMS or the operators: whoever
holds one of the matching age identities (``AGE-SECRET-KEY-1…``, kept offline) can recover the
key from the row alone, with the ``age`` CLI or pyrage (``docs/recovery.md``).

**The signer can never decrypt a backup.** This module encrypts only; nothing here accepts an
identity, and the signer's configuration holds recipients, never identities (a secret key pasted
into the recipient list is refused without being echoed).

Format. The stored bytes are an ASCII-armored age v1 file (``-----BEGIN AGE ENCRYPTED
FILE-----``): a few hundred bytes more than binary age, but printable, copyable into a ticket or
onto paper, recognisable at a glance in a database dump, and read as-is by ``age -d`` / ``rage
-d`` / :func:`pyrage.decrypt`. Its plaintext is a small versioned JSON document
(:func:`backup_payload`), so a recovery tool knows what it holds::

    {"format": 1, "kind": "bip39-mnemonic", "mnemonic": "abandon …", "path": "m/12381/3600/0/0/0",
     "index": 0, "pubkey": "0x…"}

``path`` is the EIP-2334 signing-key path of ``index`` (``m/12381/3600/<index>/0/0``), and
``pubkey`` the 48-byte BLS public key that path gives, so a recovery can prove it re-derived the
right key. The BIP-39 passphrase is empty (the standard for validator mnemonics);
:func:`parse_backup_payload` refuses anything it does not fully understand (another format,
another kind, unknown fields) rather than recover the wrong key.

Secrets (the mnemonic, the plaintext) never appear in ``repr`` or in exception messages. Python
cannot wipe ``str`` objects: the mnemonic lives in memory as long as the caller keeps it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyrage
from pyrage import x25519

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_KIND",
    "MNEMONIC_WORD_COUNTS",
    "BackupError",
    "BackupPayload",
    "backup_payload",
    "encrypt_backup",
    "is_age_armored",
    "parse_backup_payload",
    "signing_key_path",
    "validate_recipients",
]

#: Version of the JSON document inside the age file.
BACKUP_FORMAT: Final = 1
BACKUP_KIND: Final = "bip39-mnemonic"
#: Word counts BIP-39 defines (128 … 256 bits of entropy).
MNEMONIC_WORD_COUNTS: Final = frozenset({12, 15, 18, 21, 24})
#: First line of every backup this module writes.
ARMOR_HEADER: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"

_FIELDS: Final = frozenset({"format", "kind", "mnemonic", "path", "index", "pubkey"})
_PUBKEY_HEX: Final = re.compile(r"^0x[0-9a-f]{96}$")
_MAX_INDEX: Final = 2**32 - 1  # EIP-2333 indices are 32-bit
_MAX_PAYLOAD: Final = 64 * 1024


class BackupError(ValueError):
    """A recipient, payload or backup is unusable. The message never contains a secret."""


# --------------------------------------------------------------------------- recipients


def _describe_bad_recipient(text: str) -> str:
    """Why ``text`` is not an X25519 recipient, without repeating it (it may be a secret)."""
    if not text:
        return "is empty"
    lowered = text.lower()
    if lowered.startswith("age-secret-key-"):
        return (
            "is an age identity (secret key), not a recipient: give its public key "
            "(age-keygen -y), and keep the identity offline, never in the signer's configuration"
        )
    if lowered.startswith(("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")):
        return "is an SSH public key; only age X25519 recipients (age1…) are supported"
    if lowered.startswith("age1") and "1" in lowered[4:]:
        # Bech32 data never contains "1", so a second one ends a longer prefix: age1yubikey1…,
        # age1pq1…, age1tag1… are plugin or hybrid recipients, whose encryption needs a plugin
        # binary or a recipient type the signer does not have.
        return (
            "is a plugin or post-quantum age recipient; only native X25519 recipients "
            "(age1…, 62 characters) are supported"
        )
    if lowered.startswith("age1"):
        return "is not a valid age X25519 recipient (bad length or checksum)"
    return "is not an age X25519 recipient (expected age1…)"


def validate_recipients(recipients: Sequence[str | x25519.Recipient]) -> list[x25519.Recipient]:
    """Parse ``recipients`` into age X25519 recipients, in order.

    Each entry is an ``age1…`` string (surrounding whitespace ignored) or an already parsed
    :class:`pyrage.x25519.Recipient`. :class:`BackupError` (a ``ValueError``) names the first
    bad entry by index (``recipients[2]: is an SSH public key; …``) without repeating its value;
    an empty list, a non-string and a duplicate are errors too.
    """
    if isinstance(recipients, (str, bytes)) or not isinstance(recipients, Sequence):
        raise BackupError("recipients: must be a list of age1… recipients")
    if not recipients:
        raise BackupError(
            "recipients: at least one age1… recipient is needed (nobody could read the backup)"
        )
    parsed: list[x25519.Recipient] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(recipients):
        where = f"recipients[{index}]"
        if isinstance(item, x25519.Recipient):
            recipient = item
        elif isinstance(item, str):
            text = item.strip()
            try:
                recipient = x25519.Recipient.from_str(text)
            except Exception:  # pyrage.RecipientError; its message may quote the input
                raise BackupError(f"{where}: {_describe_bad_recipient(text)}") from None
        else:
            raise BackupError(f"{where}: must be a string (age1…), not {type(item).__name__}")
        canonical = str(recipient)
        if canonical in seen:
            raise BackupError(f"{where}: duplicate of recipients[{seen[canonical]}]")
        seen[canonical] = index
        parsed.append(recipient)
    return parsed


# --------------------------------------------------------------------------- payload


def signing_key_path(index: int) -> str:
    """The EIP-2334 signing-key path of validator ``index``: ``m/12381/3600/<index>/0/0``."""
    return f"m/12381/3600/{_check_index(index)}/0/0"


def _check_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_INDEX:
        raise BackupError(f"index: must be an integer from 0 to {_MAX_INDEX}")
    return index


def _check_mnemonic(mnemonic: object) -> str:
    if not isinstance(mnemonic, str):
        raise BackupError("mnemonic: must be a string")
    words = mnemonic.split()
    if len(words) not in MNEMONIC_WORD_COUNTS:
        raise BackupError(
            f"mnemonic: has {len(words)} words; a BIP-39 mnemonic has "
            f"{', '.join(str(n) for n in sorted(MNEMONIC_WORD_COUNTS))}"
        )
    return mnemonic


def _pubkey_hex(pubkey: object) -> str:
    if isinstance(pubkey, (bytes, bytearray)):
        text = "0x" + bytes(pubkey).hex()
    elif isinstance(pubkey, str):
        text = "0x" + (pubkey[2:] if pubkey.startswith(("0x", "0X")) else pubkey).lower()
    else:
        raise BackupError("pubkey: must be 48 bytes or 0x-prefixed hex")
    if not _PUBKEY_HEX.match(text):
        raise BackupError("pubkey: must be a 48-byte BLS public key (96 hex characters)")
    return text


@dataclass(frozen=True, slots=True)
class BackupPayload:
    """The plaintext of one backup. The mnemonic is never shown in ``repr``."""

    mnemonic: str = field(repr=False)
    index: int
    pubkey: str
    path: str
    format: int = BACKUP_FORMAT
    kind: str = BACKUP_KIND

    @property
    def pubkey_bytes(self) -> bytes:
        return bytes.fromhex(self.pubkey[2:])


def backup_payload(mnemonic: str, index: int, pubkey: bytes | str) -> bytes:
    """The JSON document (UTF-8) that :func:`encrypt_backup` seals for one generated key.

    ``mnemonic`` is stored exactly as given (it must have 12, 15, 18, 21 or 24 words; the
    wordlist and checksum are the generator's business), ``index`` is the EIP-2334 validator
    index, ``pubkey`` the public key derived at ``m/12381/3600/<index>/0/0``.
    """
    document = {
        "format": BACKUP_FORMAT,
        "kind": BACKUP_KIND,
        "mnemonic": _check_mnemonic(mnemonic),
        "path": signing_key_path(index),
        "index": index,
        "pubkey": _pubkey_hex(pubkey),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _DuplicateField(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicate_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise _DuplicateField(name if name in _FIELDS else "(unknown)")
        document[name] = value
    return document


def parse_backup_payload(plaintext: bytes | bytearray | str) -> BackupPayload:
    """Read a decrypted backup (the recovery side). :class:`BackupError` for anything that is
    not exactly a format-1 ``bip39-mnemonic`` document; messages name fields, never values."""
    if isinstance(plaintext, (bytes, bytearray)):
        if len(plaintext) > _MAX_PAYLOAD:
            raise BackupError("backup: too large to be a mnemonic backup")
        try:
            text = bytes(plaintext).decode("utf-8")
        except UnicodeDecodeError:
            raise BackupError("backup: not UTF-8 text; is it still encrypted?") from None
    elif isinstance(plaintext, str):
        text = plaintext
    else:
        raise BackupError("backup: must be bytes or text")
    try:
        document: Any = json.loads(text, object_pairs_hook=_no_duplicate_fields)
    except _DuplicateField as exc:
        raise BackupError(f"backup: field {exc.name!r} appears twice") from None
    except ValueError:  # the decoder's message can quote the document
        if text.lstrip().startswith(("age-encryption.org/", "-----BEGIN AGE")):
            raise BackupError("backup: still age-encrypted; decrypt it first") from None
        raise BackupError("backup: not a JSON document") from None
    if not isinstance(document, dict):
        raise BackupError("backup: not a JSON object")
    version = document.get("format")
    if type(version) is not int or version != BACKUP_FORMAT:
        shown = version if type(version) is int else "?"
        raise BackupError(
            f"format: backup format {shown} is not supported (this version reads format "
            f"{BACKUP_FORMAT})"
        )
    if document.get("kind") != BACKUP_KIND:
        raise BackupError(f"kind: expected {BACKUP_KIND!r}")
    missing = sorted(_FIELDS - document.keys())
    if missing:
        raise BackupError(f"backup: missing field(s) {', '.join(missing)}")
    unknown = sorted(str(key) for key in document.keys() - _FIELDS)
    if unknown:
        raise BackupError(f"backup: unknown field(s) {', '.join(unknown)} in a format-1 backup")
    mnemonic = _check_mnemonic(document["mnemonic"])
    index = _check_index(document["index"])
    if document["path"] != signing_key_path(index):
        raise BackupError(f"path: expected {signing_key_path(index)} for index {index}")
    pubkey = _pubkey_hex(document["pubkey"]) if isinstance(document["pubkey"], str) else None
    if pubkey is None or pubkey != document["pubkey"]:
        raise BackupError("pubkey: must be 0x followed by 96 lower-case hex characters")
    return BackupPayload(mnemonic=mnemonic, index=index, pubkey=pubkey, path=document["path"])


# --------------------------------------------------------------------------- encryption


def encrypt_backup(plaintext: bytes, recipients: Sequence[str | x25519.Recipient]) -> bytes:
    """``plaintext`` encrypted to every recipient: an ASCII-armored age v1 file (bytes).

    Any one recipient's identity decrypts it (``age -d -i identity.txt``); the caller cannot.
    Recipients are checked by :func:`validate_recipients` first (strings or parsed).
    """
    if not isinstance(plaintext, (bytes, bytearray)):
        raise BackupError("plaintext: must be bytes")
    parsed = validate_recipients(recipients)
    try:
        sealed = pyrage.encrypt(bytes(plaintext), parsed, armored=True)
    except Exception as exc:  # pyrage.EncryptError: a fixed text would do, keep only the type
        raise BackupError(f"age encryption failed ({type(exc).__name__})") from None
    return bytes(sealed)


def is_age_armored(blob: bytes) -> bool:
    """Whether ``blob`` looks like what :func:`encrypt_backup` writes (armored age)."""
    return bytes(blob).lstrip().startswith(ARMOR_HEADER)
