"""Hardware-key credentials end to end: a real signer process, the real CLI as a subprocess
(``operator register --yubikey``, ``operator unseal --yubikey``, ``operator credentials add
--yubikey``), and software FIDO2 keys that "stay plugged in" across CLI processes (their state
is a file each: ``soft_fido2``), handed to the CLI through ``CHAMBER_YUBIKEY_DEVICE_FACTORY``.

The tests share one signer and run in file order. Refusals are checked for their message and
for leaving the stored state byte-identical; the last test searches everything that left the
processes, and the files at rest, for the keys' outputs.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("fido2", reason="install plugins/chamber-yubikey[test]")
pytest.importorskip("chamber_yubikey", reason="install plugins/chamber-yubikey")

import soft_fido2
from chamber_yubikey.credential import DEVICE_FACTORY_ENV
from soft_fido2 import SoftAuthenticator, expected_output

from tests.vault_support import Chamber, CliResult, encodings

TESTS_DIR = Path(__file__).resolve().parent
KMS_KEYS = "local:yubikey-a,local:yubikey-b,local:yubikey-c"
BOB_PASSPHRASE = "bob's passphrase, long enough for the vault"  # noqa: S105 (test data)
#: How the CLI names the plugin in its errors (by entry point or distribution name).
PLUGIN = "credential type 'yubikey' (plugin chamber"


class Flow:
    keys: ClassVar[dict[str, SoftAuthenticator]] = {}


def keys_env(*keys: SoftAuthenticator) -> dict[str, str]:
    """The CLI's environment with exactly these software keys plugged in."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {
        DEVICE_FACTORY_ENV: soft_fido2.FACTORY,
        soft_fido2.STATE_ENV: os.pathsep.join(str(k.state_path) for k in keys),
        "PYTHONPATH": path,
    }


@pytest.fixture(scope="module")
def chamber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chamber]:
    root = tmp_path_factory.mktemp("yubikey")
    keys_dir = root / "keys"
    keys_dir.mkdir()
    Flow.keys = {
        name: SoftAuthenticator(keys_dir / f"{name}.json")
        for name in ("alice-primary", "alice-backup", "bob")
    }
    cham = Chamber(root / "signer")
    cham.start()
    try:
        yield cham
    finally:
        cham.stop()


def key(name: str) -> SoftAuthenticator:
    return Flow.keys[name]


def operator(
    chamber: Chamber,
    command: str,
    *args: str,
    keys: tuple[str, ...] = (),
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> CliResult:
    return chamber.operator(
        command, *args, stdin=stdin, env={**keys_env(*(key(k) for k in keys)), **(env or {})}
    )


def credentials(
    chamber: Chamber,
    command: str,
    *args: str,
    keys: tuple[str, ...] = (),
    stdin: str | None = None,
) -> CliResult:
    return chamber.run_cli(
        "operator",
        "credentials",
        command,
        *args,
        "--signer-url",
        chamber.url,
        stdin=stdin,
        env=keys_env(*(key(k) for k in keys)),
    )


def listing(chamber: Chamber, name: str, *, cli: bool = False) -> dict[str, Any]:
    """The operator's credentials: through ``operator credentials list``, or the route it
    calls (cheaper)."""
    if cli:
        answer: dict[str, Any] = chamber.run_cli(
            "operator", "credentials", "list", "--operator", name, "--signer-url", chamber.url
        ).json()
        return answer
    response = chamber.http("GET", f"/api/v1/chamber/unseal/credentials?operator={name}")
    assert response.status == 200, response.body
    listed: dict[str, Any] = response.json()
    return listed


def unseal(chamber: Chamber, name: str, *keys: str) -> CliResult:
    return operator(chamber, "unseal", "--operator", name, "--yubikey", keys=keys)


def credential_id(public: dict[str, str]) -> bytes:
    text = public["credential_id"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def assert_cli_error(result: CliResult, code: int, *messages: str) -> None:
    """The CLI failed cleanly: no output, no traceback, the messages on its last stderr line."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("containment-chamber: "), result.stderr
    for message in messages:
        assert message in last, result.stderr


def refused_without_change(chamber: Chamber, run: Any, code: int, *messages: str) -> CliResult:
    before = chamber.state_rows()
    result: CliResult = run()
    assert_cli_error(result, code, *messages)
    assert chamber.state_rows() == before, "a refused attempt changed the stored state"
    return result


def shares_received(chamber: Chamber) -> int:
    return int(chamber.status()["seal"]["shares_received"])


# ---------------------------------------------------------------------- the ceremonies


def test_register_add_and_unseal_with_hardware_keys(chamber: Chamber) -> None:
    setup_token = chamber.wait_setup_token()
    init = chamber.operator(
        "init",
        "--setup-token",
        "env:SETUP_TOKEN",
        "--kms-key-arns",
        KMS_KEYS,
        "--kms-threshold",
        "2",
        "--unseal-threshold",
        "2",
        "--operators",
        "alice,bob",
        env={"SETUP_TOKEN": setup_token},
    ).json()
    tokens = init["operator_tokens"]

    # alice's first credential is her security key, straight from the registration token.
    registered = operator(
        chamber,
        "register",
        "--operator",
        "alice",
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--credential-id",
        "yubikey-1",
        "--yubikey",
        keys=("alice-primary",),
        env={"REGISTRATION_TOKEN": tokens["alice"]},
    )
    assert registered.json() == {"registered": 1, "remaining": 1}
    assert "touch your security key" in registered.stderr
    assert key("alice-primary").touches == 2

    # bob registers a passphrase, then adds his key as the runbook does.
    chamber.operator(
        "register",
        "--operator",
        "bob",
        "--registration-token",
        "env:REGISTRATION_TOKEN",
        "--passphrase-stdin",
        stdin=BOB_PASSPHRASE + "\n",
        env={"REGISTRATION_TOKEN": tokens["bob"]},
    ).json()
    chamber.wait_state("kms_unsealed")
    added = credentials(
        chamber,
        "add",
        "--operator",
        "bob",
        "--existing-credential-id",
        "password-1",
        "--new-credential-id",
        "yubikey-1",
        "--yubikey",
        "--passphrase-stdin",
        stdin=BOB_PASSPHRASE + "\n",
        keys=("bob",),
    )
    assert added.json() == {"operator": "bob", "credential_id": "yubikey-1"}

    # The signer lists the keys' public parameters and knows the type.
    [alice_key] = listing(chamber, "alice", cli=True)["credentials"]
    assert alice_key["credential_id"] == "yubikey-1" and alice_key["type"] == "yubikey"
    assert alice_key["available"] is True
    assert set(alice_key["public"]) == {"credential_id", "salt", "rp_id", "name"}
    assert credential_id(alice_key["public"]) in key("alice-primary").credential_ids
    bob = listing(chamber, "bob")
    assert bob["credential_ids"] == ["password-1", "yubikey-1"]
    assert credential_id(bob["credentials"][1]["public"]) in key("bob").credential_ids

    # Unseal with the keys, no credential id named.
    assert unseal(chamber, "alice", "alice-primary").json() == {
        "shares_received": 1,
        "shares_required": 2,
    }
    assert key("alice-primary").touches == 3
    assert unseal(chamber, "bob", "bob").json() == {"status": "unsealed", "validators_loaded": 0}


def test_a_wrong_hardware_key_changes_nothing(chamber: Chamber, tmp_path: Path) -> None:
    chamber.restart()
    chamber.wait_state("kms_unsealed")

    # Another operator's key: the CLI finds none of alice's credentials on it, says so, and
    # sends nothing.
    refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", "bob"),
        1,
        PLUGIN,
        "): no registered hardware key of operator 'alice' is plugged in (the plugged-in "
        "security key holds none of its yubikey credentials: yubikey-1)",
    )
    # Nothing plugged in at all.
    refused_without_change(
        chamber, lambda: unseal(chamber, "alice"), 1, "no FIDO2 security key is plugged in"
    )
    # The key is there but the touch is refused.
    key("alice-primary").configure(touch="deny")
    try:
        refused_without_change(
            chamber,
            lambda: unseal(chamber, "alice", "alice-primary"),
            1,
            PLUGIN,
            "): unlocking with the security key of operator 'alice': the touch was refused on "
            "the security key",
        )
    finally:
        key("alice-primary").configure(touch="approve")
    assert shares_received(chamber) == 0

    # A key that holds alice's credential id but answers with another output (a clone with
    # another secret): the signer refuses it, 401, and nothing is stored.
    clone_path = tmp_path / "clone.json"
    shutil.copy(key("alice-primary").state_path, clone_path)
    Flow.keys["clone"] = SoftAuthenticator(clone_path)
    key("clone").replace_secret()
    refused_without_change(
        chamber,
        lambda: unseal(chamber, "alice", "clone"),
        1,
        "the signer answered 401: wrong passphrase for operator 'alice'",
    )
    # The same wrong answer as the proof for adding a credential.
    refused_without_change(
        chamber,
        lambda: credentials(
            chamber,
            "add",
            "--operator",
            "alice",
            "--existing-credential-type",
            "yubikey",
            "--existing-credential-id",
            "yubikey-1",
            "--new-credential-id",
            "password-1",
            "--passphrase-stdin",
            stdin="a new passphrase that is never added\n",
            keys=("clone",),
        ),
        1,
        "the signer answered 401: wrong passphrase for credential 'yubikey-1' of operator 'alice'",
    )
    assert shares_received(chamber) == 0
    assert [c["credential_id"] for c in listing(chamber, "alice")["credentials"]] == ["yubikey-1"]

    # The right key still works afterwards.
    assert unseal(chamber, "alice", "alice-primary").json()["shares_received"] == 1


def test_a_backup_key_added_with_the_first_key_then_replacing_it(chamber: Chamber) -> None:
    chamber.wait_state("kms_unsealed")
    # Both keys plugged in: the primary proves yubikey-1 (found without a touch); then both
    # blink and alice touches the backup key, which is registered.
    key("alice-primary").configure(touch_script=["approve", "ignore"])
    added = credentials(
        chamber,
        "add",
        "--operator",
        "alice",
        "--existing-credential-type",
        "yubikey",
        "--existing-credential-id",
        "yubikey-1",
        "--new-credential-id",
        "yubikey-backup",
        "--yubikey",
        keys=("alice-primary", "alice-backup"),
    )
    assert added.json() == {"operator": "alice", "credential_id": "yubikey-backup"}
    assert "2 security keys are plugged in: touch the one to register" in added.stderr
    publics = {c["credential_id"]: c["public"] for c in listing(chamber, "alice")["credentials"]}
    assert list(publics) == ["yubikey-1", "yubikey-backup"]
    assert key("alice-backup").credential_ids == [credential_id(publics["yubikey-backup"])]
    assert len(key("alice-primary").credential_ids) == 1

    # After a restart the backup key alone unseals alice's share.
    chamber.restart()
    chamber.wait_state("kms_unsealed")
    assert unseal(chamber, "alice", "alice-backup").json()["shares_received"] == 1
    assert chamber.operator(
        "unseal", "--operator", "bob", "--passphrase-stdin", stdin=BOB_PASSPHRASE + "\n"
    ).json() == {"status": "unsealed", "validators_loaded": 0}

    # The primary is lost: the backup removes it.
    removed = credentials(
        chamber,
        "remove",
        "--operator",
        "alice",
        "--existing-credential-type",
        "yubikey",
        "--existing-credential-id",
        "yubikey-backup",
        "--remove-credential-id",
        "yubikey-1",
        keys=("alice-backup",),
    )
    assert removed.json() == {"operator": "alice", "removed_credential_id": "yubikey-1"}
    assert listing(chamber, "alice")["credential_ids"] == ["yubikey-backup"]


def short_secret_add(chamber: Chamber) -> Any:
    """``credentials add`` of a yubikey credential whose material is 16 bytes, not 32 (what a
    broken or hostile client could send; the plugin never does)."""
    return chamber.http(
        "POST",
        "/api/v1/chamber/unseal/credentials",
        {
            "operator": "alice",
            "existing_credential_id": "yubikey-backup",
            "existing_secret": base64.b64encode(bytes(32)).decode(),
            "new_credential_id": "yubikey-short",
            "new_secret": base64.b64encode(bytes(16)).decode(),
            "credential_type": "yubikey",
            "credential_public": {},
        },
    )


def test_the_signer_refuses_material_that_is_not_32_bytes(chamber: Chamber) -> None:
    before = chamber.state_rows()
    response = short_secret_add(chamber)
    assert response.status == 400, response.body
    body = response.json()
    assert "must be exactly 32 bytes, got 16" in body["message"]
    assert chamber.state_rows() == before


def test_a_refused_new_secret_names_the_new_secret_field(chamber: Chamber) -> None:
    response = short_secret_add(chamber)
    assert response.status == 400
    assert response.json()["field"] == "new_secret"


def test_no_key_output_left_the_processes(chamber: Chamber) -> None:
    outputs = []
    for owner, name in (("alice", "yubikey-backup"), ("bob", "yubikey-1")):
        public = next(
            c["public"]
            for c in listing(chamber, owner)["credentials"]
            if c["credential_id"] == name
        )
        holder = key("alice-backup") if owner == "alice" else key("bob")
        outputs.append(
            expected_output(
                holder.state_path, credential_id(public), base64.b64decode(public["salt"])
            )
        )
    chamber.stop()
    at_rest = chamber.files_at_rest()
    for output in outputs:
        for where, text in chamber.transcript:
            for form in encodings(output):
                assert form not in text, f"a key's output appeared in {where}"
        for name, data in at_rest.items():
            assert output not in data, f"a key's output is stored in {name}"
            for form in encodings(output):
                assert form.encode() not in data, f"a key's output is stored in {name}"
