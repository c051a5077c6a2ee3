"""The chamber's states and the one table of allowed transitions (SPEC §5)."""

from __future__ import annotations

from typing import Final, Literal

State = Literal[
    "uninitialized",
    "awaiting_registration",
    "sealed",
    "kms_unsealed",
    "unsealed",
    "awaiting_rotation",
]

UNINITIALIZED: Final = "uninitialized"
AWAITING_REGISTRATION: Final = "awaiting_registration"
SEALED: Final = "sealed"
KMS_UNSEALED: Final = "kms_unsealed"
UNSEALED: Final = "unsealed"
AWAITING_ROTATION: Final = "awaiting_rotation"

ALL_STATES: Final[tuple[State, ...]] = (
    UNINITIALIZED,
    AWAITING_REGISTRATION,
    SEALED,
    KMS_UNSEALED,
    UNSEALED,
    AWAITING_ROTATION,
)

#: States in which signing and key-store work are served.
SIGNING_STATES: Final = frozenset({UNSEALED, AWAITING_ROTATION})

#: (from state, event) → to state. Anything not listed is refused.
TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (UNINITIALIZED, "init_kms_only"): UNSEALED,
    (UNINITIALIZED, "init_unseal"): AWAITING_REGISTRATION,
    (UNINITIALIZED, "record_found"): SEALED,
    (UNINITIALIZED, "registration_started"): AWAITING_REGISTRATION,
    (AWAITING_REGISTRATION, "init_reset"): UNINITIALIZED,
    (AWAITING_REGISTRATION, "record_removed"): UNINITIALIZED,
    (AWAITING_REGISTRATION, "registration_complete"): SEALED,
    (SEALED, "kms_open_kms_only"): UNSEALED,
    (SEALED, "kms_open_unseal"): KMS_UNSEALED,
    (SEALED, "record_removed"): UNINITIALIZED,
    (SEALED, "registration_found"): AWAITING_REGISTRATION,
    (KMS_UNSEALED, "operator_threshold"): UNSEALED,
    (KMS_UNSEALED, "seal"): SEALED,
    (KMS_UNSEALED, "record_changed"): SEALED,
    (UNSEALED, "seal"): SEALED,
    (AWAITING_ROTATION, "seal"): SEALED,
    (UNSEALED, "rotation_started"): AWAITING_ROTATION,
    (AWAITING_ROTATION, "rotation_complete"): UNSEALED,
    (AWAITING_ROTATION, "rotation_cancelled"): UNSEALED,
}


def next_state(current: State, event: str) -> State | None:
    return TRANSITIONS.get((current, event))
