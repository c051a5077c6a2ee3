"""DynamoDB vault state store on a real (moto) server: the StateBackend contract, races, set-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("chamber_dynamodb", reason="install plugins/chamber-dynamodb[test]")
pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")

from botocore.exceptions import ClientError
from chamber_dynamodb.state import DynamoDBStateBackend
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from chamber.errors import ConfigError, Conflict, StartupError, Unavailable
from chamber.plugins import load_plugins
from chamber.vault.interfaces import StateBackend
from tests import state_contract


@pytest.fixture
def open_backend(settings: dict[str, Any]) -> Iterator[Callable[..., DynamoDBStateBackend]]:
    opened: list[DynamoDBStateBackend] = []

    def open_(**overrides: Any) -> DynamoDBStateBackend:
        backend = DynamoDBStateBackend.from_config({**settings, **overrides})
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(open_backend: Callable[..., DynamoDBStateBackend]) -> DynamoDBStateBackend:
    return open_backend()


# ------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("check", state_contract.CHECKS, ids=state_contract.CHECK_IDS)
def test_contract(backend: DynamoDBStateBackend, check: Callable[[StateBackend], None]) -> None:
    check(backend)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=state_contract.operations())
def test_against_a_dict_model(
    backend: DynamoDBStateBackend, ops: list[state_contract.Operation]
) -> None:
    state_contract.run_model(backend, ops)


def test_thread_race_between_two_instances(
    open_backend: Callable[..., DynamoDBStateBackend],
) -> None:
    state_contract.race([open_backend(), open_backend()], rounds=30)


def test_thread_race_many_threads(backend: DynamoDBStateBackend) -> None:
    state_contract.race([backend] * 6, rounds=10)


def test_item_layout(backend: DynamoDBStateBackend, raw: Any, settings: dict[str, Any]) -> None:
    backend.put("vault/root", b"\x00\x01", 0)
    backend.put("vault/root", b"\x02", 1)
    item = raw.get_item(
        TableName=settings["table"], Key={"key": {"S": "vault/root"}}, ConsistentRead=True
    )["Item"]
    assert item == {"key": {"S": "vault/root"}, "value": {"B": b"\x02"}, "version": {"N": "2"}}


def test_close(backend: DynamoDBStateBackend) -> None:
    backend.put("k", b"v", 0)
    backend.close()
    backend.close()
    with pytest.raises(Unavailable, match="closed"):
        backend.get("k")
    with pytest.raises(Unavailable, match="closed"):
        backend.put("k", b"w", 1)


# ------------------------------------------------------------------------------ set-up


def test_plugin_provides_the_backend() -> None:
    provider = load_plugins().provider("chamber_state_backends", "dynamodb", "signer_state.backend")
    assert provider.cls is DynamoDBStateBackend
    assert provider.plugin == "chamber_dynamodb"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"tabel": "x"}, "signer_state.tabel"),
        ({"table": "a b"}, "signer_state.table"),
        ({"table": 7}, "signer_state.table"),
        ({"create_table": "yes"}, "signer_state.create_table"),
        ({"endpoint_url": "localhost:8000"}, "signer_state.endpoint_url"),
        ({"max_attempts": 0}, "signer_state.max_attempts"),
    ],
)
def test_settings_are_validated(
    settings: dict[str, Any], override: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        DynamoDBStateBackend.from_config({**settings, **override})


def test_table_is_required(settings: dict[str, Any]) -> None:
    without = {k: v for k, v in settings.items() if k != "table"}
    with pytest.raises(ConfigError, match=r"^signer_state\.table: required"):
        DynamoDBStateBackend.from_config(without)


def test_missing_table_says_how_to_create_it(settings: dict[str, Any]) -> None:
    with pytest.raises(StartupError) as info:
        DynamoDBStateBackend.from_config({**settings, "create_table": False})
    message = info.value.message
    assert message.startswith(f"signer_state.table: the DynamoDB table {settings['table']} ")
    assert "does not exist" in message and "signer_state.create_table: true" in message


def test_create_table_then_reopen_without_it(
    open_backend: Callable[..., DynamoDBStateBackend],
) -> None:
    open_backend().put("k", b"v", 0)
    open_backend().put("k", b"v2", 1)  # create_table on an existing table: fine
    assert open_backend(create_table=False).get("k") == (b"v2", 2)


def test_unreachable_endpoint_is_a_startup_error_then_unavailable(
    backend: DynamoDBStateBackend, settings: dict[str, Any]
) -> None:
    dead = {
        **settings,
        "endpoint_url": "http://127.0.0.1:9",
        "create_table": False,
        "connect_timeout": 0.5,
        "max_attempts": 1,
    }
    with pytest.raises(StartupError, match=r"^signer_state: DynamoDB GetItem on table .* failed"):
        DynamoDBStateBackend.from_config(dead)

    from chamber_dynamodb.client import make_client, parse_client_settings

    backend._client = make_client(parse_client_settings(dead, "signer_state"), "signer_state")
    table = settings["table"]
    with pytest.raises(Unavailable, match=rf"^DynamoDB GetItem on table {table} failed"):
        backend.get("k")
    with pytest.raises(Unavailable) as info:
        backend.put("k", state_contract.SECRET, 0)
    message = info.value.message
    assert message.startswith(f"DynamoDB TransactWriteItems on table {table} failed: ")
    assert "SECRET" not in message and "testing" not in message  # no value, no credentials


# ------------------------------------------------------------------------------ retries


class _ScriptedClient:
    """Answers ``transact_write_items`` from a script of errors; records what it was sent."""

    def __init__(self, *errors: dict[str, Any]) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def transact_write_items(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.errors:
            raise ClientError(self.errors.pop(0), "TransactWriteItems")
        return {}

    def close(self) -> None:
        return None


def _cancelled(code: str, item: dict[str, Any] | None = None) -> dict[str, Any]:
    reason: dict[str, Any] = {"Code": code}
    if item is not None:
        reason["Item"] = item
    return {
        "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
        "CancellationReasons": [reason],
    }


def test_a_write_cancelled_by_a_concurrent_transaction_is_tried_again() -> None:
    client = _ScriptedClient(_cancelled("TransactionConflict"), _cancelled("TransactionConflict"))
    backend = DynamoDBStateBackend(client, "t")
    assert backend.put("k", b"v", 0) == 1
    assert len(client.calls) == 3
    tokens = {call["ClientRequestToken"] for call in client.calls}
    assert len(tokens) == 3  # a fresh token per attempt of ours (botocore's reuse theirs)


def test_an_in_progress_attempt_that_committed_is_our_success() -> None:
    ours = {"key": {"S": "k"}, "value": {"B": b"v"}, "version": {"N": "1"}}
    in_progress = {"Error": {"Code": "TransactionInProgressException", "Message": "busy"}}
    client = _ScriptedClient(in_progress, _cancelled("ConditionalCheckFailed", ours))
    assert DynamoDBStateBackend(client, "t").put("k", b"v", 0) == 1

    theirs = {**ours, "value": {"B": b"other"}}
    client = _ScriptedClient(in_progress, _cancelled("ConditionalCheckFailed", theirs))
    with pytest.raises(Conflict, match="expected version 0, found 1"):
        DynamoDBStateBackend(client, "t").put("k", b"v", 0)

    # Without an attempt that may have committed, the same item is someone else's write.
    client = _ScriptedClient(_cancelled("ConditionalCheckFailed", ours))
    with pytest.raises(Conflict):
        DynamoDBStateBackend(client, "t").put("k", b"v", 0)


def test_persistent_contention_is_unavailable() -> None:
    from chamber_dynamodb.state import MAX_ATTEMPTS

    client = _ScriptedClient(*[_cancelled("TransactionConflict")] * MAX_ATTEMPTS)
    with pytest.raises(Unavailable, match="TransactWriteItems on table t failed"):
        DynamoDBStateBackend(client, "t").put("k", b"v", 0)


def test_other_cancellations_are_unavailable_at_once() -> None:
    client = _ScriptedClient(_cancelled("ValidationError"))
    with pytest.raises(Unavailable, match="TransactionCanceledException"):
        DynamoDBStateBackend(client, "t").delete("k", 3)
    assert len(client.calls) == 1
