"""One model per signing request shape, each knowing what it signs and under which domain.

The JSON shapes follow the Web3Signer eth2 signing API (``type`` + ``fork_info`` + one payload
field). Each model's :meth:`SigningRequest.signing_root` applies the spec's rule for its message:
which domain type, which epoch selects the fork version, and which object is hashed.
:meth:`SigningRequest.check_network` is the guard that pins the signer to its configured chain.
"""

from __future__ import annotations

from pydantic import Field

from chamber.errors import NetworkMismatch
from chamber.eth.containers import (
    AggregateAndProof,
    AggregateAndProofElectra,
    AttestationData,
    BeaconBlock,
    BeaconBlockAltair,
    BeaconBlockHeader,
    ContributionAndProof,
    DepositMessage,
    StrictModel,
    SyncAggregatorSelectionData,
    ValidatorRegistration,
    VoluntaryExit,
)
from chamber.eth.fields import OptionalRoot, Root, Uint64, Version
from chamber.eth.networks import Network
from chamber.eth.signing import (
    DOMAIN_AGGREGATE_AND_PROOF,
    DOMAIN_APPLICATION_BUILDER,
    DOMAIN_BEACON_ATTESTER,
    DOMAIN_BEACON_PROPOSER,
    DOMAIN_CONTRIBUTION_AND_PROOF,
    DOMAIN_DEPOSIT,
    DOMAIN_RANDAO,
    DOMAIN_SELECTION_PROOF,
    DOMAIN_SYNC_COMMITTEE,
    DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF,
    DOMAIN_VOLUNTARY_EXIT,
    ZERO_ROOT,
    compute_domain,
    compute_signing_root,
    select_fork_version,
)
from chamber.eth.ssz import uint64_chunk


class Fork(StrictModel):
    previous_version: Version
    current_version: Version
    epoch: Uint64

    def version_at(self, epoch: int) -> bytes:
        return select_fork_version(self.previous_version, self.current_version, self.epoch, epoch)


class ForkInfo(StrictModel):
    fork: Fork
    genesis_validators_root: Root

    def check_network(self, network: Network) -> None:
        if self.genesis_validators_root != network.genesis_validators_root:
            raise NetworkMismatch(
                "fork_info.genesis_validators_root: this signer serves "
                f"{network.name} (0x{network.genesis_validators_root.hex()}), "
                f"not 0x{self.genesis_validators_root.hex()}",
                field="fork_info.genesis_validators_root",
            )


class SigningRequest(StrictModel):
    """Fields every request may carry. ``type`` was already used to pick the model."""

    type: str
    signing_root_camel: OptionalRoot = Field(default=None, alias="signingRoot")
    signing_root_snake: OptionalRoot = Field(default=None, alias="signing_root")

    def check_network(self, network: Network) -> None:
        """Raise NetworkMismatch unless the request is for ``network``."""
        raise NotImplementedError

    def signing_root(self, network: Network) -> bytes:
        """The root the BLS key signs, computed from the request's content."""
        raise NotImplementedError

    def block_slot(self) -> int | None:
        """Slot of a block proposal, for slashing protection; None for other requests."""
        return None

    def attestation_epochs(self) -> tuple[int, int] | None:
        """(source, target) epochs of an attestation, for slashing protection."""
        return None

    def client_signing_roots(self) -> list[tuple[str, bytes]]:
        """Signing roots the client sent (under either spelling), with their JSON names."""
        given = (
            ("signingRoot", self.signing_root_camel),
            ("signing_root", self.signing_root_snake),
        )
        return [(name, root) for name, root in given if root is not None]


class ForkedRequest(SigningRequest):
    """A request signed under the fork in ``fork_info`` and the network's validators root."""

    fork_info: ForkInfo

    def check_network(self, network: Network) -> None:
        self.fork_info.check_network(network)

    def _root(self, domain_type: bytes, epoch: int, object_root: bytes) -> bytes:
        version = self.fork_info.fork.version_at(epoch)
        domain = compute_domain(domain_type, version, self.fork_info.genesis_validators_root)
        return compute_signing_root(object_root, domain)


class AggregationSlotBody(StrictModel):
    slot: Uint64


class AggregationSlotRequest(ForkedRequest):
    aggregation_slot: AggregationSlotBody

    def signing_root(self, network: Network) -> bytes:
        slot = self.aggregation_slot.slot
        return self._root(
            DOMAIN_SELECTION_PROOF, slot // network.slots_per_epoch, uint64_chunk(slot)
        )


class AggregateAndProofRequest(ForkedRequest):
    """Deprecated unversioned form: always the Phase0 attestation layout."""

    aggregate_and_proof: AggregateAndProof

    def signing_root(self, network: Network) -> bytes:
        message = self.aggregate_and_proof
        epoch = message.aggregate.data.slot // network.slots_per_epoch
        return self._root(DOMAIN_AGGREGATE_AND_PROOF, epoch, message.hash_tree_root())


class VersionedAggregateAndProof(StrictModel):
    version: str
    data: AggregateAndProof


class VersionedAggregateAndProofElectra(StrictModel):
    version: str
    data: AggregateAndProofElectra


class AggregateAndProofV2Request(ForkedRequest):
    """PHASE0..DENEB."""

    aggregate_and_proof: VersionedAggregateAndProof

    def signing_root(self, network: Network) -> bytes:
        message = self.aggregate_and_proof.data
        epoch = message.aggregate.data.slot // network.slots_per_epoch
        return self._root(DOMAIN_AGGREGATE_AND_PROOF, epoch, message.hash_tree_root())


class AggregateAndProofV2ElectraRequest(ForkedRequest):
    """ELECTRA and FULU: the EIP-7549 attestation layout."""

    aggregate_and_proof: VersionedAggregateAndProofElectra

    def signing_root(self, network: Network) -> bytes:
        message = self.aggregate_and_proof.data
        epoch = message.aggregate.data.slot // network.slots_per_epoch
        return self._root(DOMAIN_AGGREGATE_AND_PROOF, epoch, message.hash_tree_root())


class AttestationRequest(ForkedRequest):
    attestation: AttestationData

    def signing_root(self, network: Network) -> bytes:
        data = self.attestation
        return self._root(DOMAIN_BEACON_ATTESTER, data.target.epoch, data.hash_tree_root())

    def attestation_epochs(self) -> tuple[int, int] | None:
        return (self.attestation.source.epoch, self.attestation.target.epoch)


class _BlockRequest(ForkedRequest):
    def _block_root(self, network: Network, slot: int, block_root: bytes) -> bytes:
        return self._root(DOMAIN_BEACON_PROPOSER, slot // network.slots_per_epoch, block_root)


class BlockRequest(_BlockRequest):
    """Deprecated ``BLOCK``: a full Phase0 block at the top level."""

    block: BeaconBlock

    def signing_root(self, network: Network) -> bytes:
        return self._block_root(network, self.block.slot, self.block.hash_tree_root())

    def block_slot(self) -> int | None:
        return self.block.slot


class VersionedBlockPhase0(StrictModel):
    version: str
    block: BeaconBlock


class VersionedBlockAltair(StrictModel):
    version: str
    block: BeaconBlockAltair


class VersionedBlockHeader(StrictModel):
    version: str
    block_header: BeaconBlockHeader


class BlockV2Phase0Request(_BlockRequest):
    beacon_block: VersionedBlockPhase0

    def signing_root(self, network: Network) -> bytes:
        block = self.beacon_block.block
        return self._block_root(network, block.slot, block.hash_tree_root())

    def block_slot(self) -> int | None:
        return self.beacon_block.block.slot


class BlockV2AltairRequest(_BlockRequest):
    beacon_block: VersionedBlockAltair

    def signing_root(self, network: Network) -> bytes:
        block = self.beacon_block.block
        return self._block_root(network, block.slot, block.hash_tree_root())

    def block_slot(self) -> int | None:
        return self.beacon_block.block.slot


class BlockV2HeaderRequest(_BlockRequest):
    """BELLATRIX..FULU: only the header is sent; its root equals the block's root."""

    beacon_block: VersionedBlockHeader

    def signing_root(self, network: Network) -> bytes:
        header = self.beacon_block.block_header
        return self._block_root(network, header.slot, header.hash_tree_root())

    def block_slot(self) -> int | None:
        return self.beacon_block.block_header.slot


class RandaoRevealBody(StrictModel):
    epoch: Uint64


class RandaoRevealRequest(ForkedRequest):
    randao_reveal: RandaoRevealBody

    def signing_root(self, network: Network) -> bytes:
        epoch = self.randao_reveal.epoch
        return self._root(DOMAIN_RANDAO, epoch, uint64_chunk(epoch))


class VoluntaryExitRequest(ForkedRequest):
    voluntary_exit: VoluntaryExit

    def signing_root(self, network: Network) -> bytes:
        message = self.voluntary_exit
        selected = self.fork_info.fork.version_at(message.epoch)
        version = network.voluntary_exit_version(selected)  # EIP-7044
        domain = compute_domain(
            DOMAIN_VOLUNTARY_EXIT, version, self.fork_info.genesis_validators_root
        )
        return compute_signing_root(message.hash_tree_root(), domain)


class SyncCommitteeMessageBody(StrictModel):
    beacon_block_root: Root
    slot: Uint64


class SyncCommitteeMessageRequest(ForkedRequest):
    sync_committee_message: SyncCommitteeMessageBody

    def signing_root(self, network: Network) -> bytes:
        message = self.sync_committee_message
        epoch = message.slot // network.slots_per_epoch
        # The signed object is the block root itself (a Bytes32 is its own hash_tree_root).
        return self._root(DOMAIN_SYNC_COMMITTEE, epoch, message.beacon_block_root)


class SyncCommitteeSelectionProofRequest(ForkedRequest):
    sync_aggregator_selection_data: SyncAggregatorSelectionData

    def signing_root(self, network: Network) -> bytes:
        data = self.sync_aggregator_selection_data
        epoch = data.slot // network.slots_per_epoch
        return self._root(DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF, epoch, data.hash_tree_root())


class SyncCommitteeContributionAndProofRequest(ForkedRequest):
    contribution_and_proof: ContributionAndProof

    def signing_root(self, network: Network) -> bytes:
        message = self.contribution_and_proof
        epoch = message.contribution.slot // network.slots_per_epoch
        return self._root(DOMAIN_CONTRIBUTION_AND_PROOF, epoch, message.hash_tree_root())


class DepositRequest(SigningRequest):
    """Deposits are signed for the deposit's own genesis fork version and a zero root.

    The guard therefore checks that version instead of a validators root. ``fork_info`` is not
    part of the spec'd shape but is accepted (and checked) because some clients send it.
    """

    deposit: DepositMessage
    fork_info: ForkInfo | None = None

    def check_network(self, network: Network) -> None:
        if self.fork_info is not None:
            self.fork_info.check_network(network)
        if self.deposit.genesis_fork_version != network.genesis_fork_version:
            raise NetworkMismatch(
                f"deposit.genesis_fork_version: this signer serves {network.name} "
                f"(0x{network.genesis_fork_version.hex()}), "
                f"not 0x{self.deposit.genesis_fork_version.hex()}",
                field="deposit.genesis_fork_version",
            )

    def signing_root(self, network: Network) -> bytes:
        domain = compute_domain(DOMAIN_DEPOSIT, self.deposit.genesis_fork_version, ZERO_ROOT)
        return compute_signing_root(self.deposit.hash_tree_root(), domain)


class ValidatorRegistrationRequest(SigningRequest):
    """Builder registrations use the network's genesis fork version and a zero root.

    They carry no fork information, so there is nothing to guard unless a client adds the
    (optional, checked) ``fork_info``.
    """

    validator_registration: ValidatorRegistration
    fork_info: ForkInfo | None = None

    def check_network(self, network: Network) -> None:
        if self.fork_info is not None:
            self.fork_info.check_network(network)

    def signing_root(self, network: Network) -> bytes:
        domain = compute_domain(DOMAIN_APPLICATION_BUILDER, network.genesis_fork_version, ZERO_ROOT)
        return compute_signing_root(self.validator_registration.hash_tree_root(), domain)
