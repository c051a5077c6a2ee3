"""The seal / unseal runbook end to end on AWS services: KMS keys in three regions and DynamoDB
(vault state and encrypted validator keys), all served by one moto server over real HTTP.

Real signer processes (``containment-chamber server``) are driven by the real CLI
(``containment-chamber operator ...`` / ``keys import``), as in ``tests/test_vault_runbook.py``,
which runs the same runbook on SQLite and the local file KMS. Here a KMS key is disabled on the
server (``DisableKey``) to take a region away, and the DynamoDB tables are scanned to prove that
a refused request stored nothing. Every log line, CLI output and HTTP answer of a scenario, and
every item of its tables, is then searched for secrets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from py_ecc.bls import G2ProofOfPossession as reference_bls

from chamber.crypto.keystore import encrypt_keystore
from tests import bodies
from tests.harness import MAINNET_GVR, make_keys
from tests.ssz_oracle import oracle_domain, oracle_signing_root
from tests.vault_support import (
    OPS_TOKEN,
    SETUP_LOG_MESSAGE,
    SIGNING_TOKEN,
    Chamber,
    CliResult,
    encodings,
    vault_config,
)

# The signer under test loads both plugins: KMS from this one, DynamoDB from chamber-dynamodb.
pytest.importorskip("chamber_dynamodb", reason="needs the chamber-dynamodb plugin installed too")
pytest.importorskip("moto", reason="install plugins/chamber-aws-kms[test]")

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
#: The signer's credentials: moto accepts anything; nothing may come from the developer's own.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
OPERATORS = ("alice", "bob", "carol")
PASSPHRASES = {
    "alice": "alice: correct horse battery staple, on AWS",
    "bob": "bob's passphrase for the aws runbook 1",
    "carol": "carol-keeps-this-one-in-her-vault-77",
}
KEYSTORE_PASSWORD = "keystore-password-for-the-aws-runbook"  # noqa: S105 (test data)
KEY = make_keys(1, seed="aws-runbook")[0]
DENEB = bytes.fromhex("04000000")
#: What the conftest's moto puts in its error messages (as AWS can): never to be repeated.
AWS_MESSAGE_MARKER = "do-not-echo-this-role"
KMS_SHARE_FAILED = "a KMS key could not decrypt its share; unsealed with the others"
#: How long the background KMS retry may take to notice a key that came back
#: (``vault.kms_retry_max_seconds`` is 1 in these configurations).
RETRY_DEADLINE = 15.0
#: Seconds by which chosen KMS requests are held back to fix the order the keys answer in
#: (well above the time the signer takes to create its three regional clients, one at a time).
LATER = 1.5


# ---------------------------------------------------------------------- AWS side (moto)


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


class Aws:
    """Plain boto3 clients on the moto server: create, disable and enable KMS keys; scan tables."""

    def __init__(self, moto: Any) -> None:
        import boto3

        self.moto = moto  # conftest.ModuleMoto
        self.endpoint: str = moto.url
        self._session = boto3.session.Session(**_credentials())
        self._kms: dict[str, Any] = {}
        self.dynamodb = self._session.client(
            "dynamodb", region_name="us-east-1", endpoint_url=self.endpoint
        )

    def kms(self, region: str) -> Any:
        if region not in self._kms:
            self._kms[region] = self._session.client(
                "kms", region_name=region, endpoint_url=self.endpoint
            )
        return self._kms[region]

    def new_keys(self) -> list[str]:
        """One fresh symmetric key in each of the three regions; their ARNs."""
        arns = []
        for region in REGIONS:
            metadata = self.kms(region).create_key(Description="chamber aws runbook")["KeyMetadata"]
            arns.append(str(metadata["Arn"]))
        return arns

    def _key_state(self, arn: str, enabled: bool) -> None:
        region, key_id = arn.split(":")[3], arn.rsplit("/", 1)[1]  # moto wants the bare id
        client = self.kms(region)
        (client.enable_key if enabled else client.disable_key)(KeyId=key_id)
        state = client.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
        assert state == ("Enabled" if enabled else "Disabled")

    def disable(self, arn: str) -> None:
        self._key_state(arn, enabled=False)

    def enable(self, arn: str) -> None:
        self._key_state(arn, enabled=True)

    @contextmanager
    def slow(self, operation: str, fragments: list[str], seconds: float) -> Iterator[None]:
        """Requests of ``operation`` whose body names one of ``fragments`` wait ``seconds`` on the
        server first (e.g. which KMS keys answer ``Decrypt`` last)."""
        rules = {(operation, fragment): seconds for fragment in fragments}
        self.moto.delays.update(rules)
        try:
            yield
        finally:
            for rule in rules:
                self.moto.delays.pop(rule, None)

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of ``table``, in a stable order (strongly consistent)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=repr))


@pytest.fixture(scope="module")
def aws(moto_module: Any) -> Iterator[Aws]:
    aws = Aws(moto_module)
    yield aws
    moto_module.delays.clear()


# ---------------------------------------------------------------------- the chamber


def aws_config(root: Path, endpoint: str, state_table: str, keys_table: str) -> dict[str, Any]:
    """The runbook's configuration (``vault_config``) with the AWS services instead of the local
    ones: DynamoDB state and key store, KMS keys given as ARNs; slashing stays in SQLite."""
    config = vault_config(root)
    dynamodb = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "create_table": True,
        "connect_timeout": 2,
        "read_timeout": 5,
        "max_attempts": 2,
    }
    config["signer_state"] = {"backend": "dynamodb", "table": state_table, **dynamodb}
    config["key_sources"] = {"dynamodb": {"table": keys_table, **dynamodb}}
    config["kms"] = {
        "aws": {
            "endpoint_url": endpoint,
            "connect_timeout": 1,
            "read_timeout": 5,
            "max_attempts": 2,
            "backoff_base_seconds": 0.05,
        }
    }
    config["vault"]["kms_retry_max_seconds"] = 1
    return config


@dataclass
class AwsChamber(Chamber):
    """:class:`tests.vault_support.Chamber` on the moto endpoint, with tables of its own."""

    endpoint: str = ""
    state_table: str = field(default_factory=lambda: f"chamber-state-{uuid.uuid4().hex[:10]}")
    keys_table: str = field(default_factory=lambda: f"chamber-keys-{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        assert self.endpoint
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = {**self.env, **AWS_ENV}
        self.config_path = self.root / "config.yaml"
        config = aws_config(self.root, self.endpoint, self.state_table, self.keys_table)
        self.config_path.write_text(yaml.safe_dump(config))
        # Not used on AWS (no SQLite state, no local KMS directory); kept for the base class.
        self.state_path = self.root / "state.sqlite"
        self.kms_dir = self.root / "kms"

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.server_log_lines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries


@pytest.fixture
def new_chamber(tmp_path: Path, aws: Aws) -> Iterator[Callable[[], AwsChamber]]:
    made: list[AwsChamber] = []

    def make() -> AwsChamber:
        chamber = AwsChamber(tmp_path / f"chamber-{len(made)}", endpoint=aws.endpoint)
        made.append(chamber)
        chamber.start()
        return chamber

    try:
        yield make
    finally:
        for chamber in made:
            if chamber.signer is not None:
                chamber.signer.stop()


@pytest.fixture(scope="module")
def keystore_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keystore = encrypt_keystore(
        KEY.secret.to_bytes(32, "big"),
        KEYSTORE_PASSWORD,
        kdf="pbkdf2",
        kdf_params={"c": 1024},  # fast; the import path is what is tested
        pubkey=KEY.pubkey,
        path="m/12381/3600/0/0/0",
    )
    path = tmp_path_factory.mktemp("keystores") / "keystore-m_12381_3600_0_0_0.json"
    path.write_text(json.dumps(keystore))
    return path


# ---------------------------------------------------------------------- CLI steps


def status_cli(chamber: Chamber) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.operator("status", "--auth-token", "env:CC_AUTH_TOKEN").json()
    return answer


def init(chamber: Chamber, setup_token: str, kms_keys: list[str], *, operators: bool) -> CliResult:
    args = ["--kms-key-arns", ",".join(kms_keys), "--kms-threshold", "2"]
    if operators:
        args += ["--unseal-threshold", "2", "--operators", ",".join(OPERATORS)]
    return chamber.operator(
        "init", "--setup-token", "env:SETUP_TOKEN", *args, env={"SETUP_TOKEN": setup_token}
    )


def register(chamber: Chamber, operator: str, token: str) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.operator(
        "register",
        "--operator", operator,
        "--registration-token", "env:REGISTRATION_TOKEN",
        "--passphrase-stdin",
        stdin=PASSPHRASES[operator] + "\n",
        env={"REGISTRATION_TOKEN": token},
    ).json()  # fmt: skip
    return answer


def unseal(chamber: Chamber, operator: str) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.operator(
        "unseal", "--operator", operator, "--passphrase-stdin", stdin=PASSPHRASES[operator] + "\n"
    ).json()
    return answer


def import_key(chamber: Chamber, keystore: Path) -> dict[str, Any]:
    answer: dict[str, Any] = chamber.run_cli(
        "keys", "import", str(keystore),
        "--signer-url", chamber.url,
        "--auth-token", "env:CC_AUTH_TOKEN",
        "--password-stdin",
        stdin=KEYSTORE_PASSWORD + "\n",
    ).json()  # fmt: skip
    return answer


# ---------------------------------------------------------------------- checks


def randao_root(body: dict[str, Any]) -> bytes:
    """The RANDAO signing root, computed by the independent SSZ oracle (Deneb fork)."""
    epoch = int(body["randao_reveal"]["epoch"])
    object_root = epoch.to_bytes(8, "little") + bytes(24)
    domain = oracle_domain("randao", DENEB, bytes.fromhex(MAINNET_GVR[2:]))
    return oracle_signing_root(object_root, domain)


def assert_signs(chamber: Chamber, epoch: int) -> bytes:
    body = bodies.randao(epoch)
    response = chamber.sign(KEY.pubkey_hex, body)
    assert response.status == 200, response.body
    signature = bytes.fromhex(response.json()["signature"][2:])
    assert reference_bls.Verify(KEY.pubkey, randao_root(body), signature)
    return signature


def assert_sealed_for_signing(chamber: Chamber) -> None:
    response = chamber.sign(KEY.pubkey_hex, bodies.randao())
    assert response.status == 503, response.body
    assert "sealed" in response.json()["message"]


def assert_refused(result: CliResult, status: int, message: str) -> None:
    """The signer refused: exit 1, one ``containment-chamber: the signer answered ...`` line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    prefix = f"containment-chamber: the signer answered {status}: "
    assert result.stderr.startswith(prefix), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def assert_failed_key_logged(chamber: AwsChamber, arn: str) -> None:
    """The start-up's log names the KMS key that could not decrypt its share, and why."""
    named = [
        entry
        for entry in chamber.log_entries()
        if entry.get("message") == KMS_SHARE_FAILED and entry.get("kms_key_id") == arn
    ]
    assert named, "no log line names the failed KMS key:\n" + "\n".join(chamber.server_log_lines())
    assert named[-1]["level"] == "WARNING"
    assert "key is disabled (DisabledException)" in named[-1]["reason"]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_keys_loaded(chamber: Chamber, count: int) -> dict[str, Any]:
    answer: dict[str, Any] = wait_for(
        lambda: (status := chamber.status())["keys"] == {"loaded": count} and status,
        RETRY_DEADLINE,
        f"{count} keys loaded",
    )
    return answer


def _item_bytes(item: dict[str, Any]) -> bytes:
    """Every attribute value of a DynamoDB item, binary and text, as bytes."""
    parts: list[bytes] = []
    for value in item.values():
        for kind, content in value.items():
            if kind == "B":
                parts.append(bytes(content))
            else:
                parts.append(str(content).encode())
    return b"\x00".join(parts)


def assert_no_secret_leaked(
    chamber: AwsChamber, aws: Aws, registration_tokens: dict[str, str] | None = None
) -> None:
    """No secret in any log line, CLI output or HTTP answer of ``chamber``, nor in its DynamoDB
    tables or the SQLite files it wrote; each setup token in exactly its one WARNING line; no
    AWS error message repeated. Registration tokens are, by design, in ``operator init``'s
    answer (and only there)."""
    tokens = registration_tokens or {}
    secrets = {
        "ops auth token": OPS_TOKEN,
        "signing auth token": SIGNING_TOKEN,
        "keystore password": KEYSTORE_PASSWORD,
        "validator secret key": KEY.secret_hex[2:],
        **{f"passphrase of {op}": passphrase for op, passphrase in PASSPHRASES.items()},
        **{f"registration token of {op}": token for op, token in tokens.items()},
    }
    for i, form in enumerate(encodings(KEY.secret.to_bytes(32, "big"))):
        secrets[f"validator secret key (encoding {i})"] = form
    setup_tokens = chamber.setup_tokens()
    assert setup_tokens

    for where, text in chamber.transcript:
        lowered = text.lower()
        for name, secret in secrets.items():
            if name.startswith("registration token") and where == "operator init stdout":
                continue  # handed to the ceremony coordinator, as the runbook shows
            assert secret.lower() not in lowered, f"{name} leaked into {where}"
        assert AWS_MESSAGE_MARKER not in text, f"an AWS error message was repeated in {where}"
        if where != "server log":
            for token in setup_tokens:
                assert token not in text, f"a setup token leaked into {where}"
    for token in tokens.values():
        assert sum(token in text for _, text in chamber.transcript) == 1

    lines = chamber.server_log_lines()
    for token in setup_tokens:
        carriers = [line for line in lines if token in line]
        assert len(carriers) == 1, carriers
        entry = json.loads(carriers[0])
        assert (entry["message"], entry["level"]) == (SETUP_LOG_MESSAGE, "WARNING")

    raw_secrets = {name: secret.encode() for name, secret in secrets.items()}
    raw_secrets["validator secret key (raw)"] = KEY.secret.to_bytes(32, "big")
    raw_secrets.update({f"setup token {i}": t.encode() for i, t in enumerate(setup_tokens)})
    stored = {
        f"table {table} item {i}": _item_bytes(item)
        for table in (chamber.state_table, chamber.keys_table)
        for i, item in enumerate(aws.scan(table))
    }
    stored.update(chamber.files_at_rest())
    for where, data in stored.items():
        for name, raw in raw_secrets.items():
            assert raw not in data, f"{name} is stored in {where}"


# ---------------------------------------------------------------------- 1. unseal mode


def test_unseal_mode_on_aws_survives_a_lost_region(
    new_chamber: Callable[[], AwsChamber], aws: Aws, keystore_file: Path
) -> None:
    kms_keys = aws.new_keys()
    chamber = new_chamber()
    setup_token = chamber.wait_setup_token()
    assert setup_token.startswith("cc-setup-")
    assert status_cli(chamber) == {"seal": {"status": "uninitialized"}, "keys": None}

    # Init: the three regional keys (2 of 3) and three operators (2 of 3).
    result = init(chamber, setup_token, kms_keys, operators=True)
    answer = result.json()
    assert answer["status"] == "awaiting_registration"
    tokens: dict[str, str] = answer["operator_tokens"]
    assert sorted(tokens) == sorted(OPERATORS)
    assert all(token.startswith("cc-reg-") for token in tokens.values())
    assert "secure channel" in result.stderr
    record = aws.scan(chamber.state_table)
    assert len(record) == 1 and int(record[0]["version"]["N"]) == 1

    assert register(chamber, "alice", tokens["alice"]) == {"registered": 1, "remaining": 2}
    assert register(chamber, "bob", tokens["bob"]) == {"registered": 2, "remaining": 1}
    assert register(chamber, "carol", tokens["carol"]) == {
        "registered": 3,
        "remaining": 0,
        "status": "sealed",
    }
    chamber.wait_state("kms_unsealed")
    seal = status_cli(chamber)["seal"]
    assert seal["status"] == "kms_unsealed"
    assert (seal["mode"], seal["kms"]) == ("unseal", {"threshold": 2, "keys": 3})
    assert_sealed_for_signing(chamber)

    assert unseal(chamber, "alice") == {"shares_received": 1, "shares_required": 2}
    assert unseal(chamber, "bob") == {"status": "unsealed", "validators_loaded": 0}

    imported = import_key(chamber, keystore_file)
    assert imported == {
        "data": [{"file": str(keystore_file), "status": "imported", "pubkey": KEY.pubkey_hex}]
    }
    keys_items = aws.scan(chamber.keys_table)
    # The key, and the change counter other replicas poll (chamber_dynamodb.keys.change_token).
    assert sorted(item["pk"]["S"] for item in keys_items) == ["#keys-version", KEY.pubkey_hex]
    signature = assert_signs(chamber, bodies.BASE_EPOCH)

    # A region is lost: its key is disabled. 2 of 3 still open the KMS layer at start-up, and
    # the log says which key failed.
    aws.disable(kms_keys[1])
    # The disabled key answers first and the others a little later, so that its failure is
    # seen before the threshold is reached (the other order: the last test of this file).
    with aws.slow("Decrypt", [kms_keys[0], kms_keys[2]], LATER):
        chamber.restart()
        seal = chamber.wait_state("kms_unsealed")["seal"]
    assert (seal["shares_received"], seal["shares_required"]) == (0, 2)
    assert status_cli(chamber)["seal"]["status"] == "kms_unsealed"
    assert_failed_key_logged(chamber, kms_keys[1])
    assert_sealed_for_signing(chamber)

    # Two operators (others than before) unseal; the imported key is loaded from DynamoDB.
    assert unseal(chamber, "carol") == {"shares_received": 1, "shares_required": 2}
    assert unseal(chamber, "alice") == {"status": "unsealed", "validators_loaded": 1}
    assert assert_signs(chamber, bodies.BASE_EPOCH) == signature
    assert status_cli(chamber)["keys"] == {"loaded": 1}

    # Emergency seal: signing stops at once.
    assert chamber.operator("seal", "--auth-token", "env:CC_AUTH_TOKEN").json() == {
        "status": "sealed"
    }
    assert_sealed_for_signing(chamber)
    assert status_cli(chamber)["seal"]["status"] == "sealed"
    chamber.stop()

    assert_no_secret_leaked(chamber, aws, tokens)


# ---------------------------------------------------------------------- 2. KMS-only mode


def test_kms_only_on_aws_unseals_itself_with_a_region_down(
    new_chamber: Callable[[], AwsChamber], aws: Aws, keystore_file: Path
) -> None:
    kms_keys = aws.new_keys()
    chamber = new_chamber()
    setup_token = chamber.wait_setup_token()
    answer = init(chamber, setup_token, kms_keys, operators=False).json()
    assert answer == {"status": "unsealed", "validators_loaded": 0}
    assert import_key(chamber, keystore_file)["data"][0]["status"] == "imported"
    signature = assert_signs(chamber, bodies.BASE_EPOCH + 1)

    aws.disable(kms_keys[0])
    with aws.slow("Decrypt", kms_keys[1:], LATER):  # the disabled key answers first
        chamber.restart()
        answer = chamber.wait_state("unsealed")
    assert answer["seal"]["mode"] == "kms_only"
    assert answer["keys"] == {"loaded": 1}  # the key store loads before the state opens
    assert_failed_key_logged(chamber, kms_keys[0])
    assert assert_signs(chamber, bodies.BASE_EPOCH + 1) == signature
    # Initialized: the restart logged no new setup token.
    assert chamber.setup_tokens() == [setup_token]
    chamber.stop()

    assert_no_secret_leaked(chamber, aws)


def test_kms_only_on_aws_waits_for_the_threshold_then_unseals_by_itself(
    new_chamber: Callable[[], AwsChamber], aws: Aws, keystore_file: Path
) -> None:
    kms_keys = aws.new_keys()
    chamber = new_chamber()
    setup_token = chamber.wait_setup_token()
    assert init(chamber, setup_token, kms_keys, operators=False).json()["status"] == "unsealed"
    assert import_key(chamber, keystore_file)["data"][0]["status"] == "imported"
    signature = assert_signs(chamber, bodies.BASE_EPOCH + 2)

    # Two of three regions down: below the threshold, the restart stays sealed and says why.
    down = [kms_keys[0], kms_keys[2]]
    for arn in down:
        aws.disable(arn)
    chamber.restart()
    seal = wait_for(
        lambda: (s := chamber.status()["seal"]).get("kms_error") and s,
        RETRY_DEADLINE,
        "a KMS error in the status",
    )
    assert seal["status"] == "sealed"
    seal = status_cli(chamber)["seal"]
    assert seal["status"] == "sealed"
    error = seal["kms_error"]
    assert "only 1 of the 2 required KMS keys could decrypt their share" in error
    for arn in down:
        assert f"{arn}: key is disabled (DisabledException)" in error
    assert kms_keys[1] not in error
    assert AWS_MESSAGE_MARKER not in error
    assert_sealed_for_signing(chamber)
    retries = [
        entry
        for entry in chamber.log_entries()
        if entry.get("message") == "KMS unseal failed; retrying"
    ]
    assert retries and all(arn in retries[0]["reason"] for arn in down)

    # One region comes back: the background retry unseals without anyone's help.
    aws.enable(kms_keys[2])
    started = time.monotonic()
    answer = chamber.wait_state("unsealed", timeout=RETRY_DEADLINE)
    assert time.monotonic() - started < RETRY_DEADLINE
    assert answer["keys"] == {"loaded": 1}
    assert "kms_error" not in answer["seal"]
    assert assert_signs(chamber, bodies.BASE_EPOCH + 2) == signature
    chamber.stop()

    assert_no_secret_leaked(chamber, aws)


# ---------------------------------------------------------------------- 3. a malformed ARN


@pytest.mark.parametrize(
    "malformed",
    [
        "arn:aws:kms:eu-west-1:123456789012:key/not-a-key-id",
        "arn:aws:kms:eu-west-1:12345:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ],
    ids=["bad-key-id", "short-account"],
)
def test_malformed_arn_on_init_is_refused_and_stores_nothing(
    new_chamber: Callable[[], AwsChamber], aws: Aws, malformed: str
) -> None:
    kms_keys = aws.new_keys()
    chamber = new_chamber()
    setup_token = chamber.wait_setup_token()
    before = aws.scan(chamber.state_table)
    assert before == []

    result = init(chamber, setup_token, [kms_keys[0], malformed, kms_keys[2]], operators=True)
    assert_refused(
        result,
        400,
        "invalid KMS ARN: expected arn:aws:kms:<region>:<account-id>:key/<key-id>, "
        f"got {malformed}",
    )
    assert aws.scan(chamber.state_table) == before
    assert aws.scan(chamber.keys_table) == []
    assert chamber.status() == {"seal": {"status": "uninitialized"}, "keys": None}

    # Nothing was consumed either: the same setup token initializes with the right ARNs.
    answer = init(chamber, setup_token, kms_keys, operators=False).json()
    assert answer == {"status": "unsealed", "validators_loaded": 0}
    assert len(aws.scan(chamber.state_table)) == 1
    chamber.stop()

    assert_no_secret_leaked(chamber, aws)


# ---------------------------------------------------------------------- 4. start-up window


def test_signing_answers_503_never_404_while_the_key_store_loads_at_start_up(
    new_chamber: Callable[[], AwsChamber], aws: Aws, keystore_file: Path
) -> None:
    """The encrypted keys load before the state opens signing: while the (slow) key store
    loads, a signing request for a stored key is told to retry (503), never that the key does
    not exist (404), which validator clients take as a missing key."""
    kms_keys = aws.new_keys()
    chamber = new_chamber()
    setup_token = chamber.wait_setup_token()
    assert init(chamber, setup_token, kms_keys, operators=False).json()["status"] == "unsealed"
    assert import_key(chamber, keystore_file)["data"][0]["status"] == "imported"
    signature = assert_signs(chamber, bodies.BASE_EPOCH + 3)

    statuses: list[int] = []
    with aws.slow("Scan", [chamber.keys_table], 2.0):  # loading the key store takes 2 s
        chamber.restart()
        deadline = time.monotonic() + RETRY_DEADLINE
        while not statuses or statuses[-1] != 200:
            assert time.monotonic() < deadline, statuses
            response = chamber.sign(KEY.pubkey_hex, bodies.randao(bodies.BASE_EPOCH + 3))
            statuses.append(response.status)
            time.sleep(0.05)
    assert set(statuses[:-1]) == {503}, statuses  # the loading window was seen, and was 503
    assert bytes.fromhex(response.json()["signature"][2:]) == signature
    assert wait_keys_loaded(chamber, 1)["seal"]["status"] == "unsealed"
    chamber.stop()

    assert_no_secret_leaked(chamber, aws)


# ---------------------------------------------------------------------- known bugs


def test_a_failed_kms_key_is_logged_even_when_it_answers_last(
    new_chamber: Callable[[], AwsChamber], aws: Aws
) -> None:
    kms_keys = aws.new_keys()
    chamber = new_chamber()
    setup_token = chamber.wait_setup_token()
    assert init(chamber, setup_token, kms_keys, operators=False).json()["status"] == "unsealed"

    aws.disable(kms_keys[2])
    # The two good keys answer at once; the disabled one answers "disabled" 1.5 s later.
    with aws.slow("Decrypt", [kms_keys[2]], LATER):
        chamber.restart()
        chamber.wait_state("unsealed")
        time.sleep(LATER + 1.0)  # its answer has arrived by now
    chamber.stop()
    assert_failed_key_logged(chamber, kms_keys[2])
