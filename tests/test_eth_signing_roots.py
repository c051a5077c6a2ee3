"""Signing roots for every request type, checked against an independent oracle.

The oracle (``tests/ssz_oracle.py``) is built only from remerkleable containers (the
consensus-specs layouts) plus hashlib for the domain; it shares no code with ``chamber.eth``. Each
request is fed to ``prepare_signing`` as JSON and the returned root must equal the oracle's.

Inputs come from the Web3Signer / remote-signing-api spec examples (loaded at test time) and from
hypothesis-generated requests for every type and every BLOCK_V2 / AGGREGATE_AND_PROOF_V2 version.
"""

import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from remerkleable.basic import uint64
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import Bytes32
from remerkleable.complex import List, Vector

from chamber.errors import BadRequest, NetworkMismatch
from chamber.eth import custom_network, get_network, prepare_signing
from chamber.eth.ssz import basic_list_root, bitlist_root, bitvector_root, list_root, merkleize
from tests.ssz_oracle import (
    CASES,
    FORKS,
    MAINNET_T,
    MAINNET_VERSIONS,
    MINIMAL_T,
    ORACLE_MAINNET,
    UINT64,
    OracleNet,
    attestation_request,
    block_header_request,
    deposit_request,
    exit_request,
    fork_info,
    hexs,
    htr,
    hx,
    oracle_domain,
    oracle_request_root,
    oracle_signing_root,
    request_strategy,
)
from tests.support import VECTORS

# The oracle (remerkleable containers, domains, signing roots) and the request builders
# live in tests/ssz_oracle.py, shared with tests/test_api_signing_types.py.


def run(req: dict[str, Any], network: Any) -> bytes:
    return prepare_signing(orjson.dumps(req), network).signing_root


# --------------------------------------------------------------------------------------------
# Spec examples
# --------------------------------------------------------------------------------------------

SPEC_FILES = {
    "web3signer": VECTORS / "web3signer/openapi-specs/eth2/signing/paths/sign.yaml",
    "remote-signing-api": VECTORS / "remote-signing-api/signing/paths/sign.yaml",
}


def load_examples() -> list[tuple[str, str, dict[str, Any]]]:
    examples = []
    for source, path in SPEC_FILES.items():
        doc = yaml.safe_load(path.read_text())
        content = doc["post"]["requestBody"]["content"]["application/json"]["examples"]
        for name, example in content.items():
            examples.append((source, name, example["value"]))
    return examples


EXAMPLES = load_examples()
#: Examples whose given signingRoot we verified is *not* a real root of their payload as sent.
MINIMAL_PRESET = {"BLOCK_V2 (ALTAIR)", "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF"}
CAMEL_CASE = {"AGGREGATION_SLOT", "BLOCK (DEPRECATED)"}
WRONG_ROOT = {"AGGREGATE_AND_PROOF_V2 (ELECTRA)", "AGGREGATE_AND_PROOF_V2 (FULU)"}


def example_network(example: dict[str, Any]) -> Any:
    """A custom network for the examples' made-up chain (GVR 0x0470..., genesis 0x00000001)."""
    gvr = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673"
    root = example.get("fork_info", {}).get("genesis_validators_root", gvr)
    return custom_network(hx(root), bytes.fromhex("00000001"))


EXAMPLE_NET = OracleNet(
    gvr=bytes.fromhex("04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673"),
    genesis_fork_version=bytes.fromhex("00000001"),
)


def snake_case_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            (k if k == "signingRoot" else re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", k).lower()): (
                snake_case_keys(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [snake_case_keys(v) for v in value]
    return value


def test_examples_were_loaded() -> None:
    names = {name for _, name, _ in EXAMPLES}
    assert len(EXAMPLES) == 41
    assert {"BLOCK_V2 (FULU)", "AGGREGATE_AND_PROOF_V2 (FULU)", "DEPOSIT"} <= names


@pytest.mark.parametrize(
    ("source", "name", "example"), EXAMPLES, ids=[f"{s}:{n}" for s, n, _ in EXAMPLES]
)
def test_spec_example(source: str, name: str, example: dict[str, Any]) -> None:
    network = example_network(example)
    given_root = hx(example["signingRoot"])
    if name in CAMEL_CASE:
        # Web3Signer binds only snake_case fork fields too; the content itself is real.
        with pytest.raises(BadRequest) as err:
            run(example, network)
        assert err.value.field == "fork_info.fork.previous_version"
        assert "previousVersion" in err.value.message
        fixed = snake_case_keys(example)
        assert oracle_request_root(fixed, EXAMPLE_NET) == given_root
        assert run(fixed, network) == given_root
    elif name in MINIMAL_PRESET:
        # Generated with the minimal preset (32-member sync committee): real there, malformed
        # for mainnet-preset networks, which is all this signer serves.
        assert oracle_request_root(example, EXAMPLE_NET, MINIMAL_T) == given_root
        with pytest.raises(BadRequest) as err:
            run(example, network)
        assert err.value.field is not None
        assert err.value.field.endswith(("sync_committee_bits", "contribution.aggregation_bits"))
    elif name in WRONG_ROOT:
        # No preset reproduces this root: it is stale. The content itself signs fine.
        expected = oracle_request_root(example, EXAMPLE_NET)
        assert expected != given_root
        with pytest.raises(BadRequest) as err:
            run(example, network)
        assert err.value.field == "signingRoot"
        without_root = {k: v for k, v in example.items() if k != "signingRoot"}
        assert run(without_root, network) == expected
    else:
        assert oracle_request_root(example, EXAMPLE_NET) == given_root
        assert run(example, network) == given_root


# --------------------------------------------------------------------------------------------
# Randomised requests for every type and version
# --------------------------------------------------------------------------------------------

TEST_GVR = bytes.fromhex("a1" * 32)
TEST_GENESIS = bytes.fromhex("11223344")
TEST_NETWORK = custom_network(TEST_GVR, TEST_GENESIS)
TEST_ORACLE_NET = OracleNet(gvr=TEST_GVR, genesis_fork_version=TEST_GENESIS)


@pytest.mark.parametrize(("kind", "version"), CASES, ids=[f"{k}-{v}" if v else k for k, v in CASES])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_requests_match_oracle(kind: str, version: str | None, data: st.DataObject) -> None:
    req = data.draw(request_strategy(kind, version, TEST_GVR, TEST_GENESIS))
    expected = oracle_request_root(req, TEST_ORACLE_NET)
    if data.draw(st.booleans(), label="send signingRoot"):
        req["signingRoot"] = hexs(expected)
    job = prepare_signing(orjson.dumps(req), TEST_NETWORK)
    assert job.signing_root == expected
    assert job.type == kind


@settings(max_examples=60, deadline=None)
@given(
    fork_index=st.integers(1, len(MAINNET_VERSIONS) - 1),
    fork_epoch=st.integers(0, 2**40),
    exit_epoch=st.integers(0, 2**40),
    validator_index=UINT64,
)
def test_random_voluntary_exits_on_mainnet(
    fork_index: int, fork_epoch: int, exit_epoch: int, validator_index: int
) -> None:
    req = exit_request(
        MAINNET_VERSIONS[fork_index - 1], MAINNET_VERSIONS[fork_index], fork_epoch, exit_epoch
    )
    req["voluntary_exit"]["validator_index"] = str(validator_index)
    assert run(req, get_network("mainnet")) == oracle_request_root(req, ORACLE_MAINNET)


# --------------------------------------------------------------------------------------------
# Fork selection, EIP-7044, deposit and builder domains
# --------------------------------------------------------------------------------------------


def exit_root_with(version: str, exit_epoch: int, gvr: bytes = ORACLE_MAINNET.gvr) -> bytes:
    message = htr(MAINNET_T.VoluntaryExit, {"epoch": str(exit_epoch), "validator_index": "7"})
    return oracle_signing_root(message, oracle_domain("exit", bytes.fromhex(version), gvr))


DENEB_EPOCH, ELECTRA_EPOCH, CAPELLA_EPOCH = 269568, 364032, 194048


@pytest.mark.parametrize(
    ("previous", "current", "fork_epoch", "exit_epoch", "signed_with"),
    [
        # Deneb current, exit at/after the fork: Deneb selected -> Capella (EIP-7044).
        ("03000000", "04000000", DENEB_EPOCH, DENEB_EPOCH, "03000000"),
        ("03000000", "04000000", DENEB_EPOCH, DENEB_EPOCH + 100, "03000000"),
        # Electra current: both Electra (current) and Deneb (previous) map to Capella.
        ("04000000", "05000000", ELECTRA_EPOCH, ELECTRA_EPOCH + 1, "03000000"),
        ("04000000", "05000000", ELECTRA_EPOCH, ELECTRA_EPOCH - 1, "03000000"),
        ("05000000", "06000000", 400000, 400000, "03000000"),
        # Before Deneb the usual rule applies, including the previous version.
        ("02000000", "03000000", CAPELLA_EPOCH, CAPELLA_EPOCH, "03000000"),
        ("02000000", "03000000", CAPELLA_EPOCH, CAPELLA_EPOCH - 1, "02000000"),
        ("00000000", "01000000", 74240, 10, "00000000"),
    ],
)
def test_eip7044_voluntary_exit_on_mainnet(
    previous: str, current: str, fork_epoch: int, exit_epoch: int, signed_with: str
) -> None:
    req = exit_request(previous, current, fork_epoch, exit_epoch)
    root = run(req, get_network("mainnet"))
    assert root == exit_root_with(signed_with, exit_epoch)
    assert root == oracle_request_root(req, ORACLE_MAINNET)


@pytest.mark.parametrize(
    ("name", "gvr", "capella", "deneb", "electra"),
    [
        (
            "sepolia",
            "d8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078",
            "90000072",
            "90000073",
            "90000074",
        ),
        (
            "hoodi",
            "212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f",
            "40000910",
            "50000910",
            "60000910",
        ),
    ],
)
def test_eip7044_on_testnets(name: str, gvr: str, capella: str, deneb: str, electra: str) -> None:
    root = bytes.fromhex(gvr)
    req = exit_request(deneb, electra, 100, 100)
    req["fork_info"]["genesis_validators_root"] = hexs(root)
    assert run(req, get_network(name)) == exit_root_with(capella, 100, root)


def test_custom_network_without_schedule_does_not_remap_exits() -> None:
    """Documented: without fork versions the signer cannot recognise Deneb, so no EIP-7044."""
    network = custom_network(ORACLE_MAINNET.gvr, bytes(4))
    req = exit_request("03000000", "04000000", DENEB_EPOCH, DENEB_EPOCH)
    assert run(req, network) == exit_root_with("04000000", DENEB_EPOCH)


def test_custom_network_with_schedule_remaps_exits() -> None:
    versions = {"capella": bytes.fromhex("33000000"), "deneb": bytes.fromhex("44000000")}
    network = custom_network(ORACLE_MAINNET.gvr, bytes(4), versions)
    req = exit_request("33000000", "44000000", 10, 10)
    assert run(req, network) == exit_root_with("33000000", 10)


@pytest.mark.parametrize(
    ("offset", "version"), [(0, "05000000"), (-1, "04000000"), (5, "05000000")]
)
def test_fork_epoch_boundary(offset: int, version: str) -> None:
    """epoch == fork.epoch signs with current_version; epoch - 1 with previous_version."""
    mainnet = get_network("mainnet")
    gvr = ORACLE_MAINNET.gvr
    header_req = block_header_request((ELECTRA_EPOCH + offset) * 32, ELECTRA_EPOCH, gvr)
    header = htr(MAINNET_T.BeaconBlockHeader, header_req["beacon_block"]["block_header"])
    domain = oracle_domain("proposer", bytes.fromhex(version), gvr)
    assert run(header_req, mainnet) == oracle_signing_root(header, domain)
    # The last slot of the epoch before the fork still belongs to that epoch.
    if offset == -1:
        last_slot = block_header_request(ELECTRA_EPOCH * 32 - 1, ELECTRA_EPOCH, gvr)
        assert run(last_slot, mainnet) == oracle_request_root(last_slot, ORACLE_MAINNET)
        assert run(last_slot, mainnet) != run(
            block_header_request(ELECTRA_EPOCH * 32, ELECTRA_EPOCH, gvr), mainnet
        )

    att_req = attestation_request(ELECTRA_EPOCH + offset, ELECTRA_EPOCH, gvr)
    data = htr(MAINNET_T.AttestationData, att_req["attestation"])
    domain = oracle_domain("attester", bytes.fromhex(version), gvr)
    assert run(att_req, mainnet) == oracle_signing_root(data, domain)


def test_slashing_protection_fields() -> None:
    mainnet = get_network("mainnet")
    job = prepare_signing(orjson.dumps(block_header_request(12345, 0, ORACLE_MAINNET.gvr)), mainnet)
    assert (job.type, job.block_slot, job.attestation_epochs) == ("BLOCK_V2", 12345, None)
    job = prepare_signing(orjson.dumps(attestation_request(77, 0, ORACLE_MAINNET.gvr)), mainnet)
    assert (job.type, job.block_slot, job.attestation_epochs) == ("ATTESTATION", None, (76, 77))


def test_deposit_domain_on_mainnet() -> None:
    # The mainnet deposit domain is a well-known constant (deposit contract tooling, clients).
    known = bytes.fromhex("03000000f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9")
    assert oracle_domain("deposit", bytes(4), bytes(32)) == known
    req = deposit_request("00000000")
    message = htr(MAINNET_T.DepositMessage, req["deposit"])
    job = prepare_signing(orjson.dumps(req), get_network("mainnet"))
    assert job.signing_root == oracle_signing_root(message, known)
    assert (job.block_slot, job.attestation_epochs) == (None, None)


@pytest.mark.parametrize(("name", "version"), [("hoodi", "10000910"), ("sepolia", "90000069")])
def test_deposit_uses_its_genesis_fork_version(name: str, version: str) -> None:
    req = deposit_request(version)
    message = htr(MAINNET_T.DepositMessage, req["deposit"])
    domain = oracle_domain("deposit", bytes.fromhex(version), bytes(32))
    assert run(req, get_network(name)) == oracle_signing_root(message, domain)


def test_deposit_for_another_network_is_refused() -> None:
    with pytest.raises(NetworkMismatch) as err:
        run(deposit_request("10000910"), get_network("mainnet"))
    assert err.value.field == "deposit.genesis_fork_version"
    assert err.value.status == 403


REGISTRATION = {
    "fee_recipient": hexs(b"\x42" * 20),
    "gas_limit": "30000000",
    "timestamp": "1700000000",
    "pubkey": hexs(b"\xaa" * 48),
}


@pytest.mark.parametrize(
    ("name", "genesis"), [("mainnet", "00000000"), ("hoodi", "10000910"), ("sepolia", "90000069")]
)
def test_validator_registration_domain(name: str, genesis: str) -> None:
    req = {"type": "VALIDATOR_REGISTRATION", "validator_registration": REGISTRATION}
    message = htr(MAINNET_T.ValidatorRegistrationV1, REGISTRATION)
    domain = oracle_domain("builder", bytes.fromhex(genesis), bytes(32))
    assert run(req, get_network(name)) == oracle_signing_root(message, domain)
    if name == "mainnet":  # the builder domain every mainnet relay uses
        known = "00000001f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9"
        assert domain.hex() == known


# --------------------------------------------------------------------------------------------
# Client-supplied signing roots
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["signingRoot", "signing_root"])
def test_matching_signing_root_is_accepted(key: str) -> None:
    req = attestation_request(10, 0, ORACLE_MAINNET.gvr)
    expected = oracle_request_root(req, ORACLE_MAINNET)
    req[key] = hexs(expected)
    assert run(req, get_network("mainnet")) == expected


@pytest.mark.parametrize("key", ["signingRoot", "signing_root"])
def test_different_signing_root_is_rejected(key: str) -> None:
    req = attestation_request(10, 0, ORACLE_MAINNET.gvr)
    req[key] = hexs(b"\x00" * 31 + b"\x01")
    with pytest.raises(BadRequest) as err:
        run(req, get_network("mainnet"))
    assert err.value.field == key
    assert err.value.status == 400


def test_null_signing_root_means_absent() -> None:
    req = attestation_request(10, 0, ORACLE_MAINNET.gvr)
    req["signingRoot"] = None
    assert run(req, get_network("mainnet")) == oracle_request_root(req, ORACLE_MAINNET)


# --------------------------------------------------------------------------------------------
# Case-insensitive enums, JSON integers, Electra bitlists beyond the Phase0 limit
# --------------------------------------------------------------------------------------------


def test_type_and_version_are_case_insensitive() -> None:
    req = block_header_request(100, 0, ORACLE_MAINNET.gvr)
    expected = oracle_request_root(req, ORACLE_MAINNET)
    req["type"] = "block_v2"
    req["beacon_block"]["version"] = "Electra"
    job = prepare_signing(orjson.dumps(req), get_network("mainnet"))
    assert (job.type, job.signing_root) == ("BLOCK_V2", expected)


def test_uint64_as_json_integer_and_uppercase_hex() -> None:
    req = attestation_request(10, 0, ORACLE_MAINNET.gvr)
    expected = oracle_request_root(req, ORACLE_MAINNET)
    req["attestation"]["slot"] = 320
    req["attestation"]["beacon_block_root"] = (
        req["attestation"]["beacon_block_root"].upper().replace("0X", "0x")
    )
    assert run(req, get_network("mainnet")) == expected


def test_electra_aggregate_with_many_committees() -> None:
    bits = Bitlist[131072](*([1, 0, 1] * 2000))  # 6000 bits: more than a Phase0 committee
    committees = Bitvector[64](*([0] * 60 + [1, 1, 1, 1]))
    data = attestation_request(5, 0, TEST_GVR)["attestation"]
    req = {
        "type": "AGGREGATE_AND_PROOF_V2",
        "fork_info": fork_info("04000000", "05000000", 0, TEST_GVR),
        "aggregate_and_proof": {
            "version": "ELECTRA",
            "data": {
                "aggregator_index": "9",
                "aggregate": {
                    "aggregation_bits": hexs(bits.encode_bytes()),
                    "data": data,
                    "signature": hexs(b"\x09" * 96),
                    "committee_bits": hexs(committees.encode_bytes()),
                },
                "selection_proof": hexs(b"\x08" * 96),
            },
        },
    }
    assert run(req, TEST_NETWORK) == oracle_request_root(req, TEST_ORACLE_NET)
    req["aggregate_and_proof"]["version"] = "DENEB"  # Phase0 layout: 2048 bits max, no committees
    with pytest.raises(BadRequest) as err:
        run(req, TEST_NETWORK)
    assert err.value.field == "aggregate_and_proof.data.aggregate.aggregation_bits"


# --------------------------------------------------------------------------------------------
# SSZ helpers directly against remerkleable
# --------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(bits=st.lists(st.booleans(), max_size=3000), limit=st.sampled_from([2048, 3000, 131072]))
def test_ssz_bitlist_root(bits: list[bool], limit: int) -> None:
    view = Bitlist[limit](*bits)
    assert bitlist_root(view.encode_bytes(), limit) == bytes(view.hash_tree_root())


@settings(max_examples=50, deadline=None)
@given(bits=st.lists(st.booleans(), min_size=1, max_size=700))
def test_ssz_bitvector_root(bits: list[bool]) -> None:
    view = Bitvector[len(bits)](*bits)
    assert bitvector_root(view.encode_bytes(), len(bits)) == bytes(view.hash_tree_root())


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1), max_size=40), limit=st.sampled_from([40, 2048]))
def test_ssz_uint64_list_root(values: list[int], limit: int) -> None:
    view = List[uint64, limit](*values)
    assert basic_list_root(values, limit) == bytes(view.hash_tree_root())


@settings(max_examples=50, deadline=None)
@given(roots=st.lists(st.binary(min_size=32, max_size=32), max_size=20), limit=st.integers(20, 70))
def test_ssz_composite_list_and_vector_roots(roots: list[bytes], limit: int) -> None:
    assert list_root(roots, limit) == bytes(List[Bytes32, limit](*roots).hash_tree_root())
    if roots:
        assert merkleize(roots) == bytes(Vector[Bytes32, len(roots)](*roots).hash_tree_root())


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def test_builtin_networks() -> None:
    mainnet = get_network("Mainnet")
    assert mainnet.genesis_validators_root == ORACLE_MAINNET.gvr
    assert [v.hex() for v in mainnet.fork_versions.values()] == MAINNET_VERSIONS
    assert list(mainnet.fork_versions) == FORKS
    assert get_network("sepolia").genesis_fork_version.hex() == "90000069"
    assert get_network("hoodi").genesis_fork_version.hex() == "10000910"
    assert {get_network(n).slots_per_epoch for n in ("mainnet", "sepolia", "hoodi")} == {32}


def test_custom_network_slots_per_epoch() -> None:
    network = custom_network(TEST_GVR, TEST_GENESIS, slots_per_epoch=8)
    req = block_header_request(16, 2, TEST_GVR)  # slot 16 is epoch 2 with 8 slots per epoch
    header = htr(MAINNET_T.BeaconBlockHeader, req["beacon_block"]["block_header"])
    domain = oracle_domain("proposer", bytes.fromhex("05000000"), TEST_GVR)
    assert run(req, network) == oracle_signing_root(header, domain)


ConfigCheck = Callable[[], object]


@pytest.mark.parametrize(
    "build",
    [
        lambda: get_network("holesky-classic"),
        lambda: custom_network(b"\x00" * 31, TEST_GENESIS),
        lambda: custom_network(TEST_GVR, b"\x00" * 5),
        lambda: custom_network(TEST_GVR, TEST_GENESIS, {"SHANGHAI": b"\x00" * 4}),
        lambda: custom_network(TEST_GVR, TEST_GENESIS, {"DENEB": b"\x00" * 4}),
        lambda: custom_network(TEST_GVR, TEST_GENESIS, {"PHASE0": b"\x99" * 4}),
        lambda: custom_network(TEST_GVR, TEST_GENESIS, slots_per_epoch=0),
    ],
)
def test_network_configuration_errors(build: ConfigCheck) -> None:
    from chamber.errors import ConfigError

    with pytest.raises(ConfigError):
        build()
