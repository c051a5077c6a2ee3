"""The built-in ``passphrase`` credential type.

The server's half: a passphrase must be at least 16 characters (Unicode code points, after
NFC normalisation; no maximum). The CLI's half (``obtain``): ``--passphrase-stdin`` reads one
line from standard input (the trailing newline removed), otherwise a prompt without echo.
"""

from __future__ import annotations

import getpass
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from chamber.errors import BadRequest
from chamber.vault.interfaces import Enrollment

MIN_PASSPHRASE_CHARACTERS = 16


def normalize_passphrase(text: str) -> bytes:
    return unicodedata.normalize("NFC", text).encode("utf-8")


class PassphraseCredential:
    name = "passphrase"
    description = "a passphrase of at least 16 characters (prompted without echo, or stdin)"

    def enroll(self, options: Mapping[str, Any]) -> Enrollment:
        """A new passphrase: prompted twice (or one line of stdin); nothing public to store."""
        return Enrollment(self.obtain({**options, "confirm": True}))

    def obtain(
        self, options: Mapping[str, Any], candidates: Sequence[Mapping[str, str]] = ()
    ) -> bytes:
        prompt = str(options.get("prompt") or "Passphrase: ")
        if options.get("stdin"):
            line = sys.stdin.readline()
            text = line[:-1] if line.endswith("\n") else line
            if text.endswith("\r"):
                text = text[:-1]
        else:
            text = getpass.getpass(prompt)
            if options.get("confirm"):
                again = getpass.getpass("Repeat: ")
                if again != text:
                    raise BadRequest("the two passphrases differ", field="passphrase")
        return normalize_passphrase(text)

    def validate(self, material: bytes) -> None:
        try:
            text = material.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("passphrase: must be UTF-8 text", field="passphrase") from None
        if len(text) < MIN_PASSPHRASE_CHARACTERS:
            raise BadRequest(
                f"passphrase too short: at least {MIN_PASSPHRASE_CHARACTERS} characters",
                field="passphrase",
            )
