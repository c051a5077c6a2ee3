"""Consensus containers as they appear in signing requests, each able to compute its SSZ root.

Field order matters: it is the SSZ declaration order from the consensus specs, and
``hash_tree_root`` lists the field roots in that same order. List limits and bit lengths are the
mainnet preset (all public networks use it); a body exceeding them is rejected as a bad request
rather than hashed with a different shape.

Models reject unknown fields (``extra="forbid"``) so that a typo cannot silently drop data that
the client believes it is signing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from chamber.eth.fields import (
    Bytes20,
    Pubkey,
    Root,
    Signature,
    Uint64,
    Version,
    bitlist,
    bitvector,
)
from chamber.eth.ssz import (
    basic_list_root,
    bitlist_root,
    bitvector_root,
    byte_vector_root,
    container_root,
    list_root,
    uint64_chunk,
    vector_root,
)

# Mainnet preset.
MAX_PROPOSER_SLASHINGS = 16
MAX_ATTESTER_SLASHINGS = 2
MAX_ATTESTATIONS = 128
MAX_DEPOSITS = 16
MAX_VOLUNTARY_EXITS = 16
MAX_VALIDATORS_PER_COMMITTEE = 2048
MAX_COMMITTEES_PER_SLOT = 64
DEPOSIT_PROOF_LENGTH = 33  # DEPOSIT_CONTRACT_TREE_DEPTH + 1
SYNC_COMMITTEE_SIZE = 512
SYNC_COMMITTEE_SUBNET_COUNT = 4
SYNC_SUBCOMMITTEE_SIZE = SYNC_COMMITTEE_SIZE // SYNC_COMMITTEE_SUBNET_COUNT
#: Electra attestations aggregate across all committees of a slot.
MAX_ELECTRA_AGGREGATION_BITS = MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT

AggregationBits = Annotated[bytes, PlainValidator(bitlist(MAX_VALIDATORS_PER_COMMITTEE))]
ElectraAggregationBits = Annotated[bytes, PlainValidator(bitlist(MAX_ELECTRA_AGGREGATION_BITS))]
CommitteeBits = Annotated[bytes, PlainValidator(bitvector(MAX_COMMITTEES_PER_SLOT))]
SyncCommitteeBits = Annotated[bytes, PlainValidator(bitvector(SYNC_COMMITTEE_SIZE))]
SyncSubcommitteeBits = Annotated[bytes, PlainValidator(bitvector(SYNC_SUBCOMMITTEE_SIZE))]


class StrictModel(BaseModel):
    """Base for every request model: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Checkpoint(StrictModel):
    epoch: Uint64
    root: Root

    def hash_tree_root(self) -> bytes:
        return container_root([uint64_chunk(self.epoch), self.root])


class AttestationData(StrictModel):
    slot: Uint64
    index: Uint64
    beacon_block_root: Root
    source: Checkpoint
    target: Checkpoint

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.slot),
                uint64_chunk(self.index),
                self.beacon_block_root,
                self.source.hash_tree_root(),
                self.target.hash_tree_root(),
            ]
        )


class BeaconBlockHeader(StrictModel):
    slot: Uint64
    proposer_index: Uint64
    parent_root: Root
    state_root: Root
    body_root: Root

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.slot),
                uint64_chunk(self.proposer_index),
                self.parent_root,
                self.state_root,
                self.body_root,
            ]
        )


class SignedBeaconBlockHeader(StrictModel):
    message: BeaconBlockHeader
    signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root([self.message.hash_tree_root(), byte_vector_root(self.signature)])


class ProposerSlashing(StrictModel):
    signed_header_1: SignedBeaconBlockHeader
    signed_header_2: SignedBeaconBlockHeader

    def hash_tree_root(self) -> bytes:
        return container_root(
            [self.signed_header_1.hash_tree_root(), self.signed_header_2.hash_tree_root()]
        )


class IndexedAttestation(StrictModel):
    attesting_indices: Annotated[list[Uint64], Field(max_length=MAX_VALIDATORS_PER_COMMITTEE)]
    data: AttestationData
    signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                basic_list_root(self.attesting_indices, MAX_VALIDATORS_PER_COMMITTEE),
                self.data.hash_tree_root(),
                byte_vector_root(self.signature),
            ]
        )


class AttesterSlashing(StrictModel):
    attestation_1: IndexedAttestation
    attestation_2: IndexedAttestation

    def hash_tree_root(self) -> bytes:
        return container_root(
            [self.attestation_1.hash_tree_root(), self.attestation_2.hash_tree_root()]
        )


class Attestation(StrictModel):
    """Phase0..Deneb attestation: one committee, ``aggregation_bits`` of at most 2048 bits."""

    aggregation_bits: AggregationBits
    data: AttestationData
    signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                bitlist_root(self.aggregation_bits, MAX_VALIDATORS_PER_COMMITTEE),
                self.data.hash_tree_root(),
                byte_vector_root(self.signature),
            ]
        )


class AttestationElectra(StrictModel):
    """Electra+ attestation (EIP-7549): committee moved out of ``data.index`` into bits."""

    aggregation_bits: ElectraAggregationBits
    data: AttestationData
    signature: Signature
    committee_bits: CommitteeBits

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                bitlist_root(self.aggregation_bits, MAX_ELECTRA_AGGREGATION_BITS),
                self.data.hash_tree_root(),
                byte_vector_root(self.signature),
                bitvector_root(self.committee_bits, MAX_COMMITTEES_PER_SLOT),
            ]
        )


class Eth1Data(StrictModel):
    deposit_root: Root
    deposit_count: Uint64
    block_hash: Root

    def hash_tree_root(self) -> bytes:
        return container_root(
            [self.deposit_root, uint64_chunk(self.deposit_count), self.block_hash]
        )


class DepositData(StrictModel):
    pubkey: Pubkey
    withdrawal_credentials: Root
    amount: Uint64
    signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                byte_vector_root(self.pubkey),
                self.withdrawal_credentials,
                uint64_chunk(self.amount),
                byte_vector_root(self.signature),
            ]
        )


class Deposit(StrictModel):
    proof: Annotated[
        list[Root], Field(min_length=DEPOSIT_PROOF_LENGTH, max_length=DEPOSIT_PROOF_LENGTH)
    ]
    data: DepositData

    def hash_tree_root(self) -> bytes:
        return container_root([vector_root(self.proof), self.data.hash_tree_root()])


class VoluntaryExit(StrictModel):
    epoch: Uint64
    validator_index: Uint64

    def hash_tree_root(self) -> bytes:
        return container_root([uint64_chunk(self.epoch), uint64_chunk(self.validator_index)])


class SignedVoluntaryExit(StrictModel):
    message: VoluntaryExit
    signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root([self.message.hash_tree_root(), byte_vector_root(self.signature)])


class SyncAggregate(StrictModel):
    sync_committee_bits: SyncCommitteeBits
    sync_committee_signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                bitvector_root(self.sync_committee_bits, SYNC_COMMITTEE_SIZE),
                byte_vector_root(self.sync_committee_signature),
            ]
        )


class _Hashable(Protocol):
    def hash_tree_root(self) -> bytes: ...


def _list_root(items: Sequence[_Hashable], limit: int) -> bytes:
    return list_root([item.hash_tree_root() for item in items], limit)


class BeaconBlockBody(StrictModel):
    """Phase0 block body."""

    randao_reveal: Signature
    eth1_data: Eth1Data
    graffiti: Root
    proposer_slashings: Annotated[list[ProposerSlashing], Field(max_length=MAX_PROPOSER_SLASHINGS)]
    attester_slashings: Annotated[list[AttesterSlashing], Field(max_length=MAX_ATTESTER_SLASHINGS)]
    attestations: Annotated[list[Attestation], Field(max_length=MAX_ATTESTATIONS)]
    deposits: Annotated[list[Deposit], Field(max_length=MAX_DEPOSITS)]
    voluntary_exits: Annotated[list[SignedVoluntaryExit], Field(max_length=MAX_VOLUNTARY_EXITS)]

    def field_roots(self) -> list[bytes]:
        """Roots of the fields in SSZ order; subclasses append the fields their fork added."""
        return [
            byte_vector_root(self.randao_reveal),
            self.eth1_data.hash_tree_root(),
            self.graffiti,
            _list_root(self.proposer_slashings, MAX_PROPOSER_SLASHINGS),
            _list_root(self.attester_slashings, MAX_ATTESTER_SLASHINGS),
            _list_root(self.attestations, MAX_ATTESTATIONS),
            _list_root(self.deposits, MAX_DEPOSITS),
            _list_root(self.voluntary_exits, MAX_VOLUNTARY_EXITS),
        ]

    def hash_tree_root(self) -> bytes:
        return container_root(self.field_roots())


class BeaconBlockBodyAltair(BeaconBlockBody):
    """Altair block body: Phase0 plus the sync committee aggregate."""

    sync_aggregate: SyncAggregate

    def field_roots(self) -> list[bytes]:
        return [*super().field_roots(), self.sync_aggregate.hash_tree_root()]


class BeaconBlock(StrictModel):
    """Phase0 block. Its root equals the root of the header that carries ``body_root``."""

    slot: Uint64
    proposer_index: Uint64
    parent_root: Root
    state_root: Root
    body: BeaconBlockBody

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.slot),
                uint64_chunk(self.proposer_index),
                self.parent_root,
                self.state_root,
                self.body.hash_tree_root(),
            ]
        )


class BeaconBlockAltair(BeaconBlock):
    body: BeaconBlockBodyAltair


class AggregateAndProof(StrictModel):
    aggregator_index: Uint64
    aggregate: Attestation
    selection_proof: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.aggregator_index),
                self.aggregate.hash_tree_root(),
                byte_vector_root(self.selection_proof),
            ]
        )


class AggregateAndProofElectra(StrictModel):
    aggregator_index: Uint64
    aggregate: AttestationElectra
    selection_proof: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.aggregator_index),
                self.aggregate.hash_tree_root(),
                byte_vector_root(self.selection_proof),
            ]
        )


class SyncCommitteeContribution(StrictModel):
    slot: Uint64
    beacon_block_root: Root
    subcommittee_index: Uint64
    aggregation_bits: SyncSubcommitteeBits
    signature: Signature

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.slot),
                self.beacon_block_root,
                uint64_chunk(self.subcommittee_index),
                bitvector_root(self.aggregation_bits, SYNC_SUBCOMMITTEE_SIZE),
                byte_vector_root(self.signature),
            ]
        )


class ContributionAndProof(StrictModel):
    """JSON field order differs from SSZ order here; the root uses SSZ order."""

    aggregator_index: Uint64
    selection_proof: Signature
    contribution: SyncCommitteeContribution

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                uint64_chunk(self.aggregator_index),
                self.contribution.hash_tree_root(),
                byte_vector_root(self.selection_proof),
            ]
        )


class SyncAggregatorSelectionData(StrictModel):
    slot: Uint64
    subcommittee_index: Uint64

    def hash_tree_root(self) -> bytes:
        return container_root([uint64_chunk(self.slot), uint64_chunk(self.subcommittee_index)])


class DepositMessage(StrictModel):
    """What a deposit signs: the deposit data without its signature (and without the version)."""

    pubkey: Pubkey
    withdrawal_credentials: Root
    amount: Uint64
    genesis_fork_version: Version

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                byte_vector_root(self.pubkey),
                self.withdrawal_credentials,
                uint64_chunk(self.amount),
            ]
        )


class ValidatorRegistration(StrictModel):
    """Builder-API ``ValidatorRegistrationV1``."""

    fee_recipient: Bytes20
    gas_limit: Uint64
    timestamp: Uint64
    pubkey: Pubkey

    def hash_tree_root(self) -> bytes:
        return container_root(
            [
                byte_vector_root(self.fee_recipient),
                uint64_chunk(self.gas_limit),
                uint64_chunk(self.timestamp),
                byte_vector_root(self.pubkey),
            ]
        )
