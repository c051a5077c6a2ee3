"""Domains and signing roots, exactly as the consensus specs define them.

A BLS signature in Ethereum never covers an object directly but its *signing root*:
``hash_tree_root(SigningData(object_root, domain))``. The domain binds the signature to a purpose
(proposal, attestation, ...), a fork version and a chain (the genesis validators root), which is
what makes a signature for one purpose or chain useless on another. Getting any of these inputs
wrong means producing signatures the network rejects, so this module mirrors the spec helpers
(``compute_domain``, ``compute_signing_root``, ``get_domain``'s fork selection) one to one.
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import sha256

# Domain types (consensus-specs phase0, altair, capella, deneb; builder-specs).
DOMAIN_BEACON_PROPOSER = bytes.fromhex("00000000")
DOMAIN_BEACON_ATTESTER = bytes.fromhex("01000000")
DOMAIN_RANDAO = bytes.fromhex("02000000")
DOMAIN_DEPOSIT = bytes.fromhex("03000000")
DOMAIN_VOLUNTARY_EXIT = bytes.fromhex("04000000")
DOMAIN_SELECTION_PROOF = bytes.fromhex("05000000")
DOMAIN_AGGREGATE_AND_PROOF = bytes.fromhex("06000000")
DOMAIN_SYNC_COMMITTEE = bytes.fromhex("07000000")
DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF = bytes.fromhex("08000000")
DOMAIN_CONTRIBUTION_AND_PROOF = bytes.fromhex("09000000")
DOMAIN_BLS_TO_EXECUTION_CHANGE = bytes.fromhex("0a000000")
DOMAIN_BLOB_SIDECAR = bytes.fromhex("0b000000")  # Deneb only; kept for completeness.
DOMAIN_APPLICATION_MASK = bytes.fromhex("00000001")
DOMAIN_APPLICATION_BUILDER = bytes.fromhex("00000001")

#: Deposits and builder registrations are valid on any fork, so they use a zero root.
ZERO_ROOT = bytes(32)
_PADDING = bytes(28)


def compute_epoch_at_slot(slot: int, slots_per_epoch: int) -> int:
    """Epoch containing ``slot``."""
    return slot // slots_per_epoch


def select_fork_version(
    previous_version: bytes, current_version: bytes, fork_epoch: int, epoch: int
) -> bytes:
    """The fork version ``get_domain`` uses for a message of ``epoch`` under ``fork_info.fork``.

    Messages from before the fork epoch are still signed with the previous version, so that
    attestations and the like produced just before a fork remain valid across it.
    """
    return previous_version if epoch < fork_epoch else current_version


def compute_fork_data_root(fork_version: bytes, genesis_validators_root: bytes) -> bytes:
    """``hash_tree_root(ForkData(current_version, genesis_validators_root))``."""
    return sha256(fork_version + _PADDING + genesis_validators_root).digest()


@lru_cache(maxsize=1024)
def compute_domain(
    domain_type: bytes, fork_version: bytes, genesis_validators_root: bytes
) -> bytes:
    """``domain_type + fork_data_root[:28]``.

    Cached: a signer sees a handful of (type, version, root) triples, and the cache is bounded, so
    a client cycling through made-up versions can only evict entries, not grow memory.
    """
    return domain_type + compute_fork_data_root(fork_version, genesis_validators_root)[:28]


def compute_signing_root(object_root: bytes, domain: bytes) -> bytes:
    """``hash_tree_root(SigningData(object_root, domain))``: what is actually BLS-signed."""
    return sha256(object_root + domain).digest()
