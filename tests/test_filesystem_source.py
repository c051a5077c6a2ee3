"""FilesystemKeySource: what loads, what fails and why, parallel decryption, ``keys check``.

Public keys are computed independently with py_ecc here, never with the backend under test.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from py_ecc.bls import G2ProofOfPossession

from chamber.crypto.bls import CURVE_ORDER
from chamber.crypto.keystore import encrypt_keystore
from chamber.errors import ConfigError, KeyLoadError
from chamber.keys import ValidatorKey
from chamber.keys import filesystem as fs_module
from chamber.keys.filesystem import FilesystemKeySource, check_paths
from tests.support import REPO_ROOT


def _backend() -> Any:
    """The project's auto-selected BLS backend."""
    from chamber.crypto.bls import select_backend

    return select_backend("auto")


def _secret(i: int) -> bytes:
    return (0x1000 + i * 7919).to_bytes(32, "big")


def _pubkey(secret: bytes) -> str:
    return "0x" + G2ProofOfPossession.SkToPk(int.from_bytes(secret, "big")).hex()


FAST = {"kdf": "pbkdf2", "kdf_params": {"c": 2}}
PASSWORDS = ["pw-raw-unused", "pw-alpha", "pw-bravo", "pw-charlie", "pw-delta"]


def _write_keystore(
    path: Path, secret: bytes, password: str, *, password_suffix: str | None = ".txt", **kw: Any
) -> dict[str, Any]:
    options: dict[str, Any] = {**FAST, "pubkey": bytes.fromhex(_pubkey(secret)[2:])} | kw
    keystore = encrypt_keystore(secret, password, **options)
    path.write_text(json.dumps(keystore))
    if password_suffix is not None:
        path.with_suffix(password_suffix).write_text(password + "\n")
    return keystore


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """Every kind of good file and one of each kind of bad file."""
    d = tmp_path / "keys"
    d.mkdir()
    (d / "ks").mkdir()
    # Good: raw descriptor (with 0x), keystore descriptor, standalone .txt, standalone .password.
    (d / "a_raw.yaml").write_text(
        f'type: "file-raw"\nkeyType: "BLS"\nprivateKey: "0x{_secret(1).hex()}"\n'
    )
    _write_keystore(d / "ks" / "bravo.json", _secret(2), PASSWORDS[2], password_suffix=None)
    (d / "ks" / "bravo.pass").write_text(PASSWORDS[2])
    (d / "b_keystore.yaml").write_text(
        "type: file-keystore\nkeystoreFile: ks/bravo.json\nkeystorePasswordFile: ks/bravo.pass\n"
    )
    _write_keystore(d / "c_standalone.json", _secret(3), PASSWORDS[3])
    _write_keystore(d / "d_alt.json", _secret(4), PASSWORDS[4], password_suffix=".password")
    # A keystore referenced by a descriptor *and* loadable standalone: must load once only.
    _write_keystore(d / "e_referenced.json", _secret(5), "pw-echo")
    (d / "e_ref.yaml").write_text(
        "type: file-keystore\nkeystoreFile: e_referenced.json\n"
        "keystorePasswordFile: e_referenced.txt\n"
    )
    # Deposit data beside keystores is skipped silently; so are non-key files and dot-files.
    (d / "deposit_data-1700000000.json").write_text(
        json.dumps([{"pubkey": "aa", "deposit_data_root": "bb"}])
    )
    (d / "notes.md").write_text("not a key")
    (d / ".hidden.json").write_text("{")

    # Bad ones.
    (d / "bad_json.json").write_text('{"version": 4, "crypto": ')
    (d / "bad_json.txt").write_text("x")
    _write_keystore(d / "wrong_password.json", _secret(6), "the-real-one")
    (d / "wrong_password.txt").write_text("not-the-real-one\n")
    ks = _write_keystore(d / "argon.json", _secret(7), "pw")
    ks["crypto"]["kdf"]["function"] = "argon2"
    (d / "argon.json").write_text(json.dumps(ks))
    ks = _write_keystore(d / "version3.json", _secret(8), "pw")
    ks["version"] = 3
    (d / "version3.json").write_text(json.dumps(ks))
    ks = _write_keystore(d / "no_cipher.json", _secret(9), "pw")
    del ks["crypto"]["cipher"]
    (d / "no_cipher.json").write_text(json.dumps(ks))
    ks = _write_keystore(d / "mismatch.json", _secret(10), "pw")
    ks["pubkey"] = _pubkey(_secret(11))[2:]
    (d / "mismatch.json").write_text(json.dumps(ks))
    _write_keystore(d / "no_password.json", _secret(12), "pw", password_suffix=None)
    (d / "unknown_type.yaml").write_text("type: hashicorp\nserverHost: localhost\n")
    (d / "z_duplicate.yaml").write_text(f"type: file-raw\nprivateKey: {_secret(1).hex()}\n")
    (d / "zero.yaml").write_text(f"type: file-raw\nprivateKey: 0x{bytes(32).hex()}\n")
    (d / "order.yml").write_text(f"type: file-raw\nprivateKey: 0x{CURVE_ORDER:064x}\n")
    # Invalid YAML on the line holding a secret: the reason must not quote that line.
    (d / "broken.yaml").write_text(f"type: [file-raw\nprivateKey: 0x{_secret(13).hex()}\n")
    (d / "missing_ref.yaml").write_text(
        "type: file-keystore\nkeystoreFile: nowhere.json\nkeystorePasswordFile: nowhere.txt\n"
    )
    return d


GOOD = {
    "a_raw.yaml": 1,
    "b_keystore.yaml": 2,
    "c_standalone.json": 3,
    "d_alt.json": 4,
    "e_ref.yaml": 5,
}


def _bad(d: Path) -> dict[str, str]:
    return {
        "bad_json.json": "invalid JSON: Expecting value at line 1, column 26",
        "wrong_password.json": "wrong password (checksum mismatch)",
        "argon.json": "unsupported kdf 'argon2' (supported: 'scrypt', 'pbkdf2')",
        "version3.json": "version 3 is not supported (need 4)",
        "no_cipher.json": "missing crypto.cipher",
        "mismatch.json": (
            f"pubkey mismatch: keystore says {_pubkey(_secret(11))},"
            f" the decrypted secret gives {_pubkey(_secret(10))}"
        ),
        "no_password.json": (
            f"missing password file: expected {d / 'no_password.txt'} (or no_password.password)"
        ),
        "unknown_type.yaml": (
            "unsupported type 'hashicorp' (supported: 'file-raw', 'file-keystore')"
        ),
        "z_duplicate.yaml": f"duplicate of {d / 'a_raw.yaml'} (pubkey {_pubkey(_secret(1))})",
        "zero.yaml": "secret key is zero",
        "order.yml": "secret key is not below the BLS12-381 curve order",
        "broken.yaml": "invalid YAML: expected ',' or ']', but got ':' at line 2, column 11",
        "missing_ref.yaml": f"keystoreFile {d / 'nowhere.json'}: does not exist",
    }


def test_exactly_the_good_files_load(key_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = FilesystemKeySource([str(key_dir)], _backend())
    with caplog.at_level(logging.INFO, logger="chamber.keys.filesystem"):
        result = source.load()

    assert sorted(k.pubkey_hex for k in result.keys) == sorted(
        _pubkey(_secret(i)) for i in GOOD.values()
    )
    assert all(isinstance(k, ValidatorKey) and k.source == "filesystem" for k in result.keys)
    errors = {Path(e.path).name: e.reason for e in result.errors}
    assert errors == _bad(key_dir)
    assert all(e.path == str(key_dir / Path(e.path).name) for e in result.errors)

    # Paths stay attached in load_items, in scan order.
    items = source.load_items()
    loaded = {
        Path(path).name: item.pubkey_hex for path, item in items if isinstance(item, ValidatorKey)
    }
    assert loaded == {name: _pubkey(_secret(i)) for name, i in GOOD.items()}
    assert [Path(p).name for p, _ in items] == sorted(Path(p).name for p, _ in items)

    # Summary logged; failures logged with path and reason; never a secret or password.
    summary = [
        r.getMessage() for r in caplog.records if "filesystem keys: loaded" in r.getMessage()
    ]
    assert summary and summary[0].startswith(f"filesystem keys: loaded {len(GOOD)}, failed 13")
    everything = caplog.text + "".join(e.message for e in result.errors)
    for i in range(1, 14):
        assert _secret(i).hex() not in everything
    for password in [*PASSWORDS[1:], "pw-echo", "the-real-one", "not-the-real-one"]:
        assert password not in everything


def test_secrets_are_usable_handles(key_dir: Path) -> None:
    bls = _backend()
    result = FilesystemKeySource([str(key_dir / "a_raw.yaml")], bls).load()
    assert [k.pubkey_hex for k in result.keys] == [_pubkey(_secret(1))]
    signature = bls.sign(result.keys[0].secret, b"message")
    assert G2ProofOfPossession.Verify(result.keys[0].pubkey, b"message", signature)
    assert _secret(1).hex() not in repr(result.keys[0])


def test_single_files_missing_paths_and_other_files(key_dir: Path, tmp_path: Path) -> None:
    paths = [
        str(key_dir / "c_standalone.json"),
        str(tmp_path / "absent"),
        str(key_dir / "notes.md"),
        str(key_dir / "c_standalone.json"),  # listed twice: loaded once
    ]
    items = FilesystemKeySource(paths, _backend()).load_items()
    assert [(Path(p).name, getattr(i, "reason", "ok")) for p, i in items] == [
        ("c_standalone.json", "ok"),
        ("absent", "no such file or directory"),
        ("notes.md", "not a .yaml, .yml or .json file"),
    ]


def test_multi_document_descriptor(tmp_path: Path) -> None:
    (tmp_path / "many.yaml").write_text(
        f"type: file-raw\nprivateKey: '{_secret(1).hex()}'\n---\n"
        "type: file-raw\nprivateKey: nothex\n---\n"
        f"type: file-raw\nkeyType: SECP256K1\nprivateKey: {_secret(2).hex()}\n---\n"
        f"privateKey: {_secret(3).hex()}\n---\n"
        f"type: file-raw\nprivateKey: {_secret(4).hex()}\n"
    )
    result = FilesystemKeySource([str(tmp_path)], _backend()).load()
    assert [k.pubkey_hex for k in result.keys] == [_pubkey(_secret(1)), _pubkey(_secret(4))]
    assert [e.reason for e in result.errors] == [
        "document 2: privateKey must be 32 bytes of hex",
        "document 3: unsupported keyType 'SECP256K1' (only 'BLS')",
        "document 4: missing 'type' (expected 'file-raw' or 'file-keystore')",
    ]


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "latin1.json").write_bytes(b'{"pw": "\xff"}')
    (tmp_path / "latin1.txt").write_text("x")
    (tmp_path / "dir.json").mkdir()  # a directory named like a keystore is not a file: ignored
    ks = encrypt_keystore(_secret(1), "pw", kdf="pbkdf2", kdf_params={"c": 1})
    (tmp_path / "badpw.json").write_text(json.dumps(ks))
    (tmp_path / "badpw.txt").write_bytes(b"\xfe\xff\xfe")
    reasons = {
        Path(e.path).name: e.reason
        for e in FilesystemKeySource([str(tmp_path)], _backend()).load().errors
    }
    assert reasons == {
        "empty.yaml": "empty descriptor file",
        "list.yaml": "descriptor must be a YAML mapping",
        "latin1.json": "not valid UTF-8 (byte 8)",
        "badpw.json": f"password file {tmp_path / 'badpw.txt'}: not valid UTF-8 (byte 0)",
    }


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "locked.yaml"
    target.write_text(f"type: file-raw\nprivateKey: {_secret(1).hex()}\n")
    target.chmod(0)
    if os.geteuid() == 0:  # root reads mode-000 files: simulate the refusal instead
        real_open = Path.open

        def guarded(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == target:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", guarded)
    try:
        [error] = FilesystemKeySource([str(tmp_path)], _backend()).load().errors
    finally:
        target.chmod(0o600)
    assert (error.path, error.reason) == (str(target), "cannot read: Permission denied")


def test_from_config(tmp_path: Path) -> None:
    bls = _backend()
    source = FilesystemKeySource.from_config({"paths": [str(tmp_path)], "load_concurrency": 3}, bls)
    assert (source.paths, source.load_concurrency, source.name) == (
        [str(tmp_path)],
        3,
        "filesystem",
    )
    assert source.requires_unseal is False
    default = FilesystemKeySource.from_config({"paths": [tmp_path]}, bls)  # pydantic gives Paths
    assert default.load_concurrency == (os.cpu_count() or 1)
    for bad in (
        {},
        {"paths": [1]},
        {"paths": [str(tmp_path)], "load_concurrency": 0},
        {"paths": [str(tmp_path)], "load_concurrency": True},
    ):
        with pytest.raises(ConfigError):
            FilesystemKeySource.from_config(bad, bls)
    assert FilesystemKeySource([str(tmp_path)], bls).load().keys == []


# ---------------------------------------------------------------------------------------------
# Parallel decryption


def _scrypt_dir(path: Path, count: int, n: int) -> Path:
    path.mkdir()
    for i in range(count):
        _write_keystore(
            path / f"k{i}.json", _secret(20 + i), f"pw{i}", kdf="scrypt", kdf_params={"n": n}
        )
    return path


def test_keystores_are_decrypted_in_a_process_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools: list[dict[str, Any]] = []
    real_pool = fs_module.ProcessPoolExecutor

    def spy(*args: Any, **kwargs: Any) -> Any:
        pools.append(kwargs)
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(fs_module, "ProcessPoolExecutor", spy)
    directory = _scrypt_dir(tmp_path / "four", 4, 2**10)
    calls: list[tuple[int, int]] = []
    source = FilesystemKeySource(
        [str(directory)],
        _backend(),
        load_concurrency=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    result = source.load()
    assert sorted(k.pubkey_hex for k in result.keys) == sorted(
        _pubkey(_secret(20 + i)) for i in range(4)
    )
    assert result.errors == []
    assert source.last_stats is not None
    assert (source.last_stats.decrypted, source.last_stats.workers) == (4, 2)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [pool] = pools
    assert pool["max_workers"] == 2
    assert pool["mp_context"].get_start_method() == "spawn"

    serial = FilesystemKeySource([str(directory)], _backend(), load_concurrency=1)
    assert len(serial.load().keys) == 4
    assert serial.last_stats is not None and serial.last_stats.workers == 1
    assert len(pools) == 1  # concurrency 1: no pool


def test_no_pool_for_zero_or_one_keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(fs_module, "ProcessPoolExecutor", no_pool)
    one = _scrypt_dir(tmp_path / "one", 1, 2**10)
    (one / "raw.yaml").write_text(f"type: file-raw\nprivateKey: {_secret(1).hex()}\n")
    source = FilesystemKeySource([str(one)], _backend(), load_concurrency=8)
    assert len(source.load().keys) == 2
    assert source.last_stats is not None and source.last_stats.workers == 1
    empty = FilesystemKeySource([str(tmp_path / "one" / "raw.yaml")], _backend())
    assert len(empty.load().keys) == 1
    assert empty.last_stats is not None and empty.last_stats.workers == 0


def test_failing_progress_callback_does_not_stop_loading(tmp_path: Path) -> None:
    def explode(done: int, total: int) -> None:
        raise RuntimeError("display gone")

    directory = _scrypt_dir(tmp_path / "progress", 2, 2**10)
    source = FilesystemKeySource([str(directory)], _backend(), load_concurrency=1, progress=explode)
    result = source.load()
    assert len(result.keys) == 2 and result.errors == []


def test_pool_is_capped_by_available_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _scrypt_dir(tmp_path / "mem", 4, 2**10)  # ~1 MiB of scrypt memory each
    monkeypatch.setattr(fs_module, "_available_memory", lambda: 3 << 20)
    source = FilesystemKeySource([str(directory)], _backend(), load_concurrency=4)
    assert len(source.load().keys) == 4
    assert source.last_stats is not None and source.last_stats.workers == 2
    monkeypatch.setattr(fs_module, "_available_memory", lambda: 1 << 20)
    assert len(source.load().keys) == 4
    assert source.last_stats.workers == 1
    monkeypatch.setattr(fs_module, "_available_memory", lambda: None)  # not Linux: no cap
    assert len(source.load().keys) == 4
    assert source.last_stats.workers == 4


def test_broken_pool_falls_back_to_serial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def submit(self, *args: Any) -> Any:
            raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(fs_module, "ProcessPoolExecutor", Broken)
    directory = _scrypt_dir(tmp_path / "three", 3, 2**10)
    with caplog.at_level(logging.WARNING, logger="chamber.keys.filesystem"):
        result = FilesystemKeySource([str(directory)], _backend(), load_concurrency=2).load()
    assert len(result.keys) == 3 and result.errors == []
    assert "decryption worker pool failed (BrokenProcessPool)" in caplog.text


def test_scrypt_work_happens_in_child_processes(tmp_path: Path) -> None:
    """Deterministic evidence of the pool: the KDF CPU time is billed to children, not to us."""
    import resource

    directory = _scrypt_dir(tmp_path / "cpu", 4, 2**15)  # ~0.1 s of CPU each
    source = FilesystemKeySource([str(directory)], _backend(), load_concurrency=2)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert len(source.load().keys) == 4
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(after: Any, before: Any) -> float:
        return float(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    in_children = cpu(children_after, children_before)
    in_self = cpu(self_after, self_before)
    assert in_children > 0.2, (in_children, in_self)
    assert in_self < in_children / 2, (in_children, in_self)


# ---------------------------------------------------------------------------------------------
# check_paths and the CLI


def test_check_paths(key_dir: Path) -> None:
    statuses = check_paths([str(key_dir)], _backend())
    by_name = {Path(s.path).name: s for s in statuses}
    for name, i in GOOD.items():
        assert (by_name[name].status, by_name[name].pubkey, by_name[name].reason) == (
            "ok",
            _pubkey(_secret(i)),
            None,
        )
    for name, reason in _bad(key_dir).items():
        assert (by_name[name].status, by_name[name].reason, by_name[name].pubkey) == (
            "error",
            reason,
            None,
        )
    assert len(statuses) == len(GOOD) + len(_bad(key_dir))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chamber", "keys", "check", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def test_cli_keys_check(key_dir: Path, tmp_path: Path) -> None:
    done = _cli(str(key_dir))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    for name, i in GOOD.items():
        assert f"ok     {key_dir / name}  {_pubkey(_secret(i))}" in lines
    for name, reason in _bad(key_dir).items():
        assert f"error  {key_dir / name}: {reason}" in lines
    assert lines[-1] == f"{len(GOOD)} ok, {len(_bad(key_dir))} failed"
    for i in range(1, 14):
        assert _secret(i).hex() not in done.stdout + done.stderr

    good = _cli(str(key_dir / "a_raw.yaml"), str(key_dir / "c_standalone.json"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines() == [
        f"ok     {key_dir / 'a_raw.yaml'}  {_pubkey(_secret(1))}",
        f"ok     {key_dir / 'c_standalone.json'}  {_pubkey(_secret(3))}",
        "2 ok, 0 failed",
    ]

    (tmp_path / "empty").mkdir()
    nothing = _cli(str(tmp_path / "empty"))
    assert nothing.returncode == 1
    assert "no key files found" in nothing.stdout


def test_errors_are_key_load_errors(key_dir: Path) -> None:
    result = FilesystemKeySource([str(key_dir)], _backend()).load()
    assert all(
        isinstance(e, KeyLoadError) and e.message == f"{e.path}: {e.reason}" for e in result.errors
    )
