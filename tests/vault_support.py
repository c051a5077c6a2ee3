"""A vault-enabled signer as a real process, driven by the real ``containment-chamber`` CLI.

:class:`Chamber` owns one signer's files (config, vault state, encrypted key store, local KMS
directory) and the server process serving them, across restarts. Everything that leaves the
processes is kept in :attr:`Chamber.transcript` (server log lines, every CLI call's stdout and
stderr, HTTP answers, ``/metrics`` pages) so a test can prove afterwards that no secret leaked.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness import Client, Response, SubprocessSigner
from tests.support import REPO_ROOT

OPS_TOKEN = "ops-token-vault-runbook-5f3a9c1e77"
SIGNING_TOKEN = "signing-token-vault-runbook-0d2b6e48a1"
#: Small Argon2id parameters: the runbook ceremonies run in seconds, not minutes.
ARGON2 = {"memory_kib": 8192, "iterations": 1, "parallelism": 1}
SETUP_LOG_MESSAGE = "Setup token generated (save securely, one-time use)"
STATUS_PATH = "/api/v1/chamber/status"


def vault_config(root: Path) -> dict[str, Any]:
    """The runbook's configuration, on SQLite and the local file KMS; tokens as ``env:VAR``."""
    return {
        "server": {"listen_address": "127.0.0.1", "listen_port": 0},
        "metrics": {"listen_address": "127.0.0.1", "listen_port": 0},
        "logging": {"level": "INFO", "format": "json"},
        "network": "mainnet",
        "anti_slashing": {"backend": "sqlite", "path": str(root / "slashing.sqlite")},
        "signer_state": {"backend": "sqlite", "path": str(root / "state.sqlite")},
        "key_sources": {"sqlite": {"path": str(root / "keys.sqlite")}},
        "kms": {"local": {"directory": str(root / "kms")}},
        "vault": {"argon2": dict(ARGON2)},
        "auth_policies": {
            "ops-team": {
                "token": "env:CC_AUTH_TOKEN",
                "allowed_scopes": ["chamber_seal", "chamber_status", "chamber_keys_write"],
            },
            "signing-client": {
                "token": "env:SIGNING_TOKEN",
                "allowed_scopes": ["sign", "public_keys"],
            },
        },
    }


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, f"{self.args}: exit {self.returncode}\n{self.stderr}"
        assert self.stderr == "" or "Traceback" not in self.stderr
        return json.loads(self.stdout)


def cli(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> CliResult:
    """``containment-chamber ARGS...`` as a subprocess (no controlling terminal: a prompt would
    fall back to standard input instead of hanging on the developer's terminal)."""
    argv = [sys.executable, "-m", "chamber", *args]
    out = subprocess.run(
        argv,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )
    return CliResult(list(args), out.returncode, out.stdout, out.stderr)


@dataclass
class Chamber:
    root: Path
    env: dict[str, str] = field(
        default_factory=lambda: {"CC_AUTH_TOKEN": OPS_TOKEN, "SIGNING_TOKEN": SIGNING_TOKEN}
    )
    #: (where, text): everything that left the server and CLI processes.
    transcript: list[tuple[str, str]] = field(default_factory=list)
    signer: SubprocessSigner | None = None
    _stopped_logs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path = self.root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(vault_config(self.root)))
        self.state_path = self.root / "state.sqlite"
        self.kms_dir = self.root / "kms"

    # ------------------------------------------------------------------ the server process

    def start(self) -> str:
        assert self.signer is None
        self.signer = SubprocessSigner(self.config_path, env=self.env, cwd=self.root)
        return self.signer.wait_listening()

    def stop(self) -> None:
        signer = self.signer
        if signer is None:
            return
        self.signer = None
        code = signer.stop()
        self._stopped_logs.append(signer.output())
        self.transcript.append(("server log", signer.output()))
        assert code == 0, f"the signer exited with {code}:\n{signer.output()}"

    def restart(self) -> str:
        self.stop()
        return self.start()

    @property
    def url(self) -> str:
        assert self.signer is not None and self.signer.port is not None
        return f"http://127.0.0.1:{self.signer.port}"

    def server_log_lines(self) -> list[str]:
        """Every line the server processes wrote (stdout and stderr), all starts included."""
        lines = [line for text in self._stopped_logs for line in text.splitlines()]
        if self.signer is not None:
            lines += list(self.signer.lines)
        return lines

    def setup_tokens(self) -> list[str]:
        """The setup tokens logged so far, oldest first (all starts of this chamber)."""
        tokens = []
        for line in self.server_log_lines():
            if SETUP_LOG_MESSAGE in line:
                tokens.append(json.loads(line)["setup_token"])
        return tokens

    def wait_setup_token(self, count: int = 1, timeout: float = 30) -> str:
        """The newest setup token, once at least ``count`` have been logged."""
        deadline = time.monotonic() + timeout
        while len(tokens := self.setup_tokens()) < count:
            assert time.monotonic() < deadline, "no setup token logged:\n" + "\n".join(
                self.server_log_lines()
            )
            time.sleep(0.05)
        return tokens[-1]

    # ------------------------------------------------------------------ clients

    def operator(
        self, command: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        """``containment-chamber operator COMMAND --signer-url URL ARGS...``, recorded."""
        return self.run_cli(
            "operator", command, "--signer-url", self.url, *args, stdin=stdin, env=env
        )

    def run_cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        result = cli(*args, stdin=stdin, env={**self.env, **(env or {})})
        label = " ".join(args[:2])
        self.transcript.append((f"{label} stdout", result.stdout))
        self.transcript.append((f"{label} stderr", result.stderr))
        return result

    def http(self, method: str, path: str, body: Any = None, token: str | None = None) -> Response:
        response = Client(self.url, token=token).request(method, path, body)
        self.transcript.append((f"HTTP {method} {path}", response.body.decode(errors="replace")))
        return response

    def sign(self, pubkey_hex: str, body: dict[str, Any]) -> Response:
        return self.http("POST", f"/api/v1/eth2/sign/{pubkey_hex}", body, SIGNING_TOKEN)

    def status(self) -> dict[str, Any]:
        response = self.http("GET", STATUS_PATH, token=OPS_TOKEN)
        assert response.status == 200, response.body
        answer: dict[str, Any] = response.json()
        return answer

    def wait_state(self, state: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.status()
            if answer["seal"]["status"] == state:
                return answer
            assert time.monotonic() < deadline, f"still {answer} (waiting for {state})"
            time.sleep(0.05)

    def metrics(self) -> str:
        assert self.signer is not None and self.signer.metrics_port is not None
        url = f"http://127.0.0.1:{self.signer.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text: str = resp.read().decode()
        self.transcript.append(("metrics", text))
        return text

    # ------------------------------------------------------------------ stored state

    def state_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the vault's state database (read-only)."""
        if not self.state_path.exists():
            return {}
        conn = sqlite3.connect(f"file:{self.state_path}?mode=ro", uri=True)
        try:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {
                # Table names come from sqlite_master, not from input.
                table: conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
                for table in tables
            }
        finally:
            conn.close()

    def kms_key_files(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.kms_dir.glob("*.key"))}

    def files_at_rest(self) -> dict[str, bytes]:
        """The databases the signer wrote (with their WAL files), by name."""
        return {
            path.name: path.read_bytes()
            for path in sorted(self.root.glob("*.sqlite*"))
            if path.is_file()
        }


def encodings(secret: bytes) -> list[str]:
    """The textual forms a leaked binary secret would most likely take."""
    return [
        secret.hex(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    ]


# ---------------------------------------------------------------------- a real terminal

_PTY_RUNNER = """
import os, pty, sys
status = pty.spawn(sys.argv[1:])
sys.exit(os.waitstatus_to_exitcode(status))
"""


class TerminalSession:
    """The CLI on a pseudo-terminal (its controlling terminal), so ``getpass`` really prompts.

    A helper process runs ``pty.spawn`` (the fork happens there, in a single-threaded process);
    this class writes what the operator would type once the expected prompt has appeared, as a
    person does (the prompt turns echo off first and discards input typed too early).
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PTY_RUNNER, sys.executable, "-m", "chamber", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO_ROOT,
        )
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 4096):
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace")

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None and text not in self.output:
                self._reader.join(5)
                assert text in self.output, f"exited without {text!r}:\n{self.output}"
                return
            assert time.monotonic() < deadline, f"no {text!r} on the terminal:\n{self.output}"
            time.sleep(0.02)

    def type_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code, self.output
