"""Two replicas follow each other's key changes without a restart (the background key refresh).

Replica A and replica B are two ``containment-chamber server`` processes sharing one SQLite vault
state file, one encrypted SQLite key store file (``key_sources.sqlite``) and one local KMS
directory (kms_only mode: a start unseals by itself); each has its own port and slashing
database. ``chamber.keys.refresh_interval_seconds`` is left at its default (1 s).

The scenarios run in file order on one pair, each starting where the previous one left off. A
change is made through one replica's chamber key API (or, in one scenario, by a process that is
no signer at all, writing the shared store file directly); the other replica is polled every
20 ms from the moment that answer arrived until it shows the change, which must happen within
:data:`FOLLOW_LIMIT`. Removals are then watched for :data:`WATCH_AFTER` more seconds: the
replica must never sign with the key again. The latencies are printed (``pytest -s``) and
recorded as test properties.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from chamber.config import ChamberKeysConfig
from chamber.crypto.bls import BlspyBackend
from chamber.crypto.kdf import Argon2Params
from chamber.keys.sqlite_store import SQLiteKeySource
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.local_kms import LocalKms
from chamber.vault.service import Vault, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests.harness import make_keys
from tests.replica_support import (
    FOLLOW_LIMIT,
    KEYS_API,
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
from tests.vault_support import ARGON2, OPS_TOKEN, Chamber, vault_config

KMS_KEYS = ("local:keys-replicas-a", "local:keys-replicas-b")
KEYS = make_keys(6, seed="keys-replicas")


@dataclass
class Pair:
    a: Chamber
    b: Chamber
    shared: Path
    latencies: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def require(self, step: str) -> None:
        if step not in self.done:
            pytest.fail(f"scenario {step!r} did not complete; the scenarios run in file order")


def replica(root: Path, shared: Path) -> Chamber:
    chamber = Chamber(root)
    config = vault_config(root)
    config["signer_state"] = {"backend": "sqlite", "path": str(shared / "state.sqlite")}
    config["key_sources"] = {"sqlite": {"path": str(shared / "keys.sqlite")}}
    config["kms"] = {"local": {"directory": str(shared / "kms")}}
    config["chamber"] = {"keys": {"generate": {"enabled": True}}}
    config["auth_policies"]["ops-team"]["allowed_scopes"] += [
        "chamber_keys_list",
        "chamber_keys_generate",
        "chamber_keys_delete",
    ]
    chamber.config_path.write_text(yaml.safe_dump(config))
    chamber.kms_dir = shared / "kms"
    return chamber


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    # The refresh interval is left at its default.
    assert ChamberKeysConfig().refresh_interval_seconds == 1.0
    shared = tmp_path_factory.mktemp("keys-replicas-shared")
    replicas = Pair(
        a=replica(tmp_path_factory.mktemp("replica-a"), shared),
        b=replica(tmp_path_factory.mktemp("replica-b"), shared),
        shared=shared,
    )
    replicas.a.start()
    replicas.b.start()
    try:
        token = replicas.a.wait_setup_token()
        replicas.b.wait_setup_token()
        answer = replicas.a.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            ",".join(KMS_KEYS),
            "--kms-threshold",
            "1",
            env={"SETUP_TOKEN": token},
        ).json()
        assert answer == {"status": "unsealed", "validators_loaded": 0}
        replicas.b.wait_state("unsealed", timeout=10)
        yield replicas
    finally:
        for chamber in (replicas.a, replicas.b):
            chamber.stop()
        print("\n[keys replicas] follow latencies (from the answer of the change):")
        for label, seconds in replicas.latencies.items():
            print(f"  {label}: {seconds:.3f} s")


# ---------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------- the scenarios


def test_import_through_a_signs_on_b(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    key = KEYS[0]
    assert status_of(pair.b, key.pubkey_hex) == 404
    import_raw(pair.a, key)
    assert status_of(pair.a, key.pubkey_hex) == 200  # signable where imported, at once
    follow(pair, "import (A) -> B signs", signs(pair.b, key.pubkey_hex), record_property)
    pair.done.append("import")


def test_generate_through_a_signs_on_b(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    answer = keys_api(pair.a, "POST", "/generate", {"count": 2})
    generated = [entry["pubkey"] for entry in answer["data"]]
    assert [e["status"] for e in answer["data"]] == ["generated", "generated"], answer
    started = time.monotonic()
    follow(
        pair,
        "generate (A) -> B signs",
        lambda: all(signs(pair.b, pubkey)() for pubkey in generated),
        record_property,
    )
    assert time.monotonic() - started < FOLLOW_LIMIT
    assert loaded(pair.b) == loaded(pair.a) == 3
    pair.done.append("generate")


def test_deactivate_through_a_stops_b_for_good(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    pair.require("import")
    key = KEYS[0]
    assert status_of(pair.b, key.pubkey_hex) == 200
    set_status(pair.a, key.pubkey_hex, "inactive", "deactivated")
    assert status_of(pair.a, key.pubkey_hex) == 404  # unsignable before A answered
    follow(pair, "deactivate (A) -> B 404", refuses(pair.b, key.pubkey_hex), record_property)
    never_signs_again(pair.b, key.pubkey_hex)
    listed = keys_api(pair.b, "GET", "?status=inactive")["data"]
    assert [(e["pubkey"], e["loaded"]) for e in listed] == [(key.pubkey_hex, False)]
    pair.done.append("deactivate")


def test_reactivate_through_a_signs_on_b_again(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    pair.require("deactivate")
    key = KEYS[0]
    set_status(pair.a, key.pubkey_hex, "active", "activated")
    assert status_of(pair.a, key.pubkey_hex) == 200
    follow(pair, "reactivate (A) -> B signs", signs(pair.b, key.pubkey_hex), record_property)
    pair.done.append("reactivate")


def test_delete_through_a_removes_it_from_b(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    pair.require("reactivate")
    key = KEYS[0]
    answer = keys_api(pair.a, "DELETE", "", {"pubkeys": [key.pubkey_hex]})
    assert answer["data"] == [{"status": "deleted", "pubkey": key.pubkey_hex}], answer
    assert status_of(pair.a, key.pubkey_hex) == 404
    follow(pair, "delete (A) -> B 404", refuses(pair.b, key.pubkey_hex), record_property)
    never_signs_again(pair.b, key.pubkey_hex)
    assert key.pubkey_hex not in {e["pubkey"] for e in keys_api(pair.b, "GET", "")["data"]}
    pair.done.append("delete")


def test_the_other_direction(pair: Pair, record_property: Callable[[str, object], None]) -> None:
    """Replicas are peers: a key imported and deactivated through B is followed by A."""
    pair.require("delete")
    key = KEYS[1]
    import_raw(pair.b, key)
    follow(pair, "import (B) -> A signs", signs(pair.a, key.pubkey_hex), record_property)
    set_status(pair.b, key.pubkey_hex, "inactive", "deactivated")
    follow(pair, "deactivate (B) -> A 404", refuses(pair.a, key.pubkey_hex), record_property)
    set_status(pair.b, key.pubkey_hex, "active", "activated")
    follow(pair, "reactivate (B) -> A signs", signs(pair.a, key.pubkey_hex), record_property)
    pair.done.append("other_direction")


def test_a_writer_that_is_no_signer_is_followed_by_both(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    """A process that is no signer (this test process, as an offline tool would) opens the
    vault on the shared files (kms_only: the KMS layer alone gives the master key), seals a
    new key into the key store file and later deactivates it there: both replicas follow."""
    pair.require("other_direction")
    key = KEYS[2]
    vault = Vault(
        SQLiteStateBackend(pair.shared / "state.sqlite"),
        KmsSet({"local": LocalKms}, {"local": {"directory": str(pair.shared / "kms")}}),
        {"passphrase": PassphraseCredential},
        options=VaultOptions(argon2=Argon2Params(**ARGON2), kms_retry_max_seconds=0.2),
    )
    source = SQLiteKeySource.from_config({"path": str(pair.shared / "keys.sqlite")}, BlspyBackend())
    try:
        vault.boot()
        assert vault.state == "unsealed", vault.state
        master = vault.master_key
        assert master is not None
        stored, written = source.import_secret(master.material, key.secret.to_bytes(32, "big"))
        assert written and stored.pubkey_hex == key.pubkey_hex
        started = time.monotonic()
        follow(pair, "offline import -> A signs", signs(pair.a, key.pubkey_hex), record_property)
        follow(pair, "offline import -> B signs", signs(pair.b, key.pubkey_hex), record_property)
        record_property("offline import -> both", round(time.monotonic() - started, 3))

        assert source.store.set_status(key.pubkey, "inactive")
        follow(
            pair, "offline deactivate -> A 404", refuses(pair.a, key.pubkey_hex), record_property
        )
        follow(
            pair, "offline deactivate -> B 404", refuses(pair.b, key.pubkey_hex), record_property
        )
        assert source.store.delete(key.pubkey)
    finally:
        vault.stop()
        vault.store.close()
        source.close()
    never_signs_again(pair.a, key.pubkey_hex)
    pair.done.append("offline")


def test_seal_through_a_seals_b_and_the_refresh_resumes_after_restart(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    """``operator seal`` through A: B stops signing too (the encrypted keys are dropped, the
    refresh pauses). Restarted (kms_only unseals at start), both load the store again and the
    refresh resumes: a key imported through A after the restart signs on B without another."""
    pair.require("offline")
    a, b = pair.a, pair.b
    key = KEYS[1]
    assert status_of(b, key.pubkey_hex) == 200
    assert a.operator("seal", "--auth-token", "env:CC_AUTH_TOKEN").json() == {"status": "sealed"}
    follow(pair, "seal (A) -> B 503", lambda: status_of(b, key.pubkey_hex) == 503, record_property)
    assert b.status()["keys"] is None
    # While sealed, a change to the store is impossible through either replica.
    response = b.http(
        "POST", KEYS_API + "/import", {"raw_keys": [{"secret": KEYS[3].secret_hex}]}, OPS_TOKEN
    )
    assert response.status == 503, response.body

    for chamber in (a, b):
        chamber.restart()
        chamber.wait_state("unsealed", timeout=30)
    assert loaded(a) == loaded(b) == 3  # KEYS[1] and the two generated keys
    assert status_of(b, key.pubkey_hex) == 200

    fresh = KEYS[3]
    import_raw(a, fresh)
    follow(
        pair, "after restart: import (A) -> B signs", signs(b, fresh.pubkey_hex), record_property
    )
    set_status(a, fresh.pubkey_hex, "inactive", "deactivated")
    follow(
        pair,
        "after restart: deactivate (A) -> B 404",
        refuses(b, fresh.pubkey_hex),
        record_property,
    )
    never_signs_again(b, fresh.pubkey_hex)
