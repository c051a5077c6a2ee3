"""The KMS layer: Shamir shares of a secret, each wrapped by a different KMS key.

A key id chooses its provider (``local:NAME`` → the built-in file KMS, ``arn:aws:kms:…`` →
the aws-kms plugin). Wrapping and unwrapping run the keys concurrently; an unwrap succeeds as
soon as ``threshold`` shares are back, so one unreachable key inside the threshold does not stop
an unseal. Each share's encryption context names the chamber, the layer's purpose and the share
index, so a ciphertext cannot be replayed as another share or into another chamber.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from chamber.crypto import shamir
from chamber.errors import BadRequest, ChamberError, ConfigError, KmsError
from chamber.vault.interfaces import KmsProvider
from chamber.vault.records import KmsLayer, KmsShare

log = logging.getLogger("chamber.vault.kms")

MAX_KMS_KEYS = 16


@dataclass(frozen=True, slots=True)
class UnwrapReport:
    """Which keys failed during an unwrap (key id → reason); public facts only."""

    failures: dict[str, str]


class KmsSet:
    """The configured KMS providers, chosen per key id."""

    def __init__(
        self,
        providers: Mapping[str, type[KmsProvider]],
        settings: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self._classes = dict(providers)
        self._settings = {name: dict(section) for name, section in settings.items()}
        self._instances: dict[str, KmsProvider] = {}
        self._lock = threading.Lock()

    def _provider(self, key_id: str) -> KmsProvider:
        for name, cls in self._classes.items():
            if cls.handles(key_id):
                with self._lock:
                    instance = self._instances.get(name)
                    if instance is None:
                        section = self._settings.get(_section_name(name), {})
                        instance = cls.from_config(section)
                        self._instances[name] = instance
                return instance
        known = ", ".join(sorted(self._classes)) or "none"
        raise BadRequest(
            f"no KMS provider handles key id {key_id[:200]!r} (installed providers: {known}); "
            "use local:NAME for the built-in file KMS or arn:aws:kms:<region>:<account-id>:"
            "key/<key-id> with the chamber-aws-kms plugin",
            field="kms_key_ids",
        )

    def check_config(self) -> None:
        """At start-up: every ``kms.<section>`` belongs to an installed provider, and each such
        provider accepts its settings (its ``from_config`` raises ``ConfigError`` naming the
        key)."""
        by_section = {_section_name(name): name for name in self._classes}
        for section in self._settings:
            name = by_section.get(section)
            if name is None:
                known = ", ".join(sorted(by_section)) or "none"
                raise ConfigError(
                    f"kms.{section}: no installed KMS provider reads this section "
                    f"(known sections: {known})"
                )
            with self._lock:
                if name not in self._instances:
                    self._instances[name] = self._classes[name].from_config(self._settings[section])

    def validate(self, key_ids: Sequence[str], threshold: int) -> None:
        """Check ids and threshold without any KMS call (``BadRequest`` naming the field)."""
        if not key_ids:
            raise BadRequest("kms_key_ids: at least one KMS key is required", field="kms_key_ids")
        if len(key_ids) > MAX_KMS_KEYS:
            raise BadRequest(f"kms_key_ids: at most {MAX_KMS_KEYS} KMS keys", field="kms_key_ids")
        if len(set(key_ids)) != len(key_ids):
            raise BadRequest("kms_key_ids: a KMS key is listed twice", field="kms_key_ids")
        for key_id in key_ids:
            if not isinstance(key_id, str) or not key_id.strip():
                raise BadRequest("kms_key_ids: empty KMS key id", field="kms_key_ids")
            self._provider(key_id).validate_key_id(key_id)
        if not 1 <= threshold <= len(key_ids):
            raise BadRequest(
                f"kms_threshold: must be between 1 and the number of KMS keys ({len(key_ids)})",
                field="kms_threshold",
            )

    def wrap(
        self,
        secret: bytes | bytearray,
        key_ids: Sequence[str],
        threshold: int,
        chamber_id: str,
        purpose: str,
    ) -> KmsLayer:
        """Split ``secret`` and wrap share *i* with key *i*. Every key must encrypt and then
        decrypt its share back (a round trip proves the key before anything is committed);
        the first failure raises :class:`KmsError` naming the key."""
        shares = shamir.split(bytes(secret), threshold, len(key_ids))

        def wrap_one(key_id: str, share: shamir.Share) -> KmsShare:
            provider = self._provider(key_id)
            context = _context(chamber_id, purpose, share.index)
            ciphertext = provider.encrypt(key_id, share.to_bytes(), context)
            back = provider.decrypt(key_id, ciphertext, context)
            if not hmac.compare_digest(back, share.to_bytes()):
                raise KmsError(key_id, "decrypt did not return what was encrypted")
            return KmsShare(key_id=key_id, index=share.index, ciphertext=ciphertext)

        with ThreadPoolExecutor(max_workers=len(key_ids), thread_name_prefix="kms") as pool:
            futures = [pool.submit(wrap_one, k, s) for k, s in zip(key_ids, shares, strict=True)]
            wrapped: list[KmsShare] = []
            for future in futures:
                wrapped.append(future.result())
        return KmsLayer(threshold=threshold, shares=tuple(wrapped))

    def unwrap(self, layer: KmsLayer, chamber_id: str, purpose: str) -> tuple[bytes, UnwrapReport]:
        """Decrypt shares concurrently until ``threshold`` are back, then combine.

        Raises :class:`KmsError` (key id ``"kms layer"``) when fewer than ``threshold`` keys
        answer; the message lists each failed key and its reason.
        """
        failures: dict[str, str] = {}
        got: list[shamir.Share] = []

        def unwrap_one(share: KmsShare) -> shamir.Share:
            provider = self._provider(share.key_id)
            plain = provider.decrypt(
                share.key_id, share.ciphertext, _context(chamber_id, purpose, share.index)
            )
            parsed = shamir.Share.from_bytes(plain)
            if parsed.index != share.index:
                raise KmsError(share.key_id, "share index does not match its record")
            return parsed

        pool = ThreadPoolExecutor(max_workers=len(layer.shares), thread_name_prefix="kms")
        pending: dict[Future[shamir.Share], KmsShare] = {}
        try:
            pending.update({pool.submit(unwrap_one, s): s for s in layer.shares})
            while pending and len(got) < layer.threshold:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    share = pending.pop(future)
                    try:
                        got.append(future.result())
                    except ChamberError as error:
                        failures[share.key_id] = getattr(error, "reason", error.message)
                    except Exception as error:  # a provider bug must not stop the others
                        log.exception("KMS provider failed", extra={"kms_key_id": share.key_id})
                        failures[share.key_id] = f"provider error ({type(error).__name__})"
        finally:
            # Do not wait for a hanging key once the threshold is reached, but report a key
            # that fails later: an operator must learn that a key is one failure from loss.
            for future, share in pending.items():
                future.add_done_callback(_late_failure_logger(share.key_id))
            pool.shutdown(wait=False, cancel_futures=True)
        if len(got) < layer.threshold:
            detail = "; ".join(f"{k}: {r}" for k, r in failures.items())
            raise KmsError(
                "kms layer",
                f"only {len(got)} of the {layer.threshold} required KMS keys could decrypt "
                f"their share ({detail})",
            )
        secret = shamir.combine(got[: layer.threshold])
        return secret, UnwrapReport(failures=failures)


def _late_failure_logger(key_id: str) -> Callable[[Future[shamir.Share]], None]:
    def report(future: Future[shamir.Share]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            return
        reason = getattr(error, "reason", None) or f"provider error ({type(error).__name__})"
        log.warning(
            "a KMS key could not decrypt its share; unsealed with the others",
            extra={"kms_key_id": key_id, "reason": reason, "answered_after_threshold": True},
        )

    return report


def _section_name(provider_name: str) -> str:
    """Config section under ``kms`` for a provider: ``aws-kms`` reads ``kms.aws``."""
    return {"aws-kms": "aws"}.get(provider_name, provider_name)


def _context(chamber_id: str, purpose: str, index: int) -> dict[str, str]:
    return {"chamber": chamber_id, "purpose": purpose, "share_index": str(index)}
