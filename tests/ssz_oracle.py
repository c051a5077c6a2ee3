"""An independent signing-root oracle and request builders for the signing API tests.

The oracle is built only from remerkleable containers declared here (the consensus-specs layouts)
plus hashlib for the domain; it shares no code with ``chamber`` (nothing here imports it), so a
test comparing the signer's output with :func:`oracle_request_root` checks one implementation
against another written independently from the specs.

Also here: builders for request JSON (fixed ones, and hypothesis strategies for every type and
every BLOCK_V2 / AGGREGATE_AND_PROOF_V2 version), shared by ``test_eth_signing_roots`` (roots
computed in-process) and ``test_api_signing_types`` (signatures returned over HTTP).

No ``from __future__ import annotations`` here: remerkleable reads container fields from the class
annotations, which must be real types.
"""

import hashlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from hypothesis import strategies as st
from remerkleable.basic import uint64
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import Bytes4, Bytes32, Bytes48, Bytes96, ByteVector
from remerkleable.complex import Container, List, Vector

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


# --------------------------------------------------------------------------------------------
# Request JSON: hypothesis strategies
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


def fork_info_strategy(gvr: bytes) -> st.SearchStrategy[dict[str, Any]]:
    """Any fork versions and fork epoch, for the chain whose genesis validators root is ``gvr``."""
    return st.fixed_dictionaries(
        {
            "fork": st.fixed_dictionaries(
                {
                    "previous_version": st.binary(min_size=4, max_size=4).map(hexs),
                    "current_version": st.binary(min_size=4, max_size=4).map(hexs),
                    "epoch": UINT64.map(str),
                }
            ),
            "genesis_validators_root": st.just(hexs(gvr)),
        }
    )


#: Every request shape: each unversioned type once, each versioned type once per version.
CASES = [(kind, None) for kind in SIMPLE_PAYLOADS] + [
    (kind, version) for kind in ("BLOCK_V2", "AGGREGATE_AND_PROOF_V2") for version in FORKS
]


def request_strategy(
    kind: str, version: str | None, gvr: bytes, genesis_fork_version: bytes
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid requests of one shape for the chain (``gvr``, ``genesis_fork_version``)."""
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
            genesis = hexs(genesis_fork_version)
            payload = payload.map(lambda p: {**p, "genesis_fork_version": genesis})
    fields: dict[str, st.SearchStrategy[Any]] = {"type": st.just(kind), payload_key: payload}
    if kind not in ("DEPOSIT", "VALIDATOR_REGISTRATION"):
        fields["fork_info"] = fork_info_strategy(gvr)
    return st.fixed_dictionaries(fields)


# --------------------------------------------------------------------------------------------
# Request JSON: fixed builders
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
