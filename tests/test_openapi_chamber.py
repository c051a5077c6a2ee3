"""docs/openapi/chamber.yaml: a valid OpenAPI 3.0 document that matches the app's routes.

Every route the Falcon app registers under /api/v1/chamber must be documented, every documented
path and method must exist, and what each route answers to a request without credentials or
body must be one of the statuses documented for it, with the documented error shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
import yaml

from chamber.api.app import create_falcon_app
from chamber.config import Settings
from chamber.plugins import load_plugins
from chamber.signer import Signer, build_signer
from tests.support import REPO_ROOT

SPEC_PATH = REPO_ROOT / "docs" / "openapi" / "chamber.yaml"
PREFIX = "/api/v1/chamber"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
TOKEN = "openapi-test-token-0123456789"
ALL_CHAMBER_SCOPES = [
    "chamber_status",
    "chamber_seal",
    "chamber_rotate",
    "chamber_keys_list",
    "chamber_keys_generate",
    "chamber_keys_write",
    "chamber_keys_delete",
]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with open(SPEC_PATH, encoding="utf-8") as f:
        document = yaml.safe_load(f)
    assert isinstance(document, dict)
    return document


def _config(tmp: Path, *, vault: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"listen_address": "127.0.0.1", "listen_port": 0},
        "metrics": {"enabled": False},
        "anti_slashing": {"backend": "noop"},
        "auth_policies": {"operator": {"token": TOKEN, "allowed_scopes": ALL_CHAMBER_SCOPES}},
    }
    if vault:
        config["signer_state"] = {"backend": "sqlite", "path": str(tmp / "state.sqlite")}
        config["key_sources"] = {"sqlite": {"path": str(tmp / "keys.sqlite")}}
        config["kms"] = {"local": {"directory": str(tmp / "kms")}}
    return config


@contextmanager
def _signer(tmp: Path, *, vault: bool) -> Iterator[Signer]:
    signer = build_signer(
        Settings.model_validate(_config(tmp, vault=vault)), load_plugins(entry_points_enabled=False)
    )
    try:
        yield signer
    finally:
        signer.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[falcon.App[Any, Any]]:
    """The app of a signer whose vault is configured (and, never booted, sealed)."""
    with _signer(tmp_path_factory.mktemp("vault"), vault=True) as signer:
        assert signer.vault is not None
        yield create_falcon_app(signer)


@pytest.fixture(scope="module")
def app_without_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[falcon.App[Any, Any]]:
    with _signer(tmp_path_factory.mktemp("novault"), vault=False) as signer:
        assert signer.vault is None
        yield create_falcon_app(signer)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def _registered_templates(app: falcon.App[Any, Any]) -> set[str]:
    found: set[str] = set()

    def walk(nodes: Any) -> None:
        for node in nodes:
            if node.resource is not None:
                found.add(node.uri_template)
            walk(node.children)

    walk(app._router._roots)
    return found


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


# ---------------------------------------------------------------------- the document itself


def test_spec_is_valid_openapi_3_0(spec: dict[str, Any]) -> None:
    assert str(spec["openapi"]).startswith("3.0.")
    try:
        from openapi_spec_validator import validate
    except ImportError:  # structural checks below still run
        return
    validate(spec)


def test_spec_structure(spec: dict[str, Any]) -> None:
    assert spec["info"]["title"] and spec["info"]["version"]
    for ref in _refs(spec):
        _resolve(spec, ref)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message"}
    assert {"error", "message", "field"} <= set(error["properties"])
    ids = set()
    for path, method, operation in _operations(spec):
        assert path.startswith(PREFIX + "/"), path
        assert operation["operationId"] not in ids
        ids.add(operation["operationId"])
        assert operation["summary"]
        assert "security" in operation, f"{method} {path}: say explicitly who may call it"
        responses = operation["responses"]
        assert "200" in responses, f"{method} {path}"
        for status, response in responses.items():
            if "$ref" in response:
                response = _resolve(spec, response["$ref"])
            schema = response["content"]["application/json"]["schema"]
            if status != "200":
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"
        if operation["security"]:
            assert operation.get("x-required-scope") in ALL_CHAMBER_SCOPES, f"{method} {path}"
            assert {"401", "403"} <= set(responses), f"{method} {path}"
        assert "404" in responses, f"{method} {path}: the vault may not be configured"


# ---------------------------------------------------------------------- document vs. app


def test_every_registered_chamber_route_is_documented(
    spec: dict[str, Any], app: falcon.App[Any, Any]
) -> None:
    registered = {t for t in _registered_templates(app) if t.startswith(PREFIX + "/")}
    assert registered, "no /api/v1/chamber route found in the app"
    assert registered == set(spec["paths"])


def test_every_documented_method_exists(spec: dict[str, Any], app: falcon.App[Any, Any]) -> None:
    client = falcon.testing.TestClient(app)
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item if m in HTTP_METHODS}
        answer = client.simulate_options(path)
        assert answer.status_code == 200, f"OPTIONS {path}: {answer.status} {answer.text}"
        allowed = {m.strip() for m in answer.headers["allow"].split(",")} - {"OPTIONS"}
        assert allowed == documented, f"{path}: the app serves {allowed}, documented {documented}"


def _check_error(spec: dict[str, Any], body: Any, where: str) -> None:
    error = spec["components"]["schemas"]["Error"]
    assert isinstance(body, dict), where
    assert set(error["required"]) <= set(body), where
    assert set(body) <= set(error["properties"]), where
    assert all(isinstance(v, str) for k, v in body.items() if k != "request_id"), where


@pytest.mark.parametrize("authorized", [False, True])
def test_answers_are_documented_statuses(
    spec: dict[str, Any], app: falcon.App[Any, Any], authorized: bool
) -> None:
    """Without credentials, then with a token of every chamber scope; an empty JSON body.

    The vault is configured but was never booted, so it is sealed.
    """
    client = falcon.testing.TestClient(app)
    headers = {"Content-Type": "application/json"}
    if authorized:
        headers["Authorization"] = f"Bearer {TOKEN}"
    for path, method, operation in _operations(spec):
        answer = client.simulate_request(method.upper(), path, headers=headers, body="{}")
        where = f"{method.upper()} {path} -> {answer.status}: {answer.text}"
        assert str(answer.status_code) in operation["responses"], where
        body = json.loads(answer.text)
        if answer.status_code != 200:
            _check_error(spec, body, where)
            assert body["error"] != "404 Not Found", where


def test_without_vault_every_route_answers_the_documented_404(
    spec: dict[str, Any], app_without_vault: falcon.App[Any, Any]
) -> None:
    client = falcon.testing.TestClient(app_without_vault)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    expected = spec["components"]["responses"]["VaultNotConfigured"]["content"]["application/json"][
        "example"
    ]
    for path, method, _operation in _operations(spec):
        answer = client.simulate_request(method.upper(), path, headers=headers, body="{}")
        where = f"{method.upper()} {path} -> {answer.status}: {answer.text}"
        assert answer.status_code == 404, where
        assert json.loads(answer.text) == expected, where


def test_an_undocumented_path_is_a_route_miss(app: falcon.App[Any, Any]) -> None:
    """The probe above can tell a missing route from the vault's own 404."""
    answer = falcon.testing.TestClient(app).simulate_options(PREFIX + "/no-such-route")
    assert answer.status_code == 404
    assert json.loads(answer.text)["error"] == "404 Not Found"
