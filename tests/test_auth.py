"""Access control unit tests: digests only, Bearer and Basic, 401 vs 403, anonymous signing."""

from __future__ import annotations

import base64

import pytest

from chamber.api.auth import ANONYMOUS, Authenticator
from chamber.config import AuthPolicyConfig
from chamber.errors import ConfigError, Forbidden, Unauthorized

SIGNER_TOKEN = "signer-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789ab"
KEY = "0x" + "ab" * 48


def policies() -> dict[str, AuthPolicyConfig]:
    return {
        "vc": AuthPolicyConfig.model_validate(
            {
                "token": SIGNER_TOKEN,
                "allowed_scopes": ["sign", "public_keys"],
                "keys": [KEY],
                "operations": ["ATTESTATION"],
            }
        ),
        "admin": AuthPolicyConfig.model_validate(
            {"token": ADMIN_TOKEN, "allowed_scopes": ["chamber_status"]}
        ),
    }


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_tokens_are_held_only_as_digests() -> None:
    auth = Authenticator(policies(), allow_unauthenticated_signing=False)
    state = repr(vars(auth)) + repr(auth._entries)
    assert SIGNER_TOKEN not in state and ADMIN_TOKEN not in state
    assert SIGNER_TOKEN.encode() not in b"".join(d for d, _ in auth._entries)


def test_bearer_and_basic_select_the_policy() -> None:
    auth = Authenticator(policies(), allow_unauthenticated_signing=False)
    assert auth.require(f"Bearer {SIGNER_TOKEN}", "sign").name == "vc"
    assert auth.require(basic("anything", SIGNER_TOKEN), "sign").name == "vc"
    assert auth.require(basic("", ADMIN_TOKEN), "chamber_status").name == "admin"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer wrong-token-0123456789",
        "Token abc",
        "Basic !!!",
        basic("u", ""),
        "Bearer",
        f"Bearer {SIGNER_TOKEN}x",
    ],
)
def test_missing_or_bad_token_is_401(header: str | None) -> None:
    auth = Authenticator(policies(), allow_unauthenticated_signing=False)
    with pytest.raises(Unauthorized):
        auth.require(header, "sign")


def test_valid_token_without_scope_is_403() -> None:
    auth = Authenticator(policies(), allow_unauthenticated_signing=False)
    with pytest.raises(Forbidden, match="does not grant scope 'sign'"):
        auth.require(f"Bearer {ADMIN_TOKEN}", "sign")


def test_key_and_operation_restrictions() -> None:
    auth = Authenticator(policies(), allow_unauthenticated_signing=False)
    policy = auth.require(f"Bearer {SIGNER_TOKEN}", "sign")
    assert policy.allows_key(KEY) and not policy.allows_key("0x" + "cd" * 48)
    assert policy.allows_operation("ATTESTATION") and not policy.allows_operation("BLOCK_V2")


def test_anonymous_signing_only_when_allowed_and_only_signing_scopes() -> None:
    closed = Authenticator({}, allow_unauthenticated_signing=False)
    with pytest.raises(Unauthorized):
        closed.require(None, "sign")
    open_ = Authenticator({}, allow_unauthenticated_signing=True)
    assert open_.require(None, "sign") is ANONYMOUS
    assert open_.require(None, "public_keys") is ANONYMOUS
    for scope in ("chamber_status", "import_keystores", "slashing_export"):
        with pytest.raises(Unauthorized):
            open_.require(None, scope)
    # A presented but wrong token is still refused even where anonymous signing is allowed.
    with pytest.raises(Unauthorized):
        open_.require("Bearer not-a-real-token-000", "sign")


def test_two_policies_with_one_token_is_a_config_error() -> None:
    same = {
        "a": AuthPolicyConfig.model_validate({"token": SIGNER_TOKEN, "allowed_scopes": ["sign"]}),
        "b": AuthPolicyConfig.model_validate({"token": SIGNER_TOKEN, "allowed_scopes": ["sign"]}),
    }
    with pytest.raises(ConfigError, match=r"auth_policies\.b\.token"):
        Authenticator(same, allow_unauthenticated_signing=False)
