"""Validator keys: the in-memory registry and the key-source contract."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import orjson

from chamber.crypto.bls import BlsBackend, SecretKey
from chamber.errors import KeyLoadError

_PUBKEY_HEX = re.compile(r"0x[0-9a-f]{96}")


def normalize_pubkey_hex(value: str) -> str | None:
    """The registry's key form (``0x`` + 96 lowercase hex digits), or None for anything that is
    not a 48-byte hex public key. The ``0x`` prefix and case are optional on input."""
    text = value.strip().lower()
    if not text.startswith("0x"):
        text = "0x" + text
    return text if _PUBKEY_HEX.fullmatch(text) else None


@dataclass(frozen=True, slots=True)
class ValidatorKey:
    """A loaded validator key. ``secret`` is the BLS backend's opaque handle, never printed."""

    pubkey: bytes
    source: str
    secret: SecretKey = field(repr=False, compare=False)
    pubkey_hex: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pubkey_hex", "0x" + self.pubkey.hex())


@dataclass(slots=True)
class KeyLoadResult:
    keys: list[ValidatorKey] = field(default_factory=list)
    errors: list[KeyLoadError] = field(default_factory=list)


class KeySource(Protocol):
    """Where validator keys come from.

    Contract: ``load`` returns every key it could load and one :class:`KeyLoadError` (path or
    item id, and reason) per item it could not; one bad item never stops the others and never
    raises. Secret material never appears in an error. ``requires_unseal`` sources need the
    master key (``master_key`` argument) and are dropped from the registry when the chamber seals.
    """

    name: str
    requires_unseal: bool

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], bls: BlsBackend) -> Self: ...

    def load(self, master_key: bytes | bytearray | None = None) -> KeyLoadResult: ...


class KeyRegistry:
    """Thread-safe map ``pubkey hex -> ValidatorKey``, grouped by source.

    Reads (the signing hot path, ``publicKeys``) take no lock: they read an immutable snapshot
    that writers replace atomically. The ``publicKeys`` answer is cached as encoded JSON bytes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_source: dict[str, dict[str, ValidatorKey]] = {}
        self._keys: Mapping[str, ValidatorKey] = {}
        self._public_keys_json = b"[]"

    def replace_source(self, source: str, keys: Iterable[ValidatorKey]) -> None:
        """Make ``keys`` the complete set of ``source``'s keys (an empty iterable drops them)."""
        with self._lock:
            self._by_source[source] = {k.pubkey_hex: k for k in keys}
            self._rebuild()

    def add(self, key: ValidatorKey) -> None:
        with self._lock:
            self._by_source.setdefault(key.source, {})[key.pubkey_hex] = key
            self._rebuild()

    def remove(self, pubkey_hex: str) -> ValidatorKey | None:
        with self._lock:
            for keys in self._by_source.values():
                removed = keys.pop(pubkey_hex, None)
                if removed is not None:
                    self._rebuild()
                    return removed
            return None

    def _rebuild(self) -> None:
        merged: dict[str, ValidatorKey] = {}
        for source in sorted(self._by_source):
            for pubkey_hex, key in self._by_source[source].items():
                merged.setdefault(pubkey_hex, key)
        self._keys = merged
        self._public_keys_json = orjson.dumps(sorted(merged))

    def get(self, pubkey_hex: str) -> ValidatorKey | None:
        return self._keys.get(pubkey_hex)

    def __len__(self) -> int:
        return len(self._keys)

    def public_keys_json(self) -> bytes:
        return self._public_keys_json

    def public_keys(self) -> list[str]:
        return sorted(self._keys)

    def count_by_source(self) -> dict[str, int]:
        with self._lock:
            return {source: len(keys) for source, keys in self._by_source.items()}
