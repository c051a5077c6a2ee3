"""A slashing backend that takes its time, for back-pressure and drain tests.

Registered in-process by tests, or installed as a fake distribution for subprocess signers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from chamber.hookspecs import hookimpl


class SlowSlashingBackend:
    name = "slow-test"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> SlowSlashingBackend:
        return cls(float(settings.get("delay_seconds", 1.0)))

    def check_and_record_block(self, pubkey: bytes, slot: int, signing_root: bytes) -> None:
        time.sleep(self.delay)

    def check_and_record_attestation(
        self, pubkey: bytes, source_epoch: int, target_epoch: int, signing_root: bytes
    ) -> None:
        time.sleep(self.delay)

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        return None


@hookimpl
def chamber_slashing_backends() -> dict[str, type]:
    return {"slow-test": SlowSlashingBackend}
