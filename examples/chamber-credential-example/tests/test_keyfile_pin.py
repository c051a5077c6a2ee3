"""Unit tests of the ``keyfile-pin`` credential type.

No signer is needed: the operator CLI's calls are plain method calls, the PIN is typed on a fake
standard input (what ``--passphrase-stdin`` reads) and the removable medium is a temporary
directory. The end-to-end test against a real signer is the repository's
``tests/test_example_plugin.py``.
"""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from chamber_credential_example import plugin
from chamber_credential_example.credential import FINGERPRINT, KeyfilePinCredential

from chamber.errors import BadRequest
from chamber.plugins import PluginManager

PIN = "4711-correct"


@pytest.fixture
def keyfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``CHAMBER_KEYFILE`` on a "stick" (a directory) that holds no key file yet."""
    stick = tmp_path / "stick"
    stick.mkdir()
    monkeypatch.setenv("CHAMBER_KEYFILE", str(stick / "alice.key"))
    return stick / "alice.key"


def typed(monkeypatch: pytest.MonkeyPatch, *lines: str) -> io.StringIO:
    """What the operator types on standard input, one line each."""
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    monkeypatch.setattr("sys.stdin", stdin)
    return stdin


def test_enroll_creates_a_private_key_file_and_obtain_gives_the_same_material(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = KeyfilePinCredential()
    typed(monkeypatch, PIN)
    enrolled = credential.enroll({"stdin": True, "operator": "alice"})

    assert len(keyfile.read_bytes()) == 32
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    credential.validate(enrolled.material)  # what the signer checks
    assert PIN.encode() not in enrolled.material
    assert "material" not in repr(enrolled)  # the Enrollment never shows its secret

    typed(monkeypatch, PIN)
    assert credential.obtain({"stdin": True}, [enrolled.public]) == enrolled.material
    typed(monkeypatch, "4712-correct")
    assert credential.obtain({"stdin": True}, [enrolled.public]) != enrolled.material


def test_another_key_file_is_reported_before_the_pin_is_asked(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credential = KeyfilePinCredential()
    typed(monkeypatch, PIN)
    registered = credential.enroll({"stdin": True}).public
    other = tmp_path / "stick" / "bob.key"
    other.write_bytes(bytes(range(32)))
    monkeypatch.setenv("CHAMBER_KEYFILE", str(other))

    stdin = typed(monkeypatch, PIN)
    with pytest.raises(BadRequest, match="is not the key file registered for operator 'alice'"):
        credential.obtain({"stdin": True, "operator": "alice"}, [registered])
    assert stdin.read() == PIN + "\n"  # the PIN was not even read


def test_enroll_reuses_a_key_file_and_never_overwrites_another_file(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = KeyfilePinCredential()
    typed(monkeypatch, PIN, PIN)
    first = credential.enroll({"stdin": True})
    second = credential.enroll({"stdin": True})
    assert first.public == second.public  # same key file, reused

    keyfile.unlink()
    keyfile.write_bytes(b"my holiday photos")
    with pytest.raises(BadRequest, match="refusing to use or overwrite it"):
        credential.enroll({"stdin": True})
    assert keyfile.read_bytes() == b"my holiday photos"


def test_missing_setting_medium_or_pin_are_clear_errors(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = KeyfilePinCredential()
    with pytest.raises(BadRequest, match="not found: is the removable medium mounted"):
        credential.obtain({"stdin": True}, [{FINGERPRINT: "0" * 16}])
    typed(monkeypatch, "12")
    with pytest.raises(BadRequest, match="PIN too short"):
        credential.enroll({"stdin": True})
    typed(monkeypatch)
    with pytest.raises(EOFError):  # the CLI reports "nothing was entered"
        credential.obtain({"stdin": True})
    monkeypatch.delenv("CHAMBER_KEYFILE")
    with pytest.raises(BadRequest, match="CHAMBER_KEYFILE is not set"):
        credential.enroll({"stdin": True})


def test_the_signer_accepts_32_bytes_only() -> None:
    credential = KeyfilePinCredential()
    credential.validate(bytes(32))
    for wrong in (b"", bytes(31), bytes(33)):
        with pytest.raises(BadRequest, match="must be 32 bytes"):
            credential.validate(wrong)


def test_the_entry_point_provides_the_type() -> None:
    manager = PluginManager()
    manager.register(plugin, "chamber_credential_example", "0.1.0", "chamber-credential-example")
    provider = manager.providers("chamber_credential_types")["keyfile-pin"]
    assert provider.cls is KeyfilePinCredential
    assert provider.plugin == "chamber_credential_example"
