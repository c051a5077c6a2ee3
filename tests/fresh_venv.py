"""A fresh virtual environment with only the core installed, for "installs alone" tests.

Building one costs about a minute (pip resolves and installs the core's dependencies from its
cache), so one is built per test process and shared: each plugin test installs its plugin into
it, runs, and uninstalls it again, so that at any moment the venv holds the core and at most the
one plugin under test (the acceptance of issue 6: each plugin installs alone on top of the
core, and uninstalling it leaves the core working).

Use :func:`core_venv` and, around each plugin, :func:`plugin_installed`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_ROOT

_lock = threading.Lock()
_venv: FreshVenv | None = None


@dataclass(frozen=True)
class FreshVenv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.root / "bin" / "containment-chamber"

    def pip(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
        )
        if result.returncode != 0:
            raise AssertionError(f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``containment-chamber ARGS`` from this venv."""
        return subprocess.run(
            [str(self.cli), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**_clean_env(), **(env or {})},
        )

    def distributions(self) -> set[str]:
        out = subprocess.run(
            [
                str(self.python),
                "-m",
                "pip",
                "list",
                "--format=freeze",
                "--disable-pip-version-check",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=_clean_env(),
        ).stdout
        return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}


def _clean_env() -> dict[str, str]:
    """The environment without the test venv leaking in (PYTHONPATH, VIRTUAL_ENV)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PIP_NO_INPUT"] = "1"
    return env


def core_venv() -> FreshVenv:
    """The shared fresh venv (built on first use): Python's venv + ``pip install -e <repo>``."""
    global _venv
    with _lock:
        if _venv is None:
            root = Path(tempfile.mkdtemp(prefix="chamber-fresh-venv-")) / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
            venv = FreshVenv(root)
            venv.pip("install", "-e", str(REPO_ROOT))
            _venv = venv
        return _venv


@contextmanager
def plugin_installed(venv: FreshVenv, plugin_dir: Path) -> Iterator[str]:
    """Install the distribution in ``plugin_dir`` (editable, with its runtime dependencies)
    alone on top of the core; uninstall it afterwards. Yields the distribution name."""
    name = _distribution_name(plugin_dir)
    others = {d for d in venv.distributions() if d.startswith("chamber-")}
    assert not others, f"the fresh venv should hold only the core, found {others}"
    venv.pip("install", "-e", str(plugin_dir))
    try:
        yield name
    finally:
        venv.pip("uninstall", "-y", name)


def _distribution_name(plugin_dir: Path) -> str:
    import tomllib

    data = tomllib.loads((plugin_dir / "pyproject.toml").read_text())
    return str(data["project"]["name"]).lower()
