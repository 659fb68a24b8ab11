"""Test-only fault injection, switched on by environment variables the tests set (never by configs).

The sweep driver collects every ``LE_RAY_TEST_FAULT_*`` variable of its environment into a dict
that travels with each Ray task (:func:`from_environment`); without such variables nothing here
does anything.

* ``LE_RAY_TEST_FAULT_SLEEP=<seconds>``: every trial sleeps first (to make concurrency observable);
* ``LE_RAY_TEST_FAULT_BARRIER=<n>`` with ``LE_RAY_TEST_FAULT_DIR``: every trial waits, before training, until n
  trials have arrived (a marker file each) or :data:`BARRIER_DEADLINE_S` has passed: n trials that run at once
  all start before any ends, whatever the machine's load; trials that cannot run at once are held up only
  until the deadline;
* ``LE_RAY_TEST_FAULT_RAISE=<loss>:<seed>``: that trial raises on every attempt;
* ``LE_RAY_TEST_FAULT_EXIT=<loss>:<seed>`` with ``LE_RAY_TEST_FAULT_DIR``: the worker process of that
  trial dies (``os._exit``) after its first optimiser step, once (a marker file records it);
* ``LE_RAY_TEST_FAULT_REPORT_SLEEP=<seconds>``: the driver sleeps after writing the report tables and
  before the plots and summary.md (so a test can kill it during the report phase).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["PREFIX", "from_environment", "before_trial", "step_hook", "report_pause"]

PREFIX = "LE_RAY_TEST_FAULT"


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The fault variables of ``environ`` (default: this process's environment)."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k.startswith(PREFIX)}


BARRIER_DEADLINE_S = 60.0  #: the longest a trial waits at the barrier


def before_trial(faults: Mapping[str, str], loss: str, seed: int) -> None:
    """Sleep, barrier and raise faults, run at the start of a trial."""
    if faults.get(f"{PREFIX}_SLEEP"):
        time.sleep(float(faults[f"{PREFIX}_SLEEP"]))
    if faults.get(f"{PREFIX}_BARRIER"):
        _barrier(Path(faults[f"{PREFIX}_DIR"]), int(faults[f"{PREFIX}_BARRIER"]), f"{loss}-{seed}")
    if faults.get(f"{PREFIX}_RAISE") == f"{loss}:{seed}":
        raise RuntimeError(f"test fault: trial {loss}:{seed} always fails")


def _barrier(folder: Path, parties: int, name: str) -> None:
    """Mark this trial's arrival in ``folder``, then wait until ``parties`` have arrived or the deadline passes."""
    (folder / f"arrived-{name}").write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + BARRIER_DEADLINE_S
    while len(list(folder.glob("arrived-*"))) < parties and time.monotonic() < deadline:
        time.sleep(0.02)


def step_hook(faults: Mapping[str, str], loss: str, seed: int, trial_id: str) -> Callable[[int, int], None] | None:
    """An ``on_step`` callback that kills the worker once after step 1, for the trial named by the EXIT fault."""
    if faults.get(f"{PREFIX}_EXIT") != f"{loss}:{seed}":
        return None
    marker = Path(faults[f"{PREFIX}_DIR"]) / f"exited-{trial_id}"

    def on_step(epoch: int, step: int) -> None:
        if step == 1 and not marker.exists():
            marker.write_text("killed once\n")
            os._exit(1)
    return on_step


def report_pause(faults: Mapping[str, str] | None = None) -> None:
    """The report-phase pause (see the module docstring)."""
    seconds = (from_environment() if faults is None else faults).get(f"{PREFIX}_REPORT_SLEEP")
    if seconds:
        time.sleep(float(seconds))
