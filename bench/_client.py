"""Request generation and a light HTTP/1.1 keep-alive load generator for ``bench/sign.py``.

The load generator is one process running a ``selectors`` (epoll) loop over N raw sockets: each
connection has one request in flight, sends pre-encoded request bytes and parses only the status
line and ``Content-Length`` of the answer. That keeps the client's CPU small next to the server's
on a machine with few cores (the report shows how much it used).

Requests are valid Web3Signer signing requests for mainnet (Deneb fork info) whose signing roots
are computed here with a few SHA-256 calls (an SSZ ``hash_tree_root`` of the block header /
attestation data / epoch), so the server gets the ``signingRoot`` a real client would send. Each
key is driven by exactly one connection and its block slots, attestation epochs (source = target
- 1) and RANDAO epochs only rise, so slashing-protection backends never have a reason to refuse.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256

MAINNET_GVR = bytes.fromhex("4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95")
CAPELLA_VERSION = bytes.fromhex("03000000")
DENEB_VERSION = bytes.fromhex("04000000")
DENEB_FORK_EPOCH = 269_568
#: Every message epoch starts here (after the Deneb fork epoch) and rises.
START_EPOCH = 300_000
SLOTS_PER_EPOCH = 32

TYPES = ("BLOCK_V2", "ATTESTATION", "RANDAO_REVEAL")
BLOCK, ATTESTATION, RANDAO = 0, 1, 2
#: Flag in ``LoadResult.kinds`` for an answer that was not 200.
FAILED = 0x80

_DOMAIN_BEACON_PROPOSER = bytes.fromhex("00000000")
_DOMAIN_BEACON_ATTESTER = bytes.fromhex("01000000")
_DOMAIN_RANDAO = bytes.fromhex("02000000")
_Z32 = bytes(32)
_Z24 = bytes(24)
_H_Z_Z = sha256(_Z32 + _Z32).digest()


def _domain(domain_type: bytes) -> bytes:
    fork_data_root = sha256(DENEB_VERSION + bytes(28) + MAINNET_GVR).digest()
    return domain_type + fork_data_root[:28]


_D_PROPOSER = _domain(_DOMAIN_BEACON_PROPOSER)
_D_ATTESTER = _domain(_DOMAIN_BEACON_ATTESTER)
_D_RANDAO = _domain(_DOMAIN_RANDAO)

_FORK_INFO = (
    f'"fork_info":{{"fork":{{"previous_version":"0x{CAPELLA_VERSION.hex()}",'
    f'"current_version":"0x{DENEB_VERSION.hex()}","epoch":"{DENEB_FORK_EPOCH}"}},'
    f'"genesis_validators_root":"0x{MAINNET_GVR.hex()}"}}'
)


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little") + _Z24


def _root5(c0: bytes, c1: bytes, c2: bytes, c3: bytes, c4: bytes) -> bytes:
    """``hash_tree_root`` of a 5-field container (padded to 8 leaves)."""
    left = sha256(sha256(c0 + c1).digest() + sha256(c2 + c3).digest()).digest()
    right = sha256(sha256(c4 + _Z32).digest() + _H_Z_Z).digest()
    return sha256(left + right).digest()


def block_signing_root(slot: int, proposer: int, parent: bytes, state: bytes, body: bytes) -> bytes:
    header_root = _root5(_u64(slot), _u64(proposer), parent, state, body)
    return sha256(header_root + _D_PROPOSER).digest()


def attestation_signing_root(
    slot: int,
    index: int,
    block_root: bytes,
    source: int,
    source_root: bytes,
    target: int,
    target_root: bytes,
) -> bytes:
    source_cp = sha256(_u64(source) + source_root).digest()
    target_cp = sha256(_u64(target) + target_root).digest()
    data_root = _root5(_u64(slot), _u64(index), block_root, source_cp, target_cp)
    return sha256(data_root + _D_ATTESTER).digest()


def randao_signing_root(epoch: int) -> bytes:
    return sha256(_u64(epoch) + _D_RANDAO).digest()


def mix_pattern(weights: Sequence[int]) -> list[int]:
    """Request types spread evenly over one cycle, e.g. 1:4:1 -> [A, A, B, A, A, R] style."""
    slots: list[tuple[float, int]] = []
    for kind, weight in enumerate(weights):
        slots.extend(((i + 0.5) / weight, kind) for i in range(weight))
    slots.sort()
    return [kind for _, kind in slots]


class KeyState:
    """One key's request stream: its URL prefix and rising slot/epoch counters."""

    __slots__ = ("attestation_n", "block_n", "index", "prefix", "randao_n")

    def __init__(self, index: int, pubkey_hex: str, host: str, token: str) -> None:
        self.index = index
        self.block_n = 0
        self.attestation_n = 0
        self.randao_n = 0
        self.prefix = (
            f"POST /api/v1/eth2/sign/{pubkey_hex} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            "Content-Length: "
        ).encode()

    def request(self, kind: int) -> tuple[bytes, bytes]:
        """(request bytes, signing root) for the next request of ``kind`` for this key."""
        if kind == ATTESTATION:
            self.attestation_n += 1
            target = START_EPOCH + self.attestation_n
            source = target - 1
            slot = target * SLOTS_PER_EPOCH + self.index % SLOTS_PER_EPOCH
            index = self.index % 64
            block_root = sha256(_u64(slot)).digest()
            source_root = sha256(_u64(source)).digest()
            target_root = sha256(_u64(target)).digest()
            root = attestation_signing_root(
                slot, index, block_root, source, source_root, target, target_root
            )
            body = (
                f'{{"type":"ATTESTATION","signingRoot":"0x{root.hex()}",{_FORK_INFO},'
                f'"attestation":{{"slot":"{slot}","index":"{index}",'
                f'"beacon_block_root":"0x{block_root.hex()}",'
                f'"source":{{"epoch":"{source}","root":"0x{source_root.hex()}"}},'
                f'"target":{{"epoch":"{target}","root":"0x{target_root.hex()}"}}}}}}'
            )
        elif kind == BLOCK:
            slot = START_EPOCH * SLOTS_PER_EPOCH + self.block_n
            self.block_n += 1
            parent = sha256(_u64(slot)).digest()
            state = sha256(parent).digest()
            body_root = sha256(state).digest()
            root = block_signing_root(slot, self.index, parent, state, body_root)
            body = (
                f'{{"type":"BLOCK_V2","signingRoot":"0x{root.hex()}",{_FORK_INFO},'
                f'"beacon_block":{{"version":"DENEB","block_header":{{"slot":"{slot}",'
                f'"proposer_index":"{self.index}","parent_root":"0x{parent.hex()}",'
                f'"state_root":"0x{state.hex()}","body_root":"0x{body_root.hex()}"}}}}}}'
            )
        else:
            epoch = START_EPOCH + self.randao_n
            self.randao_n += 1
            root = randao_signing_root(epoch)
            body = (
                f'{{"type":"RANDAO_REVEAL","signingRoot":"0x{root.hex()}",{_FORK_INFO},'
                f'"randao_reveal":{{"epoch":"{epoch}"}}}}'
            )
        data = body.encode()
        return self.prefix + b"%d\r\n\r\n" % len(data) + data, root


class Conn:
    """One keep-alive connection with at most one request in flight."""

    __slots__ = (
        "address",
        "buf",
        "chunked",
        "close_after",
        "head_end",
        "key_index",
        "keys",
        "kind",
        "need",
        "out",
        "pattern",
        "root",
        "selector",
        "sent_at",
        "seq",
        "sock",
        "status",
    )

    def __init__(
        self,
        address: tuple[str, int],
        keys: list[KeyState],
        pattern: list[int],
        selector: selectors.BaseSelector,
    ) -> None:
        self.address = address
        self.keys = keys
        self.pattern = pattern
        self.selector = selector
        self.seq = 0
        self.sock: socket.socket | None = None
        self._reset_response()
        self.out = b""
        self.sent_at = 0.0
        self.kind = 0
        self.key_index = 0
        self.root = b""

    def _reset_response(self) -> None:
        self.buf = b""
        self.need = -1
        self.head_end = 0
        self.status = 0
        self.chunked = False
        self.close_after = False

    def open(self) -> None:
        sock = socket.create_connection(self.address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.selector.register(sock, selectors.EVENT_READ, self)
        self._reset_response()

    def close(self) -> None:
        if self.sock is not None:
            self.selector.unregister(self.sock)
            self.sock.close()
            self.sock = None

    def send_next(self) -> None:
        keys = self.keys
        n = self.seq
        self.seq = n + 1
        key = keys[n % len(keys)]
        kind = self.pattern[(n // len(keys)) % len(self.pattern)]
        data, self.root = key.request(kind)
        self.kind = kind
        self.key_index = key.index
        self._reset_response()
        self.sent_at = time.perf_counter()
        self._write(data)

    def _write(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.out = data[sent:]
            self.selector.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)
        elif self.out:
            self.out = b""

    def flush(self) -> None:
        assert self.sock is not None
        data = self.out
        self.out = b""
        self.selector.modify(self.sock, selectors.EVENT_READ, self)
        self._write(data)

    def read(self) -> bytes | None:
        """Feed received bytes; the body once the whole answer is in, else ``None``.

        Raises ``ConnectionError`` if the server closed the connection.
        """
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return None
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "server closed the connection")
        buf = self.buf + data if self.buf else data
        if self.need < 0:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                self.buf = buf
                return None
            head = buf[:head_end].lower()
            self.status = int(head[9:12])
            self.head_end = head_end + 4
            self.close_after = b"\r\nconnection: close" in head
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                end = head.find(b"\r\n", at + 2)
                self.need = self.head_end + int(head[at + 17 : end if end >= 0 else None])
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.chunked = True
                self.need = 0
            else:  # no length: the answer ends when the server closes the connection
                self.close_after = True
                self.need = self.head_end
        if self.chunked:
            if not buf.endswith(b"0\r\n\r\n"):
                self.buf = buf
                return None
            body = buf[self.head_end :]
        else:
            if len(buf) < self.need:
                self.buf = buf
                return None
            body = buf[self.head_end : self.need]
        self.buf = b""
        return body


@dataclass
class LoadResult:
    started: float
    window_start: float
    window_end: float
    #: Per answer: completion time, latency (s), request type (| FAILED if not 200).
    done_at: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    kinds: bytearray = field(default_factory=bytearray)
    #: Non-200 answers by status ("conn_reset" / "no_answer" for transport failures).
    failures: Counter[str] = field(default_factory=Counter)
    failure_examples: list[str] = field(default_factory=list)
    #: A few signed answers per type: (key index, type, signing root, response body).
    samples: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    reconnects: int = 0
    sent: int = 0


class LoadGenerator:
    def __init__(
        self, address: tuple[str, int], keys: list[KeyState], clients: int, pattern: list[int]
    ) -> None:
        if len(keys) < clients:
            raise ValueError("need at least one key per client")
        self.selector = selectors.DefaultSelector()
        # Key k belongs to connection k % clients only: one request per key in flight at a time,
        # so each key's slots and epochs reach the server in rising order.
        self.conns = [
            Conn(address, keys[i::clients], pattern, self.selector) for i in range(clients)
        ]

    def run(
        self,
        warmup: float,
        duration: float,
        on_window: Callable[[str], None] = lambda phase: None,
        samples_per_type: int = 3,
        drain_timeout: float = 30.0,
    ) -> LoadResult:
        """Drive load for ``warmup + duration`` seconds, then wait for answers in flight.

        ``on_window("start")`` / ``on_window("end")`` are called as the measured window opens and
        closes (for CPU snapshots).
        """
        for conn in self.conns:
            conn.open()
        started = time.perf_counter()
        result = LoadResult(started, started + warmup, started + warmup + duration)
        window_start, window_end = result.window_start, result.window_end
        done_at, latency, kinds = result.done_at, result.latency, result.kinds
        failures = result.failures
        sample_counts = [0, 0, 0]
        perf_counter = time.perf_counter
        select = self.selector.select
        for conn in self.conns:
            conn.send_next()
        result.sent = len(self.conns)
        inflight = len(self.conns)
        phase = 0
        drain_deadline = 0.0
        while inflight:
            events = select(0.05)
            now = perf_counter()
            if phase == 0 and now >= window_start:
                phase = 1
                on_window("start")
            if phase == 1 and now >= window_end:
                phase = 2
                on_window("end")
                drain_deadline = now + drain_timeout
            if phase == 2 and now > drain_deadline:
                failures["no_answer"] += inflight
                break
            for key, mask in events:
                conn = key.data
                if mask & selectors.EVENT_WRITE:
                    conn.flush()
                if not mask & selectors.EVENT_READ:
                    continue
                try:
                    body = conn.read()
                except OSError as exc:
                    failures["conn_reset"] += 1
                    if len(result.failure_examples) < 5:
                        result.failure_examples.append(f"{TYPES[conn.kind]}: {exc}")
                    conn.close()
                    inflight -= 1
                    if phase < 2:
                        result.reconnects += 1
                        conn.open()
                        conn.send_next()
                        result.sent += 1
                        inflight += 1
                    continue
                if body is None:
                    continue
                t = perf_counter()
                done_at.append(t)
                latency.append(t - conn.sent_at)
                status = conn.status
                if status != 200:
                    kinds.append(conn.kind | FAILED)
                    failures[str(status)] += 1
                    example = f"{TYPES[conn.kind]} -> {status}: "
                    if len(result.failure_examples) < 5 and not any(
                        e.startswith(example) for e in result.failure_examples
                    ):
                        result.failure_examples.append(
                            example + body[:300].decode(errors="replace")
                        )
                else:
                    kinds.append(conn.kind)
                    if sample_counts[conn.kind] < samples_per_type:
                        sample_counts[conn.kind] += 1
                        result.samples.append((conn.key_index, conn.kind, conn.root, body))
                inflight -= 1
                if conn.close_after:
                    conn.close()
                    if phase < 2:
                        result.reconnects += 1
                        conn.open()
                    else:
                        continue
                if phase < 2:
                    conn.send_next()
                    result.sent += 1
                    inflight += 1
        for conn in self.conns:
            conn.close()
        self.selector.close()
        return result
