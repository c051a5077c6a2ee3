"""DynamoDB slashing protection on a real (moto) server: vectors, races, imports, operations."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chamber_dynamodb", reason="install plugins/chamber-dynamodb[test]")
pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")

from chamber_dynamodb.slashing import DynamoDBSlashingBackend, _Cancelled

from chamber.errors import (
    BadRequest,
    ChamberError,
    ConfigError,
    StartupError,
    Unavailable,
)
from chamber.plugins import load_plugins
from chamber.slashing.interchange import ImportRejected, find_surround
from chamber.slashing.rules import Reason, Refused
from chamber.slashing.sqlite import SQLiteSlashingBackend
from tests.slashing_vectors import VECTOR_FILES, run_vector_file

GVR = bytes(range(32))
PK = b"\xa1" * 48
PK2 = b"\xb2" * 48


def root(i: int) -> bytes:
    return i.to_bytes(32, "big")


@pytest.fixture
def open_backend(settings: dict[str, Any]) -> Iterator[Callable[..., DynamoDBSlashingBackend]]:
    opened: list[DynamoDBSlashingBackend] = []

    def open_(gvr: bytes = GVR, **overrides: Any) -> DynamoDBSlashingBackend:
        backend = DynamoDBSlashingBackend.from_config({**settings, **overrides}, gvr)
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(open_backend: Callable[..., DynamoDBSlashingBackend]) -> DynamoDBSlashingBackend:
    return open_backend()


def scan(raw: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = raw.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def interchange(validators: list[dict[str, Any]], gvr: bytes = GVR) -> dict[str, Any]:
    return {
        "metadata": {
            "interchange_format_version": "5",
            "genesis_validators_root": "0x" + gvr.hex(),
        },
        "data": validators,
    }


def entry(
    pubkey: bytes,
    blocks: Sequence[tuple[int, int | None]] = (),
    atts: Sequence[tuple[int, int, int | None]] = (),
) -> dict[str, Any]:
    def with_root(record: dict[str, str], r: int | None) -> dict[str, str]:
        return record if r is None else {**record, "signing_root": "0x" + root(r).hex()}

    return {
        "pubkey": "0x" + pubkey.hex(),
        "signed_blocks": [with_root({"slot": str(s)}, r) for s, r in blocks],
        "signed_attestations": [
            with_root({"source_epoch": str(s), "target_epoch": str(t)}, r) for s, t, r in atts
        ],
    }


# ------------------------------------------------------------------------------ vectors


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_interchange_vectors(path: Path, settings: dict[str, Any]) -> None:
    run_vector_file(path, lambda gvr: DynamoDBSlashingBackend.from_config(settings, gvr))


# ------------------------------------------------------------------------------ set-up


def test_plugin_provides_the_backend() -> None:
    plugins = load_plugins()
    provider = plugins.provider("chamber_slashing_backends", "dynamodb", "anti_slashing.backend")
    assert provider.cls is DynamoDBSlashingBackend
    assert provider.plugin == "chamber_dynamodb"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"tabel": "x"}, "anti_slashing.tabel"),
        ({"table": "a b"}, "anti_slashing.table"),
        ({"table": 7}, "anti_slashing.table"),
        ({"create_table": "yes"}, "anti_slashing.create_table"),
        ({"endpoint_url": "localhost:8000"}, "anti_slashing.endpoint_url"),
        ({"region": ""}, "anti_slashing.region"),
        ({"read_timeout": 0}, "anti_slashing.read_timeout"),
        ({"connect_timeout": "2"}, "anti_slashing.connect_timeout"),
        ({"max_attempts": 0}, "anti_slashing.max_attempts"),
    ],
)
def test_settings_are_validated(
    settings: dict[str, Any], override: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        DynamoDBSlashingBackend.from_config({**settings, **override}, GVR)


def test_other_network_table_is_refused(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    open_backend().check_and_record_block(PK, 1, root(1))
    with pytest.raises(StartupError, match="protects genesis validators root"):
        open_backend(b"\x01" * 32)
    open_backend(create_table=False)  # the right network opens it


def test_missing_table_names_the_setting(settings: dict[str, Any]) -> None:
    with pytest.raises(StartupError, match=r"anti_slashing\.table: .* does not exist"):
        DynamoDBSlashingBackend.from_config({**settings, "create_table": False}, GVR)


def test_unreachable_endpoint_is_a_startup_error_then_unavailable(
    backend: DynamoDBSlashingBackend, settings: dict[str, Any]
) -> None:
    dead = {
        **settings,
        "endpoint_url": "http://127.0.0.1:9",
        "create_table": False,
        "connect_timeout": 0.5,
        "max_attempts": 1,
    }
    with pytest.raises(StartupError, match=r"DynamoDB GetItem on table .* failed") as info:
        DynamoDBSlashingBackend.from_config(dead, GVR)
    assert "testing" not in info.value.message  # never the credentials

    from chamber_dynamodb.client import make_client, parse_client_settings

    backend._client = make_client(parse_client_settings(dead, "anti_slashing"), "anti_slashing")
    with pytest.raises(Unavailable, match=r"DynamoDB GetItem on table slashing-\w+ failed"):
        backend.check_and_record_block(PK, 1, root(1))
    assert not backend.healthy()


def test_health_and_close(backend: DynamoDBSlashingBackend) -> None:
    assert backend.healthy()
    backend.close()
    assert not backend.healthy()
    with pytest.raises(Unavailable, match="shutting down"):
        backend.check_and_record_attestation(PK, 1, 2, root(1))


# ------------------------------------------------------------------------------ signing path


def test_decisions_and_dry_runs(backend: DynamoDBSlashingBackend) -> None:
    backend.check_block(PK, 10, root(1))
    backend.check_and_record_block(PK, 10, root(1))
    backend.check_and_record_block(PK, 10, root(1))  # identical re-sign
    backend.check_block(PK, 10, root(1))
    with pytest.raises(Refused) as info:
        backend.check_block(PK, 10, root(2))
    assert info.value.reason is Reason.DOUBLE_PROPOSAL
    with pytest.raises(Refused, match="double proposal"):
        backend.check_and_record_block(PK, 10, root(2))

    backend.check_and_record_attestation(PK, 5, 10, root(3))
    backend.check_and_record_attestation(PK, 5, 10, root(3))
    for source, target, reason in [
        (5, 10, Reason.DOUBLE_VOTE),
        (4, 11, Reason.SURROUNDING_VOTE),
        (6, 9, Reason.SURROUNDED_VOTE),
        (7, 6, Reason.SOURCE_AFTER_TARGET),
    ]:
        for check in (backend.check_attestation, backend.check_and_record_attestation):
            with pytest.raises(Refused) as info:
                check(PK, source, target, root(4))
            assert info.value.reason is reason
    backend.check_attestation(PK, 6, 12, root(5))
    assert backend.export_interchange()["data"][0]["signed_attestations"] == [
        {"source_epoch": "5", "target_epoch": "10", "signing_root": "0x" + root(3).hex()}
    ]
    with pytest.raises(BadRequest, match="slot: 9223372036854775808 is outside"):
        backend.check_and_record_block(PK, 2**63, root(1))
    with pytest.raises(BadRequest, match="target_epoch"):
        backend.check_attestation(PK, 1, 2**64 - 1, root(1))


def test_fast_path_needs_no_query(backend: DynamoDBSlashingBackend) -> None:
    calls: list[str] = []
    client = backend._client

    class Spy:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(client, name)

    backend._client = Spy()
    for epoch in range(1, 6):
        backend.check_and_record_attestation(PK, epoch - 1, epoch, root(epoch))
    assert "query" not in calls
    assert calls.count("get_item") == 5 and calls.count("transact_write_items") == 5
    calls.clear()
    backend.check_and_record_attestation(PK, 4, 5, root(5))  # re-sign: off the fast path
    assert calls == ["get_item", "query"]


# ------------------------------------------------------------------------------ concurrency


def count_lost_races(backend: DynamoDBSlashingBackend, counter: list[int]) -> None:
    """Count the transactions of ``backend`` cancelled by a concurrent write."""
    transact = backend._transact

    def counting(items: list[dict[str, Any]]) -> None:
        try:
            transact(items)
        except _Cancelled:
            counter.append(1)
            raise

    backend._transact = counting  # type: ignore[method-assign]


def race(
    backends: list[DynamoDBSlashingBackend], attempt: Callable[[DynamoDBSlashingBackend, int], None]
) -> list[int]:
    """16 threads over the given backends; returns the indices that signed."""
    signed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def run(i: int) -> None:
        barrier.wait()
        try:
            attempt(backends[i % len(backends)], i)
        except Refused:
            return
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            signed.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return signed


def assert_slashing_free(backend: DynamoDBSlashingBackend) -> None:
    from chamber.slashing.interchange import group_by_validator, parse_interchange

    exported = parse_interchange(backend.export_interchange())
    for history in group_by_validator(exported).values():
        targets = [a.target for a in history.attestations]
        assert len(targets) == len(set(targets))
        assert find_surround(history.attestations) is None
    assert backend.integrity_check() == []


def test_racing_blocks_sign_exactly_one(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    backends = [open_backend(), open_backend()]
    for slot in (100, 101, 50):
        signed = race(backends, lambda b, i, s=slot: b.check_and_record_block(PK, s, root(i)))
        assert len(signed) == 1, signed
    blocks = backends[0].export_interchange()["data"][0]["signed_blocks"]
    assert [b["slot"] for b in blocks] == ["50", "100", "101"]
    assert_slashing_free(backends[1])


def test_racing_double_votes_sign_exactly_one(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    backends = [open_backend(), open_backend()]
    for target in (10, 11, 12):
        signed = race(
            backends,
            lambda b, i, t=target: b.check_and_record_attestation(PK, t - 1, t, root(i)),
        )
        assert len(signed) == 1, signed
    assert_slashing_free(backends[0])


def test_racing_surrounds_sign_exactly_one(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    backends = [open_backend(), open_backend()]
    # A nested chain: (1, 39) surrounds (2, 38) surrounds ... any two are slashable.
    signed = race(backends, lambda b, i: b.check_and_record_attestation(PK, i + 1, 39 - i, root(i)))
    assert len(signed) == 1, signed
    # The same off the fast path: a stored (50, 200) puts every request below max_target.
    backends[0].check_and_record_attestation(PK2, 50, 200, root(99))
    signed = race(
        backends, lambda b, i: b.check_and_record_attestation(PK2, i + 1, 39 - i, root(i))
    )
    assert len(signed) == 1, signed
    assert_slashing_free(backends[1])


def test_racing_compatible_writes_all_succeed(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    """No conflict, same validator: every request retries until it is recorded."""
    backends = [open_backend(), open_backend()]
    lost: list[int] = []
    for backend in backends:
        count_lost_races(backend, lost)
    signed = race(backends, lambda b, i: b.check_and_record_attestation(PK, i, i + 1, root(i)))
    assert len(signed) == 16
    assert lost, "the writers never raced: the retry path was not exercised"
    atts = backends[0].export_interchange()["data"][0]["signed_attestations"]
    assert len(atts) == 16
    assert_slashing_free(backends[0])


class Interleave:
    """Run ``other`` right before the first transaction of ``backend`` (a lost race)."""

    def __init__(self, backend: DynamoDBSlashingBackend, other: Callable[[], None]) -> None:
        self.calls = 0
        transact = backend._transact

        def patched(items: list[dict[str, Any]]) -> None:
            self.calls += 1
            if self.calls == 1:
                other()
            transact(items)

        backend._transact = patched  # type: ignore[method-assign]


def test_lost_race_is_retried_and_decided_again(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    a, b = open_backend(), open_backend()
    # Compatible write in between: a's transaction fails its version condition, a retries.
    spy = Interleave(a, lambda: b.check_and_record_block(PK, 7, root(7)))
    a.check_and_record_block(PK, 8, root(8))
    assert spy.calls == 2
    # Conflicting block in between: a's record condition fails, the rules refuse at once.
    spy = Interleave(a, lambda: b.check_and_record_block(PK, 9, root(1)))
    with pytest.raises(Refused, match="double proposal"):
        a.check_and_record_block(PK, 9, root(2))
    assert spy.calls == 1
    # Same identical block in between (a retry after a lost answer): success, nothing new.
    Interleave(a, lambda: b.check_and_record_block(PK, 10, root(10)))
    a.check_and_record_block(PK, 10, root(10))
    # A surrounding vote in between: a re-reads, goes off the fast path, and refuses.
    a.check_and_record_attestation(PK, 10, 11, root(11))
    spy = Interleave(a, lambda: b.check_and_record_attestation(PK, 11, 20, root(20)))
    with pytest.raises(Refused) as info:
        a.check_and_record_attestation(PK, 12, 13, root(13))
    assert info.value.reason is Reason.SURROUNDED_VOTE
    assert spy.calls == 1
    # A double vote in between: refused from the record the failed condition returned.
    spy = Interleave(a, lambda: b.check_and_record_attestation(PK, 20, 21, root(1)))
    with pytest.raises(Refused, match="double vote"):
        a.check_and_record_attestation(PK, 20, 21, root(2))
    # A set-watermark in between: a re-reads the raised floor.
    spy = Interleave(a, lambda: b.set_watermark(PK, block_slot=500))
    with pytest.raises(Refused, match="low watermark 501"):
        a.check_and_record_block(PK, 400, root(400))
    assert spy.calls == 1
    assert_slashing_free(a)


# ------------------------------------------------------------------------------ import


def test_import_is_all_or_nothing(backend: DynamoDBSlashingBackend, raw: Any) -> None:
    table = backend.table
    backend.check_and_record_block(PK, 100, root(1))
    backend.check_and_record_attestation(PK, 10, 20, root(2))
    before, items = backend.export_interchange(), scan(raw, table)
    good = [entry(bytes([i]) * 48, [(i, i)], [(1, 2, i)]) for i in range(1, 30)]
    cases = {
        "against itself": [*good, entry(PK2, [(5, 1), (5, 2)])],
        "block against the table": [*good, entry(PK, [(100, 9)])],
        "double vote against the table": [*good, entry(PK, [], [(11, 20, 9)])],
        "surround against the table": [*good, entry(PK, [], [(9, 21, 9)])],
        "surround within": [entry(PK2, [], [(1, 10, 1), (2, 9, 2)]), *good],
    }
    for name, data in cases.items():
        with pytest.raises(ImportRejected):
            backend.import_interchange(interchange(data))
        assert backend.export_interchange() == before, name
        assert scan(raw, table) == items, name
    with pytest.raises(ImportRejected, match="genesis_validators_root"):
        backend.import_interchange(interchange(good, gvr=b"\x09" * 32))
    assert scan(raw, table) == items


def test_large_import_then_again_changes_nothing(
    backend: DynamoDBSlashingBackend, raw: Any
) -> None:
    big = entry(
        PK,
        [(s, s) for s in range(0, 300, 2)],
        [(t - 1, t, t) for t in range(1, 251)] + [(300, 260, None)],  # one source > target
    )
    small = [entry(bytes([i]) * 48, [(i, i)], [(i, i + 1, None)]) for i in range(1, 40)]
    report = backend.import_interchange(json.dumps(interchange([big, *small])).encode())
    assert (report.validators, report.blocks_written, report.attestations_written) == (
        40,
        150 + 39,
        251 + 39,
    )
    assert backend.integrity_check() == []
    exported, items = backend.export_interchange(), scan(raw, backend.table)
    assert len(exported["data"]) == 40
    again = backend.import_interchange(interchange([big, *small]))
    assert (again.blocks_written, again.attestations_written) == (0, 0)
    assert scan(raw, backend.table) == items  # not even a version moved
    # (270, 280) surrounds the imported (300, 260), whose target is below 270: only
    # inv_min_target brings it into the range of the surround query.
    with pytest.raises(Refused) as info:
        backend.check_and_record_attestation(PK, 270, 280, root(1))
    assert info.value.reason is Reason.SURROUNDING_VOTE


def test_import_survives_a_compatible_concurrent_signing(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    a, b = open_backend(), open_backend()
    spy = Interleave(a, lambda: b.check_and_record_attestation(PK, 500, 501, root(501)))
    a.import_interchange(interchange([entry(PK, [(1, 1)], [(1, 2, 2)])]))
    assert spy.calls == 2
    atts = a.export_interchange()["data"][0]["signed_attestations"]
    assert [x["target_epoch"] for x in atts] == ["2", "501"]
    assert a.integrity_check() == []


def test_import_stopped_by_a_conflicting_concurrent_signing(
    open_backend: Callable[..., DynamoDBSlashingBackend],
) -> None:
    a, b = open_backend(), open_backend()
    # The conflict lands before anything was written: the import changes nothing.
    Interleave(a, lambda: b.check_and_record_block(PK, 5, root(6)))
    with pytest.raises(ImportRejected, match="slot 5"):
        a.import_interchange(interchange([entry(PK, [(5, 5)])]))
    assert a.export_interchange()["data"][0]["signed_blocks"] == [
        {"slot": "5", "signing_root": "0x" + root(6).hex()}
    ]
    # A large import (several transactions) interrupted after its first one: partial, said so,
    # and what was written keeps protecting.
    blocks = [(s, s) for s in range(1000, 1250)]
    a2, b2 = open_backend(), open_backend()
    calls = 0
    transact = a2._transact

    def patched(items: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            b2.check_and_record_block(PK2, 1249, root(1))
        transact(items)

    a2._transact = patched  # type: ignore[method-assign]
    with pytest.raises(ImportRejected, match=r"concurrent signing .* 99 record\(s\)"):
        a2.import_interchange(interchange([entry(PK2, blocks)]))
    assert a2.integrity_check() == []
    with pytest.raises(Refused, match="double proposal"):
        a2.check_and_record_block(PK2, 1000, root(1))


# ------------------------------------------------------------------------------ operations


def test_prune_keeps_protection(backend: DynamoDBSlashingBackend) -> None:
    for epoch in range(1, 121):
        backend.check_and_record_attestation(PK, epoch - 1, epoch, root(epoch))
    for slot in range(0, 32 * 120, 32):
        backend.check_and_record_block(PK, slot, root(slot))
    report = backend.prune(keep_epochs=10)  # more than 99 deletions each: several transactions
    assert (report.blocks_deleted, report.attestations_deleted) == (109, 109)
    exported = backend.export_interchange()["data"][0]
    assert len(exported["signed_blocks"]) == 11 and len(exported["signed_attestations"]) == 11
    with pytest.raises(Refused) as info:
        backend.check_and_record_attestation(PK, 50, 51, root(51))  # pruned, re-sign refused
    assert info.value.reason is Reason.BELOW_WATERMARK
    with pytest.raises(Refused, match="low watermark"):
        backend.check_and_record_block(PK, 32 * 100, root(1))
    backend.check_and_record_attestation(PK, 120, 121, root(121))
    assert backend.prune(keep_epochs=10) == type(report)(0, 1)
    assert backend.integrity_check() == []


def test_set_watermark_only_raises(backend: DynamoDBSlashingBackend) -> None:
    backend.set_watermark(PK, block_slot=100, source_epoch=40, target_epoch=50)
    with pytest.raises(Refused, match="low watermark 101"):
        backend.check_and_record_block(PK, 100, root(1))
    backend.check_and_record_block(PK, 101, root(1))
    with pytest.raises(Refused, match="target epoch 50 is below the low watermark 51"):
        backend.check_and_record_attestation(PK, 40, 50, root(1))
    with pytest.raises(Refused, match="source epoch 39 is below the low watermark 40"):
        backend.check_and_record_attestation(PK, 39, 60, root(1))
    backend.check_and_record_attestation(PK, 40, 51, root(1))
    backend.set_watermark(PK, block_slot=10, target_epoch=5)  # lower: ignored
    with pytest.raises(Refused, match="low watermark 101"):
        backend.check_and_record_block(PK, 50, root(1))
    with pytest.raises(BadRequest, match="slot: -1 is outside"):
        backend.set_watermark(PK, block_slot=-1)
    with pytest.raises(BadRequest, match="slot"):
        backend.set_watermark(PK, block_slot=2**63 - 1)
    backend.set_watermark(PK, block_slot=2**63 - 2)  # the largest storable watermark
    with pytest.raises(Refused, match="low watermark"):
        backend.check_and_record_block(PK, 2**63 - 2, root(1))
    backend.check_and_record_block(PK, 2**63 - 1, root(1))
    assert backend.integrity_check() == []


def test_integrity_check_finds_damage(backend: DynamoDBSlashingBackend, raw: Any) -> None:
    backend.check_and_record_attestation(PK, 1, 2, root(2))
    backend.check_and_record_block(PK, 3, root(3))
    assert backend.integrity_check() == []
    table = backend.table
    pk = {"S": "v#" + PK.hex()}
    raw.update_item(
        TableName=table,
        Key={"pk": pk, "sk": {"S": "w"}},
        UpdateExpression="SET max_target = :z",
        ExpressionAttributeValues={":z": {"N": "1"}},
    )
    raw.put_item(
        TableName=table,
        Item={"pk": {"S": "v#" + PK2.hex()}, "sk": {"S": "b#" + "0" * 20}, "slot": {"N": "0"}},
    )
    raw.put_item(
        TableName=table,
        Item={"pk": pk, "sk": {"S": f"b#{9:020d}"}, "slot": {"N": "9"}, "root": {"B": b"x"}},
    )
    raw.delete_item(TableName=table, Key={"pk": {"S": "#meta"}, "sk": {"S": "#meta"}})
    problems = backend.integrity_check()
    assert any("metadata item" in p for p in problems)
    assert any("max_target below a stored target (2)" in p for p in problems)
    assert any("max_slot below a stored slot (9)" in p for p in problems)
    assert any("1-byte signing root" in p for p in problems)
    assert any(PK2.hex() in p and "without a watermark item" in p for p in problems)
    assert not backend.healthy()


def test_export_selected_keys(backend: DynamoDBSlashingBackend) -> None:
    backend.check_and_record_block(PK, 1, root(1))
    backend.check_and_record_block(PK2, 2, root(2))
    assert [d["pubkey"] for d in backend.export_interchange([PK2, b"\x00" * 48])["data"]] == [
        "0x" + PK2.hex()
    ]
    assert [d["pubkey"] for d in backend.export_interchange()["data"]] == [
        "0x" + PK.hex(),
        "0x" + PK2.hex(),
    ]


def test_same_answers_as_the_sqlite_reference(
    backend: DynamoDBSlashingBackend, tmp_path: Path
) -> None:
    """One scripted history, both backends: every decision, report and export equal."""
    reference = SQLiteSlashingBackend(tmp_path / "ref.sqlite", GVR)
    first = interchange([entry(PK, [(10, None), (20, 1)], [(3, 5, None)])])
    script: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("import_interchange", (first,), {}),
        ("check_and_record_block", (PK, 10, root(1)), {}),
        ("check_and_record_block", (PK, 20, root(1)), {}),
        ("check_and_record_block", (PK, 9, root(1)), {}),
        ("check_and_record_block", (PK, 15, root(1)), {}),
        ("check_and_record_attestation", (PK, 3, 5, root(1)), {}),
        ("check_and_record_attestation", (PK, 2, 6, root(1)), {}),
        ("check_and_record_attestation", (PK, 4, 6, root(1)), {}),
        ("check_and_record_attestation", (PK, 4, 6, root(1)), {}),
        ("check_and_record_attestation", (PK, 5, 5, root(1)), {}),
        ("import_interchange", (interchange([entry(PK, [(1, 1)], [(0, 1, 1)])]),), {}),
        ("check_and_record_block", (PK, 2, root(2)), {}),
        ("check_and_record_attestation", (PK, 1, 2, root(2)), {}),
        ("set_watermark", (PK,), {"block_slot": 30}),
        ("check_and_record_block", (PK, 30, root(1)), {}),
        ("check_and_record_block", (PK, 20, root(1)), {}),  # re-sign below a hard floor
        ("check_and_record_block", (PK, 31, root(1)), {}),
        ("prune", (1, 4), {}),
        ("check_and_record_attestation", (PK, 4, 7, root(1)), {}),
        ("prune", (0, 32), {}),
        ("check_and_record_attestation", (PK, 4, 7, root(1)), {}),
        ("check_and_record_attestation", (PK, 6, 8, root(1)), {}),
    ]
    try:
        for name, args, kwargs in script:
            outcomes = []
            for target in (reference, backend):
                try:
                    outcomes.append(("ok", getattr(target, name)(*args, **kwargs)))
                except ChamberError as exc:
                    outcomes.append((type(exc).__name__, getattr(exc, "reason", exc.message)))
            assert outcomes[0] == outcomes[1], (name, args, outcomes)
            assert reference.export_interchange() == backend.export_interchange(), (name, args)
    finally:
        reference.close()
