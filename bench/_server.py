"""One ``python -m chamber server`` process for the benchmarks, watched through its JSON log.

``bench/sign.py`` (one server) and ``bench/keys.py`` (replicas, restarts) both start the real
server this way: a config file, a work directory for relative paths, stdout and stderr into a
log file that is read incrementally for the lines that matter (``signer listening``, ``metrics
listening``, ``BLS backend selected``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BenchError(Exception):
    """The benchmark could not run (exit status 2)."""


def process_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def context_switches(pid: int) -> tuple[int, int]:
    """Voluntary + involuntary context switches so far: (the main thread, which is waitress's
    I/O loop in a server; all other threads together)."""
    main = others = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        count = 0
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                count += int(line.split()[1])
        if status.parent.name == str(pid):
            main += count
        else:
            others += count
    return main, others


class ServerProcess:
    def __init__(self, name: str, config: Path, workdir: Path, log_path: Path) -> None:
        """Start the server. The log is appended to, so a restarted server keeps one file;
        only what this process writes is scanned."""
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        self._offset = log_path.stat().st_size
        self.entries: list[dict[str, Any]] = []
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.listening: dict[str, Any] = {}
        self.bls_selected: str | None = None
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chamber", "server", "-c", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,  # any relative default path (e.g. a database file) lands in the temp dir
        )

    def scan(self) -> None:
        """Read the log lines written since the last scan (whole lines only)."""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            self.entries.append(entry)
            message = entry.get("message")
            if message == "signer listening":
                self.port = int(entry["port"])
                self.listening = entry
            elif message == "metrics listening":
                self.metrics_port = int(entry["port"])
            elif message == "BLS backend selected":
                self.bls_selected = entry.get("bls_backend")

    def find(self, message: str, **fields: Any) -> dict[str, Any] | None:
        """The first log entry with this message (and these field values), if any yet."""
        self.scan()
        for entry in self.entries:
            if entry.get("message") == message and all(
                entry.get(k) == v for k, v in fields.items()
            ):
                return entry
        return None

    def tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_for(self, what: Callable[[], Any], timeout: float, label: str) -> Any:
        """Poll ``what`` until it returns something true; fail when the server exits or the
        time is up, with the log's tail."""
        deadline = time.monotonic() + timeout
        while True:
            found = what()
            if found:
                return found
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name}: {label} did not happen in {timeout} s\n{self.tail()}"
                )
            time.sleep(0.01)

    def wait_port(self, timeout: float = 60) -> int:
        def port() -> int | None:
            self.scan()
            return self.port

        found: int = self.wait_for(port, timeout, "'signer listening'")
        return found

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait; the exit status, or ``None`` if it had to be killed."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        finally:
            self._log.close()
