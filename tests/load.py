"""A CPU-burning process beside the tests (``pytest --under-load``), so timing races show up here, not in CI.

The burner is a busy loop in its own Python process, pinned to CPU 0 where the platform allows it
(the tests keep the other core and share this one), started before the first test and killed after
the last. Tests must hold under it: they wait on conditions with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import os
import subprocess
import sys

BUSY_LOOP = "while True: pass"


def start_burner() -> subprocess.Popen:
    """Start the busy loop (pinned to CPU 0 when ``os.sched_setaffinity`` exists)."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(proc.pid, {0})
        except OSError:
            pass
    return proc


def stop_burner(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)
