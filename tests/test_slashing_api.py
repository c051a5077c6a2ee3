"""Slashing protection through the real HTTP API and the real CLI (SQLite backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import bodies
from tests.harness import (
    MAINNET_GVR,
    TOKEN,
    InProcessSigner,
    SubprocessSigner,
    base_config,
    in_process_signer,
    make_keys,
    write_raw_keys,
)

KEYS = make_keys(3, seed="slashing-api")
ADMIN = "slashing-admin-token-0123456789"


def slashing_config(tmp: Path, **extra: Any) -> dict[str, Any]:
    keys_dir = tmp / "keys"
    write_raw_keys(keys_dir, KEYS)
    return base_config(
        keys_dir,
        anti_slashing={"backend": "sqlite", "path": str(tmp / "slashing.sqlite")},
        auth_policies={
            "admin": {"token": ADMIN, "allowed_scopes": ["slashing_import", "slashing_export"]}
        },
        **extra,
    )


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[InProcessSigner]:
    with in_process_signer(slashing_config(tmp_path)) as running:
        yield running


def export(signer: InProcessSigner) -> dict[str, Any]:
    resp = signer.client.request("GET", "/api/v1/slashing/export", token=ADMIN)
    assert resp.status == 200, resp.body
    return resp.json()  # type: ignore[no-any-return]


def metric(signer: InProcessSigner, prefix: str) -> float:
    assert signer.metrics_url
    text = urllib.request.urlopen(signer.metrics_url + "/metrics").read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_double_vote_is_412_naming_the_record_and_resign_is_allowed(
    signer: InProcessSigner,
) -> None:
    key = KEYS[0].pubkey_hex
    first = signer.client.sign(key, bodies.attestation(10, 11, root="0x" + "01" * 32))
    assert first.status == 200
    again = signer.client.sign(key, bodies.attestation(10, 11, root="0x" + "01" * 32))
    assert again.status == 200
    assert again.json() == first.json()  # the identical re-sign (lesson 1)
    conflict = signer.client.sign(key, bodies.attestation(10, 11, root="0x" + "02" * 32))
    assert conflict.status == 412
    assert "double vote" in conflict.json()["message"]
    assert "target epoch 11" in conflict.json()["message"]
    assert (
        metric(
            signer,
            'containment_slashing_rejections_total{operation="ATTESTATION",reason="double_vote"}',
        )
        == 1
    )


def test_surround_votes_and_double_proposals(signer: InProcessSigner) -> None:
    key = KEYS[1].pubkey_hex
    assert signer.client.sign(key, bodies.attestation(10, 20)).status == 200
    surrounding = signer.client.sign(key, bodies.attestation(9, 21))
    assert surrounding.status == 412 and "surrounds" in surrounding.json()["message"]
    surrounded = signer.client.sign(key, bodies.attestation(11, 19))
    assert surrounded.status == 412 and "surrounded" in surrounded.json()["message"]
    assert signer.client.sign(key, bodies.block_v2(slot=5000)).status == 200
    double = signer.client.sign(key, bodies.block_v2(slot=5000, body_root="0x" + "99" * 32))
    assert double.status == 412 and "double proposal" in double.json()["message"]
    # Other request types never touch slashing protection.
    assert signer.client.sign(key, bodies.randao(1)).status == 200


def test_dry_run_check_records_nothing(signer: InProcessSigner) -> None:
    key = KEYS[2].pubkey_hex
    path = f"/api/v1/slashing/check/{key}"
    verdict = signer.client.request("POST", path, bodies.attestation(30, 31))
    assert verdict.status == 200
    assert verdict.json()["slashable"] is False and verdict.json()["slashing_relevant"] is True
    # Nothing was recorded: a different root at the same target still signs.
    assert signer.client.sign(key, bodies.attestation(30, 31, root="0x" + "07" * 32)).status == 200
    verdict = signer.client.request("POST", path, bodies.attestation(30, 31))
    assert verdict.json()["slashable"] is True and verdict.json()["reason"] == "double_vote"
    randao = signer.client.request("POST", path, bodies.randao()).json()
    assert randao["slashing_relevant"] is False and randao["slashable"] is False


def test_import_export_round_trip_and_scopes(signer: InProcessSigner) -> None:
    key = KEYS[0]
    document = {
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": MAINNET_GVR},
        "data": [
            {
                "pubkey": key.pubkey_hex,
                "signed_blocks": [{"slot": "100", "signing_root": "0x" + "aa" * 32}],
                "signed_attestations": [{"source_epoch": "5", "target_epoch": "6"}],
            }
        ],
    }
    assert signer.client.request("POST", "/api/v1/slashing/import", document).status == 403
    assert (
        signer.client.request("POST", "/api/v1/slashing/import", document, token=False).status
        == 401
    )
    resp = signer.client.request("POST", "/api/v1/slashing/import", document, token=ADMIN)
    assert resp.status == 200, resp.body
    assert resp.json() == {"validators": 1, "blocks_written": 1, "attestations_written": 1}
    again = signer.client.request("POST", "/api/v1/slashing/import", document, token=ADMIN)
    assert again.json() == {"validators": 1, "blocks_written": 0, "attestations_written": 0}
    exported = export(signer)
    assert exported["metadata"]["genesis_validators_root"] == MAINNET_GVR
    entry = next(d for d in exported["data"] if d["pubkey"] == key.pubkey_hex)
    assert entry["signed_blocks"] == [{"slot": "100", "signing_root": "0x" + "aa" * 32}]
    assert entry["signed_attestations"] == [{"source_epoch": "5", "target_epoch": "6"}]
    # The imported history protects: below the low watermark, and the unknown-root target.
    assert signer.client.sign(key.pubkey_hex, bodies.block_v2(slot=99)).status == 412
    assert signer.client.sign(key.pubkey_hex, bodies.attestation(5, 6)).status == 412
    assert signer.client.sign(key.pubkey_hex, bodies.attestation(6, 7)).status == 200


def _bad_documents() -> list[tuple[str, bytes, str]]:
    pubkey = KEYS[0].pubkey_hex
    good_meta = {"interchange_format_version": "5", "genesis_validators_root": MAINNET_GVR}

    def doc(meta: dict[str, Any], data: list[Any]) -> bytes:
        return json.dumps({"metadata": meta, "data": data}).encode()

    return [
        ("not json", b"{nope", "not valid JSON"),
        (
            "wrong version",
            doc({**good_meta, "interchange_format_version": "4"}, []),
            "metadata.interchange_format_version",
        ),
        (
            "wrong gvr",
            doc({**good_meta, "genesis_validators_root": "0x" + "00" * 32}, []),
            "metadata.genesis_validators_root",
        ),
        (
            "missing field",
            doc(good_meta, [{"pubkey": pubkey, "signed_blocks": [{}]}]),
            "data[0].signed_blocks[0].slot: required field is missing",
        ),
        ("bad pubkey", doc(good_meta, [{"pubkey": "0x12"}]), "data[0].pubkey"),
        (
            "slashable",
            doc(
                good_meta,
                [
                    {
                        "pubkey": pubkey,
                        "signed_attestations": [
                            {"source_epoch": "1", "target_epoch": "10"},
                            {"source_epoch": "2", "target_epoch": "9"},
                        ],
                    }
                ],
            ),
            "surrounds",
        ),
        (
            "double block",
            doc(
                good_meta,
                [
                    {
                        "pubkey": pubkey,
                        "signed_blocks": [
                            {"slot": "7", "signing_root": "0x" + "01" * 32},
                            {"slot": "7", "signing_root": "0x" + "02" * 32},
                        ],
                    }
                ],
            ),
            "different blocks at slot 7",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "raw", "expected"), _bad_documents(), ids=[d[0] for d in _bad_documents()]
)
def test_bad_interchange_is_rejected_and_changes_nothing(
    signer: InProcessSigner, name: str, raw: bytes, expected: str
) -> None:
    assert signer.client.sign(KEYS[0].pubkey_hex, bodies.attestation(1, 2)).status == 200
    before = export(signer)
    resp = signer.client.request("POST", "/api/v1/slashing/import", raw, token=ADMIN)
    assert resp.status == 400, (name, resp.body)
    assert expected in resp.json()["message"], resp.json()
    assert export(signer) == before


def test_import_conflicting_with_the_database_is_rejected(signer: InProcessSigner) -> None:
    key = KEYS[1].pubkey_hex
    assert signer.client.sign(key, bodies.block_v2(slot=777)).status == 200
    before = export(signer)
    doc = {
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": MAINNET_GVR},
        "data": [
            {"pubkey": key, "signed_blocks": [{"slot": "777", "signing_root": "0x" + "05" * 32}]}
        ],
    }
    resp = signer.client.request("POST", "/api/v1/slashing/import", doc, token=ADMIN)
    assert resp.status == 400 and "slot 777" in resp.json()["message"]
    assert export(signer) == before


def test_healthcheck_reports_the_database(signer: InProcessSigner) -> None:
    checks = {c["id"]: c for c in signer.client.request("GET", "/healthcheck").json()["checks"]}
    assert checks["slashing_protection"] == {
        "id": "slashing_protection",
        "status": "UP",
        "data": {"backend": "sqlite"},
    }


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chamber", "slashing", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


def test_cli_offline_and_through_the_server(tmp_path: Path) -> None:
    config = slashing_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    key = KEYS[0].pubkey_hex
    interchange = tmp_path / "in.json"
    interchange.write_text(
        json.dumps(
            {
                "metadata": {
                    "interchange_format_version": "5",
                    "genesis_validators_root": MAINNET_GVR,
                },
                "data": [{"pubkey": key, "signed_blocks": [{"slot": "50"}]}],
            }
        )
    )

    out = run_cli("import", str(interchange), "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["blocks_written"] == 1
    out = run_cli("set-watermark", "--pubkey", key, "--target-epoch", "40", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    out = run_cli("check-db", "-c", str(cfg))
    assert out.returncode == 0 and json.loads(out.stdout) == {"problems": []}

    signer = SubprocessSigner(cfg)
    try:
        url = signer.wait_ready()
        # While the server runs it holds the SQLite database: offline use is refused clearly.
        busy = run_cli("export", "-c", str(cfg))
        assert busy.returncode == 2 and "in use by another process" in busy.stderr
        env = {"CC_ADMIN": ADMIN}
        literal = run_cli("export", "--signer-url", url, "--auth-token", ADMIN)
        assert literal.returncode == 2 and "visible to every process" in literal.stderr
        assert ADMIN not in literal.stderr
        remote = run_cli("export", "--signer-url", url, "--auth-token", "env:CC_ADMIN", env=env)
        assert remote.returncode == 0, remote.stderr
        entry = json.loads(remote.stdout)["data"][0]
        assert entry == {
            "pubkey": key,
            "signed_blocks": [{"slot": "50"}],
            "signed_attestations": [],
        }
        stdin = run_cli(
            "prune",
            "--keep-epochs",
            "10",
            "--signer-url",
            url,
            "--auth-token=-",
            stdin=ADMIN + "\n",
        )
        assert stdin.returncode == 0, stdin.stderr
        plaintext = run_cli(
            "export",
            "--signer-url",
            "http://10.1.2.3:9000",
            "--auth-token",
            "env:CC_ADMIN",
            env=env,
        )
        assert plaintext.returncode == 2 and "not loopback" in plaintext.stderr
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        rejected = run_cli(
            "import", str(bad), "--signer-url", url, "--auth-token", "env:CC_ADMIN", env=env
        )
        assert rejected.returncode == 1 and "metadata: required field is missing" in rejected.stderr
    finally:
        assert signer.stop() == 0
    assert TOKEN not in signer.output() and ADMIN not in signer.output()


def test_database_latency_and_inflight_are_exported(signer: InProcessSigner) -> None:
    count = "containment_slashing_db_duration_seconds_count"
    before = metric(signer, count)
    assert signer.client.sign(KEYS[2].pubkey_hex, bodies.block_v2(slot=123_456)).status == 200
    assert signer.client.sign(KEYS[2].pubkey_hex, bodies.randao()).status == 200  # not recorded
    assert metric(signer, count) == before + 1
    assert signer.metrics_url
    text = urllib.request.urlopen(signer.metrics_url + "/metrics").read().decode()
    assert "\ncontainment_inflight_requests 0.0\n" in text
