"""pluggy entry point of the chamber-dynamodb distribution (group ``containment_chamber``).

Providers are imported lazily, so that installing the plugin costs nothing (no boto3 import)
unless the configuration selects one of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.keys import KeySource
from chamber.slashing import SlashingBackend
from chamber.vault.interfaces import StateBackend


@hookimpl
def chamber_slashing_backends() -> Mapping[str, type[SlashingBackend]]:
    from chamber_dynamodb.slashing import DynamoDBSlashingBackend

    return {"dynamodb": DynamoDBSlashingBackend}


@hookimpl
def chamber_state_backends() -> Mapping[str, type[StateBackend]]:
    from chamber_dynamodb.state import DynamoDBStateBackend

    return {"dynamodb": DynamoDBStateBackend}


@hookimpl
def chamber_key_sources() -> Mapping[str, type[KeySource]]:
    from chamber_dynamodb.keys import DynamoDBKeySource

    return {"dynamodb": DynamoDBKeySource}
