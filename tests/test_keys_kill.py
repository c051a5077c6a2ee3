"""Killing the signer during key imports leaves every key absent or complete and decryptable.

A real signer process (vault in kms_only mode on a SQLite state file, local file KMS, the
encrypted ``key_sources.sqlite`` store) receives import requests of 50 raw keys each, back to
back, from a client thread, and is SIGKILLed at random moments (several rounds, each at a
different delay). After each kill it is restarted (kms_only unseals by itself) and:

- the key store file passes ``PRAGMA integrity_check``;
- every request's batch is in the store entirely or not at all (one transaction per request),
  every key the client got ``imported`` for is stored, and nothing else is;
- the restarted signer opened every stored key: zero load failures (``/healthcheck``, the
  ``containment_key_load_failures_total`` metric, the log), ``loaded`` equals the stored count,
  every stored key is served by ``publicKeys``, and acknowledged keys sign;
- at the end, a process that is no signer opens the vault on the same files and decrypts every
  stored record with the master key (``SQLiteKeySource.load``: no errors).

Two more tests kill exactly at the crash points ``keys_import:before_commit`` and
``keys_import:after_commit`` (``CHAMBER_TEST_KILL_AT``, :mod:`chamber.vault.faults`) around the
store insert of :meth:`chamber.keys.manager.KeyManager.import_keys`: before, the batch is absent;
after, it is complete and signs after the restart although the client never got an answer.
"""

from __future__ import annotations

import http.client
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chamber.crypto.bls import BlspyBackend
from chamber.crypto.kdf import Argon2Params
from chamber.keys.sqlite_store import SQLiteKeySource
from chamber.vault.credentials import PassphraseCredential
from chamber.vault.kms import KmsSet
from chamber.vault.local_kms import LocalKms
from chamber.vault.service import Vault, VaultOptions
from chamber.vault.sqlite_state import SQLiteStateBackend
from tests import bodies
from tests.harness import CURVE_ORDER, Client
from tests.vault_support import ARGON2, OPS_TOKEN, SIGNING_TOKEN, Chamber

BATCH = 50
#: Seconds from the start of the import load to the SIGKILL, one round each (plus jitter).
KILL_DELAYS = (0.1, 0.35, 0.6, 0.9, 1.3)
BLS = BlspyBackend()
IMPORT_PATH = "/api/v1/chamber/keys/import"


def fresh_secret() -> bytes:
    return (secrets.randbelow(CURVE_ORDER - 1) + 1).to_bytes(32, "big")


def pubkey_of(secret: bytes) -> str:
    return "0x" + bytes(BLS.public_key(BLS.secret_key(secret))).hex()


@dataclass
class Batch:
    """One import request: its keys and, if the client got one, the answer."""

    pubkeys: list[str]
    answer: list[dict[str, Any]] | None = None


@dataclass
class KillLab:
    chamber: Chamber
    batches: list[Batch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def keys_db(self) -> Path:
        return self.chamber.root / "keys.sqlite"

    def acknowledged(self) -> set[str]:
        return {
            entry["pubkey"]
            for batch in self.batches
            if batch.answer is not None
            for entry in batch.answer
            if entry["status"] == "imported"
        }

    def stored(self) -> dict[str, str]:
        """pubkey -> status of every row of the key store file (read-only)."""
        conn = sqlite3.connect(f"file:{self.keys_db}?mode=ro", uri=True)
        try:
            return {
                "0x" + bytes(pubkey).hex(): status
                for pubkey, status in conn.execute("SELECT pubkey, status FROM validator_keys")
            }
        finally:
            conn.close()

    def integrity(self) -> list[str]:
        conn = sqlite3.connect(f"file:{self.keys_db}?mode=ro", uri=True)
        try:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()

    def import_batch(self, client: Client, batch_secrets: list[bytes]) -> Batch:
        batch = Batch([pubkey_of(s) for s in batch_secrets])
        self.batches.append(batch)
        body = {"raw_keys": [{"secret": "0x" + s.hex()} for s in batch_secrets]}
        response = client.request("POST", IMPORT_PATH, body)
        assert response.status == 200, response.body
        batch.answer = response.json()["data"]
        assert batch.answer is not None
        assert [e["status"] for e in batch.answer] == ["imported"] * len(batch_secrets)
        assert [e["pubkey"] for e in batch.answer] == batch.pubkeys
        return batch

    def kill(self, expect_dead: bool = False) -> None:
        """SIGKILL the server process (or, with ``expect_dead``, wait for it to have killed
        itself) and keep its log."""
        signer = self.chamber.signer
        assert signer is not None
        if expect_dead:
            code = signer.proc.wait(30)
        else:
            signer.proc.kill()
            code = signer.proc.wait(30)
        assert code == -9, f"exit {code}:\n{signer.output()}"
        signer._reader.join(5)
        if signer.proc.stdout is not None:
            signer.proc.stdout.close()
        self.chamber._stopped_logs.append(signer.output())
        self.chamber.signer = None

    def start(self) -> None:
        self.chamber.start()
        self.chamber.wait_state("unsealed", timeout=30)

    def check_after_restart(self) -> dict[str, str]:
        """Everything the module documentation promises after a restart; the stored rows."""
        assert self.integrity() == ["ok"]
        stored = self.stored()
        assert set(stored.values()) <= {"active"}
        for index, batch in enumerate(self.batches):
            present = [pubkey in stored for pubkey in batch.pubkeys]
            assert all(present) or not any(present), (
                f"request {index}: {sum(present)} of its {len(present)} keys are stored"
            )
            if batch.answer is not None:
                assert all(present), f"request {index} was answered 'imported' but is not stored"
        sent = {pubkey for batch in self.batches for pubkey in batch.pubkeys}
        assert set(stored) <= sent
        assert self.acknowledged() <= set(stored)

        chamber = self.chamber
        assert chamber.status()["keys"] == {"loaded": len(stored)}
        health = Client(chamber.url, token=None).request("GET", "/healthcheck").json()
        keys_check = next(c for c in health["checks"] if c["id"] == "keys")
        assert keys_check["data"] == {"loaded": len(stored), "failed": 0}, health
        failures = [
            line
            for line in chamber.metrics().splitlines()
            if line.startswith("containment_key_load_failures_total")
        ]
        assert all(line.rstrip().endswith(" 0.0") for line in failures), failures
        assert chamber.signer is not None
        failed_lines = [
            line for line in chamber.signer.lines if "failed to load" in line or "Traceback" in line
        ]
        assert not failed_lines, failed_lines
        response = chamber.http("GET", "/api/v1/eth2/publicKeys", token=SIGNING_TOKEN)
        assert response.status == 200
        assert set(stored) <= set(response.json())
        return stored

    def signs(self, pubkeys: list[str]) -> None:
        for pubkey in pubkeys:
            response = self.chamber.sign(pubkey, bodies.randao())
            assert response.status == 200, (pubkey, response.body)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillLab]:
    chamber = Chamber(tmp_path_factory.mktemp("keys-kill"))
    kill_lab = KillLab(chamber)
    chamber.start()
    try:
        token = chamber.wait_setup_token()
        answer = chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            "local:keys-kill-a,local:keys-kill-b",
            "--kms-threshold",
            "1",
            env={"SETUP_TOKEN": token},
        ).json()
        assert answer["status"] == "unsealed", answer
        yield kill_lab
    finally:
        chamber.env.pop("CHAMBER_TEST_KILL_AT", None)
        if chamber.signer is not None:
            chamber.stop()
        for note in kill_lab.notes:
            print(f"\n[keys kill] {note}")


def offline_open_all(lab: KillLab) -> int:
    """Open the vault from the files alone (kms_only) in this process, which is no signer,
    and decrypt every stored record with the master key: the count opened."""
    root = lab.chamber.root
    vault = Vault(
        SQLiteStateBackend(root / "state.sqlite"),
        KmsSet({"local": LocalKms}, {"local": {"directory": str(root / "kms")}}),
        {"passphrase": PassphraseCredential},
        options=VaultOptions(argon2=Argon2Params(**ARGON2), kms_retry_max_seconds=0.2),
    )
    source = SQLiteKeySource.from_config({"path": str(lab.keys_db)}, BLS)
    try:
        vault.boot()
        master = vault.master_key
        assert master is not None, vault.state
        result = source.load(master.material)
        assert result.errors == [], result.errors[:3]
        assert {key.pubkey_hex for key in result.keys} == set(lab.stored())
        return len(result.keys)
    finally:
        vault.stop()
        vault.store.close()
        source.close()


# ---------------------------------------------------------------------- crash points


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_kill_at_a_crash_point(lab: KillLab, point: str) -> None:
    """Killed at ``keys_import:<point>`` during a 50-key import (the client gets no answer):
    after the restart the batch is absent (before) or complete, loaded and signing (after)."""
    chamber = lab.chamber
    if chamber.signer is not None:
        chamber.stop()
    chamber.env["CHAMBER_TEST_KILL_AT"] = f"keys_import:{point}"
    try:
        lab.start()
        batch_secrets = [fresh_secret() for _ in range(BATCH)]
        batch = Batch([pubkey_of(s) for s in batch_secrets])
        lab.batches.append(batch)
        client = Client(chamber.url, token=OPS_TOKEN)
        with pytest.raises(OSError):
            client.request(
                "POST",
                IMPORT_PATH,
                {"raw_keys": [{"secret": "0x" + s.hex()} for s in batch_secrets]},
            )
        lab.kill(expect_dead=True)
    finally:
        chamber.env.pop("CHAMBER_TEST_KILL_AT", None)
    lab.start()
    stored = lab.check_after_restart()
    if point == "before_commit":
        assert not set(batch.pubkeys) & set(stored)
        assert chamber.sign(batch.pubkeys[0], bodies.randao()).status == 404
    else:
        assert set(batch.pubkeys) <= set(stored)
        lab.signs(batch.pubkeys)
    # The signer imports normally after the crash; the same keys again are duplicates or new.
    client = Client(chamber.url, token=OPS_TOKEN)
    lab.import_batch(client, [fresh_secret() for _ in range(3)])


# ---------------------------------------------------------------------- random kills


def test_random_kills_during_imports(lab: KillLab) -> None:
    rng = random.Random(secrets.randbits(32))
    chamber = lab.chamber
    if chamber.signer is None:
        lab.start()
    in_flight_kills = 0
    durations: list[float] = []
    for round_number, delay in enumerate(KILL_DELAYS):
        delay += rng.uniform(0, 0.1)
        client = Client(chamber.url, token=OPS_TOKEN)
        stop = threading.Event()
        unanswered: list[Batch] = []

        def load(
            client: Client = client,
            stop: threading.Event = stop,
            unanswered: list[Batch] = unanswered,
        ) -> None:
            while not stop.is_set():
                batch_secrets = [fresh_secret() for _ in range(BATCH)]
                batch = Batch([pubkey_of(s) for s in batch_secrets])
                lab.batches.append(batch)
                body = {"raw_keys": [{"secret": "0x" + s.hex()} for s in batch_secrets]}
                started = time.monotonic()
                try:
                    response = client.request("POST", IMPORT_PATH, body)
                except (OSError, http.client.HTTPException):
                    # Killed before or while answering (a cut-short answer is IncompleteRead).
                    unanswered.append(batch)
                    return
                durations.append(time.monotonic() - started)
                assert response.status == 200, response.body
                batch.answer = response.json()["data"]
                statuses = [entry["status"] for entry in batch.answer or []]
                assert statuses == ["imported"] * BATCH, statuses

        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(delay)
        lab.kill()
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        in_flight_kills += len(unanswered)
        stored_before = len(lab.stored())
        lab.start()
        stored = lab.check_after_restart()
        assert len(stored) == stored_before
        # Acknowledged keys sign: the last acknowledged batch and a sample of all the others.
        acknowledged = sorted(lab.acknowledged())
        last = next((b for b in reversed(lab.batches) if b.answer is not None), None)
        sample = rng.sample(acknowledged, min(10, len(acknowledged)))
        lab.signs(sorted(set(sample) | set(last.pubkeys if last else [])))
        in_store = [b for b in unanswered if b.pubkeys[0] in stored]
        lab.notes.append(
            f"round {round_number}: killed after {delay:.2f} s; {len(stored)} keys stored, "
            f"{len(unanswered)} request(s) unanswered ({len(in_store)} of them committed)"
        )
    lab.notes.append(
        f"{len(durations)} answered 50-key imports, median "
        f"{sorted(durations)[len(durations) // 2] * 1000:.0f} ms; {in_flight_kills} kills "
        "landed while a request was in flight"
    )
    assert in_flight_kills >= 1, "no kill landed during a request"
    opened = offline_open_all(lab)
    lab.notes.append(f"offline: all {opened} stored records decrypt with the master key")
