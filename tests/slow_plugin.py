"""A slashing backend that takes its time, for back-pressure and drain tests.

Registered in-process by tests, or installed as a fake distribution for subprocess signers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from chamber.builtin.noop_slashing import NoopSlashingBackend
from chamber.hookspecs import hookimpl


class SlowSlashingBackend(NoopSlashingBackend):
    name = "slow-test"

    def __init__(self, delay: float, genesis_validators_root: bytes) -> None:
        super().__init__(genesis_validators_root)
        self.delay = delay

    @classmethod
    def from_config(  # type: ignore[override]
        cls, settings: Mapping[str, Any], genesis_validators_root: bytes
    ) -> SlowSlashingBackend:
        return cls(float(settings.get("delay_seconds", 1.0)), genesis_validators_root)

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        time.sleep(self.delay)

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        time.sleep(self.delay)


@hookimpl
def chamber_slashing_backends() -> dict[str, type]:
    return {"slow-test": SlowSlashingBackend}
