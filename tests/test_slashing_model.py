"""Every slashing backend against a naive in-memory model of the EIP-3076 rules.

The model below is written from the rules' prose (the contract in ``chamber/slashing/__init__.py``
and the model described in ``chamber/slashing/rules.py``), not from that code: full scans over
plain lists, pairwise checks, no fast paths. A Hypothesis state machine signs blocks and
attestations, dry-runs them, imports interchange files (often slashable), re-imports its own
export, prunes, sets watermarks and reopens the database, with values from small ranges so that
double votes, surrounds, identical re-signs and floors happen all the time. After every step the
backend's decision must equal the model's, and its export must equal the model's history.

Validators and signing roots are small integers in the model (validator ``i`` is the public key
``bytes([0xA0 + i]) * 48``, root ``r`` is ``bytes([r]) * 32``, ``None`` an unknown root), so a
failing example prints readably.

Runs against SQLite always, and against the PostgreSQL and DynamoDB plugins when installed
(PostgreSQL from ``CHAMBER_TEST_POSTGRES_URL``, a fresh schema per example; DynamoDB on a moto
server over HTTP started here, the table emptied between examples). Failing examples land in
Hypothesis's example database and are replayed first on the next run, for every backend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chamber.errors import BadRequest, SlashingRefused
from chamber.slashing import SlashingBackend
from chamber.slashing.sqlite import SQLiteSlashingBackend

GVR = bytes.fromhex("4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95")

Root = int | None  # 1..3, None = unknown (imported without a signing root)
Block = tuple[int, Root]  # (slot, root)
Attestation = tuple[int, int, Root]  # (source, target, root)
Entry = tuple[int, list[Block], list[Attestation]]  # one interchange "data" item


def pubkey_bytes(validator: int) -> bytes:
    return bytes([0xA0 + validator]) * 48


def root_bytes(root: int) -> bytes:
    return bytes([root]) * 32


validators = st.integers(0, 2)
slots = st.integers(0, 12)
epochs = st.integers(0, 8)
#: Target - source: mostly a normal vote, sometimes source after target (refused / imported).
spans = st.integers(-1, 5)
roots = st.integers(1, 3)
maybe_roots = st.one_of(st.none(), roots)
imported_attestations = st.builds(
    lambda source, span, root: (source, max(source + span, 0), root), epochs, spans, maybe_roots
)

# ------------------------------------------------------------------------------- the model


def _highest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _lowest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def surrounds(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] < inner[0] and outer[1] > inner[1]


def conflicting_roots(a: Root, b: Root) -> bool:
    return a is not None and b is not None and a != b


@dataclass
class ModelValidator:
    blocks: list[Block] = field(default_factory=list)
    attestations: list[Attestation] = field(default_factory=list)
    # Import floors: the minimum over all imports. Hard floors: prune / set_watermark, only raised.
    import_block: int | None = None
    import_source: int | None = None
    import_target: int | None = None
    hard_block: int | None = None
    hard_source: int | None = None
    hard_target: int | None = None


class Model:
    """Decisions return "new" (record written), "repeat" (identical re-sign) or "refused"."""

    def __init__(self) -> None:
        self.validators: dict[int, ModelValidator] = {}

    def v(self, validator: int) -> ModelValidator:
        return self.validators.setdefault(validator, ModelValidator())

    def block(self, validator: int, slot: int, root: int, record: bool) -> str:
        v = self.v(validator)
        same = [r for s, r in v.blocks if s == slot]
        if same:
            return "repeat" if same[0] == root else "refused"
        floor = _highest(v.import_block, v.hard_block)
        if floor is not None and slot < floor:
            return "refused"
        if record:
            v.blocks.append((slot, root))
        return "new"

    def attestation(self, validator: int, source: int, target: int, root: int, record: bool) -> str:
        v = self.v(validator)
        if source > target:
            return "refused"
        same = [(s, r) for s, t, r in v.attestations if t == target]
        if same:
            return "repeat" if same[0] == (source, root) else "refused"
        source_floor = _highest(v.import_source, v.hard_source)
        target_floor = _highest(v.import_target, v.hard_target)
        if source_floor is not None and source < source_floor:
            return "refused"
        if target_floor is not None and target < target_floor:
            return "refused"
        for s, t, _ in v.attestations:
            if surrounds((s, t), (source, target)) or surrounds((source, target), (s, t)):
                return "refused"
        if record:
            v.attestations.append((source, target, root))
        return "new"

    def import_(self, entries: list[Entry]) -> bool:
        """All or nothing: False (and no change) when anything is slashable."""
        grouped: dict[int, tuple[list[Block], list[Attestation]]] = {}
        for validator, blocks, atts in entries:
            b, a = grouped.setdefault(validator, ([], []))
            b.extend(blocks)
            a.extend(atts)
        for validator, (blocks, atts) in grouped.items():
            v = self.validators.get(validator, ModelValidator())
            all_blocks = v.blocks + blocks
            for i, (s1, r1) in enumerate(all_blocks):
                for s2, r2 in all_blocks[i + 1 :]:
                    if s1 == s2 and conflicting_roots(r1, r2):
                        return False
            all_atts = v.attestations + atts
            for i, (s1, t1, r1) in enumerate(all_atts):
                for s2, t2, r2 in all_atts[i + 1 :]:
                    if t1 == t2 and (s1 != s2 or conflicting_roots(r1, r2)):
                        return False
                    if surrounds((s1, t1), (s2, t2)) or surrounds((s2, t2), (s1, t1)):
                        return False
        for validator, (blocks, atts) in grouped.items():
            v = self.v(validator)
            for slot, root in blocks:
                if not any(s == slot for s, _ in v.blocks):
                    v.blocks.append((slot, root))
                elif root is None:  # an unknown root wins: we cannot know what was signed
                    v.blocks = [(s, None if s == slot else r) for s, r in v.blocks]
            for source, target, root in atts:
                if not any(t == target for _, t, _ in v.attestations):
                    v.attestations.append((source, target, root))
                elif root is None:
                    v.attestations = [
                        (s, t, None if t == target else r) for s, t, r in v.attestations
                    ]
            if blocks:
                v.import_block = _lowest(v.import_block, *(s for s, _ in blocks))
            if atts:
                v.import_source = _lowest(v.import_source, *(s for s, _, _ in atts))
                v.import_target = _lowest(v.import_target, *(t for _, t, _ in atts))
        return True

    def prune(self, keep_epochs: int, slots_per_epoch: int) -> None:
        for v in self.validators.values():
            if v.blocks:
                cutoff = max(s for s, _ in v.blocks) - keep_epochs * slots_per_epoch
                kept = [(s, r) for s, r in v.blocks if s >= cutoff]
                if len(kept) < len(v.blocks):
                    v.hard_block = _highest(v.hard_block, cutoff)
                v.blocks = kept
            if v.attestations:
                cutoff = max(t for _, t, _ in v.attestations) - keep_epochs
                deleted = [a for a in v.attestations if a[1] < cutoff]
                if deleted:
                    v.hard_target = _highest(v.hard_target, cutoff)
                    v.hard_source = _highest(v.hard_source, *(s for s, _, _ in deleted))
                v.attestations = [a for a in v.attestations if a[1] >= cutoff]

    def set_watermark(
        self, validator: int, slot: int | None, source: int | None, target: int | None
    ) -> None:
        v = self.v(validator)
        if slot is not None:
            v.hard_block = _highest(v.hard_block, slot + 1)
        if source is not None:
            v.hard_source = _highest(v.hard_source, source)
        if target is not None:
            v.hard_target = _highest(v.hard_target, target + 1)

    def history(self) -> set[tuple[Any, ...]]:
        out: set[tuple[Any, ...]] = set()
        for validator, v in self.validators.items():
            out.update((validator, "block", s, r) for s, r in v.blocks)
            out.update((validator, "attestation", s, t, r) for s, t, r in v.attestations)
        return out

    def entries(self) -> list[Entry]:
        return [(i, list(v.blocks), list(v.attestations)) for i, v in self.validators.items()]


# ------------------------------------------------------------------------------- interchange


def exported_history(document: dict[str, Any]) -> set[tuple[Any, ...]]:
    """The backend's export in the model's terms."""

    def root(item: dict[str, str]) -> Root:
        value = item.get("signing_root")
        if value is None:
            return None
        raw = bytes.fromhex(value[2:])
        assert raw == root_bytes(raw[0]), value
        return raw[0]

    out: set[tuple[Any, ...]] = set()
    for entry in document["data"]:
        pubkey = bytes.fromhex(entry["pubkey"][2:])
        validator = pubkey[0] - 0xA0
        assert pubkey == pubkey_bytes(validator), entry["pubkey"]
        for b in entry.get("signed_blocks", []):
            out.add((validator, "block", int(b["slot"]), root(b)))
        for a in entry.get("signed_attestations", []):
            out.add(
                (validator, "attestation", int(a["source_epoch"]), int(a["target_epoch"]), root(a))
            )
    return out


def interchange(entries: list[Entry]) -> dict[str, Any]:
    def root(r: Root) -> dict[str, str]:
        return {} if r is None else {"signing_root": "0x" + root_bytes(r).hex()}

    return {
        "metadata": {
            "interchange_format_version": "5",
            "genesis_validators_root": "0x" + GVR.hex(),
        },
        "data": [
            {
                "pubkey": "0x" + pubkey_bytes(validator).hex(),
                "signed_blocks": [{"slot": str(s), **root(r)} for s, r in blocks],
                "signed_attestations": [
                    {"source_epoch": str(s), "target_epoch": str(t), **root(r)} for s, t, r in atts
                ],
            }
            for validator, blocks, atts in entries
        ],
    }


# ------------------------------------------------------------------------------- the machine


def _outcome(call: Callable[[], None]) -> str:
    try:
        call()
    except SlashingRefused:
        return "refused"
    return "signed"


class SlashingMachine(RuleBasedStateMachine):
    fixture: BackendFixture  # set by make_machine

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.reopens = 0
        self.fixture.reset()
        self.backend: SlashingBackend = self.fixture.open(GVR)

    def teardown(self) -> None:
        try:
            assert self.backend.integrity_check() == []
        finally:
            self.backend.close()

    # -- signing

    @rule(validator=validators, slot=slots, root=roots, dry=st.booleans())
    def sign_block(self, validator: int, slot: int, root: int, dry: bool) -> None:
        expected = self.model.block(validator, slot, root, record=not dry)
        pubkey, signing_root = pubkey_bytes(validator), root_bytes(root)
        if dry:
            got = _outcome(lambda: self.backend.check_block(pubkey, slot, signing_root))
        else:
            got = _outcome(lambda: self.backend.check_and_record_block(pubkey, slot, signing_root))
        event(f"block: {expected}")
        want = "refused" if expected == "refused" else "signed"
        assert got == want, f"block slot {slot} root {root} (dry={dry}): model says {expected}"

    @rule(validator=validators, src=epochs, span=spans, root=roots, dry=st.booleans())
    def sign_attestation(self, validator: int, src: int, span: int, root: int, dry: bool) -> None:
        self.attest(validator, src, max(src + span, 0), root, dry)

    def attest(self, validator: int, src: int, tgt: int, root: int, dry: bool) -> None:
        expected = self.model.attestation(validator, src, tgt, root, record=not dry)
        pubkey, signing_root = pubkey_bytes(validator), root_bytes(root)
        if dry:
            got = _outcome(lambda: self.backend.check_attestation(pubkey, src, tgt, signing_root))
        else:
            got = _outcome(
                lambda: self.backend.check_and_record_attestation(pubkey, src, tgt, signing_root)
            )
        event(f"attestation: {expected}")
        want = "refused" if expected == "refused" else "signed"
        assert got == want, (
            f"attestation ({src}, {tgt}) root {root} (dry={dry}): model says {expected}"
        )

    @rule(validator=validators, data=st.data())
    def sign_next_to_history(self, validator: int, data: st.DataObject) -> None:
        """Aim at the stored history: re-sign, or shift one coordinate of a stored record."""
        v = self.model.v(validator)
        if v.attestations and data.draw(st.booleans(), "attestation"):
            s, t, r = data.draw(st.sampled_from(v.attestations), "near")
            ds, dt = data.draw(
                st.one_of(st.just((0, 0)), st.tuples(st.integers(-2, 2), st.integers(-2, 2)))
            )
            root = data.draw(st.just(r) if r is not None else roots, "root")
            self.attest(validator, max(s + ds, 0), max(t + dt, 0), root, False)
        elif v.blocks:
            s, r = data.draw(st.sampled_from(v.blocks), "near")
            root = data.draw(st.sampled_from([r, r, 1]) if r is not None else roots, "root")
            self.sign_block(validator, s + data.draw(st.sampled_from([0, 0, 1])), root, False)

    # -- interchange

    @rule(data=st.data())
    def import_interchange(self, data: st.DataObject) -> None:
        entries: list[Entry] = []
        for _ in range(data.draw(st.integers(1, 3), "entries")):
            validator = data.draw(validators, "validator")
            v = self.model.v(validator)
            blocks = data.draw(st.lists(st.tuples(slots, maybe_roots), max_size=3), "blocks")
            atts = data.draw(st.lists(imported_attestations, max_size=3), "attestations")
            # Variants of one stored record: as stored, with another root or an unknown one,
            # or (attestations) another source.
            if v.blocks and data.draw(st.booleans(), "aim at a block"):
                slot, root = data.draw(st.sampled_from(v.blocks), "aimed block")
                for new_root in data.draw(
                    st.lists(st.sampled_from([root, None, 1, 2, 3]), min_size=1, max_size=3)
                ):
                    blocks.append((slot, new_root))
            if v.attestations and data.draw(st.booleans(), "aim at an attestation"):
                s, t, root = data.draw(st.sampled_from(v.attestations), "aimed attestation")
                variant = st.tuples(
                    st.sampled_from([0, 0, 0, -1, 1]), st.sampled_from([root, None, 1, 2, 3])
                )
                for ds, new_root in data.draw(st.lists(variant, min_size=1, max_size=3)):
                    atts.append((max(s + ds, 0), t, new_root))
            blocks = data.draw(st.permutations(blocks), "block order")
            atts = data.draw(st.permutations(atts), "attestation order")
            entries.append((validator, blocks, atts))
        expected = self.model.import_(entries)
        event(f"import: {'accepted' if expected else 'rejected'}")
        try:
            self.backend.import_interchange(interchange(entries))
            got = True
        except BadRequest:
            got = False
        assert got == expected, f"import {entries}: model says {'ok' if expected else 'reject'}"

    @rule()
    def reimport_own_export(self) -> None:
        """Always accepted, changes no record; lowers the import floors to the history's minima."""
        assert self.model.import_(self.model.entries()), "the model refuses its own history"
        self.backend.import_interchange(self.backend.export_interchange())

    # -- operations

    @rule(keep=st.integers(0, 4), slots_per_epoch=st.sampled_from([1, 4, 32]))
    def prune(self, keep: int, slots_per_epoch: int) -> None:
        self.model.prune(keep, slots_per_epoch)
        self.backend.prune(keep, slots_per_epoch)

    @rule(
        validator=validators,
        slot=st.one_of(st.none(), slots),
        src=st.one_of(st.none(), epochs),
        tgt=st.one_of(st.none(), epochs),
    )
    def set_watermark(
        self, validator: int, slot: int | None, src: int | None, tgt: int | None
    ) -> None:
        self.model.set_watermark(validator, slot, src, tgt)
        self.backend.set_watermark(
            pubkey_bytes(validator), block_slot=slot, source_epoch=src, target_epoch=tgt
        )

    @precondition(lambda self: self.reopens < self.fixture.max_reopens)
    @rule()
    def reopen(self) -> None:
        self.reopens += 1
        self.backend.close()
        self.backend = self.fixture.open(GVR)

    @invariant()
    def history_matches(self) -> None:
        assert exported_history(self.backend.export_interchange()) == self.model.history()


# ------------------------------------------------------------------------------- backends


class BackendFixture:
    """One backend under test: ``reset`` empties the database, ``open`` connects to it."""

    name = "?"
    max_examples = 50
    #: Shrinking a failure takes minutes on a network backend (an export per step): off there,
    #: unless CHAMBER_TEST_SHRINK=1. The SQLite run shrinks the failures the backends share.
    shrink = False
    #: Reopening costs a new client (slow for boto3): how often per example.
    max_reopens = 1

    def reset(self) -> None:
        raise NotImplementedError

    def open(self, gvr: bytes) -> SlashingBackend:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class SQLiteFixture(BackendFixture):
    name = "sqlite"
    max_examples = 400
    shrink = True
    max_reopens = 5

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def reset(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir()

    def open(self, gvr: bytes) -> SlashingBackend:
        return SQLiteSlashingBackend(self.directory / "slashing.sqlite", gvr)


def _sqlite(tmp: pytest.TempPathFactory) -> BackendFixture:
    return SQLiteFixture(tmp.mktemp("model") / "db")


# PostgreSQL: the server of the chamber-postgres tests; a fresh schema per example.
POSTGRES_URL = os.environ.get(
    "CHAMBER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_reachable() -> None:
    """Fail (never skip) when the plugin is installed but its server is not reachable."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL at CHAMBER_TEST_POSTGRES_URL is unreachable ({type(exc).__name__}); "
            "start it or point the variable at one",
            pytrace=False,
        )


def new_schema() -> str:
    return "cc_test_" + uuid.uuid4().hex[:16]


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class PostgresFixture(BackendFixture):
    name = "postgres"
    max_examples = 150

    def __init__(self) -> None:
        self.schema: str | None = None

    def reset(self) -> None:
        self.stop()
        self.schema = new_schema()

    def open(self, gvr: bytes) -> SlashingBackend:
        from chamber_postgres.backend import PostgresSlashingBackend

        settings = {"url": POSTGRES_URL, "schema": self.schema, "pool_size": 1}
        return PostgresSlashingBackend.from_config(settings, gvr)

    def stop(self) -> None:
        if self.schema is not None:
            drop_schema(self.schema)
            self.schema = None


def _postgres(tmp: pytest.TempPathFactory) -> BackendFixture:
    pytest.importorskip("chamber_postgres", reason="plugins/chamber-postgres is not installed")
    postgres_reachable()
    return PostgresFixture()


# DynamoDB: a moto server over HTTP on loopback; a fresh table per example.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


# Run as a child process (so that it does not compete for this process's GIL): moto's
# DynamoDB behind a WSGI middleware that handles one request at a time. moto applies a
# TransactWriteItems as a sequence of Python steps; under its threaded server two could
# interleave in ways DynamoDB (serializable per transaction) never does (see the
# chamber-dynamodb tests). Connections are still accepted concurrently, so client-side races
# stay real.
_MOTO_SERVER = """
import sys, threading
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
from werkzeug.serving import make_server

class Quiet(MotoRequestHandler):
    def log_request(self, *args, **kwargs):
        pass

class OneAtATime:
    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()
    def __call__(self, environ, start_response):
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                if hasattr(result, "close"):
                    result.close()

app = OneAtATime(DomainDispatcherApplication(create_backend_app))
server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"""


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto DynamoDB endpoint on 127.0.0.1 (a free port); AWS_* set to dummies meanwhile."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_ENV)
    proc = subprocess.Popen([sys.executable, "-c", _MOTO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), "the moto server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)
        os.environ.clear()
        os.environ.update(saved)


class DynamoDBFixture(BackendFixture):
    """One table for the whole run, emptied (all but the network item) between examples."""

    name = "dynamodb"
    max_examples = 30

    def __init__(self) -> None:
        import boto3

        self._server = moto_server()
        self.endpoint = self._server.__enter__()
        self.table = f"model-{uuid.uuid4().hex[:12]}"
        self.raw = boto3.session.Session().client(
            "dynamodb", region_name="us-east-1", endpoint_url=self.endpoint
        )
        self.created = False

    def reset(self) -> None:
        if not self.created:
            return
        items = []
        for page in self.raw.get_paginator("scan").paginate(
            TableName=self.table, ProjectionExpression="pk, sk", ConsistentRead=True
        ):
            items += [i for i in page["Items"] if i["pk"]["S"] != "#meta"]
        for start in range(0, len(items), 25):
            self.raw.batch_write_item(
                RequestItems={
                    self.table: [
                        {"DeleteRequest": {"Key": item}} for item in items[start : start + 25]
                    ]
                }
            )

    def open(self, gvr: bytes) -> SlashingBackend:
        from chamber_dynamodb.slashing import DynamoDBSlashingBackend

        settings = {
            "table": self.table,
            "region": "us-east-1",
            "endpoint_url": self.endpoint,
            "create_table": not self.created,
        }
        backend = DynamoDBSlashingBackend.from_config(settings, gvr)
        self.created = True
        return backend

    def stop(self) -> None:
        self._server.__exit__(None, None, None)


def _dynamodb(tmp: pytest.TempPathFactory) -> BackendFixture:
    pytest.importorskip("chamber_dynamodb", reason="plugins/chamber-dynamodb is not installed")
    pytest.importorskip("moto", reason="install plugins/chamber-dynamodb[test]")
    return DynamoDBFixture()


FIXTURES: dict[str, Callable[[pytest.TempPathFactory], BackendFixture]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "dynamodb": _dynamodb,
}


def make_machine(fixture: BackendFixture) -> type[SlashingMachine]:
    return type(f"SlashingMachine_{fixture.name}", (SlashingMachine,), {"fixture": fixture})


@pytest.fixture(params=list(FIXTURES))
def backend_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackendFixture]:
    fixture = FIXTURES[request.param](tmp_path_factory)
    try:
        yield fixture
    finally:
        fixture.stop()


def test_backend_matches_model(backend_fixture: BackendFixture) -> None:
    shrink = backend_fixture.shrink or os.environ.get("CHAMBER_TEST_SHRINK") == "1"
    run_state_machine_as_test(
        make_machine(backend_fixture),
        settings=settings(
            max_examples=backend_fixture.max_examples,
            stateful_step_count=40,
            deadline=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=list(Phase) if shrink else [p for p in Phase if p is not Phase.shrink],
        ),
    )
