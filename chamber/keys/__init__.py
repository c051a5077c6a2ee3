"""Validator keys: the in-memory registry and the key-source contract."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
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
        # Signing requests that may hold a key: pubkey hex -> count (see ``signing``).
        self._in_use: dict[str, int] = {}
        self._released = threading.Condition(threading.Lock())

    @contextmanager
    def signing(self, pubkey_hex: str) -> Iterator[ValidatorKey | None]:
        """The key for one signing request, held until the block ends (``None``: not loaded).

        The hold is taken before the look-up, so once :meth:`remove_and_drain` has removed a
        key and returned, no request can still be signing with it: the keymanager's "no more
        signatures, only then export the slashing history" and "deactivated means never
        signable" rest on this.
        """
        released = self._released
        with released:
            self._in_use[pubkey_hex] = self._in_use.get(pubkey_hex, 0) + 1
        try:
            yield self._keys.get(pubkey_hex)
        finally:
            with released:
                left = self._in_use[pubkey_hex] - 1
                if left:
                    self._in_use[pubkey_hex] = left
                else:
                    del self._in_use[pubkey_hex]
                    released.notify_all()

    def remove_and_drain(self, pubkeys: Collection[str], timeout: float) -> set[str]:
        """Remove ``pubkeys`` from every source, then wait until no signing request holds any
        of them. Returns those still held after ``timeout`` seconds (normally none)."""
        with self._lock:
            changed = False
            for keys in self._by_source.values():
                for pubkey_hex in pubkeys:
                    changed |= keys.pop(pubkey_hex, None) is not None
            if changed:
                self._rebuild()
        deadline = time.monotonic() + timeout
        with self._released:
            while True:
                busy = {pubkey for pubkey in pubkeys if pubkey in self._in_use}
                remaining = deadline - time.monotonic()
                if not busy or remaining <= 0:
                    return busy
                self._released.wait(remaining)

    def update_source(
        self, source: str, add: Iterable[ValidatorKey] = (), remove: Iterable[str] = ()
    ) -> None:
        """Add and remove keys of one source in one step (one rebuild of the snapshot)."""
        with self._lock:
            keys = self._by_source.setdefault(source, {})
            for pubkey_hex in remove:
                keys.pop(pubkey_hex, None)
            for key in add:
                keys[key.pubkey_hex] = key
            self._rebuild()

    def source_keys(self, source: str) -> set[str]:
        with self._lock:
            return set(self._by_source.get(source, ()))

    def sources_of(self, pubkey_hex: str) -> set[str]:
        """Every source that holds ``pubkey_hex`` (a key may be in more than one)."""
        with self._lock:
            return {name for name, keys in self._by_source.items() if pubkey_hex in keys}

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
