"""Which le_ray this is: the package version and, when known, the git commit it runs from."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from le_ray import __version__

__all__ = ["git_commit", "short_commit", "version_string"]


_PACKAGE = Path(__file__).resolve().parent  #: the folder whose checkout is recorded (a test points it elsewhere)


def _git(*args: str) -> bytes | None:
    """stdout of ``git args`` run in this package's folder, or None outside a checkout (or without git)."""
    try:
        out = subprocess.run(["git", *args], cwd=_PACKAGE, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _uncommitted() -> bytes:
    """What the checkout holds beyond HEAD: ``git diff HEAD`` (tracked files, staged or not) and each untracked,
    not ignored file in the package's own folder (a new module the run may import), by name and content."""
    out = _git("diff", "HEAD", "--no-ext-diff", "--binary") or b""
    for name in sorted(filter(None, (_git("ls-files", "--others", "--exclude-standard", "-z", "--", ".") or b"")
                              .split(b"\0"))):
        try:
            out += b"\0untracked " + name + b"\0" + (_PACKAGE / name.decode()).read_bytes()
        except (OSError, UnicodeDecodeError):
            out += b"\0unreadable " + name
    return out


def git_commit() -> str | None:
    """HEAD of the checkout le_ray runs from, or ``$LE_RAY_GIT_COMMIT`` (set by jobs/submit.sh). A checkout that
    holds more than HEAD (:func:`_uncommitted`: edited tracked files, new files in the package) gives
    ``<HEAD>-dirty-<first 8 hex of the SHA-256 of what it holds more>``, so a run of uncommitted code is never
    recorded as the commit, and two runs of different uncommitted edits differ."""
    if os.environ.get("LE_RAY_GIT_COMMIT"):
        return os.environ["LE_RAY_GIT_COMMIT"]
    head = (_git("rev-parse", "HEAD") or b"").decode().strip()
    if not head:
        return None
    extra = _uncommitted()
    return f"{head}-dirty-{hashlib.sha256(extra).hexdigest()[:8]}" if extra else head


def short_commit(commit: str | None) -> str:
    """``0123456789ab`` of a full commit, keeping a ``-dirty-…`` suffix (``0123456789ab-dirty-1a2b3c4d``)."""
    head, sep, rest = str(commit).partition("-")
    return head[:12] + sep + rest


def version_string() -> str:
    """``le_ray 0.2.0 (commit 1a2b3c4d5e6f)``, or without the commit outside a checkout."""
    commit = git_commit()
    return f"le_ray {__version__}" + (f" (commit {short_commit(commit)})" if commit else "")
