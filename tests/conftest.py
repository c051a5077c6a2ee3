from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support import VECTORS


def pytest_sessionstart(session: pytest.Session) -> None:
    if not VECTORS.is_dir():
        raise pytest.UsageError(
            f"external test vectors not found at {VECTORS}: "
            "clone the repository with ../shared beside it"
        )


# --------------------------------------------------------------------------------------------
# Parallel runs: pytest-xdist, as .ci/run runs the suite (-n 2 --dist loadfile
# --no-loadscope-reorder).
#
# A unit of work is a whole test file, run by one worker in file order (xdist's loadfile): tests
# that share module-scoped state (a module's signer, a run whose counts a later test checks)
# stay together as in a serial run. The scheduler below only refines that: the tests of a few
# long files whose tests share no state are units of their own, the users of the fresh venv are
# one unit, and the longest units are handed out first. (xdist_group marks with --dist loadgroup
# would not do: xdist 3.8 tags a grouped test by rewriting its node id, which pytest 9 ignores.)
# Workers share nothing else: each has its own temporary directories, its own moto servers
# (free ports) and its own PostgreSQL schemas (a uuid each).
# --------------------------------------------------------------------------------------------

#: Long files whose tests share no state (only read-only module fixtures): each test is a unit.
SPLIT_FILES = frozenset(
    {
        "tests/test_slashing_model.py",
        "tests/test_slashing_race.py",
        "tests/test_vault_rotations.py",
    }
)

#: The users of ``tests/fresh_venv.py``'s venv: one unit, so one worker builds it, and the pip
#: installs (which write into the source trees, the example's too) never run side by side.
FRESH_VENV_FILES = frozenset(
    {
        "tests/test_example_plugin.py",
        "plugins/chamber-secretsmanager/tests/test_secretsmanager_fresh_venv.py",
        "plugins/chamber-yubikey/tests/test_yubikey_fresh_venv.py",
    }
)
FRESH_VENV_UNIT = "fresh-venv"

#: Units handed out first, longest first, so that no long unit is left for the end (this only
#: changes the order; the other units keep the collection order).
FIRST = (
    "tests/test_slashing_race.py::test_two_signers_one_database_never_sign_a_slashable_pair"
    "[dynamodb]",
    "tests/test_slashing_model.py::test_backend_matches_model[dynamodb]",
    FRESH_VENV_UNIT,
    "tests/test_api_schemathesis.py",
    "tests/test_vault_runbook.py",
    "tests/test_bls_backends.py",
    "plugins/chamber-aws-kms/tests/test_runbook_aws.py",
    "tests/test_slashing_model.py::test_backend_matches_model[postgres]",
    "tests/test_slashing_model.py::test_backend_matches_model[sqlite]",
    "tests/test_vault_rotations.py::test_rotate_mode_kms_only_to_unseal_and_back",
    "tests/test_vault_rotations.py::test_multiple_credentials_while_signing",
    "tests/test_vault_rotations.py::test_rotate_unseal_replaces_the_operator_set",
    "tests/test_vault_rotations.py::test_rotate_kms_in_kms_only_mode",
    "tests/test_vault_rotations.py::test_rotate_unseal_cancel_restores_the_previous_set",
    "tests/test_vault_rotations.py::test_rotate_kms_in_unseal_mode",
    "tests/test_api_signing_types.py",
    "tests/test_vault_credentials.py",
    "plugins/chamber-dynamodb/tests/test_dynamodb_slashing.py",
    "tests/test_credential_plugin_failures.py",
    "tests/test_vault_replicas_sqlite.py",
    "plugins/chamber-secretsmanager/tests/test_secretsmanager_cli.py",
    "plugins/chamber-dynamodb/tests/test_vault_replicas.py",
    "tests/test_slashing_crash.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to (the same in the controller and in every worker)."""
    path = nodeid.split("::", 1)[0]
    if path in FRESH_VENV_FILES:
        return FRESH_VENV_UNIT
    if path in SPLIT_FILES:
        return nodeid
    return path


def _units_scheduled(config: pytest.Config) -> bool:
    return config.getoption("dist", "no") == "loadfile"


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if not _units_scheduled(config):
        return None  # another --dist was asked for: xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):
        """xdist's loadfile, with :func:`unit_of` for the units."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return UnitScheduling(config, log)


def _tell_apart(items: list[pytest.Item]) -> None:
    """Give every test its own node id: xdist tells tests apart by node id only, and one id
    shared by several tests would run just the first of them. pytest 9 builds the id from the
    test's original name and its parametrize ids, so schemathesis's tests (one per API
    operation, named ``test[POST /path]``) all get the same id: put the operation back in."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] == 1 or not isinstance(item, pytest.Function):
            continue
        prefix = item.originalname + "["
        node_id = getattr(item, "_id", None)
        if (
            item.name.startswith(prefix)
            and item.name.endswith("]")
            and node_id is not None
            and node_id.params is None
        ):
            item._id = node_id.with_params(item.name[len(prefix) : -1])
    shared = sorted(nodeid for nodeid, n in Counter(i.nodeid for i in items).items() if n > 1)
    if shared:
        raise pytest.UsageError(f"tests sharing a node id (xdist would run one each): {shared}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell the workers (whose own --dist option xdist resets) to order their collection."""
    node.workerinput["chamber_units"] = _units_scheduled(node.config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config, "workerinput", {}).get("chamber_units"):
        return  # not a worker of UnitScheduling: the plain collection order
    _tell_apart(items)
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(unit_of(item.nodeid), []).append(item)
    rank = {name: i for i, name in enumerate(FIRST)}
    ordered = sorted(units, key=lambda name: rank.get(name, len(FIRST)))  # stable
    items[:] = [item for name in ordered for item in units[name]]
