"""``containment-chamber keys generate | import | list | activate | deactivate | delete``: the real
CLI as a subprocess against one real signer (vault in KMS-only mode, SQLite key store, key
generation enabled without backup). Every CLI output and HTTP answer is kept in the chamber's
transcript; the last test searches it, and the server's log, for the secrets used.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamber.cli.keys import keys_app
from chamber.crypto.derivation import deposit_data_json
from chamber.crypto.keystore import encrypt_keystore
from tests import bodies
from tests.harness import TestKey as Key
from tests.harness import make_keys
from tests.vault_support import (
    OPS_TOKEN,
    SIGNING_TOKEN,
    Chamber,
    CliResult,
    TerminalSession,
    cli,
    vault_config,
)

KEYS = make_keys(8, seed="keys-cli")
KEYSTORE_PASSWORD = "keystore-password-of-the-keys-cli"
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 test vector
NO_SIGNER = "http://127.0.0.1:1"
SECRETS = {
    "ops token": OPS_TOKEN,
    "signing token": SIGNING_TOKEN,
    "keystore password": KEYSTORE_PASSWORD,
    **{f"secret key {i}": key.secret_hex[2:] for i, key in enumerate(KEYS)},
}


@pytest.fixture(scope="module")
def chamber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chamber]:
    root = tmp_path_factory.mktemp("keys-cli")
    chamber = Chamber(root)
    config = vault_config(root)
    config["auth_policies"]["ops-team"]["allowed_scopes"] += [
        "chamber_keys_list",
        "chamber_keys_generate",
        "chamber_keys_delete",
    ]
    config["chamber"] = {"keys": {"generate": {"enabled": True}}}
    chamber.config_path.write_text(yaml.safe_dump(config))
    chamber.start()
    try:
        chamber.operator(
            "init",
            "--setup-token",
            "env:SETUP_TOKEN",
            "--kms-key-arns",
            "local:keys-a,local:keys-b",
            "--kms-threshold",
            "1",
            env={"SETUP_TOKEN": chamber.wait_setup_token()},
        ).json()
        yield chamber
    finally:
        chamber.stop()


# ---------------------------------------------------------------------- helpers


def run(
    chamber: Chamber,
    *args: str,
    cwd: Path | None = None,
    stdin: str = "",
    remote: bool = True,
) -> CliResult:
    """``containment-chamber keys ARGS... --signer-url URL --auth-token env:CC_AUTH_TOKEN`` in
    ``cwd`` (default: the repository), recorded in the chamber's transcript."""
    argv = ["keys", *args]
    if remote:
        argv += ["--signer-url", chamber.url, "--auth-token", "env:CC_AUTH_TOKEN"]
    out = subprocess.run(
        [sys.executable, "-m", "chamber", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **chamber.env},
        cwd=cwd or Path(__file__).resolve().parent.parent,
        timeout=120,
        start_new_session=True,
        check=False,
    )
    label = " ".join(argv[:2])
    chamber.transcript.append((f"{label} stdout", out.stdout))
    chamber.transcript.append((f"{label} stderr", out.stderr))
    assert "Traceback" not in out.stderr, out.stderr
    return CliResult(argv, out.returncode, out.stdout, out.stderr)


def inproc(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """``keys ARGS...`` in this process: for the refusals made before any request is sent
    (an interpreter start per case would cost more than the whole check)."""
    capsys.readouterr()
    try:
        code = keys_app(list(args), result_action="return_value")
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return CliResult(["keys", *args], code if isinstance(code, int) else 0, out.out, out.err)


def usage_error(result: CliResult, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("containment-chamber: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def refused(result: CliResult, status: int, *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(f"containment-chamber: the signer answered {status}: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def statuses(result: CliResult) -> list[str]:
    return [entry["status"] for entry in json.loads(result.stdout)["data"]]


def listed(chamber: Chamber, query: str = "") -> dict[str, dict[str, Any]]:
    """The stored keys, straight from the API (the CLI's own listing is tested on its own)."""
    response = chamber.http("GET", f"/api/v1/chamber/keys{query}", token=OPS_TOKEN)
    assert response.status == 200, response.body
    return {entry["pubkey"]: entry for entry in response.json()["data"]}


def generate(chamber: Chamber, count: int) -> list[str]:
    response = chamber.http(
        "POST", "/api/v1/chamber/keys/generate", {"count": count}, token=OPS_TOKEN
    )
    assert response.status == 200, response.body
    return [entry["pubkey"] for entry in response.json()["data"]]


def raw_key_file(directory: Path, key: Key, form: str = "hex") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if form == "hex":
        path = directory / f"{key.pubkey_hex[2:12]}.key"
        path.write_text(key.secret_hex + "\n")
    else:
        path = directory / f"{key.pubkey_hex[2:12]}.yaml"
        path.write_text(yaml.safe_dump({"type": "file-raw", "privateKey": key.secret_hex}))
    return path


def keystore_file(directory: Path, key: Key) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    keystore = encrypt_keystore(
        key.secret.to_bytes(32, "big"),
        KEYSTORE_PASSWORD,
        kdf="pbkdf2",
        kdf_params={"c": 1024},  # fast: the import path is what is tested
        pubkey=key.pubkey,
        path="m/12381/3600/0/0/0",
    )
    path = directory / f"keystore-{key.pubkey_hex[2:12]}.json"
    path.write_text(json.dumps(keystore))
    return path


# ---------------------------------------------------------------------- generate


def test_generate_writes_deposit_data_without_replacing_files(
    chamber: Chamber, tmp_path: Path
) -> None:
    out = tmp_path / "deposits"
    out.mkdir()
    now = int(time.time())
    taken = {out / f"deposit_data-{stamp}.json": f"taken {stamp}" for stamp in range(now, now + 30)}
    for path, text in taken.items():
        path.write_text(text)

    result = run(
        chamber,
        "generate",
        "--count",
        "2",
        "--withdrawal-address",
        ADDRESS,
        "--output-dir",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [entry["status"] for entry in answer["data"]] == ["generated", "generated"]
    assert all(entry["backup"] is False for entry in answer["data"])
    assert "deposit_data" not in answer  # written to the file, not printed
    written = Path(answer["deposit_data_file"])
    assert written.parent == out and written not in taken
    assert written.name.startswith("deposit_data-") and written.suffix == ".json"
    assert int(written.stem.split("-")[1]) >= now + 30  # the taken names were skipped
    for path, text in taken.items():
        assert path.read_text() == text
    assert f"written to {written}" in result.stderr
    assert "warning: no backup of the mnemonics of 2 generated keys" in result.stderr
    assert stat.S_IMODE(written.stat().st_mode) == 0o440  # as staking-deposit-cli leaves it

    text = written.read_text()
    entries = json.loads(text)
    assert text == deposit_data_json(entries)  # staking-deposit-cli's exact form
    assert ["0x" + entry["pubkey"] for entry in entries] == [e["pubkey"] for e in answer["data"]]
    for entry in entries:
        assert entry["withdrawal_credentials"] == "01" + "00" * 11 + ADDRESS[2:].lower()
        assert entry["amount"] == 32 * 10**9
        assert entry["fork_version"] == "00000000"
        assert entry["network_name"] == "mainnet"
    stored = listed(chamber)
    for entry in answer["data"]:
        assert stored[entry["pubkey"]]["origin"] == "generated"
        assert stored[entry["pubkey"]]["loaded"] is True


def test_generate_compounding_amount_and_without_deposit(chamber: Chamber, tmp_path: Path) -> None:
    result = run(
        chamber,
        "generate",
        "--count",
        "1",
        "--withdrawal-address",
        ADDRESS,
        "--compounding",
        "--amount-gwei",
        str(64 * 10**9),
        "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(Path(json.loads(result.stdout)["deposit_data_file"]).read_text())
    assert entry["withdrawal_credentials"].startswith("02")
    assert entry["amount"] == 64 * 10**9

    # Without withdrawal credentials: no deposit data, no file, not even in the current directory.
    here = tmp_path / "cwd"
    here.mkdir()
    plain = run(chamber, "generate", "--count", "1", cwd=here)
    assert plain.returncode == 0, plain.stderr
    assert "deposit_data_file" not in json.loads(plain.stdout)
    assert not list(here.iterdir())


def test_generate_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lowered = ADDRESS.lower()
    for args, fragments in (
        (["--count", "0"], ["--count must be at least 1"]),
        (["--count", "1", "--withdrawal-address", lowered], ["EIP-55 checksum"]),
        (["--count", "1", "--withdrawal-address", "0x1234"], ["40 hex digits"]),
        (["--count", "1", "--compounding"], ["--compounding needs --withdrawal-address"]),
        (
            ["--count", "1", "--withdrawal-address", ADDRESS, "--bls-withdrawal"],
            ["not both"],
        ),
        (["--count", "1", "--amount-gwei", "32000000000"], ["--amount-gwei"]),
        (
            ["--count", "1", "--withdrawal-address", ADDRESS, "--amount-gwei", "33000000000"],
            ["between 1000000000 and 32000000000"],
        ),
        (
            ["--count", "1", "--withdrawal-address", ADDRESS, "--output-dir", str(tmp_path / "no")],
            ["--output-dir", "is not a directory"],
        ),
    ):
        usage_error(inproc(capsys, "generate", *args, "--signer-url", NO_SIGNER), *fragments)


def test_generate_refusals(chamber: Chamber, tmp_path: Path) -> None:
    """The signer's refusals: exit 1 with its message, no file."""
    refused(
        run(chamber, "generate", "--count", "1", "--bls-withdrawal", "--output-dir", str(tmp_path)),
        400,
        "chamber.keys.generate.backup",
    )
    refused(run(chamber, "generate", "--count", "101"), 400, "max_items_per_request")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- import


def test_import_raw_key_files_then_duplicates(chamber: Chamber, tmp_path: Path) -> None:
    hex_file = raw_key_file(tmp_path, KEYS[0], "hex")
    yaml_file = raw_key_file(tmp_path, KEYS[1], "yaml")
    args = ["import", "--raw-key-file", str(hex_file), "--raw-key-file", str(yaml_file)]
    first = run(chamber, *args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["data"] == [
        {"file": str(hex_file), "status": "imported", "pubkey": KEYS[0].pubkey_hex},
        {"file": str(yaml_file), "status": "imported", "pubkey": KEYS[1].pubkey_hex},
    ]
    again = run(chamber, *args)
    assert again.returncode == 0, again.stderr  # a duplicate is not a failure
    assert statuses(again) == ["duplicate", "duplicate"]
    stored = listed(chamber)
    assert stored[KEYS[0].pubkey_hex]["origin"] == "imported"
    assert stored[KEYS[1].pubkey_hex]["status"] == "active"
    assert chamber.sign(KEYS[0].pubkey_hex, bodies.randao()).status == 200  # signable at once


def test_import_keystores_and_raw_keys_in_batches(chamber: Chamber, tmp_path: Path) -> None:
    keystores = [keystore_file(tmp_path, key) for key in KEYS[2:4]]
    multi = tmp_path / "two-keys.yaml"
    multi.write_text(
        yaml.safe_dump_all(
            [{"type": "file-raw", "privateKey": key.secret_hex} for key in KEYS[4:6]]
        )
    )
    zero = tmp_path / "zero.key"  # not a BLS secret key: the signer's per-key error
    zero.write_text("0x" + "00" * 32)
    password = tmp_path / "password.txt"
    password.write_text(KEYSTORE_PASSWORD + "\n")
    result = run(
        chamber,
        "import",
        *map(str, keystores),
        "--raw-key-file",
        str(multi),
        "--raw-key-file",
        str(zero),
        "--password-file",
        str(password),
        "--batch-size",
        "3",
    )
    assert result.returncode == 1, result.stderr  # the zero key
    assert "batch 1/2: keys 1-3 of 5" in result.stderr
    assert "batch 2/2: keys 4-5 of 5" in result.stderr
    data = json.loads(result.stdout)["data"]
    assert data[:4] == [
        {"file": str(keystores[0]), "status": "imported", "pubkey": KEYS[2].pubkey_hex},
        {"file": str(keystores[1]), "status": "imported", "pubkey": KEYS[3].pubkey_hex},
        {"file": str(multi), "document": 1, "status": "imported", "pubkey": KEYS[4].pubkey_hex},
        {"file": str(multi), "document": 2, "status": "imported", "pubkey": KEYS[5].pubkey_hex},
    ]
    assert data[4]["file"] == str(zero) and data[4]["status"] == "error"
    assert "not a valid BLS secret key" in data[4]["message"]

    # Raw keys alone need no keystore password (nothing is prompted or read from stdin); a wrong
    # keystore password is that keystore's error.
    wrong = run(
        chamber,
        "import",
        str(keystore_file(tmp_path / "k", KEYS[7])),
        "--raw-key-file",
        str(multi),
        "--password-stdin",
        stdin="not the password\n",
    )
    assert wrong.returncode == 1
    assert statuses(wrong) == ["error", "duplicate", "duplicate"]
    assert "checksum" in json.loads(wrong.stdout)["data"][0]["message"]


def test_import_usage_errors(
    chamber: Chamber,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Bad raw key files are refused before anything is sent, without quoting their content."""
    monkeypatch.setenv("CC_AUTH_TOKEN", OPS_TOKEN)
    short = tmp_path / "short.key"
    short.write_text(KEYS[6].secret_hex[:-1])
    descriptor = tmp_path / "keystore.yaml"
    descriptor.write_text(yaml.safe_dump({"type": "file-keystore", "keystoreFile": "x.json"}))
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(f"type: file-raw\nprivateKey: {KEYS[6].secret_hex}\n  : [\n")
    short_yaml = tmp_path / "short.yaml"
    short_yaml.write_text(f"type: file-raw\nprivateKey: {KEYS[6].secret_hex[:-2]}\n")
    for path, fragment in (
        (short, "a hex secret key is 32 bytes (64 hex digits); this one has 63"),
        (keystore_file(tmp_path, KEYS[6]), "an EIP-2335 keystore: give keystores as arguments"),
        (descriptor, "type 'file-keystore': only 'type: file-raw' descriptors hold a raw key"),
        (bad_yaml, "invalid YAML"),
        (short_yaml, "privateKey must be 32 bytes of hex"),
        (tmp_path / "missing.key", "does not exist"),
    ):
        result = inproc(
            capsys,
            "import",
            "--raw-key-file",
            str(path),
            "--signer-url",
            chamber.url,
            "--auth-token",
            "env:CC_AUTH_TOKEN",
        )
        usage_error(result, f"--raw-key-file {path}: {fragment}")
        chamber.transcript.append(("keys import (in process)", result.stderr))
    usage_error(
        inproc(capsys, "import", "--auth-token", "env:CC_AUTH_TOKEN"),
        "give at least one keystore file or --raw-key-file",
    )
    assert KEYS[6].pubkey_hex not in listed(chamber)  # nothing was sent


# ---------------------------------------------------------------------- list


def test_list_table_and_json(chamber: Chamber) -> None:
    generated = generate(chamber, 1)
    (off,) = generate(chamber, 1)
    patch = {"pubkeys": [off], "status": "inactive"}
    assert chamber.http("PATCH", "/api/v1/chamber/keys", patch, OPS_TOKEN).status == 200
    everything = listed(chamber)

    table = run(chamber, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        *("PUBKEY", "STORE", "STATUS", "ORIGIN", "CREATED", "(UTC)", "BACKUP", "LOADED")
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == set(everything)
    assert KEYS[0].pubkey_hex in rows
    assert rows[generated[0]][1:4] == ["sqlite", "active", "generated"]
    assert rows[generated[0]][-2:] == ["no", "yes"]
    assert rows[off][2] == "inactive" and rows[off][-1] == "no"
    assert lines[-1].startswith(f"{len(everything)} keys (")

    inactive = run(chamber, "list", "--status", "inactive", "--store", "sqlite", "--json")
    assert inactive.returncode == 0, inactive.stderr
    assert json.loads(inactive.stdout)["data"] == list(listed(chamber, "?status=inactive").values())
    assert off in inactive.stdout and generated[0] not in inactive.stdout
    refused(run(chamber, "list", "--store", "nope"), 400, "no encrypted key store named 'nope'")


# ---------------------------------------------------------------------- activate, deactivate


def test_deactivate_and_activate(chamber: Chamber, tmp_path: Path) -> None:
    first, second = generate(chamber, 2)
    off = run(chamber, "deactivate", first, second.upper().replace("0X", "0x"))
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["data"] == [
        {"status": "deactivated", "pubkey": first},
        {"status": "deactivated", "pubkey": second},
    ]
    inactive = listed(chamber, "?status=inactive")
    assert {first, second} <= set(inactive)
    assert inactive[first]["loaded"] is False
    assert chamber.sign(first, bodies.randao()).status == 404

    pubkeys_file = tmp_path / "pubkeys.txt"
    pubkeys_file.write_text(f"# fleet A\n{first}\n\n{second}  # second\n{first}\n")
    on = run(chamber, "activate", "--pubkeys-file", str(pubkeys_file), "--batch-size", "1")
    assert on.returncode == 0, on.stderr
    assert statuses(on) == ["activated", "activated"]  # the repeated key is sent once
    assert "batch 2/2" in on.stderr
    assert chamber.sign(first, bodies.randao()).status == 200

    unknown = "0x" + "ab" * 48
    mixed = run(chamber, "activate", first, unknown)
    assert mixed.returncode == 1  # not found
    assert statuses(mixed) == ["unchanged", "not_found"]


def test_bad_pubkeys_are_usage_errors_naming_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = KEYS[0].pubkey_hex
    for command, extra in (("activate", []), ("deactivate", []), ("delete", ["--yes"])):
        usage_error(
            inproc(capsys, command, good, "0xnot-a-key", *extra, "--signer-url", NO_SIGNER),
            f"keys {command}: argument 2: '0xnot-a-key' is not a public key",
        )
    pubkeys_file = tmp_path / "pubkeys.txt"
    pubkeys_file.write_text(f"{good}\n{good[:-2]}\n")
    usage_error(
        inproc(capsys, "deactivate", "--pubkeys-file", str(pubkeys_file)),
        f"--pubkeys-file {pubkeys_file} line 2: '{good[:-2]}' is not a public key",
    )
    # A secret key given by mistake is not echoed.
    leaked = inproc(capsys, "deactivate", KEYS[0].secret_hex)
    usage_error(leaked, "argument 1: a 32-byte hex value (not shown")
    assert KEYS[0].secret_hex[2:] not in leaked.stderr
    usage_error(inproc(capsys, "activate"), "give at least one public key")
    usage_error(
        inproc(capsys, "deactivate", "--pubkeys-file", str(tmp_path / "missing.txt")),
        "--pubkeys-file: cannot read",
    )
    usage_error(inproc(capsys, "activate", good, "--batch-size", "0"), "--batch-size")


# ---------------------------------------------------------------------- delete


def test_delete_needs_yes_without_a_terminal(chamber: Chamber, tmp_path: Path) -> None:
    (pubkey,) = generate(chamber, 1)
    result = run(chamber, "delete", pubkey, cwd=tmp_path)
    usage_error(result, "standard input is not a terminal", "--yes")
    assert pubkey in listed(chamber)
    assert not list(tmp_path.iterdir())


def test_delete_writes_the_slashing_export(
    chamber: Chamber, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second, third = generate(chamber, 3)
    slot = bodies.BASE_EPOCH * 32 + 5
    assert chamber.sign(first, bodies.block_v2(slot)).status == 200
    assert chamber.sign(second, bodies.attestation()).status == 200

    export = tmp_path / "export.json"
    export.write_text("keep me")
    usage_error(
        inproc(capsys, "delete", first, "--yes", "--slashing-export", str(export)),
        f"--slashing-export: {export} exists; refusing to replace it",
    )
    assert export.read_text() == "keep me"
    assert first in listed(chamber)

    unknown = "0x" + "cd" * 48
    result = run(
        chamber, "delete", first, second, third, unknown, "--yes", "--batch-size", "2", cwd=tmp_path
    )
    assert result.returncode == 1  # the unknown key
    answer = json.loads(result.stdout)
    assert [entry["status"] for entry in answer["data"]] == [
        "deleted",
        "deleted",
        "deleted",
        "not_found",
    ]
    written = tmp_path / answer["slashing_protection_file"]
    assert written.parent == tmp_path and written.name.startswith("slashing-export-")
    assert written.name in result.stderr
    interchange = json.loads(written.read_text())
    assert interchange["metadata"]["interchange_format_version"] == "5"
    history = {entry["pubkey"]: entry for entry in interchange["data"]}
    assert set(history) == {first, second}  # one file for both batches
    assert history[first]["signed_blocks"][0]["slot"] == str(slot)
    assert history[second]["signed_attestations"][0]["target_epoch"] == str(bodies.BASE_EPOCH)
    assert not {first, second, third} & set(listed(chamber))
    assert chamber.sign(first, bodies.randao()).status == 404

    # Deleting it again: not_found (exit 1), and the history is exported again, to a chosen file.
    again = run(chamber, "delete", first, "--yes", "--slashing-export", str(tmp_path / "x.json"))
    assert again.returncode == 1
    assert statuses(again) == ["not_found"]
    assert json.loads((tmp_path / "x.json").read_text())["data"][0]["pubkey"] == first


def test_delete_asks_on_a_terminal(chamber: Chamber, tmp_path: Path) -> None:
    (pubkey,) = generate(chamber, 1)
    export = tmp_path / "export.json"
    args = [
        "keys",
        "delete",
        pubkey,
        "--slashing-export",
        str(export),
        "--signer-url",
        chamber.url,
        "--auth-token",
        "env:CC_AUTH_TOKEN",
    ]
    session = TerminalSession(*args, env=chamber.env)
    session.expect("Type 'yes' to delete: ")
    session.type_line("no")
    code, output = session.finish()
    chamber.transcript.append(("keys delete (terminal)", output))
    assert code == 1, output
    assert "not confirmed; nothing was deleted" in output
    assert pubkey in listed(chamber) and not export.exists()

    session = TerminalSession(*args, env=chamber.env)
    session.expect("Type 'yes' to delete: ")
    assert pubkey in session.output and str(export) in session.output
    session.type_line("yes")
    code, output = session.finish()
    chamber.transcript.append(("keys delete (terminal)", output))
    assert code == 0, output
    assert pubkey not in listed(chamber)
    assert json.loads(export.read_text())["data"] == []


# ---------------------------------------------------------------------- refusals, secrets


def test_remote_flags_are_checked_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pubkey = KEYS[0].pubkey_hex
    monkeypatch.setenv("CC_TEST_TOKEN", "some-token-0123456789")
    for args in (
        ["list"],
        ["generate", "--count", "1"],
        ["import", "--raw-key-file", str(raw_key_file(tmp_path, KEYS[7]))],
        ["activate", pubkey],
        ["deactivate", pubkey],
        ["delete", pubkey, "--yes"],
    ):
        literal = inproc(capsys, *args, "--signer-url", NO_SIGNER, "--auth-token", "abc-literal")
        usage_error(literal, "env:VAR", "visible to every process")
        assert "abc-literal" not in literal.stderr
        usage_error(inproc(capsys, *args), "--auth-token env:VAR is required")
        plain = inproc(
            capsys,
            *args,
            "--signer-url",
            "http://10.1.2.3:9000",
            "--auth-token",
            "env:CC_TEST_TOKEN",
        )
        usage_error(plain, "refusing plain HTTP to 10.1.2.3", "--allow-plaintext-signer")
        unreachable = inproc(
            capsys, *args, "--signer-url", NO_SIGNER, "--auth-token", "env:CC_TEST_TOKEN"
        )
        assert unreachable.returncode == 1, unreachable.stderr
        assert "cannot reach the signer at http://127.0.0.1:1" in unreachable.stderr


def test_refusals_in_a_subprocess(chamber: Chamber) -> None:
    """The real command line: a literal token, and a token without the scope (403)."""
    literal = cli("keys", "list", "--signer-url", chamber.url, "--auth-token", "abc-literal")
    usage_error(literal, "env:VAR", "visible to every process")
    forbidden = cli(
        "keys",
        "delete",
        KEYS[0].pubkey_hex,
        "--yes",
        "--signer-url",
        chamber.url,
        "--auth-token",
        "env:SIGNING_TOKEN",
        env={"SIGNING_TOKEN": SIGNING_TOKEN},
    )
    refused(forbidden, 403)
    assert KEYS[0].pubkey_hex in listed(chamber)


def test_no_secret_in_any_output(chamber: Chamber) -> None:
    """Runs last: every CLI output, HTTP answer and server log line of the module so far."""
    texts = [*chamber.transcript, *(("server log", line) for line in chamber.server_log_lines())]
    assert len(texts) > 50
    for where, text in texts:
        lowered = text.lower()
        for name, secret in SECRETS.items():
            assert secret.lower() not in lowered, f"{name} in {where}"
