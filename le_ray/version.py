"""Which le_ray this is: the package version and, when known, the git commit it runs from."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from le_ray import __version__

__all__ = ["git_commit", "short_commit", "version_string"]


def _git(*args: str) -> bytes | None:
    """stdout of ``git args`` run in this package's folder, or None outside a checkout (or without git)."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit() -> str | None:
    """HEAD of the checkout le_ray runs from, or ``$LE_RAY_GIT_COMMIT`` (set by jobs/submit.sh). A checkout whose
    tracked files differ from HEAD gives ``<HEAD>-dirty-<first 8 hex of the SHA-256 of git diff HEAD>``, so a run
    of uncommitted code is never recorded as the commit, and two runs of different uncommitted edits differ."""
    if os.environ.get("LE_RAY_GIT_COMMIT"):
        return os.environ["LE_RAY_GIT_COMMIT"]
    head = (_git("rev-parse", "HEAD") or b"").decode().strip()
    if not head:
        return None
    diff = _git("diff", "HEAD", "--no-ext-diff", "--binary")
    return f"{head}-dirty-{hashlib.sha256(diff).hexdigest()[:8]}" if diff else head


def short_commit(commit: str | None) -> str:
    """``0123456789ab`` of a full commit, keeping a ``-dirty-…`` suffix (``0123456789ab-dirty-1a2b3c4d``)."""
    head, sep, rest = str(commit).partition("-")
    return head[:12] + sep + rest


def version_string() -> str:
    """``le_ray 0.2.0 (commit 1a2b3c4d5e6f)``, or without the commit outside a checkout."""
    commit = git_commit()
    return f"le_ray {__version__}" + (f" (commit {short_commit(commit)})" if commit else "")
