"""Property-based API test: a real signer against the Web3Signer eth2 OpenAPI specification.

Schemathesis loads ``web3signer/openapi-specs/eth2/web3signer.yaml`` from the external vectors (its
relative ``$ref``s to ``signing/paths/*.yaml`` and ``signing/schemas.yaml`` are resolved by
schemathesis from the file's location; ``test_spec_refs_are_resolved`` proves it) and generates
requests for the operations the signer implements. A real waitress signer (harness, random port)
answers them. It serves a custom network with the chain the spec examples were made for (GVR
``0x0470...a673``, genesis fork version ``0x00000001``), and holds the key whose public key is the
spec's example ``identifier``, so the examples get through the network guard and are signed.

Properties checked on every response:

* schemathesis ``not_a_server_error``, ``response_schema_conformance`` and
  ``content_type_conformance`` (``status_code_conformance`` is replaced by the next check);
* a status the spec does not document for the operation is 403 or 413 only, and a 403 is the
  network guard (our SPEC requires 403 for another chain; Web3Signer's spec lists no 403/413 for
  sign), so an unexpected 401/404/405/422/... fails;
* every error body follows docs/api.md (JSON ``{"error", "message"[, "field"]}``);
* a 200 from sign is never for another chain;
* the signer logged no error while answering.

Besides the spec-driven bodies, a ``before_generate_body`` hook mixes in requests built by
``tests/ssz_oracle.py``: valid ones for every type and version, ones for another chain, and valid
ones with a single field mutated (wrong JSON type, out of range, deleted, unknown sibling), so the
generated run reaches signing, the network guard and deep validation rather than stopping at the
first malformed field. Explicit (not generated) tests at the end cover malformed input cases that
``test_api.py`` does not.
"""

import http.client
import json
import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from py_ecc.bls import G2ProofOfPossession as reference_bls
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests import harness
from tests.harness import (
    TOKEN,
    InProcessSigner,
    base_config,
    in_process_signer,
    make_keys,
    write_raw_keys,
)
from tests.ssz_oracle import (
    CASES,
    OracleNet,
    attestation_request,
    block_header_request,
    deposit_request,
    fork_info,
    fork_info_strategy,
    hexs,
    oracle_request_root,
    request_strategy,
)
from tests.support import VECTORS

SPEC_PATH = VECTORS / "web3signer/openapi-specs/eth2/web3signer.yaml"
SIGN_PATH = "/api/v1/eth2/sign/{identifier}"
# Implemented so far. Excluded until they are built: /api/v1/eth2/highWatermark, /reload and the
# keymanager's /eth/v1/keystores (GET/POST/DELETE).
IMPLEMENTED = [SIGN_PATH, "/api/v1/eth2/publicKeys", "/upcheck", "/healthcheck"]

#: The chain of the spec examples.
EXAMPLE_GVR = bytes.fromhex("04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673")
EXAMPLE_GENESIS = bytes.fromhex("00000001")
EXAMPLE_NET = OracleNet(gvr=EXAMPLE_GVR, genesis_fork_version=EXAMPLE_GENESIS)
#: Web3Signer's public test key; its public key is the spec's example ``identifier``.
EXAMPLE_SECRET = 0x3EE2224386C82FFEA477E2ADF28A2929F5C349165A4196158C7F3A2ECCA40F35
EXAMPLE_PUBKEY = (
    "0x989d34725a2bfc3f15105f3f5fc8741f436c25ee1ee4f948e425d6bcb8c56bce"
    "6e06c269635b7e985a7ffa639e2409bf"
)
EXAMPLE_KEY = harness.TestKey(EXAMPLE_SECRET, reference_bls.SkToPk(EXAMPLE_SECRET))
KEYS = [EXAMPLE_KEY, *make_keys(2, seed="schemathesis")]
UNKNOWN_PUBKEY = make_keys(1, seed="not-loaded")[0].pubkey_hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1024 * 1024

CONFIG = schemathesis.Config.from_dict(
    {"generation": {"deterministic": True}, "phases": {"stateful": {"enabled": False}}}
)
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG).include(path=IMPLEMENTED)


# --------------------------------------------------------------------------------------------
# The signer, and the errors it logs
# --------------------------------------------------------------------------------------------


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        taken, self.records = self.records, []
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(record) for record in taken]


ERRORS = _ErrorLog()


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSigner]:
    keys_dir = tmp_path_factory.mktemp("keys")
    write_raw_keys(keys_dir, KEYS)
    config = base_config(
        keys_dir,
        network="custom",
        custom_network={
            "genesis_validators_root": hexs(EXAMPLE_GVR),
            "genesis_fork_version": hexs(EXAMPLE_GENESIS),
        },
    )
    chamber_log = logging.getLogger("chamber")
    chamber_log.addHandler(ERRORS)
    try:
        with in_process_signer(config) as running:
            yield running
    finally:
        chamber_log.removeHandler(ERRORS)


# --------------------------------------------------------------------------------------------
# Checks beyond schemathesis' own
# --------------------------------------------------------------------------------------------


def _is_method_probe(case: schemathesis.Case) -> bool:
    """Coverage-phase probe: a method the spec does not declare for the path."""
    return case.method.upper() != case.operation.method.upper()


def _json(response: schemathesis.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise AssertionError(f"body is not JSON: {response.content[:300]!r}") from None


def only_expected_undocumented_statuses(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Statuses outside the spec: 403 from the network guard or 413 for a large body, only."""
    status = response.status_code
    if _is_method_probe(case):
        allowed = {405, 200} if case.method.upper() == "OPTIONS" else {405}
        assert status in allowed, f"{case.method} {case.path}: {status}"
        return
    documented = {int(code) for code in case.operation.responses.status_codes if code.isdigit()}
    if status in documented:
        return
    assert status in (403, 413), (
        f"status {status} is neither documented for {case.operation.label} "
        f"({sorted(documented)}) nor one of ours (403 wrong network, 413 too large): "
        f"{response.content[:300]!r}"
    )
    body = _json(response)
    if status == 403:
        assert body.get("error") == "wrong network", body
        assert "genesis" in body.get("message", ""), body
        assert body.get("field") in (
            "fork_info.genesis_validators_root",
            "deposit.genesis_fork_version",
        ), body
    else:
        assert "exceeds the limit" in body.get("message", ""), body


def error_bodies_follow_api_docs(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """docs/api.md: error bodies are JSON ``{"error", "message"[, "field"]}``."""
    if response.status_code < 400 or _is_method_probe(case):
        return  # method probes: see test_framework_errors_use_the_documented_error_body
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), content_type
    body = _json(response)
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("field", ""), str), body


def never_signs_for_another_chain(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    if response.status_code != 200 or case.operation.path != SIGN_PATH or _is_method_probe(case):
        return
    body = case.body
    assert isinstance(body, dict), body
    info = body.get("fork_info")
    if info is not None:
        assert info["genesis_validators_root"].lower() == hexs(EXAMPLE_GVR), body
    if str(body.get("type")).upper() == "DEPOSIT":
        assert body["deposit"]["genesis_fork_version"].lower() == hexs(EXAMPLE_GENESIS), body
    if "text/plain" not in response.headers.get("content-type", [""])[0]:
        signature = _json(response)["signature"]
        assert signature.startswith("0x") and len(bytes.fromhex(signature[2:])) == 96


def no_errors_logged(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    logged = ERRORS.take()
    assert not logged, "the signer logged errors:\n" + "\n".join(logged)


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
OUR_CHECKS = [
    only_expected_undocumented_statuses,
    error_bodies_follow_api_docs,
    never_signs_for_another_chain,
    no_errors_logged,
]


def validate(case: schemathesis.Case, response: schemathesis.Response) -> None:
    case.validate_response(response, checks=CHECKS, additional_checks=OUR_CHECKS)


# --------------------------------------------------------------------------------------------
# Generation: the spec's own bodies, plus oracle-built valid / foreign / mutated requests
# --------------------------------------------------------------------------------------------

SHAPES = st.sampled_from(CASES)
OTHER_ROOT = st.binary(min_size=32, max_size=32).filter(lambda b: b != EXAMPLE_GVR)
OTHER_VERSION = st.binary(min_size=4, max_size=4).filter(lambda b: b != EXAMPLE_GENESIS)


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    kind, version = draw(SHAPES)
    body = draw(request_strategy(kind, version, EXAMPLE_GVR, EXAMPLE_GENESIS))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["signingRoot", "signing_root"]))
        body[key] = hexs(oracle_request_root(body, EXAMPLE_NET))
    return body


@st.composite
def foreign_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Valid requests, but for another chain: the network guard must answer 403."""
    kind, version = draw(SHAPES)
    body = draw(request_strategy(kind, version, draw(OTHER_ROOT), draw(OTHER_VERSION)))
    if kind == "VALIDATOR_REGISTRATION":  # only its optional fork_info can name a chain
        body["fork_info"] = draw(fork_info_strategy(draw(OTHER_ROOT)))
    return body


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from([str(2**64), "-1", "0x", "0x" + "zz" * 32, "0X" + "00" * 32, " 1", "1e3"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(0, 3), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with exactly one thing wrong (or, by chance, harmlessly changed)."""
    body = draw(valid_requests())
    path = draw(st.sampled_from(list(_paths(body))))
    parent: Any = body
    for part in path[:-1]:
        parent = parent[part]
    mutation = draw(st.sampled_from(["replace", "delete", "add"]))
    if mutation == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif mutation == "add" and isinstance(parent, dict):
        parent["unexpected_field"] = draw(JUNK)
    else:
        parent[path[-1]] = draw(JUNK)
    return body


IDENTIFIERS = st.sampled_from(
    [key.pubkey_hex for key in KEYS] + [EXAMPLE_PUBKEY.upper().replace("0X", "0x"), UNKNOWN_PUBKEY]
)


@SCHEMA.hook
def before_generate_body(context: schemathesis.HookContext, strategy: Any) -> Any:
    if context.operation is None or context.operation.path != SIGN_PATH:
        return strategy
    return st.one_of(strategy, valid_requests(), foreign_requests(), mutated_requests())


@SCHEMA.hook
def before_generate_path_parameters(context: schemathesis.HookContext, strategy: Any) -> Any:
    if context.operation is None or context.operation.path != SIGN_PATH:
        return strategy
    return st.one_of(strategy, st.fixed_dictionaries({"identifier": IDENTIFIERS}))


# --------------------------------------------------------------------------------------------
# The generated run
# --------------------------------------------------------------------------------------------

OUTCOMES: Counter[tuple[str, int]] = Counter()


@SCHEMA.parametrize()
@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_api_conforms_to_the_web3signer_spec(
    case: schemathesis.Case, signer: InProcessSigner
) -> None:
    response = case.call(base_url=signer.url, headers=AUTH)  # the policy token on every case
    OUTCOMES[(case.operation.path, response.status_code)] += 1
    validate(case, response)


def test_the_generated_run_reached_every_outcome() -> None:
    """The run above was not vacuous: it signed, refused other chains and rejected bad input."""
    sign = {status: n for (path, status), n in OUTCOMES.items() if path == SIGN_PATH}
    assert sign, "run this together with test_api_conforms_to_the_web3signer_spec, after it"
    assert {200, 400, 403, 404} <= set(sign), sign
    assert sign[200] >= 20 and sign[403] >= 10, sign


def test_only_implemented_operations_are_tested() -> None:
    labels = {result.ok().label for result in SCHEMA.get_all_operations()}
    assert labels == {
        f"POST {SIGN_PATH}",
        "GET /api/v1/eth2/publicKeys",
        "GET /upcheck",
        "GET /healthcheck",
    }


# --------------------------------------------------------------------------------------------
# Explicit cases, validated with the same checks
# --------------------------------------------------------------------------------------------

SIGN = SCHEMA[SIGN_PATH]["POST"]


def sign(signer: InProcessSigner, body: Any, identifier: str = EXAMPLE_PUBKEY) -> Any:
    """Send ``body`` to sign through schemathesis, run every check, return the parsed answer."""
    case = SIGN.Case(path_parameters={"identifier": identifier}, body=body)
    response = case.call(base_url=signer.url, headers=AUTH)
    validate(case, response)
    return response.status_code, _json(response)


def randao(epoch: Any = "5") -> dict[str, Any]:
    return {
        "type": "RANDAO_REVEAL",
        "fork_info": fork_info("00000001", "00000001", 0, EXAMPLE_GVR),
        "randao_reveal": {"epoch": epoch},
    }


def block_v2() -> dict[str, Any]:
    body = block_header_request(100, 0, EXAMPLE_GVR)
    body["beacon_block"]["version"] = "DENEB"
    return body


def attestation() -> dict[str, Any]:
    return attestation_request(7, 0, EXAMPLE_GVR)


def deposit() -> dict[str, Any]:
    return deposit_request(EXAMPLE_GENESIS.hex())


def registration() -> dict[str, Any]:
    return {
        "type": "VALIDATOR_REGISTRATION",
        "validator_registration": {
            "fee_recipient": hexs(b"\x42" * 20),
            "gas_limit": "30000000",
            "timestamp": "1700000000",
            "pubkey": EXAMPLE_PUBKEY,
        },
    }


BASES: dict[str, Callable[[], dict[str, Any]]] = {
    "randao": randao,
    "block_v2": block_v2,
    "attestation": attestation,
    "deposit": deposit,
    "registration": registration,
}


def assert_still_serving(signer: InProcessSigner) -> None:
    status, body = sign(signer, randao("6"))
    assert status == 200, body


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_unmodified_bases_sign(signer: InProcessSigner, base: str) -> None:
    status, body = sign(signer, BASES[base]())
    assert status == 200, body


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    target[last] = value
    return body


def _delete(body: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    del target[last]
    return body


UINT64_MESSAGE = "must be a decimal uint64 string"
ROOT_MESSAGE = "must be a 0x-prefixed hex string of 32 bytes"
WRONG_TYPES = [
    # (base, path, value, message fragment)
    ("randao", "randao_reveal.epoch", True, UINT64_MESSAGE),
    ("randao", "randao_reveal.epoch", 5.0, UINT64_MESSAGE),
    ("randao", "randao_reveal.epoch", None, UINT64_MESSAGE),
    ("randao", "randao_reveal.epoch", ["5"], UINT64_MESSAGE),
    ("randao", "randao_reveal", "5", "must be a JSON object"),
    ("randao", "fork_info", "mainnet", "must be a JSON object"),
    ("randao", "fork_info.fork", [], "must be a JSON object"),
    ("randao", "type", 5, "must be a string"),
    ("block_v2", "beacon_block", "DENEB", "must be a JSON object"),
    ("block_v2", "beacon_block.version", ["DENEB"], "must be a string"),
    ("block_v2", "beacon_block.block_header.parent_root", 0, ROOT_MESSAGE),
    ("attestation", "attestation.source.root", None, ROOT_MESSAGE),
    ("attestation", "attestation.target", "7", "must be a JSON object"),
    ("deposit", "deposit.amount", 32e9, UINT64_MESSAGE),
    ("registration", "validator_registration.fee_recipient", 42, "hex string of 20 bytes"),
    ("randao", "signingRoot", 0, ROOT_MESSAGE),
]


@pytest.mark.parametrize(
    ("base", "path", "value", "fragment"),
    WRONG_TYPES,
    ids=[f"{b}:{p}={v!r}" for b, p, v, _ in WRONG_TYPES],
)
def test_wrong_json_types(
    signer: InProcessSigner, base: str, path: str, value: Any, fragment: str
) -> None:
    status, body = sign(signer, _set(BASES[base](), path, value))
    assert status == 400, body
    assert body["field"] == path, body
    assert body["message"].startswith(f"{path}: "), body
    assert fragment in body["message"], body
    assert_still_serving(signer)


OUT_OF_RANGE = [
    ("string 2**64", "randao_reveal.epoch", str(2**64), "out of range"),
    # orjson reads a JSON integer beyond uint64 as a float: still refused, naming the field.
    ("number 2**64", "randao_reveal.epoch", 2**64, UINT64_MESSAGE),
    ("number -1", "randao_reveal.epoch", -1, "out of range"),
    ("string -1", "randao_reveal.epoch", "-1", UINT64_MESSAGE),
    ("21 digits", "randao_reveal.epoch", "1" + "0" * 20, UINT64_MESSAGE),
    ("exponent", "randao_reveal.epoch", "1e3", UINT64_MESSAGE),
    ("plus sign", "randao_reveal.epoch", "+1", UINT64_MESSAGE),
    ("space", "randao_reveal.epoch", " 1", UINT64_MESSAGE),
    ("hex", "randao_reveal.epoch", "0x10", UINT64_MESSAGE),
    ("fork epoch 2**64", "fork_info.fork.epoch", str(2**64), "out of range"),
]


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [case[1:] for case in OUT_OF_RANGE],
    ids=[case[0] for case in OUT_OF_RANGE],
)
def test_out_of_range_integers(
    signer: InProcessSigner, path: str, value: Any, fragment: str
) -> None:
    status, body = sign(signer, _set(randao(), path, value))
    assert status == 400, body
    assert body["field"] == path, body
    assert fragment in body["message"], body
    assert_still_serving(signer)


@pytest.mark.parametrize("value", [str(2**64 - 1), 2**64 - 1, 0, "0", "00"])
def test_uint64_bounds_are_accepted(signer: InProcessSigner, value: Any) -> None:
    status, body = sign(signer, randao(value))
    assert status == 200, body


NON_HEX = [
    ("not hex digits", "0x" + "zz" * 32),
    ("no 0x prefix", EXAMPLE_GVR.hex()),
    ("31 bytes", "0x" + EXAMPLE_GVR.hex()[:-2]),
    ("33 bytes", "0x" + EXAMPLE_GVR.hex() + "00"),
    ("odd length", "0x" + EXAMPLE_GVR.hex()[:-1]),
    ("embedded space", "0x" + EXAMPLE_GVR.hex()[:-2] + " 3"),
    ("empty", ""),
]


@pytest.mark.parametrize("value", [v for _, v in NON_HEX], ids=[n for n, _ in NON_HEX])
def test_non_hex_roots(signer: InProcessSigner, value: str) -> None:
    path = "fork_info.genesis_validators_root"
    status, body = sign(signer, _set(randao(), path, value))
    assert status == 400, body
    assert body["field"] == path, body
    assert ROOT_MESSAGE in body["message"], body
    assert_still_serving(signer)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("fork_info.fork.current_version", "0x0000001", "hex string of 4 bytes"),
        ("attestation.beacon_block_root", "0x" + "gg" * 32, ROOT_MESSAGE),
    ],
)
def test_non_hex_fields_elsewhere(
    signer: InProcessSigner, path: str, value: str, fragment: str
) -> None:
    status, body = sign(signer, _set(attestation(), path, value))
    assert (status, body["field"]) == (400, path), body
    assert fragment in body["message"], body
    assert_still_serving(signer)


def test_bitlist_without_its_length_marker(signer: InProcessSigner) -> None:
    body = {
        "type": "AGGREGATE_AND_PROOF_V2",
        "fork_info": fork_info("00000001", "00000001", 0, EXAMPLE_GVR),
        "aggregate_and_proof": {
            "version": "DENEB",
            "data": {
                "aggregator_index": "1",
                "aggregate": {
                    "aggregation_bits": "0x0100",  # last byte zero: no end marker
                    "data": attestation()["attestation"],
                    "signature": hexs(b"\x01" * 96),
                },
                "selection_proof": hexs(b"\x02" * 96),
            },
        },
    }
    status, answer = sign(signer, body)
    assert status == 400, answer
    assert answer["field"] == "aggregate_and_proof.data.aggregate.aggregation_bits", answer
    assert "length marker" in answer["message"], answer
    body["aggregate_and_proof"]["data"]["aggregate"]["aggregation_bits"] = "0x0101"
    assert sign(signer, body)[0] == 200
    assert_still_serving(signer)


MISSING = [
    ("randao", "fork_info.fork.epoch", "required field is missing"),
    ("randao", "fork_info.genesis_validators_root", "required field is missing"),
    ("attestation", "attestation.target", "required field is missing"),
    ("deposit", "deposit.amount", "required field is missing"),
    ("block_v2", "beacon_block.block_header", "required field is missing"),
    ("block_v2", "beacon_block.version", "expected one of PHASE0, ALTAIR"),
    ("registration", "validator_registration.pubkey", "required field is missing"),
]


@pytest.mark.parametrize(
    ("base", "path", "fragment"), MISSING, ids=[f"{b}:{p}" for b, p, _ in MISSING]
)
def test_missing_fields(signer: InProcessSigner, base: str, path: str, fragment: str) -> None:
    status, body = sign(signer, _delete(BASES[base](), path))
    assert status == 400, body
    assert body["field"] == path, body
    assert body["message"].startswith(f"{path}: "), body
    assert fragment in body["message"], body
    assert_still_serving(signer)


def test_camel_case_field_names_get_a_hint(signer: InProcessSigner) -> None:
    body = randao()
    fork = body["fork_info"]["fork"]
    fork["previousVersion"] = fork.pop("previous_version")
    status, answer = sign(signer, body)
    assert status == 400, answer
    assert answer["field"] == "fork_info.fork.previous_version", answer
    assert "found 'previousVersion'; field names are snake_case" in answer["message"], answer
    assert_still_serving(signer)


UNKNOWN = [
    ("randao", "colour"),
    ("randao", "signingroot"),
    ("randao", "fork_info.fork.next_version"),
    ("block_v2", "beacon_block.block_header.extra"),
    ("block_v2", "beacon_block.block"),  # a header-only version with a full block beside it
    ("deposit", "deposit.signature"),
    ("registration", "validator_registration.builder"),
]


@pytest.mark.parametrize(("base", "path"), UNKNOWN, ids=[f"{b}:{p}" for b, p in UNKNOWN])
def test_unknown_fields(signer: InProcessSigner, base: str, path: str) -> None:
    status, body = sign(signer, _set(BASES[base](), path, "0x00"))
    assert status == 400, body
    assert body["field"] == path, body
    assert body["message"] == f"{path}: unknown field", body
    assert_still_serving(signer)


def test_json_that_orjson_refuses(signer: InProcessSigner) -> None:
    """Nesting beyond the parser's depth limit, NaN and 1e400: 400, never a crash."""
    for raw in (b"[" * 5000 + b"]" * 5000, b'{"type": NaN}', b'{"type": 1e400}'):
        response = signer.client.sign(EXAMPLE_PUBKEY, raw)
        assert response.status == 400, raw[:40]
        assert "not valid JSON" in response.json()["message"]
    assert_still_serving(signer)


# --------------------------------------------------------------------------------------------
# Body size limit (server.max_body_bytes, 1 MiB)
# --------------------------------------------------------------------------------------------


def _raw_post(
    signer: InProcessSigner, body: bytes, chunked: bool = False
) -> tuple[int, str, bytes]:
    host, port = signer.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {**AUTH, "Content-Type": "application/json"}
    try:
        if chunked:  # no Content-Length: the limit must hold while reading
            chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
            connection.request(
                "POST", f"/api/v1/eth2/sign/{EXAMPLE_PUBKEY}", chunks, headers, encode_chunked=True
            )
        else:
            connection.request("POST", f"/api/v1/eth2/sign/{EXAMPLE_PUBKEY}", body, headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def _padded(size: int) -> bytes:
    """A valid request padded with JSON whitespace to exactly ``size`` bytes."""
    valid = json.dumps(randao("9")).encode()
    return valid[:-1] + b" " * (size - len(valid)) + b"}"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_the_limit_is_signed_and_one_more_byte_is_413(
    signer: InProcessSigner, chunked: bool
) -> None:
    status, _, answer = _raw_post(signer, _padded(MAX_BODY), chunked)
    assert status == 200, answer[:300]
    status, content_type, answer = _raw_post(signer, _padded(MAX_BODY + 1), chunked)
    assert status == 413, answer[:300]
    assert content_type.startswith("application/json")
    assert "exceeds the limit of 1048576 bytes" in json.loads(answer)["message"]
    assert_still_serving(signer)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_few_mebibytes_is_413_with_the_documented_error_body(
    signer: InProcessSigner, chunked: bool
) -> None:
    status, content_type, answer = _raw_post(signer, _padded(3 * MAX_BODY), chunked)
    assert status == 413, answer[:300]
    assert content_type.startswith("application/json"), (content_type, answer[:300])
    assert "exceeds the limit of 1048576 bytes" in json.loads(answer)["message"]
    assert_still_serving(signer)


def test_a_declared_gibibyte_is_refused_before_it_is_sent(signer: InProcessSigner) -> None:
    """Past waitress' own limit (chamber/server.py) waitress answers 413 from the headers alone.

    That answer is waitress' ``text/plain`` page, not docs/api.md's JSON error body: waitress
    buffers a whole body before the app runs, so the app cannot answer these (reported).
    """
    host, port = signer.url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/eth2/sign/{EXAMPLE_PUBKEY} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {2**30}\r\n\r\n{{"
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode())
        answer = b""
        while chunk := connection.recv(65536):  # the server closes after answering
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"Request Entity Too Large" in answer, answer[:300]
    assert_still_serving(signer)


# --------------------------------------------------------------------------------------------
# Errors produced by falcon itself (unknown route, method not allowed)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", f"/api/v1/eth2/sign/{EXAMPLE_PUBKEY}", 405),
        ("DELETE", "/api/v1/eth2/publicKeys", 405),
        ("GET", "/api/v1/eth2/nope", 404),
        ("POST", "/api/v1/eth2/sign", 404),
    ],
)
def test_framework_errors_use_the_documented_error_body(
    signer: InProcessSigner, method: str, path: str, status: int
) -> None:
    """docs/api.md: every error body is ``{"error", "message"}``, falcon's own included.

    Fails today: falcon registers a default handler for ``falcon.HTTPError``, which is more
    specific than the ``Exception`` handler in chamber/api/app.py, so ``_unexpected_handler``'s
    HTTPError branch never runs and the body is falcon's ``{"title": "405 Method Not Allowed"}``.
    """
    response = signer.client.request(method, path, b"{}")
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body


# --------------------------------------------------------------------------------------------
# The checks themselves
# --------------------------------------------------------------------------------------------


def test_spec_refs_are_resolved() -> None:
    """The relative $refs into signing/schemas.yaml were followed, down to the Fork pattern."""
    (body,) = list(SIGN.body)
    assert body.is_valid(randao())
    bad_version = randao()
    bad_version["fork_info"]["fork"]["previous_version"] = "0x1"  # Fork: ^0x[a-fA-F0-9]{8}$
    assert not body.is_valid(bad_version)
    assert not body.is_valid({"type": "RANDAO_REVEAL", "randao_reveal": {"epoch": "1"}})
    assert EXAMPLE_KEY.pubkey_hex == EXAMPLE_PUBKEY


def test_the_checks_catch_a_non_conforming_answer(signer: InProcessSigner) -> None:
    """Schema conformance has teeth: a 200 with a non-string signature is reported."""
    case = SIGN.Case(path_parameters={"identifier": EXAMPLE_PUBKEY}, body=randao("10"))
    response = case.call(base_url=signer.url, headers=AUTH)
    validate(case, response)
    response.content = b'{"signature": 5}'
    response.clear_cache()
    with pytest.raises((AssertionError, schemathesis.errors.FailureGroup)) as failure:
        case.validate_response(response, checks=[response_schema_conformance])
    assert "signature" in str(failure.value)


def test_the_checks_catch_an_unexpected_status(signer: InProcessSigner) -> None:
    """Our status check has teeth: a 401 (no token) is not an allowed undocumented status."""
    case = SIGN.Case(path_parameters={"identifier": EXAMPLE_PUBKEY}, body=randao("11"))
    response = case.call(base_url=signer.url)  # no token
    assert response.status_code == 401
    with pytest.raises((AssertionError, schemathesis.errors.FailureGroup)) as failure:
        case.validate_response(response, checks=[only_expected_undocumented_statuses])
    assert "status 401" in str(failure.value)


def test_the_checks_catch_a_logged_error(signer: InProcessSigner) -> None:
    """An internal error the signer only logs (answering 4xx anyway) still fails the run."""
    case = SIGN.Case(path_parameters={"identifier": EXAMPLE_PUBKEY}, body=randao("12"))
    response = case.call(base_url=signer.url, headers=AUTH)
    logging.getLogger("chamber.api").error("simulated internal error")
    with pytest.raises((AssertionError, schemathesis.errors.FailureGroup)) as failure:
        case.validate_response(response, checks=[no_errors_logged])
    assert "simulated internal error" in str(failure.value)
