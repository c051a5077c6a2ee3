"""Entry point for ``POST /api/v1/eth2/sign/{identifier}``: body bytes in, signing job out.

:func:`prepare_signing` turns an untrusted request body into the 32 bytes to sign, or raises a
:class:`~chamber.errors.BadRequest` / :class:`~chamber.errors.NetworkMismatch` that names the
offending JSON path. It never raises anything else for any input, so the HTTP layer can map every
failure to a 4xx without a catch-all.

Steps: parse JSON (orjson) -> pick the model from ``type`` (and ``version`` for the versioned
types) -> validate strictly (pydantic) -> network guard -> compute the signing root -> compare it
with the client's ``signingRoot`` if one was sent.

``type`` and ``version`` match case-insensitively, as in Web3Signer (Jackson
``ACCEPT_CASE_INSENSITIVE_ENUMS``); field names must be exact (snake_case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from chamber.errors import BadRequest
from chamber.eth import request_models as m
from chamber.eth.networks import FORK_NAMES, Network


@dataclass(frozen=True, slots=True)
class SigningJob:
    """What the signer needs after parsing: the root to sign plus slashing-protection inputs."""

    type: str  # e.g. "BLOCK_V2"
    signing_root: bytes  # 32 bytes, computed by us
    block_slot: int | None  # BLOCK / BLOCK_V2 only (for slashing protection)
    attestation_epochs: tuple[int, int] | None  # (source, target) for ATTESTATION only


_Model = type[m.SigningRequest]

_HEADER_ONLY = dict.fromkeys(FORK_NAMES[FORK_NAMES.index("BELLATRIX") :], m.BlockV2HeaderRequest)
_BLOCK_V2: dict[str, _Model] = {
    "PHASE0": m.BlockV2Phase0Request,
    "ALTAIR": m.BlockV2AltairRequest,
    **_HEADER_ONLY,
}
_PRE_ELECTRA = FORK_NAMES[: FORK_NAMES.index("ELECTRA")]
_AGGREGATE_V2: dict[str, _Model] = {
    **dict.fromkeys(_PRE_ELECTRA, m.AggregateAndProofV2Request),
    "ELECTRA": m.AggregateAndProofV2ElectraRequest,
    "FULU": m.AggregateAndProofV2ElectraRequest,
}

#: Unversioned types: one model each.
_SIMPLE: dict[str, _Model] = {
    "AGGREGATION_SLOT": m.AggregationSlotRequest,
    "AGGREGATE_AND_PROOF": m.AggregateAndProofRequest,
    "ATTESTATION": m.AttestationRequest,
    "BLOCK": m.BlockRequest,
    "DEPOSIT": m.DepositRequest,
    "RANDAO_REVEAL": m.RandaoRevealRequest,
    "VOLUNTARY_EXIT": m.VoluntaryExitRequest,
    "SYNC_COMMITTEE_MESSAGE": m.SyncCommitteeMessageRequest,
    "SYNC_COMMITTEE_SELECTION_PROOF": m.SyncCommitteeSelectionProofRequest,
    "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF": m.SyncCommitteeContributionAndProofRequest,
    "VALIDATOR_REGISTRATION": m.ValidatorRegistrationRequest,
}
#: Versioned types: the payload field holding ``version``, and the model for each version.
_VERSIONED: dict[str, tuple[str, dict[str, _Model]]] = {
    "AGGREGATE_AND_PROOF_V2": ("aggregate_and_proof", _AGGREGATE_V2),
    "BLOCK_V2": ("beacon_block", _BLOCK_V2),
}

REQUEST_TYPES: tuple[str, ...] = (
    "AGGREGATION_SLOT",
    "AGGREGATE_AND_PROOF",
    "AGGREGATE_AND_PROOF_V2",
    "ATTESTATION",
    "BLOCK",
    "BLOCK_V2",
    "DEPOSIT",
    "RANDAO_REVEAL",
    "VOLUNTARY_EXIT",
    "SYNC_COMMITTEE_MESSAGE",
    "SYNC_COMMITTEE_SELECTION_PROOF",
    "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
    "VALIDATOR_REGISTRATION",
)


def prepare_signing(body: bytes, network: Network) -> SigningJob:
    """Validate a signing request for ``network`` and compute what to sign.

    Raises BadRequest (malformed, or ``signingRoot`` disagrees with the content) or
    NetworkMismatch (the request is for another chain).
    """
    data = _load_object(body)
    kind, model = _select_model(data)
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        raise _bad_request(exc) from None
    request.check_network(network)
    root = request.signing_root(network)
    for name, client_root in request.client_signing_roots():
        if client_root != root:
            raise BadRequest(
                f"{name}: 0x{client_root.hex()} does not match the signing root computed "
                f"from the request (0x{root.hex()})",
                field=name,
            )
    return SigningJob(kind, root, request.block_slot(), request.attestation_epochs())


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {_json_kind(data)}")
    return data


def _select_model(data: dict[str, Any]) -> tuple[str, _Model]:
    kind = _enum_value(data, "type", "type", REQUEST_TYPES, "signing request type")
    if kind in _SIMPLE:
        return kind, _SIMPLE[kind]
    key, by_version = _VERSIONED[kind]
    payload = data.get(key)
    if payload is None:
        raise BadRequest(f"{key}: required field is missing", field=key)
    if not isinstance(payload, dict):
        raise BadRequest(f"{key}: must be a JSON object", field=key)
    version = _enum_value(payload, "version", f"{key}.version", tuple(by_version), "version")
    return kind, by_version[version]


def _enum_value(
    obj: dict[str, Any], key: str, path: str, allowed: tuple[str, ...], what: str
) -> str:
    """Read a case-insensitive enumerated string and return its canonical (upper-case) form."""
    value = obj.get(key)
    if value is None:
        raise BadRequest(
            f"{path}: required field is missing; expected one of {', '.join(allowed)}", field=path
        )
    if not isinstance(value, str):
        raise BadRequest(f"{path}: must be a string", field=path)
    # ASCII only: str.upper() maps some non-ASCII letters onto ASCII ones (dotless i -> I).
    upper = value.upper() if value.isascii() else value
    if upper not in allowed:
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
        raise BadRequest(
            f"{path}: unknown {what} {shown}; expected one of {', '.join(allowed)}", field=path
        )
    return upper


def _bad_request(exc: ValidationError) -> BadRequest:
    """Turn pydantic's first error into a BadRequest naming the JSON path."""
    error = exc.errors(include_url=False, include_context=True)[0]
    path = _json_path(error["loc"])
    return BadRequest(f"{path}: {_describe(error)}", field=path)


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        message = "required field is missing"
        name = error["loc"][-1] if error["loc"] else None
        parent = error.get("input")
        if isinstance(name, str) and isinstance(parent, dict):
            camel = _camel_case(name)
            if camel != name and camel in parent:
                message += f" (found {camel!r}; field names are snake_case)"
        return message
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind in ("list_type", "tuple_type"):
        return "must be a JSON array"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    if kind in ("string_type", "str_type"):
        return "must be a string"
    return error["msg"]


def _camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
