"""Every signing request type, signed over HTTP by a real signer and verified independently.

A real waitress signer (mainnet, noop slashing protection, raw test keys) answers each request;
the returned signature is checked with py_ecc's reference BLS ``Verify`` against a signing root
the test computes with the remerkleable oracle in ``tests/ssz_oracle.py`` -- never with chamber
code. Block, attestation and the other fork-dependent requests carry mainnet's real genesis
validators root and fork versions, and the expected root names the fork version explicitly, so
the test also pins *which* version the signer must have used (including EIP-7044 for exits).

py_ecc verification is pure Python (about a second per signature), so each shape is sent once with
a deterministic, fully populated payload, plus a small derandomised hypothesis run over all shapes.
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from py_ecc.bls import G2ProofOfPossession as reference_bls
from remerkleable.basic import uint64
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import ByteVector
from remerkleable.complex import Container, List, Vector

from tests import harness
from tests.harness import (
    InProcessSigner,
    base_config,
    in_process_signer,
    make_keys,
    write_raw_keys,
)
from tests.ssz_oracle import (
    CASES,
    FORKS,
    MAINNET_T,
    MAINNET_VERSIONS,
    ORACLE_MAINNET,
    aggregate_v2_type,
    block_v2_payload_type,
    hexs,
    htr,
    oracle_domain,
    oracle_request_root,
    oracle_signing_root,
    request_strategy,
)

KEYS = make_keys(2, seed="signing-types")
T = MAINNET_T

#: Mainnet, written out here from consensus-specs ``configs/mainnet.yaml`` (not read from chamber).
MAINNET_GVR = bytes.fromhex("4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95")
MAINNET_GENESIS_FORK_VERSION = bytes.fromhex("00000000")
MAINNET_FORKS: dict[str, tuple[bytes, int]] = {  # fork -> (version, activation epoch)
    "PHASE0": (bytes.fromhex("00000000"), 0),
    "ALTAIR": (bytes.fromhex("01000000"), 74240),
    "BELLATRIX": (bytes.fromhex("02000000"), 144896),
    "CAPELLA": (bytes.fromhex("03000000"), 194048),
    "DENEB": (bytes.fromhex("04000000"), 269568),
    "ELECTRA": (bytes.fromhex("05000000"), 364032),
    "FULU": (bytes.fromhex("06000000"), 411392),
}
#: The mainnet deposit and builder domains, as published (deposit-cli, mev-boost relays).
MAINNET_DEPOSIT_DOMAIN = "03000000f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9"
MAINNET_BUILDER_DOMAIN = "00000001f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9"


def version(fork: str) -> bytes:
    return MAINNET_FORKS[fork][0]


def fork_info(fork: str) -> dict[str, Any]:
    """``fork_info`` as a mainnet beacon node sends it while ``fork`` is the current fork."""
    current, epoch = MAINNET_FORKS[fork]
    index = FORKS.index(fork)
    previous = version(FORKS[index - 1]) if index else current
    return {
        "fork": {
            "previous_version": hexs(previous),
            "current_version": hexs(current),
            "epoch": str(epoch),
        },
        "genesis_validators_root": hexs(MAINNET_GVR),
    }


def slot_in(fork: str, epochs_after: int = 3, offset: int = 5) -> int:
    return (MAINNET_FORKS[fork][1] + epochs_after) * 32 + offset


# --------------------------------------------------------------------------------------------
# Deterministic, fully populated payloads (every list non-empty, every bitfield non-trivial)
# --------------------------------------------------------------------------------------------


def _digest(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def sample_json(cls: Any, tag: str) -> Any:
    """The JSON form of a value of remerkleable type ``cls``, derived from ``tag``."""
    if issubclass(cls, Container):
        return {name: sample_json(t, f"{tag}.{name}") for name, t in cls.fields().items()}
    if issubclass(cls, Bitlist):
        count = min(cls.limit(), 5 + _digest(tag)[0] % 40)
        bits = [b % 3 != 0 for b in _digest(tag + "bits") * 2][:count]
        return hexs(cls(*bits).encode_bytes())
    if issubclass(cls, Bitvector):
        length = cls.vector_length()
        stream = b"".join(_digest(f"{tag}{i}") for i in range(length // 256 + 1))
        bits = [(byte >> j) & 1 == 1 for byte in stream for j in range(8)][:length]
        return hexs(cls(*bits).encode_bytes())
    if issubclass(cls, ByteVector):
        size = cls.type_byte_length()
        return hexs((_digest(tag) * (size // 32 + 1))[:size])
    if issubclass(cls, List):
        return [sample_json(cls.element_cls(), f"{tag}[{i}]") for i in range(min(cls.limit(), 2))]
    if issubclass(cls, Vector):
        return [sample_json(cls.element_cls(), f"{tag}[{i}]") for i in range(cls.vector_length())]
    if issubclass(cls, uint64):
        return str(int.from_bytes(_digest(tag)[:8], "big"))
    raise TypeError(cls)


@dataclass(frozen=True)
class SignCase:
    id: str
    key: harness.TestKey  # (not imported by name: pytest would try to collect it)
    body: dict[str, Any]
    #: Computed here from the payload, the domain type and an explicit fork version.
    root: bytes


def signed_root(domain: str, fork_version: bytes, object_root: bytes) -> bytes:
    return oracle_signing_root(object_root, oracle_domain(domain, fork_version, MAINNET_GVR))


def aggregation_slot(fork: str) -> SignCase:
    slot = slot_in(fork)
    body = {
        "type": "AGGREGATION_SLOT",
        "fork_info": fork_info(fork),
        "aggregation_slot": {"slot": str(slot)},
    }
    root = signed_root("selection", version(fork), bytes(uint64(slot).hash_tree_root()))
    return SignCase(f"AGGREGATION_SLOT-{fork}", KEYS[0], body, root)


def aggregate_and_proof(fork: str, versioned: bool) -> SignCase:
    type_name = aggregate_v2_type(fork) if versioned else "AggregateAndProof"
    cls = getattr(T, type_name)
    message = sample_json(cls, f"aggregate-{fork}-{versioned}")
    message["aggregate"]["data"]["slot"] = str(slot_in(fork))
    if versioned:
        body = {
            "type": "AGGREGATE_AND_PROOF_V2",
            "fork_info": fork_info(fork),
            "aggregate_and_proof": {"version": fork, "data": message},
        }
        case_id = f"AGGREGATE_AND_PROOF_V2-{fork}"
    else:
        body = {
            "type": "AGGREGATE_AND_PROOF",
            "fork_info": fork_info(fork),
            "aggregate_and_proof": message,
        }
        case_id = f"AGGREGATE_AND_PROOF-{fork}"
    root = signed_root("aggregate", version(fork), htr(cls, message))
    return SignCase(case_id, KEYS[1], body, root)


def attestation(fork: str, target_epoch: int, signed_with: str) -> SignCase:
    data = sample_json(T.AttestationData, f"attestation-{fork}-{target_epoch}")
    data["slot"] = str(target_epoch * 32 + 3)
    data["source"]["epoch"] = str(target_epoch - 1)
    data["target"]["epoch"] = str(target_epoch)
    body = {"type": "ATTESTATION", "fork_info": fork_info(fork), "attestation": data}
    root = signed_root("attester", version(signed_with), htr(T.AttestationData, data))
    return SignCase(f"ATTESTATION-{fork}-epoch{target_epoch}", KEYS[0], body, root)


def block(fork: str) -> SignCase:
    """Deprecated BLOCK: a full Phase0 block."""
    payload = sample_json(T.BeaconBlock, f"block-{fork}")
    payload["slot"] = str(slot_in(fork))
    body = {"type": "BLOCK", "fork_info": fork_info(fork), "block": payload}
    root = signed_root("proposer", version(fork), htr(T.BeaconBlock, payload))
    return SignCase(f"BLOCK-{fork}", KEYS[1], body, root)


def block_v2(fork: str) -> SignCase:
    key, type_name = block_v2_payload_type(fork)
    cls = getattr(T, type_name)
    payload = sample_json(cls, f"block-v2-{fork}")
    payload["slot"] = str(slot_in(fork))
    body = {
        "type": "BLOCK_V2",
        "fork_info": fork_info(fork),
        "beacon_block": {"version": fork, key: payload},
    }
    root = signed_root("proposer", version(fork), htr(cls, payload))
    return SignCase(f"BLOCK_V2-{fork}", KEYS[0], body, root)


def deposit() -> SignCase:
    key = KEYS[1]
    message = {
        "pubkey": key.pubkey_hex,
        "withdrawal_credentials": hexs(b"\x01" + bytes(11) + b"\x5a" * 20),
        "amount": "32000000000",
        "genesis_fork_version": hexs(MAINNET_GENESIS_FORK_VERSION),
    }
    domain = oracle_domain("deposit", MAINNET_GENESIS_FORK_VERSION, bytes(32))
    assert domain.hex() == MAINNET_DEPOSIT_DOMAIN
    root = oracle_signing_root(htr(T.DepositMessage, message), domain)
    return SignCase("DEPOSIT", key, {"type": "DEPOSIT", "deposit": message}, root)


def randao_reveal(fork: str) -> SignCase:
    epoch = MAINNET_FORKS[fork][1] + 11
    body = {
        "type": "RANDAO_REVEAL",
        "fork_info": fork_info(fork),
        "randao_reveal": {"epoch": str(epoch)},
    }
    root = signed_root("randao", version(fork), bytes(uint64(epoch).hash_tree_root()))
    return SignCase(f"RANDAO_REVEAL-{fork}", KEYS[0], body, root)


def voluntary_exit(fork: str, signed_with: str) -> SignCase:
    message = {"epoch": str(MAINNET_FORKS[fork][1] + 2), "validator_index": "123456"}
    body = {"type": "VOLUNTARY_EXIT", "fork_info": fork_info(fork), "voluntary_exit": message}
    root = signed_root("exit", version(signed_with), htr(T.VoluntaryExit, message))
    return SignCase(f"VOLUNTARY_EXIT-{fork}", KEYS[1], body, root)


def sync_committee_message(fork: str) -> SignCase:
    message = {"beacon_block_root": hexs(_digest("head")), "slot": str(slot_in(fork))}
    body = {
        "type": "SYNC_COMMITTEE_MESSAGE",
        "fork_info": fork_info(fork),
        "sync_committee_message": message,
    }
    root = signed_root("sync", version(fork), _digest("head"))  # a Bytes32 is its own root
    return SignCase(f"SYNC_COMMITTEE_MESSAGE-{fork}", KEYS[0], body, root)


def sync_committee_selection_proof(fork: str) -> SignCase:
    data = {"slot": str(slot_in(fork)), "subcommittee_index": "3"}
    body = {
        "type": "SYNC_COMMITTEE_SELECTION_PROOF",
        "fork_info": fork_info(fork),
        "sync_aggregator_selection_data": data,
    }
    root = signed_root("sync_selection", version(fork), htr(T.SyncAggregatorSelectionData, data))
    return SignCase(f"SYNC_COMMITTEE_SELECTION_PROOF-{fork}", KEYS[1], body, root)


def contribution_and_proof(fork: str) -> SignCase:
    message = sample_json(T.ContributionAndProof, f"contribution-{fork}")
    message["contribution"]["slot"] = str(slot_in(fork))
    body = {
        "type": "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
        "fork_info": fork_info(fork),
        "contribution_and_proof": message,
    }
    root = signed_root("contribution", version(fork), htr(T.ContributionAndProof, message))
    return SignCase(f"SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF-{fork}", KEYS[0], body, root)


def validator_registration() -> SignCase:
    key = KEYS[0]
    message = {
        "fee_recipient": hexs(b"\xfe" * 20),
        "gas_limit": "36000000",
        "timestamp": "1735689600",
        "pubkey": key.pubkey_hex,
    }
    domain = oracle_domain("builder", MAINNET_GENESIS_FORK_VERSION, bytes(32))
    assert domain.hex() == MAINNET_BUILDER_DOMAIN
    root = oracle_signing_root(htr(T.ValidatorRegistrationV1, message), domain)
    body = {"type": "VALIDATOR_REGISTRATION", "validator_registration": message}
    return SignCase("VALIDATOR_REGISTRATION", key, body, root)


ELECTRA_EPOCH = MAINNET_FORKS["ELECTRA"][1]
SIGN_CASES: list[SignCase] = [
    aggregation_slot("ELECTRA"),
    aggregate_and_proof("DENEB", versioned=False),
    *(aggregate_and_proof(fork, versioned=True) for fork in FORKS),
    attestation("FULU", MAINNET_FORKS["FULU"][1] + 9, signed_with="FULU"),
    # fork_info says Electra, but the target is the last epoch before it: previous_version.
    attestation("ELECTRA", ELECTRA_EPOCH - 1, signed_with="DENEB"),
    attestation("ELECTRA", ELECTRA_EPOCH, signed_with="ELECTRA"),
    block("PHASE0"),
    *(block_v2(fork) for fork in FORKS),
    deposit(),
    randao_reveal("CAPELLA"),
    voluntary_exit("BELLATRIX", signed_with="BELLATRIX"),
    voluntary_exit("CAPELLA", signed_with="CAPELLA"),
    # EIP-7044: from Deneb on, exits are signed with the Capella fork version.
    voluntary_exit("DENEB", signed_with="CAPELLA"),
    voluntary_exit("ELECTRA", signed_with="CAPELLA"),
    sync_committee_message("ALTAIR"),
    sync_committee_selection_proof("BELLATRIX"),
    contribution_and_proof("DENEB"),
    validator_registration(),
]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSigner]:
    keys_dir = tmp_path_factory.mktemp("keys")
    write_raw_keys(keys_dir, KEYS)
    config = base_config(keys_dir)  # network mainnet, anti_slashing noop
    assert (config["network"], config["anti_slashing"]["backend"]) == ("mainnet", "noop")
    with in_process_signer(config) as running:
        yield running


def signature_of(response: Any) -> bytes:
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["signature"]
    text = body["signature"]
    assert text.startswith("0x") and len(text) == 2 + 192, text
    return bytes.fromhex(text[2:])


# --------------------------------------------------------------------------------------------
# The cases themselves
# --------------------------------------------------------------------------------------------


def test_every_request_type_and_version_is_covered() -> None:
    ids = {case.id for case in SIGN_CASES}
    assert len(ids) == len(SIGN_CASES)
    kinds = {case.body["type"] for case in SIGN_CASES}
    assert kinds == {kind for kind, _ in CASES}, "a request type has no HTTP signing case"
    for kind, payload in (
        ("BLOCK_V2", "beacon_block"),
        ("AGGREGATE_AND_PROOF_V2", "aggregate_and_proof"),
    ):
        versions = [c.body[payload]["version"] for c in SIGN_CASES if c.body["type"] == kind]
        assert versions == FORKS
    # The table above agrees with the oracle's own idea of mainnet.
    assert [v.hex() for v, _ in MAINNET_FORKS.values()] == MAINNET_VERSIONS
    assert ORACLE_MAINNET.gvr == MAINNET_GVR


def test_fork_info_uses_real_mainnet_versions() -> None:
    """Every fork-dependent case signs with a mainnet version and the mainnet root, none twice."""
    forked = [c for c in SIGN_CASES if "fork_info" in c.body]
    for case in forked:
        info = case.body["fork_info"]
        assert info["genesis_validators_root"] == hexs(MAINNET_GVR)
        fork = info["fork"]
        assert (bytes.fromhex(fork["current_version"][2:]), int(fork["epoch"])) in set(
            MAINNET_FORKS.values()
        )
        assert fork["previous_version"][2:] in MAINNET_VERSIONS
    assert {c.body["fork_info"]["fork"]["current_version"] for c in forked} == {
        hexs(v) for v, _ in MAINNET_FORKS.values()
    }


@pytest.mark.parametrize("case", SIGN_CASES, ids=[c.id for c in SIGN_CASES])
def test_sign_over_http_and_verify(signer: InProcessSigner, case: SignCase) -> None:
    # The explicit root (named fork version) and the oracle's fork_info-driven root agree.
    assert oracle_request_root(case.body, ORACLE_MAINNET) == case.root
    response = signer.client.sign(case.key.pubkey_hex, case.body)
    signature = signature_of(response)
    assert reference_bls.Verify(case.key.pubkey, case.root, signature), case.id


def test_eip7044_exits_differ_from_their_own_fork_version() -> None:
    """The remap is not vacuous: without it the Deneb/Electra exits would have other roots."""
    for case in SIGN_CASES:
        if case.body["type"] != "VOLUNTARY_EXIT":
            continue
        fork = case.body["fork_info"]["fork"]["current_version"]
        own = signed_root(
            "exit", bytes.fromhex(fork[2:]), htr(T.VoluntaryExit, case.body["voluntary_exit"])
        )
        remapped = fork in (hexs(version("DENEB")), hexs(version("ELECTRA")))
        assert (own != case.root) is remapped, case.id


def test_text_plain_answer(signer: InProcessSigner) -> None:
    case = next(c for c in SIGN_CASES if c.id == "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF-DENEB")
    response = signer.client.sign(case.key.pubkey_hex, case.body, headers={"Accept": "text/plain"})
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    assert text.startswith("0x") and len(text) == 2 + 192, text
    assert reference_bls.Verify(case.key.pubkey, case.root, bytes.fromhex(text[2:]))
    # Same deterministic BLS signature as the JSON answer.
    as_json = signer.client.sign(case.key.pubkey_hex, case.body)
    assert as_json.json()["signature"] == text


def test_client_signing_root_is_accepted_when_it_matches(signer: InProcessSigner) -> None:
    case = next(c for c in SIGN_CASES if c.id == "BLOCK_V2-FULU")
    for name in ("signingRoot", "signing_root"):
        response = signer.client.sign(case.key.pubkey_hex, {**case.body, name: hexs(case.root)})
        assert response.status == 200, response.body
    wrong = signer.client.sign(case.key.pubkey_hex, {**case.body, "signingRoot": hexs(bytes(32))})
    assert wrong.status == 400
    assert wrong.json()["field"] == "signingRoot"


# --------------------------------------------------------------------------------------------
# Random valid requests of every shape, over HTTP (few: each verification costs a second)
# --------------------------------------------------------------------------------------------


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_requests_over_http(signer: InProcessSigner, data: st.DataObject) -> None:
    kind, fork = data.draw(st.sampled_from(CASES), label="shape")
    body = data.draw(request_strategy(kind, fork, MAINNET_GVR, MAINNET_GENESIS_FORK_VERSION))
    key = data.draw(st.sampled_from(KEYS), label="key")
    root = oracle_request_root(body, ORACLE_MAINNET)
    response = signer.client.sign(key.pubkey_hex, body)
    assert reference_bls.Verify(key.pubkey, root, signature_of(response))
