"""The built-in file KMS (``local:NAME``): round trips, key files, races, and every refusal."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from chamber.errors import BadRequest, ConfigError, KmsError
from chamber.plugins import load_plugins
from chamber.vault import local_kms
from chamber.vault.local_kms import LocalKms

SHARE = b"PLAINTEXT-SHARE-\x00\x01\x02-do-not-leak"
CONTEXT = {"chamber": "test-chamber", "share_index": "1"}


@pytest.fixture
def kms(tmp_path: Path) -> LocalKms:
    return LocalKms(tmp_path / "kms")


def _assert_clean(err: KmsError, key_id: str, *key_files: Path) -> None:
    text = str(err)
    assert err.key_id == key_id and key_id in text
    assert "PLAINTEXT-SHARE" not in text and SHARE.hex() not in text
    for path in key_files:
        if path.exists():
            key = path.read_bytes()
            assert key.hex() not in text and repr(key) not in text
    assert err.__cause__ is None


# --------------------------------------------------------------------------- round trips, files


def test_round_trip(kms: LocalKms) -> None:
    ciphertext = kms.encrypt("local:dev", SHARE, CONTEXT)
    assert SHARE not in ciphertext
    assert kms.decrypt("local:dev", ciphertext, CONTEXT) == SHARE
    assert kms.encrypt("local:dev", SHARE, CONTEXT) != ciphertext  # random nonce


def test_context_order_does_not_matter(kms: LocalKms) -> None:
    ciphertext = kms.encrypt("local:dev", SHARE, {"a": "1", "b": "2"})
    assert kms.decrypt("local:dev", ciphertext, {"b": "2", "a": "1"}) == SHARE


def test_key_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    directory = tmp_path / "parent" / "kms"
    kms = LocalKms(directory)
    old_umask = os.umask(0o022)
    try:
        kms.encrypt("local:dev", SHARE, CONTEXT)
    finally:
        os.umask(old_umask)
    key_file = directory / "dev.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(key_file.read_bytes()) == 32
    assert sorted(p.name for p in directory.iterdir()) == ["dev.key"]  # no temporary left


def test_one_key_file_per_name(kms: LocalKms) -> None:
    kms.encrypt("local:a", SHARE, CONTEXT)
    kms.encrypt("local:b.c_d-1", SHARE, CONTEXT)
    kms.encrypt("local:a", SHARE, CONTEXT)
    assert sorted(p.name for p in kms.directory.iterdir()) == ["a.key", "b.c_d-1.key"]
    assert (kms.directory / "a.key").read_bytes() != (kms.directory / "b.c_d-1.key").read_bytes()


def test_second_instance_reads_the_same_key(tmp_path: Path) -> None:
    first = LocalKms(tmp_path / "kms")
    ciphertext = first.encrypt("local:dev", SHARE, CONTEXT)
    key = (tmp_path / "kms" / "dev.key").read_bytes()
    second = LocalKms.from_config({"directory": str(tmp_path / "kms")})
    assert second.decrypt("local:dev", ciphertext, CONTEXT) == SHARE
    second.encrypt("local:dev", SHARE, CONTEXT)
    assert (tmp_path / "kms" / "dev.key").read_bytes() == key


def test_default_directory_is_resolved_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kms = LocalKms.from_config({})
    assert kms.directory == tmp_path / "chamber-kms"
    monkeypatch.chdir("/")
    kms.encrypt("local:dev", SHARE, CONTEXT)
    assert (tmp_path / "chamber-kms" / "dev.key").is_file()


# --------------------------------------------------------------------------- races


def _race_worker(directory: str, key_id: str, barrier: Any, out: Any) -> None:
    kms = LocalKms(directory)
    barrier.wait(30)
    out.put(kms.encrypt(key_id, SHARE, {"process": str(os.getpid())}).hex())


def test_two_processes_creating_the_same_key_end_up_with_one(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    directory = tmp_path / "kms"
    for round_ in range(3):
        key_id = f"local:race-{round_}"
        barrier, out = ctx.Barrier(2), ctx.Queue()
        workers = [
            ctx.Process(target=_race_worker, args=(str(directory), key_id, barrier, out))
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        blobs = [bytes.fromhex(out.get(timeout=60)) for _ in workers]
        for w in workers:
            w.join(30)
            assert w.exitcode == 0
        kms = LocalKms(directory)
        decrypted = 0
        for blob, pid in ((b, w.pid) for b in blobs for w in workers):
            try:
                assert kms.decrypt(key_id, blob, {"process": str(pid)}) == SHARE
                decrypted += 1
            except KmsError:
                pass  # that blob was made by the other process (its pid is in the context)
        assert decrypted == 2
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["race-0.key", "race-1.key", "race-2.key"]


def test_threads_creating_the_same_key_end_up_with_one(kms: LocalKms) -> None:
    barrier = threading.Barrier(8)
    blobs: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(10)
            blobs.append(LocalKms(kms.directory).encrypt("local:threads", SHARE, CONTEXT))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(blobs) == 8
    assert all(kms.decrypt("local:threads", blob, CONTEXT) == SHARE for blob in blobs)
    assert sorted(p.name for p in kms.directory.iterdir()) == ["threads.key"]


def test_the_loser_of_a_creation_race_uses_the_winners_key(
    kms: LocalKms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance creates the key between our check and our link: we keep its key."""
    real_link = os.link
    winner_blob: list[bytes] = []

    def link_after_another_creator(src: Any, dst: Any, **kwargs: Any) -> None:
        if not winner_blob:
            monkeypatch.setattr(local_kms.os, "link", real_link)
            winner_blob.append(LocalKms(kms.directory).encrypt("local:dev", SHARE, CONTEXT))
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(local_kms.os, "link", link_after_another_creator)
    key_file = kms.directory / "dev.key"
    loser_blob = kms.encrypt("local:dev", SHARE, CONTEXT)
    assert winner_blob
    key = key_file.read_bytes()
    assert kms.decrypt("local:dev", loser_blob, CONTEXT) == SHARE
    assert kms.decrypt("local:dev", winner_blob[0], CONTEXT) == SHARE
    assert key_file.read_bytes() == key
    assert sorted(p.name for p in kms.directory.iterdir()) == ["dev.key"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "context",
    [
        {"chamber": "test-chamber", "share_index": "2"},
        {"chamber": "other", "share_index": "1"},
        {"chamber": "test-chamber"},
        {**CONTEXT, "extra": ""},
        {},
    ],
)
def test_wrong_context(kms: LocalKms, context: dict[str, str]) -> None:
    ciphertext = kms.encrypt("local:dev", SHARE, CONTEXT)
    with pytest.raises(KmsError) as e:
        kms.decrypt("local:dev", ciphertext, context)
    assert e.value.reason == "decryption failed: wrong key or encryption context"
    _assert_clean(e.value, "local:dev", kms.directory / "dev.key")


def test_wrong_key_name(kms: LocalKms) -> None:
    ciphertext = kms.encrypt("local:a", SHARE, CONTEXT)
    kms.encrypt("local:b", SHARE, CONTEXT)
    with pytest.raises(KmsError, match="wrong key or encryption context") as e:
        kms.decrypt("local:b", ciphertext, CONTEXT)
    _assert_clean(e.value, "local:b", kms.directory / "a.key", kms.directory / "b.key")


def test_the_key_id_is_bound_not_only_the_key(kms: LocalKms) -> None:
    """A key file copied under another name still can't open the first name's ciphertexts."""
    ciphertext = kms.encrypt("local:a", SHARE, CONTEXT)
    (kms.directory / "copy.key").write_bytes((kms.directory / "a.key").read_bytes())
    with pytest.raises(KmsError, match="wrong key or encryption context"):
        kms.decrypt("local:copy", ciphertext, CONTEXT)


def test_tampered_ciphertext(kms: LocalKms) -> None:
    ciphertext = kms.encrypt("local:dev", SHARE, CONTEXT)
    for position in (1, 12, 13, len(ciphertext) // 2, len(ciphertext) - 1):
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x01
        with pytest.raises(KmsError, match="wrong key or encryption context") as e:
            kms.decrypt("local:dev", bytes(tampered), CONTEXT)
        _assert_clean(e.value, "local:dev", kms.directory / "dev.key")
    for malformed in (b"", ciphertext[:20], b"\x02" + ciphertext[1:]):
        with pytest.raises(KmsError, match="ciphertext is malformed"):
            kms.decrypt("local:dev", malformed, CONTEXT)
    with pytest.raises(KmsError, match="wrong key or encryption context"):
        kms.decrypt("local:dev", ciphertext[:-1], CONTEXT)


def test_missing_key_file_on_decrypt_names_the_path(kms: LocalKms) -> None:
    ciphertext = kms.encrypt("local:dev", SHARE, CONTEXT)
    (kms.directory / "dev.key").unlink()
    with pytest.raises(KmsError) as e:
        kms.decrypt("local:dev", ciphertext, CONTEXT)
    assert e.value.reason == f"key file {kms.directory / 'dev.key'} does not exist"
    _assert_clean(e.value, "local:dev")
    assert not (kms.directory / "dev.key").exists()  # decrypt never creates a key


def test_decrypt_never_creates_the_directory(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "nowhere")
    with pytest.raises(KmsError, match="does not exist"):
        kms.decrypt("local:dev", b"\x01" + bytes(40), CONTEXT)
    assert not (tmp_path / "nowhere").exists()


def test_corrupt_key_file(kms: LocalKms) -> None:
    kms.directory.mkdir()
    (kms.directory / "dev.key").write_bytes(b"short")
    for call in (
        lambda: kms.encrypt("local:dev", SHARE, CONTEXT),
        lambda: kms.decrypt("local:dev", b"\x01" + bytes(40), CONTEXT),
    ):
        with pytest.raises(KmsError, match="is not a 32-byte key") as e:
            call()
        _assert_clean(e.value, "local:dev")
    assert (kms.directory / "dev.key").read_bytes() == b"short"  # never replaced


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
def test_unwritable_directory(kms: LocalKms) -> None:
    kms.directory.mkdir(mode=0o500)
    try:
        with pytest.raises(KmsError, match=r"cannot create key file .*dev\.key") as e:
            kms.encrypt("local:dev", SHARE, CONTEXT)
        _assert_clean(e.value, "local:dev")
    finally:
        kms.directory.chmod(0o700)


@pytest.mark.parametrize(
    "key_id",
    [
        "local:",
        "local:a/b",
        "local:../etc/passwd",
        "local:a b",
        "local:" + "a" * 65,
        "local:caf\u00e9",
        "local:x\n",
        "LOCAL:dev",
        "dev",
        "",
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ],
)
def test_bad_key_ids(kms: LocalKms, key_id: str) -> None:
    for call in (
        lambda: kms.validate_key_id(key_id),
        lambda: kms.encrypt(key_id, SHARE, CONTEXT),
        lambda: kms.decrypt(key_id, b"x" * 40, CONTEXT),
    ):
        with pytest.raises(BadRequest) as e:
            call()
        assert e.value.field == "kms_key_ids"
        assert e.value.message.startswith("invalid local KMS key id: expected local:<name>")
        assert repr(key_id[:200]) in e.value.message
    assert not kms.directory.exists()


def test_long_bad_key_id_is_truncated(kms: LocalKms) -> None:
    key_id = "local:" + "x" * 5000
    with pytest.raises(BadRequest) as e:
        kms.validate_key_id(key_id)
    assert len(e.value.message) < 400


@pytest.mark.parametrize("key_id", ["local:a", "local:" + "a" * 64, "local:A.b_c-9", "local:..."])
def test_good_key_ids(kms: LocalKms, key_id: str) -> None:
    kms.validate_key_id(key_id)
    assert LocalKms.handles(key_id)
    assert kms.decrypt(key_id, kms.encrypt(key_id, SHARE, CONTEXT), CONTEXT) == SHARE


def test_handles() -> None:
    assert LocalKms.handles("local:dev")
    assert LocalKms.handles("local:")  # ours, then rejected by validate_key_id
    assert not LocalKms.handles("arn:aws:kms:us-east-1:123456789012:alias/x")
    assert not LocalKms.handles("LOCAL:dev")


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"dir": "/tmp/x"}, "kms.local.dir"),
        ({"directory": "/tmp/x", "key": "abc"}, "kms.local.key"),
        ({"directory": 5}, "kms.local.directory"),
        ({"directory": ""}, "kms.local.directory"),
    ],
)
def test_bad_settings(settings: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        LocalKms.from_config(settings)
    assert e.value.message.startswith(path + ":")


def test_from_config_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(local_kms, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="chamber.vault.local_kms"):
        LocalKms.from_config({"directory": str(tmp_path / "kms")})
        LocalKms.from_config({"directory": str(tmp_path / "kms")})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "development and the quick start only" in message
    assert "master key" in message


def test_builtin_plugin_provides_local() -> None:
    providers = load_plugins(entry_points_enabled=False).providers("chamber_kms_providers")
    assert providers["local"].cls is LocalKms
    assert providers["local"].plugin == "local_kms"
