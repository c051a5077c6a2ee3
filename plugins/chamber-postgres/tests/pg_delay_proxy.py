"""A TCP proxy that delays every chunk by a fixed time in each direction.

Placed between the backend and PostgreSQL it turns round trips into wall-clock time: with a
one-way delay ``d``, an operation that needs ``n`` round trips takes about ``2·n·d`` longer. The
round-trip test and the latency benchmark use it to count round trips per check.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from types import TracebackType


class DelayProxy:
    def __init__(self, target_host: str, target_port: int, delay: float) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            _Pipe(client, server, self.delay)
            _Pipe(server, client, self.delay)


class _Pipe:
    """One direction: a reader stamps each chunk, a writer releases it ``delay`` later."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        self.src, self.dst, self.delay = src, dst, delay
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.src.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                else:
                    heapq.heappush(
                        self._heap, (time.monotonic() + self.delay, next(self._seq), data)
                    )
                self._cond.notify()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._eof:
                    self._cond.wait()
                if not self._heap:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    return
                due, _, data = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            try:
                self.dst.sendall(data)
            except OSError:
                return
