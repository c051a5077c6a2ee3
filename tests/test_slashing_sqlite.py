"""SQLite slashing protection: interchange vectors, durability settings, group commit."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from chamber.errors import StartupError
from chamber.slashing.rules import Refused
from chamber.slashing.sqlite import SQLiteSlashingBackend
from tests.slashing_vectors import VECTOR_FILES, run_vector_file

GVR = bytes(32)
PUBKEY = b"\xa1" * 48


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_interchange_vectors(path: Path, tmp_path: Path) -> None:
    run_vector_file(path, lambda gvr: SQLiteSlashingBackend(tmp_path / "db.sqlite", gvr))


def test_file_is_private_and_durable(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "slashing.sqlite"
    backend = SQLiteSlashingBackend(db, GVR)
    try:
        backend.check_and_record_block(PUBKEY, 1, b"\x01" * 32)
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        wal = db.with_name(db.name + "-wal")
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        conn = backend._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        backend.close()


def test_second_process_is_refused_and_other_network_too(tmp_path: Path) -> None:
    db = tmp_path / "slashing.sqlite"
    first = SQLiteSlashingBackend(db, GVR)
    with pytest.raises(StartupError, match="in use by another process"):
        SQLiteSlashingBackend(db, GVR)
    first.close()
    with pytest.raises(StartupError, match="protects genesis validators root"):
        SQLiteSlashingBackend(db, b"\x01" * 32)


def test_records_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "slashing.sqlite"
    backend = SQLiteSlashingBackend(db, GVR)
    backend.check_and_record_attestation(PUBKEY, 1, 2, b"\x02" * 32)
    backend.close()
    reopened = SQLiteSlashingBackend(db, GVR)
    try:
        with pytest.raises(Refused, match="double vote"):
            reopened.check_and_record_attestation(PUBKEY, 1, 2, b"\x03" * 32)
        reopened.check_and_record_attestation(PUBKEY, 1, 2, b"\x02" * 32)  # identical re-sign
        assert reopened.integrity_check() == []
    finally:
        reopened.close()


def test_concurrent_conflicting_requests_sign_exactly_one(tmp_path: Path) -> None:
    backend = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            backend.check_and_record_block(PUBKEY, 100, bytes([i]) * 32)
            outcome = "signed"
        except Refused:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backend.close()
    assert results.count("signed") == 1
    assert results.count("refused") == 15


def test_values_beyond_storage_are_bad_requests_not_crashes(tmp_path: Path) -> None:
    from chamber.errors import BadRequest

    backend = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    try:
        with pytest.raises(BadRequest, match="slot: 9223372036854775808 is outside"):
            backend.check_and_record_block(PUBKEY, 2**63, b"\x01" * 32)
        with pytest.raises(BadRequest, match="target_epoch"):
            backend.check_and_record_attestation(PUBKEY, 1, 2**64 - 1, b"\x01" * 32)
        with pytest.raises(BadRequest, match="slot"):
            backend.set_watermark(PUBKEY, block_slot=2**63 - 1)
        backend.set_watermark(PUBKEY, block_slot=2**63 - 2)  # the largest storable watermark
        assert backend.integrity_check() == []
    finally:
        backend.close()


def test_file_contradicting_itself_is_rejected_even_over_an_unknown_root(tmp_path: Path) -> None:
    from chamber.slashing.interchange import ImportRejected

    def doc(blocks: list[dict[str, str]], atts: list[dict[str, str]]) -> dict[str, object]:
        return {"metadata": {"interchange_format_version": "5",
                             "genesis_validators_root": "0x" + GVR.hex()},
                "data": [{"pubkey": "0x" + PUBKEY.hex(), "signed_blocks": blocks,
                          "signed_attestations": atts}]}

    backend = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    try:
        backend.import_interchange(doc([{"slot": "11"}], [{"source_epoch": "1",
                                                            "target_epoch": "2"}]))
        before = backend.export_interchange()
        a, b = "0x" + "0a" * 32, "0x" + "0b" * 32
        with pytest.raises(ImportRejected, match="different blocks at slot 11"):
            backend.import_interchange(doc([{"slot": "11", "signing_root": a},
                                            {"slot": "11", "signing_root": b}], []))
        with pytest.raises(ImportRejected, match="target epoch 2"):
            backend.import_interchange(doc([], [
                {"source_epoch": "1", "target_epoch": "2", "signing_root": a},
                {"source_epoch": "1", "target_epoch": "2", "signing_root": b}]))
        assert backend.export_interchange() == before
    finally:
        backend.close()


def test_unknown_root_in_a_file_never_hides_two_known_roots(tmp_path: Path) -> None:
    from chamber.slashing.interchange import ImportRejected

    a, b = "0x" + "0a" * 32, "0x" + "0b" * 32
    header = {"interchange_format_version": "5", "genesis_validators_root": "0x" + GVR.hex()}
    backend = SQLiteSlashingBackend(tmp_path / "slashing.sqlite", GVR)
    try:
        backend.check_and_record_block(PUBKEY, 0, bytes.fromhex(a[2:]))
        before = backend.export_interchange()
        for blocks in ([{"slot": "0"}, {"slot": "0", "signing_root": b}],
                       [{"slot": "0", "signing_root": b}, {"slot": "0"}]):
            with pytest.raises(ImportRejected, match="different blocks at slot 0"):
                backend.import_interchange({"metadata": header, "data": [
                    {"pubkey": "0x" + PUBKEY.hex(), "signed_blocks": blocks}]})
        with pytest.raises(ImportRejected, match="target epoch 2"):
            backend.import_interchange({"metadata": header, "data": [
                {"pubkey": "0x" + "bb" * 48, "signed_attestations": [
                    {"source_epoch": "1", "target_epoch": "2", "signing_root": a},
                    {"source_epoch": "1", "target_epoch": "2"},
                    {"source_epoch": "1", "target_epoch": "2", "signing_root": b}]}]})
        assert backend.export_interchange() == before
    finally:
        backend.close()
