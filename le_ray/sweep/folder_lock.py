"""One driver per sweep folder: an exclusive ``flock`` on ``<sweep>/.lock`` held while a sweep (or a tune) runs.

Two drivers on one ``--name`` at once each trained every trial, interleaved two configs' files in one folder and
numbered their ``config.history`` entries alike. The second now stops before it writes anything, naming the first
(pid, host, start time from the lock file). ``flock`` is released by the kernel when its process ends, however it
ends (kill -9 too), so a stale lock never blocks a resume. Written by hand: the standard library's ``fcntl`` is the
whole mechanism, and no lock library adds what a sweep needs (the holder named in the refusal).

The lock is advisory and per host: drivers on two machines sharing the results folder over NFS may not see each
other's ``flock``; a sweep's driver runs on one head node, so a folder is normally run from one host.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from le_ray.errors import ResultsError

__all__ = ["hold_folder", "probe_folder", "LOCK_NAME"]

LOCK_NAME = ".lock"  #: the lock file in a sweep folder (holder: pid, host, time)


@contextmanager
def hold_folder(root: Path, command: str = "le-ray repeats") -> Iterator[None]:
    """Hold the exclusive lock of the sweep folder ``root`` (existing) while inside; ResultsError at once, naming
    the holder, when another process holds it. ``command`` goes into the lock file, for that refusal."""
    path = Path(root) / LOCK_NAME
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(root, path) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": platform.node(), "command": command,
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the flock


def _holder(path: Path) -> str:
    """``pid 123 on host h since 2026-12-05T19:00:00Z (le-ray repeats)`` from the lock file, or what can be said."""
    try:
        who = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {who['pid']} on host {who['host']} since {who['since']} ({who['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "its lock file names no holder yet"


def probe_folder(root: Path) -> None:
    """ResultsError, naming the holder, when another process holds ``root``'s lock now (nothing when the folder has
    no lock file yet): an early refusal before long work; the run itself then holds the lock (:func:`hold_folder`)."""
    path = Path(root) / LOCK_NAME
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:  # read-only: the holder named in the file stays as it is
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(root, path) from None


def _busy(root: Path, path: Path) -> ResultsError:
    return ResultsError(f"sweep folder {str(root)!r} is being run by another le_ray driver ({_holder(path)}); wait "
                        "until it ends, stop it, or choose another --name")
