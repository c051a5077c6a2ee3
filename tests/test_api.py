"""The HTTP API through a real waitress server on a random loopback port."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from py_ecc.bls import G2ProofOfPossession as reference_bls

from chamber.eth.networks import get_network
from chamber.eth.requests import prepare_signing
from tests import bodies, slow_plugin
from tests.harness import (
    InProcessSigner,
    base_config,
    in_process_signer,
    make_keys,
    write_raw_keys,
)

KEYS = make_keys(3)
RESTRICTED_TOKEN = "restricted-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcd"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSigner]:
    keys_dir = tmp_path_factory.mktemp("keys")
    write_raw_keys(keys_dir, KEYS)
    config = base_config(
        keys_dir,
        canary_keys=[KEYS[2].pubkey_hex],
        auth_policies={
            "restricted": {
                "token": RESTRICTED_TOKEN,
                "allowed_scopes": ["sign", "public_keys"],
                "keys": [KEYS[0].pubkey_hex],
                "operations": ["RANDAO_REVEAL"],
            },
            "admin": {"token": ADMIN_TOKEN, "allowed_scopes": ["chamber_status"]},
        },
    )
    with in_process_signer(config) as running:
        yield running


def expected_root(body: dict[str, object]) -> bytes:
    return prepare_signing(json.dumps(body).encode(), get_network("mainnet")).signing_root


def metric(signer: InProcessSigner, name: str, labels: str) -> float:
    assert signer.metrics_url is not None
    text = urllib.request.urlopen(signer.metrics_url + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} " if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_upcheck_and_healthcheck(signer: InProcessSigner) -> None:
    up = signer.client.request("GET", "/upcheck", token=False)
    assert (up.status, up.body) == (200, b"OK")
    health = signer.client.request("GET", "/healthcheck", token=False)
    assert health.status == 200
    payload = health.json()
    assert payload["status"] == "UP"
    checks = {c["id"]: c for c in payload["checks"]}
    assert checks["keys"]["data"]["loaded"] == 3
    assert checks["slashing_protection"]["status"] == "UP"


def test_public_keys(signer: InProcessSigner) -> None:
    resp = signer.client.request("GET", "/api/v1/eth2/publicKeys")
    assert resp.status == 200
    assert sorted(resp.json()) == sorted(k.pubkey_hex for k in KEYS)
    restricted = signer.client.request("GET", "/api/v1/eth2/publicKeys", token=RESTRICTED_TOKEN)
    assert restricted.json() == [KEYS[0].pubkey_hex]


def test_sign_json_and_text_plain(signer: InProcessSigner) -> None:
    body = bodies.randao(300_001)
    root = expected_root(body)
    resp = signer.client.sign(KEYS[0].pubkey_hex, body)
    assert resp.status == 200, resp.body
    signature = bytes.fromhex(resp.json()["signature"][2:])
    assert reference_bls.Verify(KEYS[0].pubkey, root, signature)

    plain = signer.client.sign(KEYS[0].pubkey_hex, body, headers={"Accept": "text/plain"})
    assert plain.status == 200
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert plain.body.decode() == resp.json()["signature"]


def test_pubkey_in_path_is_case_insensitive(signer: InProcessSigner) -> None:
    resp = signer.client.sign(KEYS[1].pubkey_hex.upper().replace("0X", "0x"), bodies.randao())
    assert resp.status == 200
    assert signer.client.sign(KEYS[1].pubkey_hex[2:], bodies.randao()).status == 200


@pytest.mark.parametrize(
    ("token", "status"),
    [(False, 401), ("wrong-token-0123456789", 401), (ADMIN_TOKEN, 403)],
)
def test_auth_failures(signer: InProcessSigner, token: str | bool, status: int) -> None:
    resp = signer.client.sign(KEYS[0].pubkey_hex, bodies.randao(), token=token)
    assert resp.status == status
    assert resp.json()["message"]
    if status == 401:
        assert "WWW-Authenticate" in resp.headers


def test_key_and_operation_restrictions_are_403(signer: InProcessSigner) -> None:
    other_key = signer.client.sign(KEYS[1].pubkey_hex, bodies.randao(), token=RESTRICTED_TOKEN)
    assert other_key.status == 403
    assert "may not use key" in other_key.json()["message"]
    other_op = signer.client.sign(KEYS[0].pubkey_hex, bodies.block_v2(), token=RESTRICTED_TOKEN)
    assert other_op.status == 403
    assert "may not request BLOCK_V2" in other_op.json()["message"]
    allowed = signer.client.sign(KEYS[0].pubkey_hex, bodies.randao(), token=RESTRICTED_TOKEN)
    assert allowed.status == 200


def test_unknown_key_is_404_and_bad_identifier_400(signer: InProcessSigner) -> None:
    missing = signer.client.sign("0x" + "aa" * 48, bodies.randao())
    assert missing.status == 404
    bad = signer.client.sign("0x1234", bodies.randao())
    assert bad.status == 400
    assert bad.json()["field"] == "identifier"


def test_wrong_network_is_403(signer: InProcessSigner) -> None:
    body = bodies.randao(gvr="0x" + "00" * 32)
    resp = signer.client.sign(KEYS[0].pubkey_hex, body)
    assert resp.status == 403
    assert "genesis" in resp.json()["message"].lower()


def test_signing_root_mismatch_is_400(signer: InProcessSigner) -> None:
    body = bodies.randao()
    body["signingRoot"] = "0x" + "00" * 32
    resp = signer.client.sign(KEYS[0].pubkey_hex, body)
    assert resp.status == 400
    assert resp.json()["field"] == "signingRoot"
    body["signingRoot"] = "0x" + expected_root(bodies.randao()).hex()
    assert signer.client.sign(KEYS[0].pubkey_hex, body).status == 200


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'{"type": "NOPE"}', b'{"type": "RANDAO_REVEAL"}', b"\xff\xfe"],
)
def test_malformed_bodies_are_400_and_the_server_keeps_serving(
    signer: InProcessSigner, raw: bytes
) -> None:
    resp = signer.client.sign(KEYS[0].pubkey_hex, raw)
    assert resp.status == 400
    assert resp.json()["message"]
    assert signer.client.request("GET", "/upcheck").status == 200


def test_body_over_one_mebibyte_is_413(signer: InProcessSigner) -> None:
    huge = b'{"type": "RANDAO_REVEAL", "pad": "' + b"a" * (1024 * 1024) + b'"}'
    resp = signer.client.sign(KEYS[0].pubkey_hex, huge)
    assert resp.status == 413
    assert "exceeds the limit" in resp.json()["message"]
    assert signer.client.sign(KEYS[0].pubkey_hex, bodies.randao()).status == 200


def test_unknown_route_is_json_404(signer: InProcessSigner) -> None:
    resp = signer.client.request("GET", "/nope")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/json")


def test_request_id_is_echoed_or_generated(signer: InProcessSigner) -> None:
    echoed = signer.client.request("GET", "/upcheck", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["X-Request-Id"] == "abc-123"
    generated = signer.client.request("GET", "/api/v1/eth2/publicKeys")
    assert generated.headers["X-Request-Id"]


def test_metrics_count_outcomes_and_canary(signer: InProcessSigner) -> None:
    labels = 'operation="RANDAO_REVEAL",outcome="signed"'
    before = metric(signer, "containment_signing_requests_total", labels)
    denied_labels = 'operation="unknown",outcome="denied"'
    denied_before = metric(signer, "containment_signing_requests_total", denied_labels)
    canary_before = metric(signer, "containment_canary_signing_total", "")
    assert signer.client.sign(KEYS[1].pubkey_hex, bodies.randao()).status == 200
    assert signer.client.sign(KEYS[1].pubkey_hex, bodies.randao(), token=False).status == 401
    assert signer.client.sign(KEYS[2].pubkey_hex, bodies.randao()).status == 200
    assert metric(signer, "containment_signing_requests_total", labels) == before + 2
    assert metric(signer, "containment_signing_requests_total", denied_labels) == denied_before + 1
    assert metric(signer, "containment_keys_active", 'source="filesystem"') == 3
    assert metric(signer, "containment_bls_backend_info", 'backend="blspy"') == 1
    assert metric(signer, "containment_canary_signing_total", "") == canary_before + 1


def test_backpressure_answers_503_with_retry_after(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    write_raw_keys(keys_dir, KEYS[:1])
    config = base_config(
        keys_dir,
        anti_slashing={"backend": "slow-test", "delay_seconds": 1.0},
        server={"max_concurrent_requests": 2},
    )
    with in_process_signer(config, extra_plugins={"slow": slow_plugin}) as running:
        results: list[tuple[int, Message]] = []
        lock = threading.Lock()

        def call(slot: int) -> None:
            resp = running.client.sign(KEYS[0].pubkey_hex, bodies.block_v2(slot=slot))
            with lock:
                results.append((resp.status, resp.headers))

        threads = [threading.Thread(target=call, args=(9_600_000 + i,)) for i in range(5)]
        for t in threads:
            t.start()
        # While saturated, probes still answer.
        assert running.client.request("GET", "/upcheck", token=False).status == 200
        for t in threads:
            t.join()
        statuses = sorted(s for s, _ in results)
        assert statuses.count(200) == 2, statuses
        assert statuses.count(503) == 3, statuses
        assert all(h.get("Retry-After") == "1" for s, h in results if s == 503)
