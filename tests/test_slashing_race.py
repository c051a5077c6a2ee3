"""Two real signer processes sharing one slashing database, under concurrent conflicting load.

For each shared backend (PostgreSQL, and DynamoDB on a moto server over HTTP), two
``containment-chamber server`` processes use one database, and 2,000 signing requests for 20 keys
go to both at once from a thread pool. The requests come in pairs sent back to back to *different*
servers: blocks at one slot with different roots, double votes (other root, other source),
attestations that surround and are surrounded, and identical block re-signs. Afterwards, among the
signatures the clients received there must be no slashable pair; every non-200 answer must be a
412 (no 5xx, no 503); the identical re-signs must all have succeeded; and every signature
received must have its record in the database.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamber.eth.networks import MAINNET
from chamber.eth.requests import prepare_signing
from tests import bodies, harness
from tests.harness import Client, SubprocessSigner, base_config, make_keys, write_raw_keys
from tests.test_slashing_model import (
    POSTGRES_URL,
    drop_schema,
    moto_server,
    new_schema,
    postgres_reachable,
)

KEYS = make_keys(20, seed="slashing-race")
ADMIN = "slashing-race-admin-token-0123"
WORKERS = 48
GVR = bytes.fromhex(bodies.MAINNET_GVR[2:])


@dataclass(frozen=True)
class Req:
    key: int
    kind: str  # "block" or "attestation"
    source: int  # the slot, for a block
    target: int  # the slot again, for a block
    root: str  # body_root / beacon_block_root: equal roots are equal signing roots
    server: int

    def body(self) -> dict[str, Any]:
        if self.kind == "block":
            return bodies.block_v2(slot=self.source, body_root=self.root)
        return bodies.attestation(self.source, self.target, root=self.root)

    def signing_root(self) -> str:
        body = json.dumps(self.body()).encode()
        return "0x" + prepare_signing(body, MAINNET).signing_root.hex()

    def same_message(self, other: Req) -> bool:
        return (self.key, self.kind, self.source, self.target, self.root) == (
            other.key,
            other.kind,
            other.source,
            other.target,
            other.root,
        )


def _root(n: int) -> str:
    return "0x" + (bytes([n]) * 32).hex()


def plan(seed: int = 3076) -> list[tuple[Req, Req]]:
    """100 requests (50 pairs) per key; the two members of a pair go to different servers."""
    rng = random.Random(seed)
    pairs: list[tuple[Req, Req]] = []

    def pair(key: int, kind: str, a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
        """(source, target, root) of two requests, for two different servers."""
        first = rng.randrange(2)
        pairs.append(
            (
                Req(key, kind, a[0], a[1], _root(a[2]), first),
                Req(key, kind, b[0], b[1], _root(b[2]), 1 - first),
            )
        )

    for key in range(len(KEYS)):
        slots = rng.sample(range(10_000, 10_200), 16)
        for slot in slots[:12]:  # double proposals
            pair(key, "block", (slot, slot, 1), (slot, slot, 2))
        for slot in slots[12:]:  # identical re-signs: both must be signed
            pair(key, "block", (slot, slot, 3), (slot, slot, 3))
        for _ in range(34):
            target = rng.randrange(1_000, 1_040)
            source = target - rng.randrange(1, 5)
            other = rng.choice(["root", "source", "surrounding", "surrounded"])
            if other == "root":
                b = (source, target, 2)
            elif other == "source":
                b = (source - 1, target, 1)
            elif other == "surrounding":
                b = (source - 1, target + 1, 1)
            else:
                b = (source + 1, target - 1, 1) if target - source >= 2 else (source, target, 2)
            pair(key, "attestation", (source, target, 1), b)
    rng.shuffle(pairs)  # the two members of a pair stay adjacent: they are sent concurrently
    assert len(pairs) * 2 == 2_000
    return pairs


def slashable_pairs(signed: list[Req]) -> list[tuple[Req, Req]]:
    """Every slashable pair among signed requests (blocks, double votes, surrounds)."""
    found: list[tuple[Req, Req]] = []
    for key in {r.key for r in signed}:
        blocks = [r for r in signed if r.key == key and r.kind == "block"]
        atts = [r for r in signed if r.key == key and r.kind == "attestation"]
        by_slot: dict[int, Req] = {}
        for b in blocks:
            seen = by_slot.setdefault(b.source, b)
            if seen.root != b.root:
                found.append((seen, b))
        for i, a in enumerate(atts):
            for b in atts[i + 1 :]:
                double = a.target == b.target and (a.source, a.root) != (b.source, b.root)
                surround = (a.source < b.source and a.target > b.target) or (
                    b.source < a.source and b.target > a.target
                )
                if double or surround:
                    found.append((a, b))
    return found


# ------------------------------------------------------------------------------- backends


@contextmanager
def shared_database(backend: str) -> Iterator[dict[str, Any]]:
    """The ``anti_slashing`` section of a fresh shared database (already migrated/created)."""
    if backend == "postgres":
        pytest.importorskip("chamber_postgres", reason="plugins/chamber-postgres is not installed")
        postgres_reachable()
        from chamber_postgres.backend import PostgresSlashingBackend

        schema = new_schema()
        section = {"backend": "postgres", "url": POSTGRES_URL, "schema": schema, "pool_size": 8}
        settings = {k: v for k, v in section.items() if k != "backend"}
        PostgresSlashingBackend.from_config(settings, GVR).close()  # migrate once, up front
        try:
            yield section
        finally:
            drop_schema(schema)
    else:
        pytest.importorskip("chamber_dynamodb", reason="plugins/chamber-dynamodb is not installed")
        pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")
        from chamber_dynamodb.slashing import DynamoDBSlashingBackend

        with moto_server() as endpoint:
            section = {
                "backend": "dynamodb",
                "table": "slashing-race",
                "region": "us-east-1",
                "endpoint_url": endpoint,
            }
            settings = {k: v for k, v in section.items() if k != "backend"}
            DynamoDBSlashingBackend.from_config({**settings, "create_table": True}, GVR).close()
            yield section


def signer_config(tmp: Path, section: dict[str, Any], keys: list[harness.TestKey]) -> Path:
    keys_dir = tmp / "keys"
    if not keys_dir.exists():
        write_raw_keys(keys_dir, keys)
    config = base_config(
        keys_dir,
        anti_slashing=section,
        auth_policies={"admin": {"token": ADMIN, "allowed_scopes": ["slashing_export"]}},
    )
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def signers(config: Path, count: int) -> Iterator[list[SubprocessSigner]]:
    with ExitStack() as stack:
        running = []
        for _ in range(count):
            signer = SubprocessSigner(config)
            stack.callback(signer.stop)
            running.append(signer)
        for signer in running:
            signer.wait_ready()
        yield running


def exported(client: Client) -> set[tuple[Any, ...]]:
    """The database's records as (pubkey hex, "block", slot, root) / (.., source, target, root)."""
    resp = client.request("GET", "/api/v1/slashing/export", token=ADMIN)
    assert resp.status == 200, resp.body
    out: set[tuple[Any, ...]] = set()
    for entry in resp.json()["data"]:
        for b in entry["signed_blocks"]:
            out.add((entry["pubkey"], "block", int(b["slot"]), b.get("signing_root")))
        for a in entry["signed_attestations"]:
            out.add(
                (
                    entry["pubkey"],
                    "attestation",
                    int(a["source_epoch"]),
                    int(a["target_epoch"]),
                    a.get("signing_root"),
                )
            )
    return out


def recorded(req: Req, records: set[tuple[Any, ...]]) -> bool:
    pubkey = KEYS[req.key].pubkey_hex
    if req.kind == "block":
        return (pubkey, "block", req.source, req.signing_root()) in records
    return (pubkey, "attestation", req.source, req.target, req.signing_root()) in records


# ------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("backend", ["postgres", "dynamodb"])
def test_two_signers_one_database_never_sign_a_slashable_pair(backend: str, tmp_path: Path) -> None:
    pairs = plan()
    with shared_database(backend) as section:
        config = signer_config(tmp_path, section, KEYS)
        with signers(config, 2) as running:
            clients = [Client(s.wait_listening()) for s in running]
            results: list[tuple[Req, int]] = []
            lock = threading.Lock()

            def send(req: Req) -> None:
                resp = clients[req.server].sign(KEYS[req.key].pubkey_hex, req.body())
                with lock:
                    results.append((req, resp.status))
                if resp.status not in (200, 412):
                    raise AssertionError(f"{req}: HTTP {resp.status} {resp.body[:300]!r}")

            with ThreadPoolExecutor(WORKERS) as pool:
                futures = [pool.submit(send, req) for pair in pairs for req in pair]
                errors = [f.exception() for f in futures if f.exception() is not None]
            assert not errors, f"{len(errors)} requests failed; first: {errors[0]}"

            statuses = Counter(status for _, status in results)
            signed = [req for req, status in results if status == 200]
            assert set(statuses) <= {200, 412}, statuses
            assert statuses[200] >= 600 and statuses[412] >= 300, statuses
            violations = slashable_pairs(signed)
            assert not violations, f"{len(violations)} slashable pairs signed: {violations[:5]}"
            # Identical re-signs are never refused: both members of those pairs were signed.
            identical = [p for p in pairs if p[0].same_message(p[1])]
            assert len(identical) == 4 * len(KEYS)
            refused = {req for req, status in results if status != 200}
            assert not [p for p in identical if p[0] in refused or p[1] in refused]
            # Every signature a client received has its record in the shared database, and the
            # database holds nothing else.
            records = exported(clients[0])
            missing = [req for req in set(signed) if not recorded(req, records)]
            assert not missing, f"{len(missing)} signatures without a record: {missing[:5]}"
            assert len(records) == len({(r.key, r.kind, r.source, r.target) for r in signed})
        for signer in running:
            assert signer.proc.returncode == 0, signer.output()[-2000:]
