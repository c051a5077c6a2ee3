"""The stored vault record: everything a restart needs, nothing that opens it by itself.

One record (state-store key ``MASTER_KEY``) holds the whole master-key configuration, so every
ceremony step and rotation is committed by a single compare-and-set: a crash leaves either the
old or the new configuration, complete.

Layout (JSON, binary fields base64):

- ``kms``: the KMS layer. Shamir shares of the *KMS secret*, each encrypted by a different KMS key
  with an encryption context naming the chamber, the layer's purpose and the share index. In
  ``kms_only`` mode the KMS secret is the master key; in ``unseal`` mode it is the *outer key*.
- ``operators`` (``unseal`` mode): public facts (names, share indices, credential ids, Argon2id
  salts and parameters, registration-token digests) and the ``bundle``: AES-256-GCM under
  HKDF(outer key) holding, per operator, the share wrapped once per credential (AES-256-GCM under
  the credential's Argon2id key) or, until the operator registers, the plain share. Without the
  KMS layer the bundle is opaque; without operator credentials its shares are.
- ``kcv``: HMAC(master key, label), which proves a reconstruction (Shamir cannot tell).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from chamber.crypto.kdf import Argon2Params

RECORD_KEY = "MASTER_KEY"
RECORD_FORMAT = 1

Mode = Literal["kms_only", "unseal"]
Phase = Literal["awaiting_registration", "ready"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True, slots=True)
class KmsShare:
    key_id: str
    index: int
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KmsLayer:
    threshold: int
    shares: tuple[KmsShare, ...]

    @property
    def key_ids(self) -> list[str]:
        return [share.key_id for share in self.shares]


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    credential_id: str
    type: str
    salt: bytes
    params: Argon2Params
    created_at: int
    #: Public parameters of the credential type (e.g. a hardware key's credential id and salt),
    #: handed back to the operator CLI; never secret.
    public: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    name: str
    index: int
    credentials: tuple[CredentialRecord, ...] = ()
    registration_token_digest: str | None = None

    @property
    def registered(self) -> bool:
        return bool(self.credentials)

    def credential(self, credential_id: str) -> CredentialRecord | None:
        for cred in self.credentials:
            if cred.credential_id == credential_id:
                return cred
        return None


@dataclass(frozen=True, slots=True)
class OperatorLayer:
    threshold: int
    operators: tuple[OperatorRecord, ...]
    bundle: bytes = field(repr=False)

    def get(self, name: str) -> OperatorRecord | None:
        for op in self.operators:
            if op.name == name:
                return op
        return None

    @property
    def registered(self) -> int:
        return sum(1 for op in self.operators if op.registered)

    def with_operator(self, updated: OperatorRecord) -> tuple[OperatorRecord, ...]:
        return tuple(updated if op.name == updated.name else op for op in self.operators)


@dataclass(frozen=True, slots=True)
class RotationRecord:
    """A rotation to a new operator set, committed with the configuration it will replace.

    ``kms`` wraps a new outer key with the current KMS keys; ``operators.bundle`` (under that
    outer key) holds the new operators' shares of the same master key, plain until each
    registers. Completing the rotation makes these the record's ``kms`` and ``operators`` in one
    compare-and-set; cancelling drops them."""

    kms: KmsLayer
    operators: OperatorLayer
    started_at: int


@dataclass(frozen=True, slots=True)
class VaultRecord:
    chamber_id: str
    mode: Mode
    phase: Phase
    kcv: bytes
    kms: KmsLayer
    operators: OperatorLayer | None
    created_at: int
    updated_at: int
    #: A new operator set registering (``rotate unseal`` / ``rotate mode``); signing continues.
    rotation: RotationRecord | None = None
    #: Bumped by ``operator seal`` so that every replica polling the record seals too.
    seal_generation: int = 0
    format: int = RECORD_FORMAT

    def evolve(self, **changes: Any) -> VaultRecord:
        return replace(self, **changes)

    # ------------------------------------------------------------------ serialisation

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "format": self.format,
            "chamber_id": self.chamber_id,
            "mode": self.mode,
            "phase": self.phase,
            "kcv": b64(self.kcv),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "seal_generation": self.seal_generation,
            "kms": _kms_doc(self.kms),
            "operators": None if self.operators is None else _operators_doc(self.operators),
            "rotation": None,
        }
        if self.rotation is not None:
            doc["rotation"] = {
                "kms": _kms_doc(self.rotation.kms),
                "operators": _operators_doc(self.rotation.operators),
                "started_at": self.rotation.started_at,
            }
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, raw: bytes) -> VaultRecord:
        """Parse a stored record; ``ValueError`` names what is wrong (the store is corrupt)."""
        try:
            doc = orjson.loads(raw)
            if doc.get("format") != RECORD_FORMAT:
                raise ValueError(f"unknown record format {doc.get('format')!r}")
            mode = doc["mode"]
            phase = doc["phase"]
            if mode not in ("kms_only", "unseal") or phase not in (
                "awaiting_registration",
                "ready",
            ):
                raise ValueError("unknown mode or phase")
            rotation = None
            if doc.get("rotation") is not None:
                rot = doc["rotation"]
                rotation = RotationRecord(
                    kms=_kms_from(rot["kms"]),
                    operators=_operators_from(rot["operators"]),
                    started_at=int(rot["started_at"]),
                )
            return cls(
                chamber_id=str(doc["chamber_id"]),
                mode=mode,
                phase=phase,
                kcv=unb64(doc["kcv"]),
                created_at=int(doc["created_at"]),
                updated_at=int(doc["updated_at"]),
                kms=_kms_from(doc["kms"]),
                operators=None
                if doc.get("operators") is None
                else _operators_from(doc["operators"]),
                rotation=rotation,
                seal_generation=int(doc.get("seal_generation", 0)),
            )
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as error:
            raise ValueError(
                f"the stored vault record is malformed ({type(error).__name__})"
            ) from None


def _public(doc: Any) -> dict[str, str]:
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
    ):
        raise ValueError("credential public parameters must map strings to strings")
    return dict(doc)


def _kms_doc(layer: KmsLayer) -> dict[str, Any]:
    return {
        "threshold": layer.threshold,
        "shares": [
            {"key_id": s.key_id, "index": s.index, "ciphertext": b64(s.ciphertext)}
            for s in layer.shares
        ],
    }


def _kms_from(doc: Any) -> KmsLayer:
    return KmsLayer(
        threshold=int(doc["threshold"]),
        shares=tuple(
            KmsShare(
                key_id=str(s["key_id"]), index=int(s["index"]), ciphertext=unb64(s["ciphertext"])
            )
            for s in doc["shares"]
        ),
    )


def _operators_doc(layer: OperatorLayer) -> dict[str, Any]:
    return {
        "threshold": layer.threshold,
        "bundle": b64(layer.bundle),
        "members": [
            {
                "name": op.name,
                "index": op.index,
                "registration_token_digest": op.registration_token_digest,
                "credentials": [
                    {
                        "credential_id": c.credential_id,
                        "type": c.type,
                        "salt": b64(c.salt),
                        "params": c.params.to_json(),
                        "created_at": c.created_at,
                        "public": dict(c.public),
                    }
                    for c in op.credentials
                ],
            }
            for op in layer.operators
        ],
    }


def _operators_from(doc: Any) -> OperatorLayer:
    return OperatorLayer(
        threshold=int(doc["threshold"]),
        bundle=unb64(doc["bundle"]),
        operators=tuple(
            OperatorRecord(
                name=str(m["name"]),
                index=int(m["index"]),
                registration_token_digest=m.get("registration_token_digest"),
                credentials=tuple(
                    CredentialRecord(
                        credential_id=str(c["credential_id"]),
                        type=str(c["type"]),
                        salt=unb64(c["salt"]),
                        params=Argon2Params.from_json(c["params"]),
                        created_at=int(c["created_at"]),
                        public=_public(c.get("public") or {}),
                    )
                    for c in m["credentials"]
                ),
            )
            for m in doc["members"]
        ),
    )


# ---------------------------------------------------------------------- the operator bundle


@dataclass(slots=True)
class BundleEntry:
    """One operator's secret part of the bundle: a plain share until registration, then the
    share wrapped per credential."""

    pending_share: bytes | None = field(default=None, repr=False)
    wrapped: dict[str, bytes] = field(default_factory=dict, repr=False)


def bundle_to_bytes(entries: dict[str, BundleEntry]) -> bytes:
    doc = {
        name: {
            "pending_share": None if e.pending_share is None else b64(e.pending_share),
            "wrapped": {cid: b64(blob) for cid, blob in e.wrapped.items()},
        }
        for name, e in entries.items()
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def bundle_from_bytes(raw: bytes) -> dict[str, BundleEntry]:
    doc = orjson.loads(raw)
    return {
        name: BundleEntry(
            pending_share=None if e["pending_share"] is None else unb64(e["pending_share"]),
            wrapped={cid: unb64(blob) for cid, blob in e["wrapped"].items()},
        )
        for name, e in doc.items()
    }
