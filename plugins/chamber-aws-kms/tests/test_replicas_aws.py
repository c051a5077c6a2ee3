"""Two signer replicas on AWS services follow each other's key changes within 2 s, without a
restart (issue #7 scope 6), and an idle replica reads only the key table's change counter.

Replica A and replica B are two real ``containment-chamber server`` processes sharing, on the
moto server of ``conftest.moto_module`` (real HTTP): one DynamoDB vault state table, one
DynamoDB key table (``key_sources.dynamodb``) and one DynamoDB slashing table
(``anti_slashing.backend: dynamodb``). The master key is protected by three AWS KMS keys (three
regions, 2 of 3), kms_only mode: A is initialized through the CLI and B unseals by itself from
the shared state. Everything else is the AWS runbook's (``test_runbook_aws.py``: its ``Aws``
helper, its ``AwsChamber`` configuration, its CLI ``init``). The key refresh interval
(``chamber.keys.refresh_interval_seconds``) is left at its default, 1 s.

Changes are made through A's chamber key API (import of a raw key, PATCH inactive / active,
DELETE); B is polled every 20 ms from the moment A's answer arrived until it shows the change,
which must happen within :data:`FOLLOW_LIMIT`. After a removal B is watched for
:data:`WATCH_AFTER` more seconds: it must never sign with the key again. The latencies are
printed (``pytest -s``) and recorded as test properties.

The idle check uses moto's request recorder (``/moto-api/recorder/...``): each replica signs
its AWS requests with its own access key id (moto accepts any, in one account), so every
recorded request says which replica sent it.

The scenarios run in file order on one pair, each starting where the previous one left off.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

pytest.importorskip("chamber_dynamodb", reason="needs the chamber-dynamodb plugin installed too")
pytest.importorskip("moto", reason="install plugins/chamber-aws-kms[test]")

from chamber_dynamodb.keys import VERSION_PK
from test_runbook_aws import Aws, AwsChamber, init

from chamber.config import ChamberKeysConfig
from chamber.keys.manager import FULL_REFRESH_EVERY
from tests import bodies
from tests.harness import Client, make_keys
from tests.replica_support import (
    follow,
    import_raw,
    keys_api,
    loaded,
    never_signs_again,
    refuses,
    set_status,
    signs,
    status_of,
)

#: How long both replicas are left idle (keys in the table, no change) in the Scan count.
IDLE = 5.0
KEYS = make_keys(5, seed="aws-replicas")
#: Imported before the idle check, so that the table is not empty; never touched afterwards.
BACKGROUND = KEYS[:3]
#: Each replica's AWS access key id: moto maps any unknown id to its one default account (where
#: the KMS keys are), and the recorded ``Authorization`` header names it.
ACCESS_KEYS = {"a": "AKIAREPLICAAAAAAAAAA", "b": "AKIAREPLICABBBBBBBBB"}


# ---------------------------------------------------------------------- the pair


@dataclass
class ReplicaChamber(AwsChamber):
    """:class:`AwsChamber` on shared tables, with a DynamoDB slashing table too, the chamber key
    API's list / delete scopes, and an access key id of its own."""

    slashing_table: str = ""
    access_key: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        assert self.slashing_table and self.access_key
        self.env = {**self.env, "AWS_ACCESS_KEY_ID": self.access_key}
        config = yaml.safe_load(self.config_path.read_text())
        dynamodb = dict(config["key_sources"]["dynamodb"])
        del dynamodb["table"]
        config["anti_slashing"] = {"backend": "dynamodb", "table": self.slashing_table, **dynamodb}
        config["auth_policies"]["ops-team"]["allowed_scopes"] += [
            "chamber_keys_list",
            "chamber_keys_delete",
        ]
        self.config_path.write_text(yaml.safe_dump(config))


@dataclass
class Pair:
    a: ReplicaChamber
    b: ReplicaChamber
    #: ``time.monotonic()`` just before A's process was started (the first of the two).
    started: float = 0.0
    latencies: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def require(self, step: str) -> None:
        if step not in self.done:
            pytest.fail(f"scenario {step!r} did not complete; the scenarios run in file order")


@pytest.fixture(scope="module")
def pair(moto_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    # The refresh interval is left at its default.
    assert ChamberKeysConfig().refresh_interval_seconds == 1.0
    aws = Aws(moto_module)
    suffix = uuid.uuid4().hex[:10]

    def replica(name: str) -> ReplicaChamber:
        return ReplicaChamber(
            tmp_path_factory.mktemp(f"replica-{name}"),
            endpoint=aws.endpoint,
            state_table=f"replicas-state-{suffix}",
            keys_table=f"replicas-keys-{suffix}",
            slashing_table=f"replicas-slashing-{suffix}",
            access_key=ACCESS_KEYS[name],
        )

    replicas = Pair(a=replica("a"), b=replica("b"))
    kms_keys = aws.new_keys()
    try:
        replicas.started = time.monotonic()
        replicas.a.start()
        setup_token = replicas.a.wait_setup_token()
        answer = init(replicas.a, setup_token, kms_keys, operators=False).json()
        assert answer == {"status": "unsealed", "validators_loaded": 0}
        # B starts on the initialized tables: kms_only, it unseals by itself.
        replicas.b.start()
        answer = replicas.b.wait_state("unsealed", timeout=30)
        assert answer["seal"]["mode"] == "kms_only"
        yield replicas
    finally:
        exits = []
        for chamber in (replicas.a, replicas.b):
            try:
                chamber.stop()  # both are stopped, even if the first exited badly
            except AssertionError as error:
                exits.append(str(error))
        print("\n[aws replicas] follow latencies (from the answer of the change):")
        for label, seconds in replicas.latencies.items():
            print(f"  {label}: {seconds:.3f} s")
        assert not exits, exits


# ---------------------------------------------------------------------- moto's recorder


@dataclass(frozen=True)
class Recorded:
    """One DynamoDB request as moto's recorder saw it."""

    replica: str  # "a", "b", or "?" (another access key: this test process)
    operation: str  # "Scan", "GetItem", ...
    table: str
    body: dict[str, Any]


class Recorder:
    """moto's server-side request recorder, driven through its HTTP API
    (``/moto-api/recorder/...``). It is one per process, so it sees the requests of both moto
    servers of this process, each (headers and body) as it arrives."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def _call(self, action: str) -> str:
        method = "GET" if action == "download-recording" else "POST"
        response = Client(self.endpoint, token=None).request(method, f"/moto-api/recorder/{action}")
        assert response.status == 200, (action, response.status, response.body)
        return response.body.decode()

    def start(self) -> None:
        self._call("reset-recording")
        self._call("start-recording")

    def stop(self) -> list[Recorded]:
        self._call("stop-recording")
        return self.parse(self._call("download-recording"))

    @staticmethod
    def parse(text: str) -> list[Recorded]:
        by_key = {key: replica for replica, key in ACCESS_KEYS.items()}
        found = []
        for line in text.splitlines():
            entry = json.loads(line)
            headers = {name.lower(): value for name, value in entry["headers"].items()}
            target = headers.get("x-amz-target", "")
            if not target.startswith("DynamoDB_"):
                continue  # KMS, the moto API
            raw = entry["body"] or ""
            body = json.loads(base64.b64decode(raw) if entry["body_encoded"] else raw or "{}")
            credential = headers.get("authorization", "").partition("Credential=")[2]
            found.append(
                Recorded(
                    replica=by_key.get(credential.split("/", 1)[0], "?"),
                    operation=target.rsplit(".", 1)[1],
                    table=str(body.get("TableName", "")),
                    body=body,
                )
            )
        return found


@pytest.fixture(scope="module")
def recorder(moto_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    from moto.moto_api import recorder as moto_recorder

    # The recording's file is set only by MOTO_RECORDER_FILEPATH, read when moto is imported
    # (long before this module): point it at a file of ours instead of ./moto_recording.
    path = tmp_path_factory.mktemp("moto-recording") / "requests.jsonl"
    patches = pytest.MonkeyPatch()
    patches.setattr(moto_recorder, "_location", str(path))
    try:
        yield Recorder(moto_module.url)
    finally:
        moto_recorder.stop_recording()
        patches.undo()


# ---------------------------------------------------------------------- helpers


def is_counter_read(request: Recorded) -> bool:
    """``DynamoDBKeyStore.change_token``: one strongly consistent ``GetItem`` of the counter."""
    return (
        request.operation == "GetItem"
        and request.body.get("Key") == {"pk": {"S": VERSION_PK}}
        and request.body.get("ConsistentRead") is True
    )


def counter_reads(requests: list[Recorded], replica: str, table: str) -> int:
    return sum(r.replica == replica and r.table == table and is_counter_read(r) for r in requests)


def scans(requests: list[Recorded], replica: str, table: str) -> int:
    return sum(
        r.replica == replica and r.operation == "Scan" and r.table == table for r in requests
    )


# ---------------------------------------------------------------------- the scenarios


def test_idle_replicas_read_the_change_counter_and_never_scan(
    pair: Pair, recorder: Recorder, record_property: Callable[[str, object], None]
) -> None:
    """Keys in the table, no change for :data:`IDLE` seconds: each replica reads the change
    counter about once a second (one ``GetItem``) and scans the key table not once. Then one
    change through A: B scans (the recorder does see B's scans) and signs the new key."""
    table = pair.a.keys_table
    import_raw(pair.a, *BACKGROUND)
    # B has followed (its first scan), and A has seen its own counter bump (its first scan).
    follow(
        pair,
        "import of 3 keys (A) -> B signs them",
        lambda: all(signs(pair.b, key.pubkey_hex)() for key in BACKGROUND),
        record_property,
    )
    time.sleep(1.5)  # a refresh round of each replica after the import was applied

    recorder.start()
    window_started = time.monotonic()
    time.sleep(IDLE)
    idle = recorder.stop()
    window = time.monotonic() - window_started
    # The periodic full refresh (a scan every FULL_REFRESH_EVERY rounds of >= 1 s, counted from
    # a replica's start) cannot have fallen in the window: neither replica ran that many yet.
    since_start = time.monotonic() - pair.started
    record_property("idle window ends, s after A started", round(since_start, 1))
    assert since_start < FULL_REFRESH_EVERY * 1.0, f"{since_start:.1f} s: too late to tell"

    on_table = [r for r in idle if r.table == table]
    ops = sorted({(r.replica, r.operation) for r in on_table})
    counts = {
        "b_counter_reads": counter_reads(idle, "b", table),
        "a_counter_reads": counter_reads(idle, "a", table),
        "b_scans": scans(idle, "b", table),
        "a_scans": scans(idle, "a", table),
    }
    print(
        f"\n[aws replicas] idle {window:.1f} s (ending {since_start:.1f} s after A started), "
        f"key table requests {ops}: {counts}"
    )
    for name, count in counts.items():
        record_property(f"idle[{name}]", count)
    assert counts["b_scans"] == 0 and counts["a_scans"] == 0, ops
    # Polling did go on (one counter read a round), and that was all either did on the table.
    assert counts["b_counter_reads"] >= IDLE - 2, counts
    assert counts["a_counter_reads"] >= IDLE - 2, counts
    assert ops == [("a", "GetItem"), ("b", "GetItem")], ops
    assert all(is_counter_read(r) for r in on_table), [r.body for r in on_table]

    # One change: A bumps the counter, B sees it move and scans; the recorder sees that scan.
    recorder.start()
    after = KEYS[3]
    import_raw(pair.a, after)
    follow(
        pair, "import after idle (A) -> B signs", signs(pair.b, after.pubkey_hex), record_property
    )
    busy = recorder.stop()
    assert scans(busy, "b", table) >= 1, sorted({(r.replica, r.operation) for r in busy})
    assert loaded(pair.b) == loaded(pair.a) == len(BACKGROUND) + 1
    pair.done.append("idle")


def test_import_through_a_signs_on_b(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    key = KEYS[4]
    assert status_of(pair.b, key.pubkey_hex) == 404
    import_raw(pair.a, key)
    assert status_of(pair.a, key.pubkey_hex) == 200  # signable where imported, at once
    follow(pair, "import (A) -> B signs", signs(pair.b, key.pubkey_hex), record_property)
    pair.done.append("import")


def test_deactivate_through_a_stops_b_for_good(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    pair.require("import")
    key = KEYS[4]
    assert status_of(pair.b, key.pubkey_hex) == 200
    set_status(pair.a, key.pubkey_hex, "inactive", "deactivated")
    assert status_of(pair.a, key.pubkey_hex) == 404  # unsignable before A answered
    follow(pair, "deactivate (A) -> B 404", refuses(pair.b, key.pubkey_hex), record_property)
    polls = never_signs_again(pair.b, key.pubkey_hex)
    record_property("deactivate: 404 polls of B afterwards", polls)
    listed = keys_api(pair.b, "GET", "?status=inactive")["data"]
    assert [(e["pubkey"], e["loaded"]) for e in listed] == [(key.pubkey_hex, False)]
    pair.done.append("deactivate")


def test_activate_through_a_signs_on_b_again(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    pair.require("deactivate")
    key = KEYS[4]
    set_status(pair.a, key.pubkey_hex, "active", "activated")
    assert status_of(pair.a, key.pubkey_hex) == 200
    follow(pair, "activate (A) -> B signs", signs(pair.b, key.pubkey_hex), record_property)
    pair.done.append("activate")


def test_delete_through_a_removes_it_from_b(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    pair.require("activate")
    key = KEYS[4]
    before = loaded(pair.b)
    assert loaded(pair.a) == before
    # The replicas share one slashing table: an attestation signed through B is history on A
    # (a conflicting one is refused there), and A's delete answer exports it.
    target = bodies.BASE_EPOCH + 10
    signed = pair.b.sign(key.pubkey_hex, bodies.attestation(target - 1, target))
    assert signed.status == 200, signed.body
    conflicting = bodies.attestation(target - 1, target, root="0x" + "77" * 32)
    refused = pair.a.sign(key.pubkey_hex, conflicting)
    assert refused.status == 412, refused.body

    answer = keys_api(pair.a, "DELETE", "", {"pubkeys": [key.pubkey_hex]})
    assert answer["data"] == [{"status": "deleted", "pubkey": key.pubkey_hex}], answer
    assert status_of(pair.a, key.pubkey_hex) == 404
    follow(pair, "delete (A) -> B 404", refuses(pair.b, key.pubkey_hex), record_property)
    polls = never_signs_again(pair.b, key.pubkey_hex)
    record_property("delete: 404 polls of B afterwards", polls)
    assert key.pubkey_hex not in {e["pubkey"] for e in keys_api(pair.b, "GET", "")["data"]}
    assert loaded(pair.b) == loaded(pair.a) == before - 1

    exported = answer["slashing_protection"]["data"]
    assert [entry["pubkey"] for entry in exported] == [key.pubkey_hex]
    targets = [int(a["target_epoch"]) for a in exported[0]["signed_attestations"]]
    assert targets == [target]
    pair.done.append("delete")
