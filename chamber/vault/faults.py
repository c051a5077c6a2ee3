"""Crash points for the kill tests of multi-step vault changes.

``CHAMBER_TEST_KILL_AT=<point>`` in the environment makes the process SIGKILL itself when it
reaches that point (``point("rotate_kms:wrapped")``). Unset, each call is one dictionary look-up.
Tests use it to prove that a crash at any step leaves the old or the new configuration.
"""

from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("CHAMBER_TEST_KILL_AT")


def point(name: str) -> None:
    if _TARGET is not None and name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
