"""Request bodies for the signing API (mainnet, Deneb), for tests and the benchmark."""

from __future__ import annotations

from typing import Any

MAINNET_GVR = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
DENEB_FORK = {"previous_version": "0x03000000", "current_version": "0x04000000", "epoch": "269568"}
BASE_EPOCH = 300_000


def fork_info(gvr: str = MAINNET_GVR) -> dict[str, Any]:
    return {"fork": dict(DENEB_FORK), "genesis_validators_root": gvr}


def randao(epoch: int = BASE_EPOCH, gvr: str = MAINNET_GVR) -> dict[str, Any]:
    return {
        "type": "RANDAO_REVEAL",
        "fork_info": fork_info(gvr),
        "randao_reveal": {"epoch": str(epoch)},
    }


def block_v2(slot: int = BASE_EPOCH * 32, body_root: str = "0x" + "22" * 32) -> dict[str, Any]:
    return {
        "type": "BLOCK_V2",
        "fork_info": fork_info(),
        "beacon_block": {
            "version": "DENEB",
            "block_header": {
                "slot": str(slot),
                "proposer_index": "7",
                "parent_root": "0x" + "11" * 32,
                "state_root": "0x" + "33" * 32,
                "body_root": body_root,
            },
        },
    }


def attestation(
    source: int = BASE_EPOCH - 1, target: int = BASE_EPOCH, root: str = "0x" + "44" * 32
) -> dict[str, Any]:
    return {
        "type": "ATTESTATION",
        "fork_info": fork_info(),
        "attestation": {
            "slot": str(target * 32),
            "index": "0",
            "beacon_block_root": root,
            "source": {"epoch": str(source), "root": "0x" + "55" * 32},
            "target": {"epoch": str(target), "root": "0x" + "66" * 32},
        },
    }
