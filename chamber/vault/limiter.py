"""Growing delays after failed credential attempts (brute-force protection).

Per subject (an operator name, or ``setup-token``): the first ``free_attempts`` failures cost
nothing; after that, each failure locks the subject for ``base * 2**(extra failures - 1)`` seconds,
capped at ``max_delay``. A success clears the subject. Attempts while locked are refused without
being evaluated, so a locked subject cannot be probed. Counters live in this process only: each
replica limits on its own (documented in docs/vault.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chamber.errors import TooManyAttempts


@dataclass(slots=True)
class _Subject:
    failures: int = 0
    locked_until: float = 0.0


class AttemptLimiter:
    def __init__(
        self,
        *,
        free_attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._subjects: dict[str, _Subject] = {}

    def check(self, subject: str, what: str) -> None:
        """Raise :class:`TooManyAttempts` while ``subject`` is locked."""
        with self._lock:
            entry = self._subjects.get(subject)
            if entry is None:
                return
            wait = entry.locked_until - self._clock()
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyAttempts(
                f"too many failed {what} attempts; retry in {seconds} s", retry_after=seconds
            )

    def failure(self, subject: str) -> int:
        """Count a failure; returns the subject's consecutive failure count."""
        with self._lock:
            entry = self._subjects.setdefault(subject, _Subject())
            entry.failures += 1
            extra = entry.failures - self.free_attempts
            if extra > 0:
                delay = min(self.max_delay, self.base_delay * 2 ** min(extra - 1, 30))
                entry.locked_until = self._clock() + delay
            return entry.failures

    def success(self, subject: str) -> None:
        with self._lock:
            self._subjects.pop(subject, None)

    def failures(self, subject: str) -> int:
        with self._lock:
            entry = self._subjects.get(subject)
            return 0 if entry is None else entry.failures
