"""The vault's HTTP layer through a real waitress server: scopes, body validation, and what
signing, health and metrics say about the seal state. The ceremonies themselves are tested
without HTTP in test_vault_ceremonies.py."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import TOKEN, Client, InProcessSigner, Response, base_config, in_process_signer

OPS_TOKEN = "ops-token-0123456789abcdef"
VIEW_TOKEN = "view-token-0123456789abcdef"
KEYS = ["local:kms-a", "local:kms-b"]
PUBKEY = "0x" + "a1" * 48
STATUS = "/api/v1/chamber/status"


def passphrase(name: str) -> str:
    return f"{name}: a long enough passphrase"


class _Tokens(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.tokens: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        token = getattr(record, "setup_token", None)
        if token:
            self.tokens.append(token)


@dataclass
class Running:
    signer: InProcessSigner
    log: _Tokens

    @property
    def client(self) -> Client:
        return self.signer.client

    def post(self, path: str, body: bytes | dict[str, Any], token: str | bool = False) -> Response:
        return self.client.request("POST", f"/api/v1/chamber/{path}", body, token=token)

    def status(self) -> dict[str, Any]:
        resp = self.client.request("GET", STATUS, token=OPS_TOKEN)
        assert resp.status == 200, resp.body
        seal: dict[str, Any] = resp.json()["seal"]
        return seal

    def wait_state(self, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.status()["status"]) != state:
            assert time.monotonic() < deadline, f"state {now}, expected {state}"
            time.sleep(0.05)

    @property
    def setup_token(self) -> str:
        assert self.log.tokens, "no setup token was logged"
        return self.log.tokens[-1]

    def metrics(self) -> str:
        assert self.signer.metrics_url is not None
        with urllib.request.urlopen(self.signer.metrics_url + "/metrics") as resp:
            text: str = resp.read().decode()
        return text

    def metric(self, name: str, labels: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def seal_state_metric(self) -> dict[str, float]:
        found = {}
        for line in self.metrics().splitlines():
            if line.startswith('containment_seal_state{state="'):
                label, value = line.rsplit(" ", 1)
                found[label.split('"')[1]] = float(value)
        return found

    def sign(self) -> Response:
        return self.client.sign(PUBKEY, {"type": "AGGREGATION_SLOT"}, token=TOKEN)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    config = base_config(
        keys_dir,
        signer_state={"backend": "sqlite", "path": str(tmp_path / "state.sqlite")},
        kms={"local": {"directory": str(tmp_path / "kms")}},
        key_sources={"sqlite": {"path": str(tmp_path / "keys.sqlite")}},
        vault={
            "argon2": {"memory_kib": 1024, "iterations": 1, "parallelism": 1},
            "kms_retry_max_seconds": 0.5,
        },
        auth_policies={
            "ops": {"token": OPS_TOKEN, "allowed_scopes": ["chamber_status", "chamber_seal"]},
            "viewer": {"token": VIEW_TOKEN, "allowed_scopes": ["chamber_status"]},
        },
    )
    handler = _Tokens()
    logger = logging.getLogger("chamber.vault")
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        with in_process_signer(config) as signer:
            run = Running(signer, handler)
            run.wait_state("uninitialized")
            yield run
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def assert_refused(resp: Response, status: int, fragment: str, field: str | None = None) -> None:
    assert resp.status == status, (resp.status, resp.body)
    body = resp.json()
    assert fragment in body["message"], body
    if field is not None:
        assert body.get("field") == field, body


def test_status_needs_the_chamber_status_scope(running: Running) -> None:
    anonymous = running.client.request("GET", STATUS, token=False)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert running.client.request("GET", STATUS, token="not-a-configured-token-x").status == 401
    forbidden = running.client.request("GET", STATUS, token=TOKEN)  # sign, public_keys only
    assert_refused(forbidden, 403, "chamber_status")
    for token in (VIEW_TOKEN, OPS_TOKEN):
        ok = running.client.request("GET", STATUS, token=token)
        assert ok.status == 200
        assert ok.json() == {"seal": {"status": "uninitialized"}, "keys": None}


def test_probes_signing_health_and_metrics_follow_the_seal_state(running: Running) -> None:
    upcheck = running.client.request("GET", "/upcheck", token=False)
    assert (upcheck.status, upcheck.body) == (200, b"OK")

    signing = running.sign()
    assert_refused(signing, 503, "uninitialized")
    assert signing.headers["Retry-After"] is not None and int(signing.headers["Retry-After"]) >= 1

    health = running.client.request("GET", "/healthcheck", token=False)
    assert health.status == 503
    checks = {c["id"]: c for c in health.json()["checks"]}
    assert checks["vault"] == {"id": "vault", "status": "DOWN", "data": {"state": "uninitialized"}}
    assert health.json()["status"] == "DOWN"

    states = running.seal_state_metric()
    assert states["uninitialized"] == 1.0
    assert sum(states.values()) == 1.0

    init = running.post(
        "init", {"setup_token": running.setup_token, "kms_key_ids": KEYS, "kms_threshold": 1}
    )
    assert init.status == 200, init.body
    health = running.client.request("GET", "/healthcheck", token=False)
    assert health.status == 200
    assert {c["id"]: c["status"] for c in health.json()["checks"]}["vault"] == "UP"
    assert running.seal_state_metric()["unsealed"] == 1.0
    # Unsealed: the request reaches the key registry (no such key), not the seal check.
    assert running.sign().status == 404

    assert running.post("seal", {}, token=OPS_TOKEN).status == 200
    signing = running.sign()
    assert_refused(signing, 503, "sealed")
    assert int(signing.headers["Retry-After"]) >= 1
    health = running.client.request("GET", "/healthcheck", token=False)
    assert health.status == 503
    vault_check = {c["id"]: c for c in health.json()["checks"]}["vault"]
    assert vault_check == {"id": "vault", "status": "DOWN", "data": {"state": "sealed"}}
    states = running.seal_state_metric()
    assert states["sealed"] == 1.0 and sum(states.values()) == 1.0
    assert running.client.request("GET", "/upcheck", token=False).status == 200


BAD_INIT_BODIES: list[tuple[str, bytes | dict[str, Any], str, str | None]] = [
    ("not JSON", b"{not json", "not valid JSON", None),
    ("not an object", b"[1, 2]", "JSON object", None),
    ("empty object", {}, "kms_key_ids: required", "kms_key_ids"),
    ("no threshold", {"kms_key_ids": KEYS}, "kms_threshold: required", "kms_threshold"),
    (
        "threshold as text",
        {"kms_key_ids": KEYS, "kms_threshold": "1"},
        "kms_threshold: must be an integer",
        "kms_threshold",
    ),
    (
        "threshold as bool",
        {"kms_key_ids": KEYS, "kms_threshold": True},
        "kms_threshold: must be an integer",
        "kms_threshold",
    ),
    (
        "key ids not strings",
        {"kms_key_ids": [1, 2], "kms_threshold": 1},
        "kms_key_ids: must be a list of strings",
        "kms_key_ids",
    ),
    (
        "key ids an object",
        {"kms_key_ids": {"a": 1}, "kms_threshold": 1},
        "kms_key_ids: must be a list of strings",
        "kms_key_ids",
    ),
    (
        "no setup token",
        {"kms_key_ids": KEYS, "kms_threshold": 1},
        "setup_token: required",
        "setup_token",
    ),
    (
        "setup token a number",
        {"kms_key_ids": KEYS, "kms_threshold": 1, "setup_token": 7},
        "setup_token: must be a string",
        "setup_token",
    ),
    (
        "operators not strings",
        {"kms_key_ids": KEYS, "kms_threshold": 1, "setup_token": "x", "operators": [1]},
        "operators: must be a list of strings",
        "operators",
    ),
    (
        "unseal threshold as text",
        {
            "kms_key_ids": KEYS,
            "kms_threshold": 1,
            "setup_token": "x",
            "operators": ["alice"],
            "unseal_threshold": "1",
        },
        "unseal_threshold: must be an integer",
        "unseal_threshold",
    ),
]


def test_malformed_init_bodies_are_refused_and_change_nothing(running: Running) -> None:
    for name, body, fragment, field in BAD_INIT_BODIES:
        resp = running.post("init", body)
        assert resp.status == 400, (name, resp.body)
        assert_refused(resp, 400, fragment, field)
        assert running.status() == {"status": "uninitialized"}, name
    # Checked by the vault after the body parsed: still 400 naming the field.
    token = running.setup_token
    for body, field, fragment in [
        ({"kms_key_ids": KEYS, "kms_threshold": 0}, "kms_threshold", "kms_threshold"),
        (
            {"kms_key_ids": ["local:kms-a", "local:kms-a"], "kms_threshold": 1},
            "kms_key_ids",
            "listed twice",
        ),
        (
            {"kms_key_ids": ["arn:aws:kms:nope"], "kms_threshold": 1},
            "kms_key_ids",
            "no KMS provider",
        ),
        (
            {"kms_key_ids": KEYS, "kms_threshold": 1, "unseal_threshold": 1},
            "operators",
            "unseal_threshold: given without operators",
        ),
    ]:
        resp = running.post("init", {**body, "setup_token": token})
        assert_refused(resp, 400, fragment, field)
        assert running.status() == {"status": "uninitialized"}
    # A string of comma-separated ids is accepted, as the CLI's --kms-key-ids flag gives it.
    ok = running.post(
        "init", {"setup_token": token, "kms_key_ids": ",".join(KEYS), "kms_threshold": 2}
    )
    assert ok.status == 200, ok.body
    assert ok.json() == {"status": "unsealed", "validators_loaded": 0}
    assert running.status()["kms"] == {"threshold": 2, "keys": 2}
    again = running.post("init", {"setup_token": token, "kms_key_ids": KEYS, "kms_threshold": 1})
    assert_refused(again, 409, "already initialized")


def test_wrong_setup_token_is_401_and_counted(running: Running) -> None:
    resp = running.post(
        "init", {"setup_token": "cc-setup-nope", "kms_key_ids": KEYS, "kms_threshold": 1}
    )
    assert_refused(resp, 401, "invalid setup token")
    assert running.metric("containment_credential_failures_total", 'ceremony="setup"') == 1.0
    assert running.status() == {"status": "uninitialized"}


def test_seal_and_unseal_reset_need_the_chamber_seal_scope(running: Running) -> None:
    token = running.setup_token
    init = running.post(
        "init",
        {
            "setup_token": token,
            "kms_key_ids": KEYS,
            "kms_threshold": 2,
            "operators": ["alice", "bob"],
            "unseal_threshold": 2,
        },
    )
    assert init.status == 200, init.body
    reg_tokens = init.json()["operator_tokens"]
    assert running.seal_state_metric()["awaiting_registration"] == 1.0

    for body, fragment, field in [
        (
            {"registration_token": reg_tokens["alice"], "passphrase": "x" * 20},
            "operator",
            "operator",
        ),
        (
            {"operator": "alice", "registration_token": reg_tokens["alice"]},
            "passphrase",
            "passphrase",
        ),
        (
            {"operator": "alice", "registration_token": reg_tokens["alice"], "passphrase": 12},
            "passphrase: must be a string",
            "passphrase",
        ),
        (
            {"operator": "alice", "registration_token": reg_tokens["alice"], "passphrase": "short"},
            "passphrase too short",
            "passphrase",
        ),
        (
            {"operator": "alice", "registration_token": 5, "passphrase": "x" * 20},
            "registration_token: must be a string",
            "registration_token",
        ),
    ]:
        assert_refused(running.post("register", body), 400, fragment, field)
    assert running.status()["registered"] == 0

    for name in ("alice", "bob"):
        resp = running.post(
            "register",
            {
                "operator": name,
                "registration_token": reg_tokens[name],
                "passphrase": passphrase(name),
            },
        )
        assert resp.status == 200, resp.body
    assert resp.json() == {"registered": 2, "remaining": 0, "status": "sealed"}
    running.wait_state("kms_unsealed")
    assert running.seal_state_metric()["kms_unsealed"] == 1.0

    assert_refused(running.post("unseal", {"operator": "alice"}), 400, "passphrase", "passphrase")
    assert_refused(running.post("unseal", {"passphrase": "x" * 20}), 400, "operator", "operator")
    assert_refused(running.post("unseal", b"nope"), 400, "not valid JSON")
    wrong = running.post("unseal", {"operator": "alice", "passphrase": passphrase("bob")})
    assert_refused(wrong, 401, "wrong passphrase")
    assert running.metric("containment_credential_failures_total", 'ceremony="unseal"') == 1.0
    assert running.status()["shares_received"] == 0

    first = running.post("unseal", {"operator": "alice", "passphrase": passphrase("alice")})
    assert first.json() == {"shares_received": 1, "shares_required": 2}

    assert running.post("unseal-reset", {}).status == 401
    assert_refused(running.post("unseal-reset", {}, token=VIEW_TOKEN), 403, "chamber_seal")
    assert running.status()["shares_received"] == 1
    reset = running.post("unseal-reset", {}, token=OPS_TOKEN)
    assert reset.status == 200
    assert reset.json() == {"shares_received": 0, "shares_required": 2}
    assert running.status()["shares_received"] == 0

    for name in ("bob", "alice"):
        last = running.post("unseal", {"operator": name, "passphrase": passphrase(name)})
        assert last.status == 200, last.body
    assert last.json() == {"status": "unsealed", "validators_loaded": 0}
    assert running.seal_state_metric()["unsealed"] == 1.0

    assert running.post("seal", {}).status == 401
    assert_refused(running.post("seal", {}, token=VIEW_TOKEN), 403, "chamber_seal")
    assert_refused(running.post("seal", {}, token=TOKEN), 403, "chamber_seal")
    assert running.status()["status"] == "unsealed"
    sealed = running.post("seal", {}, token=OPS_TOKEN)
    assert (sealed.status, sealed.json()) == (200, {"status": "sealed"})
    assert running.status()["status"] == "sealed"
    again = running.post("unseal", {"operator": "alice", "passphrase": passphrase("alice")})
    assert again.status == 503
    assert int(again.headers["Retry-After"]) >= 1
