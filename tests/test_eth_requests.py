"""Malformed signing requests: every failure is a BadRequest (or NetworkMismatch) naming the field.

The HTTP layer relies on ``prepare_signing`` raising nothing but these two for any input; the
hypothesis tests at the end feed it random bodies and random mutations of valid requests.
"""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chamber.errors import BadRequest, NetworkMismatch
from chamber.eth import REQUEST_TYPES, custom_network, get_network, prepare_signing
from tests.support import VECTORS

MAINNET = get_network("mainnet")
GVR = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
ROOT_A = "0x" + "aa" * 32
SIG = "0x" + "bb" * 96
FORK_INFO = {
    "fork": {"previous_version": "0x04000000", "current_version": "0x05000000", "epoch": "364032"},
    "genesis_validators_root": GVR,
}


def attestation() -> dict[str, Any]:
    return {
        "type": "ATTESTATION",
        "fork_info": copy.deepcopy(FORK_INFO),
        "attestation": {
            "slot": "11648000",
            "index": "0",
            "beacon_block_root": ROOT_A,
            "source": {"epoch": "363999", "root": ROOT_A},
            "target": {"epoch": "364000", "root": ROOT_A},
        },
    }


def block_v2() -> dict[str, Any]:
    return {
        "type": "BLOCK_V2",
        "fork_info": copy.deepcopy(FORK_INFO),
        "beacon_block": {
            "version": "ELECTRA",
            "block_header": {
                "slot": "11648001",
                "proposer_index": "12",
                "parent_root": ROOT_A,
                "state_root": ROOT_A,
                "body_root": ROOT_A,
            },
        },
    }


def spec_examples() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(
        (VECTORS / "web3signer/openapi-specs/eth2/signing/paths/sign.yaml").read_text()
    )
    examples = doc["post"]["requestBody"]["content"]["application/json"]["examples"]
    return {name: e["value"] for name, e in examples.items()}


EXAMPLES = spec_examples()
EXAMPLE_NETWORK = custom_network(
    bytes.fromhex("04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673"),
    bytes.fromhex("00000001"),
)


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[name])


def dumps(value: Any) -> bytes:
    """stdlib json: unlike orjson it can write integers beyond 64 bits, which we must test."""
    return json.dumps(value).encode()


def prepare(req: Any, network: Any = MAINNET) -> Any:
    return prepare_signing(dumps(req), network)


def bad_request(req: Any, network: Any = MAINNET) -> BadRequest:
    with pytest.raises(BadRequest) as err:
        prepare(req, network)
    assert type(err.value) is BadRequest
    assert err.value.status == 400
    return err.value


def test_valid_baselines() -> None:
    assert prepare(attestation()).attestation_epochs == (363999, 364000)
    assert prepare(block_v2()).block_slot == 11648001


def test_request_types() -> None:
    assert len(REQUEST_TYPES) == 13
    assert set(REQUEST_TYPES) == {
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
    }


Mutation = Callable[[dict[str, Any]], object]


def setter(*path: str | int, value: Any) -> Mutation:
    def mutate(req: dict[str, Any]) -> None:
        target: Any = req
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def deleter(*path: str | int) -> Mutation:
    def mutate(req: dict[str, Any]) -> None:
        target: Any = req
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


SLOT = ("attestation", "slot")
BBR = ("attestation", "beacon_block_root")
UINT64_CASES = [
    ("2**64 as string", str(2**64), "out of range"),
    ("2**64 as JSON number", 2**64, "uint64"),
    ("huge string", "9" * 400, "uint64"),
    ("negative string", "-1", "uint64"),
    ("negative number", -1, "out of range"),
    ("float", 1.5, "uint64"),
    ("float string", "1.0", "uint64"),
    ("hex string", "0x10", "uint64"),
    ("whitespace", " 1", "uint64"),
    ("underscore", "1_000", "uint64"),
    ("empty", "", "uint64"),
    ("bool", True, "uint64"),
    ("null", None, "uint64"),
    ("list", ["1"], "uint64"),
    ("object", {"value": "1"}, "uint64"),
    ("non-ascii digits", "\u0661\u0662", "uint64"),
    ("superscript digit", "\u00b2", "uint64"),
]


@pytest.mark.parametrize(
    ("value", "fragment"), [c[1:] for c in UINT64_CASES], ids=[c[0] for c in UINT64_CASES]
)
def test_bad_uint64(value: Any, fragment: str) -> None:
    req = attestation()
    setter(*SLOT, value=value)(req)
    err = bad_request(req)
    assert err.field == "attestation.slot"
    assert err.message.startswith("attestation.slot: must be a decimal uint64 string")
    assert fragment in err.message


def test_uint64_bounds_accepted() -> None:
    for value in ("0", str(2**64 - 1), 2**64 - 1, "000000000000000000001"[:20]):
        req = attestation()
        req["attestation"]["index"] = value
        prepare(req)


HEX_CASES = [
    ("non-hex", "0x" + "zz" * 32),
    ("31 bytes", "0x" + "aa" * 31),
    ("33 bytes", "0x" + "aa" * 33),
    ("odd length", "0x" + "a" * 63),
    ("no prefix", "aa" * 32 + "aa"),
    ("uppercase prefix", "0X" + "aa" * 32),
    ("inner whitespace", "0x" + "aa" * 15 + " a" + "aa" * 16),
    ("number", 12),
    ("null", None),
    ("empty", ""),
]


@pytest.mark.parametrize("value", [c[1] for c in HEX_CASES], ids=[c[0] for c in HEX_CASES])
def test_bad_hex_root(value: Any) -> None:
    req = attestation()
    setter(*BBR, value=value)(req)
    err = bad_request(req)
    assert err.field == "attestation.beacon_block_root"
    assert "hex string of 32 bytes" in err.message


CASES: list[tuple[str, Callable[[], dict[str, Any]], Mutation, str, str]] = [
    # (id, base, mutation, field, message fragment)
    ("missing payload", attestation, deleter("attestation"), "attestation", "required"),
    (
        "missing nested",
        attestation,
        deleter("attestation", "target"),
        "attestation.target",
        "required",
    ),
    ("missing fork_info", attestation, deleter("fork_info"), "fork_info", "required"),
    (
        "fork_info not object",
        attestation,
        setter("fork_info", value="x"),
        "fork_info",
        "JSON object",
    ),
    (
        "payload is array",
        attestation,
        setter("attestation", value=[]),
        "attestation",
        "JSON object",
    ),
    (
        "unknown nested field",
        attestation,
        setter("attestation", "extra", value=1),
        "attestation.extra",
        "unknown field",
    ),
    ("unknown top-level field", attestation, setter("block", value={}), "block", "unknown field"),
    (
        "short fork version",
        attestation,
        setter("fork_info", "fork", "current_version", value="0x050000"),
        "fork_info.fork.current_version",
        "4 bytes",
    ),
    (
        "bad fork epoch",
        attestation,
        setter("fork_info", "fork", "epoch", value="-5"),
        "fork_info.fork.epoch",
        "uint64",
    ),
    (
        "bad signingRoot",
        attestation,
        setter("signingRoot", value="0x1234"),
        "signingRoot",
        "32 bytes",
    ),
    ("bad signing_root", attestation, setter("signing_root", value=5), "signing_root", "32 bytes"),
    ("missing type", attestation, deleter("type"), "type", "required"),
    ("null type", attestation, setter("type", value=None), "type", "required"),
    ("numeric type", attestation, setter("type", value=3), "type", "must be a string"),
    (
        "unknown type",
        attestation,
        setter("type", value="SIGN_ANYTHING"),
        "type",
        "unknown signing request type",
    ),
    ("non-ascii type", attestation, setter("type", value="ATTESTAT\u0131ON"), "type", "unknown"),
    (
        "unknown version",
        block_v2,
        setter("beacon_block", "version", value="GLOAS"),
        "beacon_block.version",
        "unknown version",
    ),
    (
        "missing version",
        block_v2,
        deleter("beacon_block", "version"),
        "beacon_block.version",
        "required",
    ),
    ("missing beacon_block", block_v2, deleter("beacon_block"), "beacon_block", "required"),
    (
        "beacon_block array",
        block_v2,
        setter("beacon_block", value=[1]),
        "beacon_block",
        "JSON object",
    ),
    (
        "header fork sends block",
        block_v2,
        lambda r: r["beacon_block"].update(block=r["beacon_block"].pop("block_header")),
        "beacon_block.block_header",
        "required",
    ),
    (
        "header slot",
        block_v2,
        setter("beacon_block", "block_header", "slot", value="x"),
        "beacon_block.block_header.slot",
        "decimal uint64 string",
    ),
]


@pytest.mark.parametrize(
    ("base", "mutate", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_field(
    base: Callable[[], dict[str, Any]], mutate: Mutation, field: str, fragment: str
) -> None:
    req = base()
    mutate(req)
    err = bad_request(req)
    assert err.field == field
    assert err.message.startswith(f"{field}: ")
    assert fragment in err.message


def test_error_paths_into_lists_of_a_full_block() -> None:
    req = example("BLOCK_V2 (PHASE 0)")
    req["beacon_block"]["block"]["body"]["attestations"][1]["data"]["source"]["epoch"] = "x"
    err = bad_request(req, EXAMPLE_NETWORK)
    assert err.field == "beacon_block.block.body.attestations[1].data.source.epoch"


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (
            lambda b: b["proposer_slashings"].extend(b["proposer_slashings"] * 16),
            "beacon_block.block.body.proposer_slashings",
            "at most 16",
        ),
        (
            lambda b: b["deposits"][0]["proof"].pop(),
            "beacon_block.block.body.deposits[0].proof",
            "at least 33",
        ),
        (
            lambda b: b["deposits"][0]["proof"].append(ROOT_A),
            "beacon_block.block.body.deposits[0].proof",
            "at most 33",
        ),
        (
            lambda b: b["attester_slashings"][0]["attestation_1"].update(attesting_indices="1"),
            "beacon_block.block.body.attester_slashings[0].attestation_1.attesting_indices",
            "JSON array",
        ),
        (
            lambda b: b["attester_slashings"][0]["attestation_1"].update(
                attesting_indices=["1"] * 2049
            ),
            "beacon_block.block.body.attester_slashings[0].attestation_1.attesting_indices",
            "at most 2048",
        ),
        (
            lambda b: b["attestations"][0].update(aggregation_bits="0x0100"),
            "beacon_block.block.body.attestations[0].aggregation_bits",
            "length marker",
        ),
        (
            lambda b: b["attestations"][0].update(aggregation_bits="0x" + "ff" * 256 + "03"),
            "beacon_block.block.body.attestations[0].aggregation_bits",
            "at most 2048 bits",
        ),
        (
            lambda b: b["attestations"][0].update(aggregation_bits="0x"),
            "beacon_block.block.body.attestations[0].aggregation_bits",
            "bitlist",
        ),
        (
            lambda b: b["sync_aggregate"].update(sync_committee_bits="0x" + "00" * 63),
            "beacon_block.block.body.sync_aggregate.sync_committee_bits",
            "512 bits",
        ),
        (lambda b: b.pop("sync_aggregate"), "beacon_block.block.body.sync_aggregate", "required"),
    ],
)
def test_full_block_limits(mutate: Mutation, field: str, fragment: str) -> None:
    req = example("BLOCK_V2 (ALTAIR)")
    body = req["beacon_block"]["block"]["body"]
    body["sync_aggregate"]["sync_committee_bits"] = "0x" + "01" * 64  # mainnet preset size
    req.pop("signingRoot")
    prepare(req, EXAMPLE_NETWORK)
    mutate(body)
    err = bad_request(req, EXAMPLE_NETWORK)
    assert err.field == field
    assert fragment in err.message


def test_bitlist_at_its_limit_is_accepted() -> None:
    req = example("AGGREGATE_AND_PROOF_V2 (DENEB)")
    req.pop("signingRoot")
    req["aggregate_and_proof"]["data"]["aggregate"]["aggregation_bits"] = "0x" + "ff" * 256 + "01"
    prepare(req, EXAMPLE_NETWORK)


def test_electra_committee_bits_length() -> None:
    req = example("AGGREGATE_AND_PROOF_V2 (ELECTRA)")
    req.pop("signingRoot")
    req["aggregate_and_proof"]["data"]["aggregate"]["committee_bits"] = "0x" + "00" * 7
    err = bad_request(req, EXAMPLE_NETWORK)
    assert err.field == "aggregate_and_proof.data.aggregate.committee_bits"
    assert "64 bits" in err.message


def test_electra_version_requires_committee_bits() -> None:
    req = example("AGGREGATE_AND_PROOF_V2 (DENEB)")
    req["aggregate_and_proof"]["version"] = "ELECTRA"
    err = bad_request(req, EXAMPLE_NETWORK)
    assert err.field == "aggregate_and_proof.data.aggregate.committee_bits"


def test_camel_case_fields_get_a_hint() -> None:
    err = bad_request(example("AGGREGATION_SLOT"), EXAMPLE_NETWORK)
    assert err.field == "fork_info.fork.previous_version"
    assert "previousVersion" in err.message


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"\xff\xfe{}", b'{"type": "ATTESTATION",}', b"[" * 5000 + b"]" * 5000],
    ids=["empty", "truncated", "text", "invalid utf-8", "trailing comma", "too deep"],
)
def test_non_json_body(body: bytes) -> None:
    with pytest.raises(BadRequest) as err:
        prepare_signing(body, MAINNET)
    assert err.value.field is None
    assert err.value.message.startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "an array"),
        (b'[{"type": "ATTESTATION"}]', "an array"),
        (b'"x"', "a string"),
        (b"1", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_non_object_body(body: bytes, kind: str) -> None:
    with pytest.raises(BadRequest) as err:
        prepare_signing(body, MAINNET)
    assert err.value.message == f"request body must be a JSON object, not {kind}"


def test_wrong_genesis_validators_root() -> None:
    req = attestation()
    req["fork_info"]["genesis_validators_root"] = "0x" + "d8ea171f" * 8
    with pytest.raises(NetworkMismatch) as err:
        prepare(req)
    assert err.value.status == 403
    assert err.value.field == "fork_info.genesis_validators_root"
    assert "mainnet" in err.value.message


def test_network_guard_uses_the_configured_network() -> None:
    req = attestation()
    with pytest.raises(NetworkMismatch):
        prepare(req, get_network("hoodi"))
    with pytest.raises(NetworkMismatch):
        prepare(block_v2(), get_network("sepolia"))


@pytest.mark.parametrize("kind", ["DEPOSIT", "VALIDATOR_REGISTRATION"])
def test_optional_fork_info_is_guarded_too(kind: str) -> None:
    name = "DEPOSIT" if kind == "DEPOSIT" else "VALIDATOR_REGISTRATION"
    req = example(name)
    req["fork_info"] = copy.deepcopy(FORK_INFO)  # mainnet root, example network is different
    with pytest.raises(NetworkMismatch):
        prepare(req, EXAMPLE_NETWORK)
    req["fork_info"]["genesis_validators_root"] = (
        "0x" + EXAMPLE_NETWORK.genesis_validators_root.hex()
    )
    prepare(req, EXAMPLE_NETWORK)


def test_deposit_needs_no_fork_info_but_validator_registration_payload() -> None:
    err = bad_request({"type": "VALIDATOR_REGISTRATION"})
    assert err.field == "validator_registration"


def test_guard_runs_before_signing_root_check() -> None:
    req = attestation()
    req["fork_info"]["genesis_validators_root"] = ROOT_A
    req["signingRoot"] = ROOT_A
    with pytest.raises(NetworkMismatch):
        prepare(req)


# --------------------------------------------------------------------------------------------
# Fuzzing: nothing but BadRequest / NetworkMismatch may escape.
# --------------------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["0x", "0x00", "0x" + "00" * 32, "1", str(2**64), "PHASE0", "DENEB", "0x01"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def assert_only_chamber_errors(body: bytes, network: Any = MAINNET) -> None:
    try:
        job = prepare_signing(body, network)
    except (BadRequest, NetworkMismatch) as exc:
        assert exc.message
        assert exc.status in (400, 403)
    else:
        assert len(job.signing_root) == 32


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_raw_bytes(body: bytes) -> None:
    assert_only_chamber_errors(body)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fuzz_json_values(value: Any) -> None:
    assert_only_chamber_errors(dumps(value))


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([*REQUEST_TYPES, "block_v2", "FOO"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "fork_info",
                "beacon_block",
                "aggregate_and_proof",
                "attestation",
                "deposit",
                "signingRoot",
                "block",
                "x",
            ]
        ),
        JSON_VALUES,
        max_size=4,
    ),
)
def test_fuzz_typed_objects(kind: str, fields: dict[str, Any]) -> None:
    assert_only_chamber_errors(dumps({"type": kind, **fields}))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(EXAMPLES)),
    data=st.data(),
    operation=st.sampled_from(["replace", "delete", "add"]),
    replacement=JSON_VALUES,
)
def test_fuzz_mutated_examples(
    name: str, data: st.DataObject, operation: str, replacement: Any
) -> None:
    req = example(name)
    path = data.draw(st.sampled_from(paths(req)), label="path")
    if not path:
        req = replacement
    else:
        parent: Any = req
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if operation == "replace":
            parent[last] = replacement
        elif operation == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last]["unexpected"] = replacement
        elif isinstance(parent[last], list):
            parent[last].append(replacement)
        else:
            parent[last] = replacement
    network = data.draw(st.sampled_from([MAINNET, EXAMPLE_NETWORK]), label="network")
    assert_only_chamber_errors(dumps(req), network)
