"""Helpers for tests of two signer replicas sharing their stores (the SQLite one in
``tests/test_keys_replicas.py``, the AWS one in ``plugins/chamber-aws-kms``): the key API calls
that change keys on one replica, and polling until the other one follows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from tests import bodies
from tests.vault_support import OPS_TOKEN, Chamber

#: The acceptance bound for a replica to follow a key change made through the other one.
FOLLOW_LIMIT = 2.0
#: How long a replica is watched after it dropped a key: it must never sign with it again.
WATCH_AFTER = 3.0
KEYS_API = "/api/v1/chamber/keys"


class Followed(Protocol):
    #: Each ``follow`` label's latency in seconds (printed at the end of the module).
    latencies: dict[str, float]


def status_of(chamber: Chamber, pubkey_hex: str, epoch: int = bodies.BASE_EPOCH) -> int:
    return chamber.sign(pubkey_hex, bodies.randao(epoch)).status


def follow(
    pair: Followed,
    label: str,
    check: Callable[[], bool],
    record_property: Callable[[str, object], None],
) -> float:
    """Poll ``check`` every 20 ms until true (at most :data:`FOLLOW_LIMIT`); record the time."""
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        assert elapsed < FOLLOW_LIMIT, f"{label}: not within {FOLLOW_LIMIT} s"
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    assert elapsed < FOLLOW_LIMIT, f"{label}: {elapsed:.3f} s"
    pair.latencies[label] = elapsed
    record_property(f"follow_latency[{label}]", round(elapsed, 3))
    print(f"\n[replicas] {label}: {elapsed:.3f} s")
    return elapsed


def _answers(chamber: Chamber, pubkey_hex: str, wanted: int) -> Callable[[], bool]:
    def check() -> bool:
        status = status_of(chamber, pubkey_hex)
        assert status in (200, 404), status
        return status == wanted

    return check


def signs(chamber: Chamber, pubkey_hex: str) -> Callable[[], bool]:
    return _answers(chamber, pubkey_hex, 200)


def refuses(chamber: Chamber, pubkey_hex: str) -> Callable[[], bool]:
    return _answers(chamber, pubkey_hex, 404)


def never_signs_again(chamber: Chamber, pubkey_hex: str) -> int:
    """For :data:`WATCH_AFTER` seconds every request for the key answers 404; how many."""
    deadline = time.monotonic() + WATCH_AFTER
    epoch = bodies.BASE_EPOCH
    polls = 0
    while time.monotonic() < deadline:
        epoch += 1
        status = status_of(chamber, pubkey_hex, epoch)
        assert status == 404, f"{pubkey_hex} answered {status} after it was dropped"
        polls += 1
        time.sleep(0.05)
    return polls


def keys_api(chamber: Chamber, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = chamber.http(method, KEYS_API + path, body, OPS_TOKEN)
    assert response.status == 200, response.body
    return response.json()


def import_raw(chamber: Chamber, *keys: Any) -> None:
    answer = keys_api(
        chamber, "POST", "/import", {"raw_keys": [{"secret": key.secret_hex} for key in keys]}
    )
    assert answer["data"] == [{"status": "imported", "pubkey": key.pubkey_hex} for key in keys]


def set_status(chamber: Chamber, pubkey_hex: str, status: str, expected: str) -> None:
    answer = keys_api(chamber, "PATCH", "", {"pubkeys": [pubkey_hex], "status": status})
    assert answer["data"] == [{"status": expected, "pubkey": pubkey_hex}], answer


def loaded(chamber: Chamber) -> int:
    keys: dict[str, int] = chamber.status()["keys"]
    return keys["loaded"]
