"""Signing roots for every request type, checked against an independent oracle.

The oracle is built only from remerkleable containers declared here (the consensus-specs layouts)
plus hashlib for the domain; it shares no code with ``chamber.eth``. Each request is fed to
``prepare_signing`` as JSON and the returned root must equal the oracle's.

Inputs come from the Web3Signer / remote-signing-api spec examples (loaded at test time) and from
hypothesis-generated requests for every type and every BLOCK_V2 / AGGREGATE_AND_PROOF_V2 version.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from remerkleable.basic import uint64
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import Bytes4, Bytes32, Bytes48, Bytes96, ByteVector
from remerkleable.complex import Container, List, Vector

from chamber.errors import BadRequest, NetworkMismatch
from chamber.eth import custom_network, get_network, prepare_signing
from chamber.eth.ssz import basic_list_root, bitlist_root, bitvector_root, list_root, merkleize
from tests.support import VECTORS

# --------------------------------------------------------------------------------------------
# Oracle: consensus containers (remerkleable) for a preset, and domain / signing-root helpers.
# --------------------------------------------------------------------------------------------


class Bytes20(ByteVector[20]):
    pass


def make_types(sync_committee_size: int, max_committees_per_slot: int) -> SimpleNamespace:
    """Spec containers; the two parameters are the preset values that differ in the examples."""
    max_validators_per_committee = 2048

    class Checkpoint(Container):
        epoch: uint64
        root: Bytes32

    class AttestationData(Container):
        slot: uint64
        index: uint64
        beacon_block_root: Bytes32
        source: Checkpoint
        target: Checkpoint

    class Attestation(Container):
        aggregation_bits: Bitlist[max_validators_per_committee]
        data: AttestationData
        signature: Bytes96

    class AttestationElectra(Container):
        aggregation_bits: Bitlist[max_validators_per_committee * max_committees_per_slot]
        data: AttestationData
        signature: Bytes96
        committee_bits: Bitvector[max_committees_per_slot]

    class AggregateAndProof(Container):
        aggregator_index: uint64
        aggregate: Attestation
        selection_proof: Bytes96

    class AggregateAndProofElectra(Container):
        aggregator_index: uint64
        aggregate: AttestationElectra
        selection_proof: Bytes96

    class BeaconBlockHeader(Container):
        slot: uint64
        proposer_index: uint64
        parent_root: Bytes32
        state_root: Bytes32
        body_root: Bytes32

    class SignedBeaconBlockHeader(Container):
        message: BeaconBlockHeader
        signature: Bytes96

    class ProposerSlashing(Container):
        signed_header_1: SignedBeaconBlockHeader
        signed_header_2: SignedBeaconBlockHeader

    class IndexedAttestation(Container):
        attesting_indices: List[uint64, max_validators_per_committee]
        data: AttestationData
        signature: Bytes96

    class AttesterSlashing(Container):
        attestation_1: IndexedAttestation
        attestation_2: IndexedAttestation

    class Eth1Data(Container):
        deposit_root: Bytes32
        deposit_count: uint64
        block_hash: Bytes32

    class DepositData(Container):
        pubkey: Bytes48
        withdrawal_credentials: Bytes32
        amount: uint64
        signature: Bytes96

    class Deposit(Container):
        proof: Vector[Bytes32, 33]
        data: DepositData

    class VoluntaryExit(Container):
        epoch: uint64
        validator_index: uint64

    class SignedVoluntaryExit(Container):
        message: VoluntaryExit
        signature: Bytes96

    class BeaconBlockBody(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: List[ProposerSlashing, 16]
        attester_slashings: List[AttesterSlashing, 2]
        attestations: List[Attestation, 128]
        deposits: List[Deposit, 16]
        voluntary_exits: List[SignedVoluntaryExit, 16]

    class SyncAggregate(Container):
        sync_committee_bits: Bitvector[sync_committee_size]
        sync_committee_signature: Bytes96

    class BeaconBlockBodyAltair(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: List[ProposerSlashing, 16]
        attester_slashings: List[AttesterSlashing, 2]
        attestations: List[Attestation, 128]
        deposits: List[Deposit, 16]
        voluntary_exits: List[SignedVoluntaryExit, 16]
        sync_aggregate: SyncAggregate

    class BeaconBlock(Container):
        slot: uint64
        proposer_index: uint64
        parent_root: Bytes32
        state_root: Bytes32
        body: BeaconBlockBody

    class BeaconBlockAltair(Container):
        slot: uint64
        proposer_index: uint64
        parent_root: Bytes32
        state_root: Bytes32
        body: BeaconBlockBodyAltair

    class SyncCommitteeContribution(Container):
        slot: uint64
        beacon_block_root: Bytes32
        subcommittee_index: uint64
        aggregation_bits: Bitvector[sync_committee_size // 4]
        signature: Bytes96

    class ContributionAndProof(Container):
        aggregator_index: uint64
        contribution: SyncCommitteeContribution
        selection_proof: Bytes96

    class SyncAggregatorSelectionData(Container):
        slot: uint64
        subcommittee_index: uint64

    class DepositMessage(Container):
        pubkey: Bytes48
        withdrawal_credentials: Bytes32
        amount: uint64

    class ValidatorRegistrationV1(Container):
        fee_recipient: Bytes20
        gas_limit: uint64
        timestamp: uint64
        pubkey: Bytes48

    # JSON-only shapes (not SSZ objects themselves): used to generate request payloads.
    class SlotBody(Container):
        slot: uint64

    class EpochBody(Container):
        epoch: uint64

    class SyncCommitteeMessageBody(Container):
        beacon_block_root: Bytes32
        slot: uint64

    class DepositBody(Container):
        pubkey: Bytes48
        withdrawal_credentials: Bytes32
        amount: uint64
        genesis_fork_version: Bytes4

    return SimpleNamespace(**locals())


MAINNET_T = make_types(sync_committee_size=512, max_committees_per_slot=64)
MINIMAL_T = make_types(sync_committee_size=32, max_committees_per_slot=4)


class SigningData(Container):
    object_root: Bytes32
    domain: Bytes32


DOMAINS = {
    "proposer": "00000000",
    "attester": "01000000",
    "randao": "02000000",
    "deposit": "03000000",
    "exit": "04000000",
    "selection": "05000000",
    "aggregate": "06000000",
    "sync": "07000000",
    "sync_selection": "08000000",
    "contribution": "09000000",
    "builder": "00000001",
}


def hx(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def oracle_domain(domain_type: str, version: bytes, root: bytes) -> bytes:
    fork_data_root = hashlib.sha256(version + bytes(28) + root).digest()
    return bytes.fromhex(DOMAINS[domain_type]) + fork_data_root[:28]


def oracle_signing_root(object_root: bytes, domain: bytes) -> bytes:
    return bytes(SigningData(object_root=object_root, domain=domain).hash_tree_root())


def to_view(cls: Any, value: Any) -> Any:
    """JSON value -> remerkleable view, walking the declared type."""
    if issubclass(cls, Container):
        return cls(**{name: to_view(t, value[name]) for name, t in cls.fields().items()})
    if issubclass(cls, Bitlist | Bitvector):
        return cls.decode_bytes(hx(value))
    if issubclass(cls, ByteVector):
        return cls(hx(value))
    if issubclass(cls, List | Vector):
        return cls(*(to_view(cls.element_cls(), item) for item in value))
    if issubclass(cls, uint64):
        return cls(int(value))
    raise TypeError(cls)


def htr(cls: Any, value: Any) -> bytes:
    return bytes(to_view(cls, value).hash_tree_root())


@dataclass(frozen=True)
class OracleNet:
    """Oracle-side network facts, written out independently of chamber.eth.networks."""

    gvr: bytes
    genesis_fork_version: bytes
    capella: bytes | None = None
    deneb_and_later: frozenset[bytes] = field(default_factory=frozenset)


MAINNET_VERSIONS = [
    "00000000",
    "01000000",
    "02000000",
    "03000000",
    "04000000",
    "05000000",
    "06000000",
]
ORACLE_MAINNET = OracleNet(
    gvr=bytes.fromhex("4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"),
    genesis_fork_version=bytes(4),
    capella=bytes.fromhex("03000000"),
    deneb_and_later=frozenset(bytes.fromhex(v) for v in MAINNET_VERSIONS[4:]),
)

SIMPLE_PAYLOADS: dict[str, tuple[str, str]] = {
    # type: (payload key, oracle type name)
    "AGGREGATION_SLOT": ("aggregation_slot", "SlotBody"),
    "AGGREGATE_AND_PROOF": ("aggregate_and_proof", "AggregateAndProof"),
    "ATTESTATION": ("attestation", "AttestationData"),
    "BLOCK": ("block", "BeaconBlock"),
    "DEPOSIT": ("deposit", "DepositBody"),
    "RANDAO_REVEAL": ("randao_reveal", "EpochBody"),
    "VOLUNTARY_EXIT": ("voluntary_exit", "VoluntaryExit"),
    "SYNC_COMMITTEE_MESSAGE": ("sync_committee_message", "SyncCommitteeMessageBody"),
    "SYNC_COMMITTEE_SELECTION_PROOF": (
        "sync_aggregator_selection_data",
        "SyncAggregatorSelectionData",
    ),
    "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF": ("contribution_and_proof", "ContributionAndProof"),
    "VALIDATOR_REGISTRATION": ("validator_registration", "ValidatorRegistrationV1"),
}
FORKS = ["PHASE0", "ALTAIR", "BELLATRIX", "CAPELLA", "DENEB", "ELECTRA", "FULU"]


def block_v2_payload_type(version: str) -> tuple[str, str]:
    if version == "PHASE0":
        return "block", "BeaconBlock"
    if version == "ALTAIR":
        return "block", "BeaconBlockAltair"
    return "block_header", "BeaconBlockHeader"


def aggregate_v2_type(version: str) -> str:
    return "AggregateAndProofElectra" if version in ("ELECTRA", "FULU") else "AggregateAndProof"


def oracle_request_root(
    req: dict[str, Any], net: OracleNet, t: SimpleNamespace = MAINNET_T
) -> bytes:
    """The signing root of a request, by the consensus-spec rules, written out per type."""
    kind = req["type"]
    if kind == "DEPOSIT":
        dep = req["deposit"]
        domain = oracle_domain("deposit", hx(dep["genesis_fork_version"]), bytes(32))
        return oracle_signing_root(htr(t.DepositMessage, dep), domain)
    if kind == "VALIDATOR_REGISTRATION":
        domain = oracle_domain("builder", net.genesis_fork_version, bytes(32))
        return oracle_signing_root(
            htr(t.ValidatorRegistrationV1, req["validator_registration"]), domain
        )

    fork = req["fork_info"]["fork"]
    gvr = hx(req["fork_info"]["genesis_validators_root"])

    def signed(domain_type: str, epoch: int, object_root: bytes) -> bytes:
        chosen = "previous_version" if epoch < int(fork["epoch"]) else "current_version"
        version = hx(fork[chosen])
        if domain_type == "exit" and version in net.deneb_and_later:
            assert net.capella is not None
            version = net.capella  # EIP-7044
        return oracle_signing_root(object_root, oracle_domain(domain_type, version, gvr))

    if kind == "AGGREGATION_SLOT":
        slot = int(req["aggregation_slot"]["slot"])
        return signed("selection", slot // 32, bytes(uint64(slot).hash_tree_root()))
    if kind == "AGGREGATE_AND_PROOF":
        body = req["aggregate_and_proof"]
        slot = int(body["aggregate"]["data"]["slot"])
        return signed("aggregate", slot // 32, htr(t.AggregateAndProof, body))
    if kind == "AGGREGATE_AND_PROOF_V2":
        version, body = req["aggregate_and_proof"]["version"], req["aggregate_and_proof"]["data"]
        slot = int(body["aggregate"]["data"]["slot"])
        return signed("aggregate", slot // 32, htr(getattr(t, aggregate_v2_type(version)), body))
    if kind == "ATTESTATION":
        data = req["attestation"]
        return signed("attester", int(data["target"]["epoch"]), htr(t.AttestationData, data))
    if kind == "BLOCK":
        block = req["block"]
        return signed("proposer", int(block["slot"]) // 32, htr(t.BeaconBlock, block))
    if kind == "BLOCK_V2":
        key, type_name = block_v2_payload_type(req["beacon_block"]["version"])
        block = req["beacon_block"][key]
        return signed("proposer", int(block["slot"]) // 32, htr(getattr(t, type_name), block))
    if kind == "RANDAO_REVEAL":
        epoch = int(req["randao_reveal"]["epoch"])
        return signed("randao", epoch, bytes(uint64(epoch).hash_tree_root()))
    if kind == "VOLUNTARY_EXIT":
        exit_ = req["voluntary_exit"]
        return signed("exit", int(exit_["epoch"]), htr(t.VoluntaryExit, exit_))
    if kind == "SYNC_COMMITTEE_MESSAGE":
        msg = req["sync_committee_message"]
        return signed("sync", int(msg["slot"]) // 32, hx(msg["beacon_block_root"]))
    if kind == "SYNC_COMMITTEE_SELECTION_PROOF":
        data = req["sync_aggregator_selection_data"]
        return signed(
            "sync_selection", int(data["slot"]) // 32, htr(t.SyncAggregatorSelectionData, data)
        )
    if kind == "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF":
        body = req["contribution_and_proof"]
        slot = int(body["contribution"]["slot"])
        return signed("contribution", slot // 32, htr(t.ContributionAndProof, body))
    raise AssertionError(kind)


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

UINT64 = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 300))


def hexs(data: bytes) -> str:
    return "0x" + data.hex()


def json_of(cls: Any, max_items: int = 2, max_bits: int = 600) -> st.SearchStrategy[Any]:
    """A strategy for the JSON form of a remerkleable type."""
    if issubclass(cls, Container):
        return st.fixed_dictionaries(
            {name: json_of(t, max_items, max_bits) for name, t in cls.fields().items()}
        )
    if issubclass(cls, Bitlist):
        bits = st.lists(st.booleans(), max_size=min(cls.limit(), max_bits))
        return bits.map(lambda b: hexs(cls(*b).encode_bytes()))
    if issubclass(cls, Bitvector):
        n = cls.vector_length()
        return st.lists(st.booleans(), min_size=n, max_size=n).map(
            lambda b: hexs(cls(*b).encode_bytes())
        )
    if issubclass(cls, ByteVector):
        n = cls.type_byte_length()
        return st.binary(min_size=n, max_size=n).map(hexs)
    if issubclass(cls, List):
        elem = json_of(cls.element_cls(), max_items, max_bits)
        return st.lists(elem, max_size=min(cls.limit(), max_items))
    if issubclass(cls, Vector):
        n = cls.vector_length()
        return st.lists(json_of(cls.element_cls(), max_items, max_bits), min_size=n, max_size=n)
    if issubclass(cls, uint64):
        return UINT64.map(str)
    raise TypeError(cls)


TEST_GVR = bytes.fromhex("a1" * 32)
TEST_GENESIS = bytes.fromhex("11223344")
TEST_NETWORK = custom_network(TEST_GVR, TEST_GENESIS)
TEST_ORACLE_NET = OracleNet(gvr=TEST_GVR, genesis_fork_version=TEST_GENESIS)

FORK_INFO = st.fixed_dictionaries(
    {
        "fork": st.fixed_dictionaries(
            {
                "previous_version": st.binary(min_size=4, max_size=4).map(hexs),
                "current_version": st.binary(min_size=4, max_size=4).map(hexs),
                "epoch": UINT64.map(str),
            }
        ),
        "genesis_validators_root": st.just(hexs(TEST_GVR)),
    }
)

CASES = [(kind, None) for kind in SIMPLE_PAYLOADS] + [
    (kind, version) for kind in ("BLOCK_V2", "AGGREGATE_AND_PROOF_V2") for version in FORKS
]


def request_strategy(kind: str, version: str | None) -> st.SearchStrategy[dict[str, Any]]:
    t = MAINNET_T
    if kind == "BLOCK_V2":
        assert version is not None
        key, type_name = block_v2_payload_type(version)
        payload_key = "beacon_block"
        payload = st.fixed_dictionaries(
            {"version": st.just(version), key: json_of(getattr(t, type_name))}
        )
    elif kind == "AGGREGATE_AND_PROOF_V2":
        assert version is not None
        payload_key = "aggregate_and_proof"
        payload = st.fixed_dictionaries(
            {"version": st.just(version), "data": json_of(getattr(t, aggregate_v2_type(version)))}
        )
    else:
        payload_key, type_name = SIMPLE_PAYLOADS[kind]
        payload = json_of(getattr(t, type_name))
        if kind == "DEPOSIT":
            payload = payload.map(lambda p: {**p, "genesis_fork_version": hexs(TEST_GENESIS)})
    fields: dict[str, st.SearchStrategy[Any]] = {"type": st.just(kind), payload_key: payload}
    if kind not in ("DEPOSIT", "VALIDATOR_REGISTRATION"):
        fields["fork_info"] = FORK_INFO
    return st.fixed_dictionaries(fields)


@pytest.mark.parametrize(("kind", "version"), CASES, ids=[f"{k}-{v}" if v else k for k, v in CASES])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_requests_match_oracle(kind: str, version: str | None, data: st.DataObject) -> None:
    req = data.draw(request_strategy(kind, version))
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


def fork_info(previous: str, current: str, epoch: int, gvr: bytes) -> dict[str, Any]:
    return {
        "fork": {
            "previous_version": "0x" + previous,
            "current_version": "0x" + current,
            "epoch": str(epoch),
        },
        "genesis_validators_root": hexs(gvr),
    }


def exit_request(previous: str, current: str, fork_epoch: int, exit_epoch: int) -> dict[str, Any]:
    return {
        "type": "VOLUNTARY_EXIT",
        "fork_info": fork_info(previous, current, fork_epoch, ORACLE_MAINNET.gvr),
        "voluntary_exit": {"epoch": str(exit_epoch), "validator_index": "7"},
    }


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


def block_header_request(slot: int, fork_epoch: int, gvr: bytes) -> dict[str, Any]:
    return {
        "type": "BLOCK_V2",
        "fork_info": fork_info("04000000", "05000000", fork_epoch, gvr),
        "beacon_block": {
            "version": "ELECTRA",
            "block_header": {
                "slot": str(slot),
                "proposer_index": "3",
                "parent_root": hexs(b"\x01" * 32),
                "state_root": hexs(b"\x02" * 32),
                "body_root": hexs(b"\x03" * 32),
            },
        },
    }


def attestation_request(target_epoch: int, fork_epoch: int, gvr: bytes) -> dict[str, Any]:
    return {
        "type": "ATTESTATION",
        "fork_info": fork_info("04000000", "05000000", fork_epoch, gvr),
        "attestation": {
            "slot": str(target_epoch * 32),
            "index": "0",
            "beacon_block_root": hexs(b"\x05" * 32),
            "source": {"epoch": str(max(target_epoch - 1, 0)), "root": hexs(b"\x06" * 32)},
            "target": {"epoch": str(target_epoch), "root": hexs(b"\x07" * 32)},
        },
    }


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


def deposit_request(version: str) -> dict[str, Any]:
    return {
        "type": "DEPOSIT",
        "deposit": {
            "pubkey": hexs(b"\xaa" * 48),
            "withdrawal_credentials": hexs(b"\x01" + b"\x00" * 11 + b"\xbb" * 20),
            "amount": "32000000000",
            "genesis_fork_version": "0x" + version,
        },
    }


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
