"""DynamoDB encrypted key store on a real (moto) server: the shared contract and its own parts."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("chamber_dynamodb", reason="install plugins/chamber-dynamodb[test]")
pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")

from chamber_dynamodb import plugin
from chamber_dynamodb.keys import VERSION_PK, DynamoDBKeySource, DynamoDBKeyStore

from chamber.crypto.bls import BlsBackend, BlspyBackend
from chamber.errors import ConfigError, StartupError, Unavailable
from chamber.keys.encrypted import StoredKey, encrypt_secret
from chamber.plugins import load_plugins
from tests.encrypted_store_contract import (
    CONTRACT_CHECKS,
    MASTER,
    MESSAGE,
    Check,
    check_no_secret_in_logs,
    pubkey_of,
    secrets_,
)


@pytest.fixture(scope="module")
def bls() -> BlsBackend:
    return BlspyBackend()


@pytest.fixture
def key_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A table of its own for every test (created by the first store that opens it)."""
    return {**settings, "table": f"keys-{uuid.uuid4().hex[:12]}"}


@pytest.fixture
def open_source(
    key_settings: dict[str, Any], bls: BlsBackend
) -> Iterator[Callable[..., DynamoDBKeySource]]:
    opened: list[DynamoDBKeySource] = []

    def open_(**overrides: Any) -> DynamoDBKeySource:
        source = DynamoDBKeySource.from_config({**key_settings, **overrides}, bls)
        opened.append(source)
        return source

    yield open_
    for source in opened:
        source.close()


@pytest.fixture
def source(open_source: Callable[..., DynamoDBKeySource]) -> DynamoDBKeySource:
    return open_source()


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
def test_contract(check: Check, source: DynamoDBKeySource, bls: BlsBackend) -> None:
    check(source, bls)


def test_no_secret_in_logs(
    source: DynamoDBKeySource, bls: BlsBackend, caplog: pytest.LogCaptureFixture
) -> None:
    check_no_secret_in_logs(source, bls, caplog)


def records(bls: BlsBackend, count: int, seed: str) -> list[StoredKey]:
    out = []
    for raw in secrets_(count, seed):
        pub = pubkey_of(bls, raw)
        out.append(StoredKey(pub, encrypt_secret(MASTER, pub, raw)))
    return out


def test_item_layout(source: DynamoDBKeySource, bls: BlsBackend, raw: Any) -> None:
    (record,) = records(bls, 1, "layout")
    full = StoredKey(record.pubkey, record.ciphertext, "inactive", "generated", 1234, b"age")
    assert source.store.insert([full]) == [True]
    items = raw.scan(TableName=source.store.table)["Items"]
    # The key's item, and the change counter the write bumped (see change_token).
    (counter,) = [item for item in items if item["pk"]["S"] == VERSION_PK]
    assert counter == {"pk": {"S": VERSION_PK}, "n": {"N": "1"}}
    (item,) = [item for item in items if item["pk"]["S"] != VERSION_PK]
    assert len(item.pop("write_id")["S"]) == 32
    assert item == {
        "pk": {"S": "0x" + record.pubkey.hex()},
        "ciphertext": {"B": record.ciphertext},
        "status": {"S": "inactive"},
        "origin": {"S": "generated"},
        "created_at": {"N": "1234"},
        "backup": {"B": b"age"},
    }


def test_paginated_scan_and_load(
    source: DynamoDBKeySource, bls: BlsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing follows LastEvaluatedKey (pages of 3 items here) with the status filter."""
    batch = records(bls, 20, "pages")
    assert source.store.insert(batch) == [True] * 20
    for record in batch[:5]:
        assert source.store.set_status(record.pubkey, "inactive")
    client = source.store._client
    real_scan = client.scan
    pages: list[int] = []

    def small_pages(**kwargs: Any) -> Any:
        page = real_scan(Limit=3, **kwargs)
        pages.append(len(page.get("Items", [])))
        return page

    monkeypatch.setattr(client, "scan", small_pages)
    assert {r.pubkey for r in source.store.list_keys()} == {r.pubkey for r in batch}
    assert len(pages) >= 7
    result = source.load(MASTER)
    assert result.errors == []
    assert {k.pubkey for k in result.keys} == {r.pubkey for r in batch[5:]}
    for key in result.keys:
        assert bls.verify(key.pubkey, MESSAGE, bls.sign(key.secret, MESSAGE))


def test_replicas_share_the_table(
    open_source: Callable[..., DynamoDBKeySource], bls: BlsBackend
) -> None:
    """Two sources on one table: racing imports of the same keys give exactly one True each,
    and each replica sees the other's changes at once (strongly consistent reads)."""
    first, second = open_source(), open_source()
    batch = records(bls, 8, "replicas")
    answers: list[bool] = []
    lock = threading.Lock()

    def insert(source: DynamoDBKeySource) -> None:
        for record in batch:
            (answer,) = source.store.insert([record])
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=insert, args=(s,)) for s in (first, second, first)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers.count(True) == len(batch)
    assert len(second.load(MASTER).keys) == len(batch)
    assert first.store.delete(batch[0].pubkey)
    assert second.store.get(batch[0].pubkey) is None
    assert not second.store.delete(batch[0].pubkey)


def test_retried_put_counts_as_written(
    source: DynamoDBKeySource, bls: BlsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put whose first attempt committed but whose answer was lost, sent again as botocore's
    retry does, is not a duplicate of itself; a new insert of the same record still is."""
    first, second = records(bls, 2, "retry")
    client = source.store._client
    real_put = client.put_item

    def answer_lost_then_retried(**kwargs: Any) -> Any:
        real_put(**kwargs)  # committed; its answer never reaches the client
        return real_put(**kwargs)  # the retry: the very same request

    monkeypatch.setattr(client, "put_item", answer_lost_then_retried)
    assert source.store.insert([first]) == [True]
    monkeypatch.setattr(client, "put_item", real_put)
    assert source.store.insert([first]) == [False]
    assert source.store.insert([first, second]) == [False, True]


def test_malformed_item_is_skipped(source: DynamoDBKeySource, bls: BlsBackend, raw: Any) -> None:
    good = records(bls, 2, "malformed")
    source.store.insert(good)
    raw.put_item(TableName=source.store.table, Item={"pk": {"S": "junk"}, "x": {"S": "y"}})
    raw.put_item(
        TableName=source.store.table,
        Item={**_item_of(good[0]), "pk": {"S": "0x1234"}},
    )
    assert {r.pubkey for r in source.store.list_keys()} == {r.pubkey for r in good}
    assert len(source.load(MASTER).keys) == 2


def _item_of(record: StoredKey) -> dict[str, Any]:
    return {
        "pk": {"S": "0x" + record.pubkey.hex()},
        "ciphertext": {"B": record.ciphertext},
        "status": {"S": record.status},
        "origin": {"S": record.origin},
        "created_at": {"N": str(record.created_at)},
    }


def test_config_errors(key_settings: dict[str, Any], bls: BlsBackend) -> None:
    with pytest.raises(ConfigError, match=r"key_sources\.dynamodb\.path") as caught:
        DynamoDBKeySource.from_config({**key_settings, "path": "x"}, bls)
    assert caught.value.field == "key_sources.dynamodb.path"
    with pytest.raises(ConfigError, match=r"key_sources\.dynamodb\.table"):
        DynamoDBKeySource.from_config({**key_settings, "table": "a b"}, bls)
    with pytest.raises(ConfigError, match=r"key_sources\.dynamodb\.create_table"):
        DynamoDBKeySource.from_config({**key_settings, "create_table": "yes"}, bls)
    with pytest.raises(ConfigError, match=r"key_sources\.dynamodb\.max_attempts"):
        DynamoDBKeySource.from_config({**key_settings, "max_attempts": 0}, bls)


def test_missing_table_or_wrong_table_is_a_startup_error(
    key_settings: dict[str, Any], settings: dict[str, Any], bls: BlsBackend
) -> None:
    with pytest.raises(StartupError, match=r"does not exist.*create_table"):
        DynamoDBKeySource.from_config({**key_settings, "create_table": False}, bls)
    # A slashing table (keys pk + sk) is not a key table.
    from chamber_dynamodb.slashing import DynamoDBSlashingBackend

    slashing = DynamoDBSlashingBackend.from_config(settings, bytes(32))
    slashing.close()
    with pytest.raises(StartupError, match="not a key table"):
        DynamoDBKeySource.from_config({**settings, "create_table": False}, bls)


def test_closed_store_is_unavailable(source: DynamoDBKeySource) -> None:
    source.close()
    source.close()
    with pytest.raises(Unavailable):
        source.load(MASTER)
    with pytest.raises(Unavailable):
        source.store.insert(records(BlspyBackend(), 1, "closed"))


def test_aws_failure_is_unavailable_without_details(
    source: DynamoDBKeySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    def denied(**kwargs: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "arn:aws:iam::1234:role/x"}},
            "Scan",
        )

    monkeypatch.setattr(source.store._client, "scan", denied)
    with pytest.raises(Unavailable) as caught:
        source.load(MASTER)
    assert "AccessDeniedException" in caught.value.message
    assert "1234" not in caught.value.message


def test_registered_by_the_plugin() -> None:
    assert plugin.chamber_key_sources() == {"dynamodb": DynamoDBKeySource}
    assert DynamoDBKeySource.requires_unseal is True
    providers = load_plugins().providers("chamber_key_sources")
    assert providers["dynamodb"].cls is DynamoDBKeySource
    assert providers["dynamodb"].plugin == "chamber_dynamodb"


def test_store_is_the_declared_type(source: DynamoDBKeySource) -> None:
    assert isinstance(source.store, DynamoDBKeyStore)


def test_change_token_moves_with_every_change_and_only_then(
    source: DynamoDBKeySource, bls: BlsBackend, raw: Any
) -> None:
    """What lets a replica skip the scan: the counter moves on every applied write, from any
    store object on the table (another replica), and not on refused writes or reads."""
    store = source.store
    other = DynamoDBKeyStore(raw, store.table)  # another replica's view of the same table
    first, second = records(bls, 2, "token")
    start = other.change_token()
    assert store.insert([first]) == [True]
    after_insert = other.change_token()
    assert after_insert != start
    assert store.insert([first]) == [False]  # a duplicate changes nothing
    store.list_keys()
    store.get(first.pubkey)
    assert other.change_token() == after_insert
    assert store.set_status(first.pubkey, "inactive")
    after_status = other.change_token()
    assert after_status != after_insert
    assert not store.set_status(second.pubkey, "inactive")  # no such key
    assert not store.delete(second.pubkey)
    assert other.change_token() == after_status
    assert store.delete(first.pubkey)
    assert other.change_token() != after_status
    # The counter item is never listed as a key, and no warning is logged for it.
    assert store.list_keys() == []
