"""PostgreSQL backend: configuration, start-up, migrations, import / export, prune, watermarks,
integrity, and how database failures surface (503, never a credential)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chamber.errors import BadRequest, ChamberError, ConfigError, StartupError, Unavailable
from chamber.hookspecs import PROJECT_NAME
from chamber.plugins import PluginManager
from chamber.slashing import ImportReport, PruneReport
from chamber.slashing.interchange import MAX_STORED, ImportRejected
from chamber.slashing.rules import Reason, Refused
from chamber.slashing.sqlite import SQLiteSlashingBackend
from chamber_postgres.backend import SCHEMA_VERSION, PostgresSlashingBackend
from pg_support import GVR, OTHER_GVR, BackendMaker, Conn, table_snapshot

PK1 = b"\xa1" * 48
PK2 = b"\xa2" * 48
PK3 = b"\xa3" * 48
Snapshot = Callable[[], dict[str, list[tuple[Any, ...]]]]


def root(n: int) -> bytes:
    return bytes([n]) * 32


def hexkey(pubkey: bytes) -> str:
    return "0x" + pubkey.hex()


def interchange(entries: list[dict[str, Any]], gvr: bytes = GVR) -> bytes:
    return json.dumps(
        {
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": "0x" + gvr.hex(),
            },
            "data": entries,
        }
    ).encode()


def entry(
    pubkey: bytes, blocks: Sequence[int] = (), atts: Sequence[tuple[int, int]] = ()
) -> dict[str, Any]:
    return {
        "pubkey": hexkey(pubkey),
        "signed_blocks": [
            {"slot": str(s), "signing_root": "0x" + root(s % 250).hex()} for s in blocks
        ],
        "signed_attestations": [
            {
                "source_epoch": str(s),
                "target_epoch": str(t),
                "signing_root": "0x" + root(t % 250).hex(),
            }
            for s, t in atts
        ],
    }


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "anti_slashing.url"),
        ({"url": "postgresql://x@h/db", "colour": "red"}, "anti_slashing.colour"),
        ({"url": "postgresql://x@h/db", "schema": "Bad-Name"}, "anti_slashing.schema"),
        ({"url": "postgresql://x@h/db", "pool_size": 0}, "anti_slashing.pool_size"),
        ({"url": "postgresql://x@h/db", "pool_size": True}, "anti_slashing.pool_size"),
        ({"url": "postgresql://x@h/db", "pool_size": "16"}, "anti_slashing.pool_size"),
        ({"url": "postgresql://x@h/db", "pool_size": 2.5}, "anti_slashing.pool_size"),
        ({"url": "postgresql://x@h/db", "pool_timeout": -1}, "anti_slashing.pool_timeout"),
        ({"url": "postgresql://x@h/db", "statement_timeout": 0}, "anti_slashing.statement_timeout"),
        ({"url": "postgresql://x@h/db", "connect_timeout": 1}, "anti_slashing.connect_timeout"),
        ({"url": 42}, "anti_slashing.url"),
        ({"url": "env:CC_TEST_SURELY_UNSET_VARIABLE"}, "anti_slashing.url"),
    ],
)
def test_settings_are_validated_naming_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as error:
        PostgresSlashingBackend.from_config(settings, GVR)
    if key == "anti_slashing.url" and "env:" in str(settings.get("url")):
        assert "CC_TEST_SURELY_UNSET_VARIABLE is not set" in error.value.message


def test_invalid_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match=r"anti_slashing\.url") as error:
        PostgresSlashingBackend.from_config(
            {"url": "postgresql://u:Hunter2Secret@host:notaport/db?bogus=1"}, GVR
        )
    assert "Hunter2Secret" not in error.value.message


def test_url_from_environment(monkeypatch: pytest.MonkeyPatch, pg_url: str, schema: str) -> None:
    monkeypatch.setenv("CC_TEST_PG_URL", pg_url)
    backend = PostgresSlashingBackend.from_config(
        {"url": "env:CC_TEST_PG_URL", "schema": schema, "pool_size": 1}, GVR
    )
    try:
        backend.check_and_record_block(PK1, 1, root(1))
        assert backend.healthy()
    finally:
        backend.close()


def test_unreachable_server_is_a_startup_error_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = "postgresql://someone:Hunter2Secret@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(StartupError) as error:
        PostgresSlashingBackend.from_config({"url": url}, GVR)
    message = error.value.message
    assert "Hunter2Secret" not in message
    assert "postgresql://someone@127.0.0.1:1/test" in message
    assert "cannot connect" in message
    assert "Hunter2Secret" not in caplog.text


def test_wrong_password_message_names_the_problem_not_the_password(pg_url: str) -> None:
    params = conninfo_to_dict(pg_url)
    params.update(user="cc_no_such_role", password="Hunter2Secret")
    with pytest.raises(StartupError) as error:
        PostgresSlashingBackend.from_config({"url": make_conninfo("", **params)}, GVR)
    assert "Hunter2Secret" not in error.value.message
    assert "cc_no_such_role" in error.value.message


def test_entry_point_registers_the_backend() -> None:
    (ep,) = [e for e in entry_points(group=PROJECT_NAME) if e.name == "chamber_postgres"]
    assert ep.dist is not None and ep.dist.name == "chamber-postgres"
    manager = PluginManager()
    manager.register_builtins()
    manager.register(ep.load(), ep.name, ep.dist.version, ep.dist.name)
    provider = manager.providers("chamber_slashing_backends")["postgres"]
    assert provider.cls is PostgresSlashingBackend
    assert provider.plugin == "chamber_postgres"


# ----------------------------------------------------------------------------- start-up


def test_another_network_is_refused_naming_both_roots(make_backend: BackendMaker) -> None:
    make_backend(GVR).close()
    with pytest.raises(StartupError) as error:
        make_backend(OTHER_GVR)
    assert "0x" + GVR.hex() in error.value.message
    assert "0x" + OTHER_GVR.hex() in error.value.message


def test_migrations_are_idempotent_when_instances_start_together(
    make_backend: BackendMaker, snapshot: Snapshot, db: Conn
) -> None:
    backends: list[PostgresSlashingBackend] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        try:
            backends.append(make_backend(pool_size=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(backends) == 8
    assert db.execute("SELECT version FROM schema_migrations").fetchall() == [(SCHEMA_VERSION,)]
    backends[0].check_and_record_block(PK1, 5, root(5))
    before = snapshot()
    make_backend()  # a restart migrates nothing and changes nothing
    assert snapshot() == before
    for backend in backends:
        assert backend.integrity_check() == []


def test_a_newer_schema_is_refused(make_backend: BackendMaker, db: Conn) -> None:
    make_backend().close()
    db.execute("INSERT INTO schema_migrations (version, description) VALUES (99, 'future')")
    with pytest.raises(StartupError, match="schema version 99, newer"):
        make_backend()


def test_records_survive_a_restart(make_backend: BackendMaker) -> None:
    first = make_backend()
    first.check_and_record_attestation(PK1, 1, 2, root(2))
    first.close()
    again = make_backend()
    with pytest.raises(Refused, match="double vote") as refusal:
        again.check_and_record_attestation(PK1, 1, 2, root(3))
    assert refusal.value.reason is Reason.DOUBLE_VOTE
    again.check_and_record_attestation(PK1, 1, 2, root(2))  # identical re-sign
    assert again.integrity_check() == []


def test_tables_use_bigint_and_bytea(make_backend: BackendMaker, db: Conn) -> None:
    make_backend()
    types = dict(
        db.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ).fetchall()
    )
    assert types["blocks.slot"] == types["attestations.source"] == "bigint"
    assert types["attestations.target"] == types["validators.hard_block_floor"] == "bigint"
    assert types["validators.pubkey"] == types["blocks.signing_root"] == "bytea"


# ----------------------------------------------------------------------------- signing path


def test_signing_rules_and_refusal_messages(make_backend: BackendMaker, snapshot: Snapshot) -> None:
    backend = make_backend()
    backend.check_and_record_block(PK1, 10, root(1))
    backend.check_and_record_block(PK1, 10, root(1))  # identical: allowed, writes nothing
    with pytest.raises(Refused, match="double proposal") as refusal:
        backend.check_and_record_block(PK1, 10, root(2))
    assert refusal.value.status == 412
    backend.check_and_record_block(PK1, 9, root(2))  # full history: lower slots are fine
    backend.check_and_record_attestation(PK1, 5, 10, root(1))
    with pytest.raises(Refused) as refusal:
        backend.check_and_record_attestation(PK1, 4, 11, root(2))
    assert refusal.value.reason is Reason.SURROUNDING_VOTE
    with pytest.raises(Refused) as refusal:
        backend.check_and_record_attestation(PK1, 6, 9, root(2))
    assert refusal.value.reason is Reason.SURROUNDED_VOTE
    with pytest.raises(Refused) as refusal:
        backend.check_and_record_attestation(PK2, 7, 6, root(2))
    assert refusal.value.reason is Reason.SOURCE_AFTER_TARGET
    backend.check_and_record_attestation(PK1, 3, 4, root(3))  # off the fast path, no surround
    before = snapshot()
    backend.check_and_record_attestation(PK1, 3, 4, root(3))
    assert snapshot() == before
    assert [v[1] for v in before["validators"]] == [PK1]  # the refused PK2 left no row
    (validator,) = before["validators"]
    assert validator[-2:] == (5, 10)  # max_source, max_target


def test_dry_runs_decide_the_same_and_record_nothing(
    make_backend: BackendMaker, snapshot: Snapshot
) -> None:
    backend = make_backend()
    backend.check_and_record_block(PK1, 10, root(1))
    backend.check_and_record_attestation(PK1, 5, 10, root(1))
    before = snapshot()
    backend.check_block(PK1, 11, root(1))
    backend.check_block(PK1, 10, root(1))
    backend.check_block(PK3, 1, root(1))  # unknown validator: allowed, no row created
    backend.check_attestation(PK1, 10, 11, root(1))
    backend.check_attestation(PK3, 1, 2, root(1))
    with pytest.raises(Refused, match="double proposal"):
        backend.check_block(PK1, 10, root(2))
    with pytest.raises(Refused, match="surround"):
        backend.check_attestation(PK1, 4, 11, root(2))
    with pytest.raises(Refused, match="double vote"):
        backend.check_attestation(PK1, 5, 10, root(2))
    assert snapshot() == before


@pytest.mark.parametrize("value", [-1, MAX_STORED + 1, 2**64 - 1])
def test_values_beyond_bigint_are_refused_like_sqlite(
    make_backend: BackendMaker, snapshot: Snapshot, tmp_path: Any, value: int
) -> None:
    backend = make_backend()
    reference = SQLiteSlashingBackend(tmp_path / "ref.sqlite", GVR)
    calls: list[Callable[[Any], None]] = [
        lambda b: b.check_and_record_block(PK1, value, root(1)),
        lambda b: b.check_block(PK1, value, root(1)),
        lambda b: b.check_and_record_attestation(PK1, 1, value, root(1)),
        lambda b: b.check_and_record_attestation(PK1, value, 1, root(1)),
        lambda b: b.check_attestation(PK1, 1, value, root(1)),
        lambda b: b.set_watermark(PK1, block_slot=value),
    ]
    try:
        for call in calls:
            with pytest.raises(ChamberError) as ours:
                call(backend)
            with pytest.raises(ChamberError) as theirs:
                call(reference)
            assert type(ours.value) is type(theirs.value) is BadRequest
            assert ours.value.message == theirs.value.message
    finally:
        reference.close()
    assert snapshot()["validators"] == []
    backend.check_and_record_block(PK1, MAX_STORED, root(1))  # the largest BIGINT is fine
    backend.check_and_record_attestation(PK1, MAX_STORED - 1, MAX_STORED, root(1))


# ----------------------------------------------------------------------------- interchange


def test_import_is_all_or_nothing(make_backend: BackendMaker, snapshot: Snapshot) -> None:
    backend = make_backend()
    report = backend.import_interchange(
        interchange([entry(PK1, [10, 11], [(1, 2), (2, 3)]), entry(PK2, [5], [(0, 1)])])
    )
    assert report == ImportReport(2, 3, 3)
    backend.check_and_record_block(PK1, 12, root(12))
    before_rows, before_export = snapshot(), backend.export_interchange()
    # PK3 is new and fine, PK1's second entry is fine, but PK2 brings a surround: nothing lands.
    bad = interchange(
        [
            entry(PK3, [1, 2, 3], [(1, 2)]),
            entry(PK1, [20], [(3, 4)]),
            entry(PK2, [6], [(1, 2)]),
            {
                "pubkey": hexkey(PK2),
                "signed_attestations": [{"source_epoch": "0", "target_epoch": "3"}],
            },
        ]
    )
    with pytest.raises(ImportRejected, match="surrounds"):
        backend.import_interchange(bad)
    assert snapshot() == before_rows
    assert backend.export_interchange() == before_export
    # A double proposal against the database is refused the same way.
    clash = {
        "pubkey": hexkey(PK1),
        "signed_blocks": [{"slot": "12", "signing_root": "0x" + "ee" * 32}],
    }
    with pytest.raises(ImportRejected, match="slot 12"):
        backend.import_interchange(interchange([entry(PK3, [1]), clash]))
    assert snapshot() == before_rows
    with pytest.raises(ImportRejected, match="genesis_validators_root"):
        backend.import_interchange(interchange([entry(PK3, [1])], OTHER_GVR))
    assert snapshot() == before_rows


def test_import_twice_changes_nothing(make_backend: BackendMaker, snapshot: Snapshot) -> None:
    backend = make_backend()
    document = interchange(
        [
            entry(PK1, [10, 11], [(1, 2), (2, 3)]),
            {"pubkey": hexkey(PK2), "signed_blocks": [{"slot": "7"}], "signed_attestations": []},
            entry(PK1, [11, 12]),  # a repeated key is merged
        ]
    )
    assert backend.import_interchange(document) == ImportReport(2, 4, 2)
    first = snapshot()
    assert backend.import_interchange(document) == ImportReport(2, 0, 0)
    assert snapshot() == first
    assert backend.import_interchange(interchange([])) == ImportReport(0, 0, 0)
    assert snapshot() == first


def test_import_floors_and_export_round_trip(make_backend: BackendMaker) -> None:
    backend = make_backend()
    backend.import_interchange(interchange([entry(PK1, [100], [(10, 20)])]))
    with pytest.raises(Refused) as refusal:
        backend.check_and_record_block(PK1, 99, root(1))
    assert refusal.value.reason is Reason.BELOW_WATERMARK
    with pytest.raises(Refused, match="below the low watermark 10"):
        backend.check_and_record_attestation(PK1, 9, 30, root(1))
    backend.check_and_record_attestation(PK1, 20, 21, root(1))
    exported = backend.export_interchange()
    assert [d["pubkey"] for d in exported["data"]] == [hexkey(PK1)]
    assert exported["data"][0]["signed_attestations"][-1] == {
        "source_epoch": "20",
        "target_epoch": "21",
        "signing_root": "0x" + root(1).hex(),
    }
    # Selected keys: in the order asked, unknown keys left out.
    backend.check_and_record_block(PK2, 1, root(1))
    selected = backend.export_interchange([PK2, PK3, PK1])
    assert [d["pubkey"] for d in selected["data"]] == [hexkey(PK2), hexkey(PK1)]
    assert backend.export_interchange([])["data"] == []


# ----------------------------------------------------------------------------- operations


def test_prune_keeps_protection(make_backend: BackendMaker, snapshot: Snapshot) -> None:
    backend = make_backend()
    for slot in range(0, 32 * 10, 16):  # 20 blocks, newest at slot 304
        backend.check_and_record_block(PK1, slot, root(slot % 250))
    for epoch in range(10):  # (0,1) … (9,10)
        backend.check_and_record_attestation(PK1, epoch, epoch + 1, root(epoch))
    backend.check_and_record_block(PK2, 5, root(5))  # nothing old enough to prune
    report = backend.prune(keep_epochs=2)
    # Blocks: cutoff 304 - 64 = 240, slots 0..224 go (15 blocks). Attestations: cutoff 10 - 2 = 8,
    # targets 1..7 go (7 records), source floor = 6 (the largest deleted source).
    assert report == PruneReport(15, 7)
    rows = {v[1]: v for v in snapshot()["validators"]}
    assert rows[PK1][5:8] == (240, 6, 8)  # hard block / source / target floors
    assert rows[PK2][5:8] == (None, None, None)
    # Previously signed, now deleted: refused, even with the identical root.
    for slot in (0, 16, 224):
        with pytest.raises(Refused) as refusal:
            backend.check_and_record_block(PK1, slot, root(slot % 250))
        assert refusal.value.reason is Reason.BELOW_WATERMARK
    with pytest.raises(Refused, match="below the low watermark"):
        backend.check_and_record_attestation(PK1, 3, 4, root(3))
    with pytest.raises(Refused, match="below the low watermark 6"):
        backend.check_and_record_attestation(PK1, 5, 12, root(99))  # would surround (6, 7)
    backend.check_and_record_block(PK1, 241, root(1))
    backend.check_and_record_attestation(PK1, 10, 11, root(10))
    assert backend.prune(keep_epochs=2) == PruneReport(0, 1)  # target 8 is now too old
    assert backend.prune(keep_epochs=2) == PruneReport(0, 0)
    assert backend.integrity_check() == []
    with pytest.raises(ChamberError, match="negative"):
        backend.prune(-1)
    assert backend.prune(keep_epochs=2**70) == PruneReport(0, 0)


def test_prune_matches_sqlite(
    make_backend: BackendMaker, snapshot: Snapshot, tmp_path: Any
) -> None:
    backend = make_backend()
    reference = SQLiteSlashingBackend(tmp_path / "ref.sqlite", GVR)
    try:
        for b in (backend, reference):
            b.import_interchange(
                interchange([entry(PK1, [3, 50, 70, 200], [(1, 3), (3, 5), (5, 9)])])
            )
            b.set_watermark(PK1, block_slot=10, source_epoch=2, target_epoch=2)
            b.check_and_record_attestation(PK1, 9, 12, root(1))
        assert backend.prune(1, 64) == reference.prune(1, 64)
        assert backend.export_interchange() == reference.export_interchange()
        ours = snapshot()["validators"][0][2:]
        theirs = reference._reader.execute(
            "SELECT import_block_floor, import_source_floor, import_target_floor, "
            "hard_block_floor, hard_source_floor, hard_target_floor, max_source, max_target "
            "FROM validators"
        ).fetchone()
        assert ours == theirs
    finally:
        reference.close()


def test_set_watermark_only_raises_floors(make_backend: BackendMaker, snapshot: Snapshot) -> None:
    backend = make_backend()
    backend.set_watermark(PK1, block_slot=100, source_epoch=10, target_epoch=20)
    for slot in (0, 100):
        with pytest.raises(Refused, match="below the low watermark 101"):
            backend.check_and_record_block(PK1, slot, root(1))
    backend.check_and_record_block(PK1, 101, root(1))
    with pytest.raises(Refused, match="source epoch 9 is below the low watermark 10"):
        backend.check_and_record_attestation(PK1, 9, 30, root(1))
    with pytest.raises(Refused, match="target epoch 20 is below the low watermark 21"):
        backend.check_and_record_attestation(PK1, 10, 20, root(1))
    backend.check_and_record_attestation(PK1, 10, 21, root(1))
    backend.set_watermark(PK1, block_slot=5, source_epoch=1, target_epoch=2)  # lower: ignored
    backend.set_watermark(PK1)  # nothing at all: ignored
    with pytest.raises(Refused):
        backend.check_block(PK1, 50, root(1))
    (row,) = snapshot()["validators"]
    assert row[5:8] == (101, 10, 21)
    backend.set_watermark(PK1, target_epoch=40)
    assert snapshot()["validators"][0][5:8] == (101, 10, 41)
    with pytest.raises(ChamberError, match="outside the range"):
        backend.set_watermark(PK1, block_slot=MAX_STORED)
    with pytest.raises(ChamberError, match="outside the range"):
        backend.set_watermark(PK1, target_epoch=MAX_STORED)
    backend.set_watermark(PK1, source_epoch=MAX_STORED)


def test_integrity_check_reports_problems(make_backend: BackendMaker, db: Conn) -> None:
    backend = make_backend()
    backend.check_and_record_attestation(PK1, 1, 5, root(1))
    assert backend.integrity_check() == []
    db.execute("UPDATE validators SET max_target = 2, max_source = 0")
    problems = backend.integrity_check()
    assert "1 validator(s) with max_target below a stored target" in problems
    assert "1 validator(s) with max_source below a stored source" in problems
    # With stale maxima the stored history still wins over the fast path.
    with pytest.raises(Refused, match="surround"):
        backend.check_and_record_attestation(PK1, 2, 4, root(2))
    db.execute("UPDATE metadata SET value = '0x00' WHERE key = 'genesis_validators_root'")
    assert any("genesis validators root is 0x00" in p for p in backend.integrity_check())


# ----------------------------------------------------------------------------- failures


def test_database_errors_are_503_and_name_the_problem(make_backend: BackendMaker, db: Conn) -> None:
    backend = make_backend()
    backend.check_and_record_block(PK1, 1, root(1))
    db.execute("DROP TABLE blocks CASCADE")
    with pytest.raises(Unavailable) as error:
        backend.check_and_record_block(PK1, 2, root(1))
    assert error.value.status == 503
    assert "UndefinedTable" in error.value.message
    assert "nothing was signed" in error.value.message
    assert backend.healthy()  # the server itself answers


def test_a_held_validator_lock_times_out_as_503(
    make_backend: BackendMaker, pg_url: str, schema: str
) -> None:
    backend = make_backend(statement_timeout=0.3)
    backend.check_and_record_block(PK1, 1, root(1))
    with psycopg.connect(pg_url) as other:  # another signer stuck inside its transaction
        other.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        other.execute("SELECT 1 FROM validators WHERE pubkey = %s FOR UPDATE", (PK1,))
        with pytest.raises(Unavailable, match=r"LockNotAvailable|QueryCanceled"):
            backend.check_and_record_block(PK1, 2, root(1))
        backend.check_and_record_block(PK2, 2, root(1))  # other validators go on
        other.rollback()
    backend.check_and_record_block(PK1, 2, root(1))


def test_exhausted_pool_is_503_and_busy_is_still_healthy(make_backend: BackendMaker) -> None:
    backend = make_backend(pool_size=1, pool_timeout=0.2)
    backend.check_and_record_block(PK1, 1, root(1))
    with backend._pool.connection():  # every connection busy
        with pytest.raises(Unavailable, match=r"no connection within 0\.2s"):
            backend.check_and_record_block(PK1, 2, root(1))
        assert backend.healthy()  # saturated, but the database answered a moment ago
        backend._last_answer -= 60
        assert not backend.healthy()
    assert backend.healthy()
    backend.check_and_record_block(PK1, 2, root(1))


def test_the_password_stays_out_of_repr_and_descriptions(pg_url: str, schema: str) -> None:
    params = conninfo_to_dict(pg_url)
    params["password"] = "Hunter2Secret"  # trust authentication never asks for it
    backend = PostgresSlashingBackend.from_config(
        {"url": make_conninfo("", **params), "schema": schema, "pool_size": 1}, GVR
    )
    try:
        assert "Hunter2Secret" not in repr(backend._settings)
        assert "Hunter2Secret" not in backend.where
        assert "Hunter2Secret" not in backend._describe(
            psycopg.OperationalError(f"could not use {backend._settings.conninfo}")
        )
    finally:
        backend.close()


def test_lost_connections_are_replaced(
    make_backend: BackendMaker, pg_url: str, schema: str
) -> None:
    name = f"cc_{schema}"
    params = conninfo_to_dict(pg_url)
    params["application_name"] = name
    backend = make_backend(url=make_conninfo("", **params), pool_size=3)
    backend.check_and_record_block(PK1, 1, root(1))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (name,),
        ).fetchone()
    assert killed is not None and killed[0] == 3
    backend.check_and_record_block(PK1, 2, root(2))  # retried on a fresh connection
    with pytest.raises(Refused):
        backend.check_and_record_block(PK1, 2, root(3))
    backend.check_and_record_block(PK1, 2, root(2))


def test_closed_backend_is_unavailable(make_backend: BackendMaker) -> None:
    backend = make_backend()
    backend.close()
    backend.close()  # idempotent
    assert not backend.healthy()
    with pytest.raises(Unavailable, match="shutting down"):
        backend.check_and_record_block(PK1, 1, root(1))


def test_snapshot_helper_sees_the_schema(make_backend: BackendMaker, db: Conn) -> None:
    make_backend()
    assert table_snapshot(db)["metadata"] == [("genesis_validators_root", "0x" + GVR.hex())]
