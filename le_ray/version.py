"""Which le_ray this is: the package version and, when known, the git commit it runs from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from le_ray import __version__

__all__ = ["git_commit", "version_string"]


def git_commit() -> str | None:
    """HEAD of the checkout le_ray runs from, or ``$LE_RAY_GIT_COMMIT`` (set by jobs/submit.sh)."""
    if os.environ.get("LE_RAY_GIT_COMMIT"):
        return os.environ["LE_RAY_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None



def version_string() -> str:
    """``le_ray 0.2.0 (commit 1a2b3c4d5e6f)``, or without the commit outside a checkout."""
    commit = git_commit()
    return f"le_ray {__version__}" + (f" (commit {commit[:12]})" if commit else "")
