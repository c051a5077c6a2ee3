"""The ``yubikey`` credential type in process: the real ``fido2`` client code (``Fido2Client``,
``Ctap2``, ``ClientPin``, ``HmacSecretExtension``) against software CTAP2 keys
(``soft_fido2.SoftAuthenticator``), found through the plugin's ``CHAMBER_YUBIKEY_DEVICE_FACTORY``
hook as the CLI finds them."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("fido2", reason="install plugins/chamber-yubikey[test]")

import soft_fido2
from chamber_yubikey.credential import (
    DEVICE_FACTORY_ENV,
    RP_ID,
    YubikeyCredential,
)
from soft_fido2 import SoftAuthenticator, expected_output

from chamber.errors import BadRequest, ChamberError
from chamber.plugins import load_plugins
from chamber.vault.interfaces import Enrollment

Plug = Callable[..., None]


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def new_key(key_dir: Path) -> Callable[..., SoftAuthenticator]:
    count = iter(range(1000))

    def make(**settings: object) -> SoftAuthenticator:
        return SoftAuthenticator(key_dir / f"key-{next(count)}.json", **settings)

    return make


@pytest.fixture
def plug(monkeypatch: pytest.MonkeyPatch) -> Iterator[Plug]:
    """``plug(key, ...)``: these keys (and only these) are plugged in from now on."""
    monkeypatch.setenv(DEVICE_FACTORY_ENV, soft_fido2.FACTORY)

    def plug_in(*keys: SoftAuthenticator) -> None:
        monkeypatch.setenv(soft_fido2.STATE_ENV, os.pathsep.join(str(k.state_path) for k in keys))

    plug_in()
    yield plug_in


def enroll(operator: str = "alice", name: str = "yubikey-1") -> Enrollment:
    return YubikeyCredential().enroll({"operator": operator, "credential_id": name, "stdin": False})


def obtain(*publics: dict[str, str], operator: str = "alice") -> bytes:
    return YubikeyCredential().obtain({"operator": operator, "stdin": False}, list(publics))


def credential_id(public: dict[str, str]) -> bytes:
    text = public["credential_id"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def salt(public: dict[str, str]) -> bytes:
    return base64.b64decode(public["salt"])


# ---------------------------------------------------------------------- round trips


def test_enroll_then_obtain_gives_the_same_32_bytes_and_asks_for_touches(
    new_key: Callable[..., SoftAuthenticator], plug: Plug, capsys: pytest.CaptureFixture[str]
) -> None:
    key = new_key()
    plug(key)
    enrolled = enroll()
    public = dict(enrolled.public)
    assert set(public) == {"credential_id", "salt", "rp_id", "name"}
    assert public["rp_id"] == RP_ID and public["name"] == "yubikey-1"
    assert len(salt(public)) == 32
    assert credential_id(public) in key.credential_ids
    assert len(enrolled.material) == 32
    # The material is the key's HMAC-SHA-256(CredRandom, salt): nothing else went into it.
    assert enrolled.material == expected_output(key.state_path, credential_id(public), salt(public))
    assert key.touches == 2  # create the credential, then answer the first salt
    assert "touch your security key" in capsys.readouterr().err

    assert obtain(public) == enrolled.material
    assert key.touches == 3
    assert "touch your security key (yubikey-1) for operator 'alice'" in capsys.readouterr().err
    # Secret material never appears in a repr.
    assert enrolled.material.hex() not in repr(enrolled)


def test_two_enrolments_on_one_key_are_independent(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    key = new_key()
    plug(key)
    first, second = enroll(name="yubikey-1"), enroll(name="yubikey-2")
    assert first.public["credential_id"] != second.public["credential_id"]
    assert first.public["salt"] != second.public["salt"]
    assert first.material != second.material
    assert obtain(dict(second.public)) == second.material
    assert obtain(dict(first.public), dict(second.public)) == first.material


def test_a_wrong_salt_gives_a_different_output(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    key = new_key()
    plug(key)
    enrolled = enroll()
    tampered = dict(enrolled.public)
    tampered["salt"] = base64.b64encode(bytes(32)).decode()
    output = obtain(tampered)
    assert len(output) == 32 and output != enrolled.material
    assert output == expected_output(key.state_path, credential_id(tampered), bytes(32))


def test_a_key_with_another_secret_answers_differently(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    key = new_key()
    plug(key)
    enrolled = enroll()
    key.replace_secret()  # same credential ids, another device secret
    assert obtain(dict(enrolled.public)) != enrolled.material


def test_pin_protocol_one_and_hmac_secret_mc_keys(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    old = new_key(protocols=[1])
    plug(old)
    enrolled = enroll()
    assert obtain(dict(enrolled.public)) == enrolled.material

    # A CTAP 2.2 key answers the first salt while making the credential: one touch, same output.
    mc = new_key(mc=True)
    plug(mc)
    enrolled = enroll()
    assert mc.touches == 1
    assert obtain(dict(enrolled.public)) == enrolled.material
    assert mc.touches == 2


# ---------------------------------------------------------------------- the wrong key


def test_the_wrong_key_is_a_clear_error_without_a_touch(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    mine, other = new_key(), new_key()
    plug(mine)
    enrolled = enroll()
    plug(other)
    with pytest.raises(BadRequest) as raised:
        obtain(dict(enrolled.public))
    assert raised.value.message == (
        "no registered hardware key of operator 'alice' is plugged in (the plugged-in security "
        "key holds none of its yubikey credentials: yubikey-1)"
    )
    assert other.touches == 0  # asked silently (up: false), never made to blink for nothing


def test_with_several_keys_plugged_in_the_one_holding_a_credential_answers(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    first, second, stranger = new_key(), new_key(), new_key()
    plug(first)
    one = enroll(name="yubikey-1")
    plug(second)
    two = enroll(name="yubikey-2")
    plug(stranger, second, first)
    # Candidates in the signer's order; the plugged-in keys are asked in theirs.
    assert obtain(dict(one.public), dict(two.public)) == two.material
    assert stranger.touches == 0 and first.touches == 2
    plug(stranger, first)
    assert obtain(dict(one.public), dict(two.public)) == one.material


def test_with_several_keys_plugged_in_the_one_touched_is_registered(
    new_key: Callable[..., SoftAuthenticator], plug: Plug, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, backup = new_key(), new_key()
    plug(primary)
    first = enroll(name="yubikey-1")
    # credentials add --existing-credential-type yubikey ... --yubikey with both keys plugged
    # in: the primary proves the operator (found without a touch), then both blink and the
    # operator touches the backup; the primary's request is cancelled.
    primary.configure(touch_script=["approve", "ignore"])
    plug(primary, backup)
    assert obtain(dict(first.public)) == first.material
    added = enroll(name="yubikey-backup")
    assert "2 security keys are plugged in: touch the one to register" in capsys.readouterr().err
    assert credential_id(dict(added.public)) in backup.credential_ids
    assert credential_id(dict(added.public)) not in primary.credential_ids
    assert backup.touches == 3  # select it, create the credential, answer the salt
    plug(backup)
    assert obtain(dict(first.public), dict(added.public)) == added.material


def test_with_several_keys_plugged_in_and_none_touched_nothing_is_registered(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    a, b = new_key(touch="ignore", ignore_seconds=0.2), new_key(touch="deny")
    plug(a, b)
    with pytest.raises(BadRequest, match="none of the 2 plugged-in security keys was touched"):
        enroll()
    assert a.credential_ids == b.credential_ids == []


# ---------------------------------------------------------------------- other failures


@pytest.mark.parametrize(
    ("touch", "message"),
    [
        ("deny", "the touch was refused on the security key"),
        ("timeout", "the security key was not touched in time"),
    ],
)
def test_no_touch_is_a_clear_error(
    new_key: Callable[..., SoftAuthenticator], plug: Plug, touch: str, message: str
) -> None:
    key = new_key()
    plug(key)
    enrolled = enroll()
    key.configure(touch=touch)
    with pytest.raises(BadRequest, match=message):
        obtain(dict(enrolled.public))
    with pytest.raises(BadRequest, match=f"registering the security key: {message}"):
        enroll(name="yubikey-2")
    assert len(key.credential_ids) == 1


def test_nothing_plugged_in_or_a_key_without_hmac_secret(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    key = new_key()
    plug(key)
    public = dict(enroll().public)
    plug()
    with pytest.raises(BadRequest, match="no FIDO2 security key is plugged in; plug in a regis"):
        obtain(public)
    with pytest.raises(
        BadRequest, match="no FIDO2 security key is plugged in; plug in the security key to reg"
    ):
        enroll()
    plug(new_key(hmac_secret=False))
    with pytest.raises(BadRequest, match="does not support the FIDO2 hmac-secret extension"):
        enroll()


def test_unusable_public_parameters_are_a_clear_error(
    new_key: Callable[..., SoftAuthenticator], plug: Plug
) -> None:
    plug(new_key())
    with pytest.raises(BadRequest, match="operator 'alice' has no usable yubikey credential"):
        obtain({"credential_id": "AAAA"}, {"credential_id": "AAAA", "salt": "c2hvcnQ="})


def test_a_bad_device_factory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_FACTORY_ENV, "no_such_module_here:devices")
    with pytest.raises(ChamberError, match="CHAMBER_YUBIKEY_DEVICE_FACTORY: cannot load"):
        enroll()
    monkeypatch.setenv(DEVICE_FACTORY_ENV, "soft_fido2")
    with pytest.raises(ChamberError, match="expected module:function"):
        enroll()


# ---------------------------------------------------------------------- the server's half


def test_validate_demands_exactly_32_bytes() -> None:
    credential = YubikeyCredential()
    credential.validate(bytes(32))
    for size in (0, 20, 31, 33, 64):
        with pytest.raises(BadRequest) as raised:
            credential.validate(bytes(size))
        assert raised.value.field == "secret"
        assert "exactly 32 bytes" in raised.value.message


def test_the_plugin_registers_the_type_without_importing_fido2() -> None:
    provider = load_plugins().providers("chamber_credential_types")["yubikey"]
    assert provider.cls is YubikeyCredential
    assert provider.plugin == "chamber_yubikey"
    # The signer loads every plugin at start-up: this one must not pull in fido2 for it.
    code = (
        "import sys\n"
        "from chamber.plugins import load_plugins\n"
        "types = load_plugins().providers('chamber_credential_types')\n"
        "types['yubikey'].cls().validate(bytes(32))\n"
        "assert 'fido2' not in sys.modules, 'fido2 imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603
