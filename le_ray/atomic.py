"""Atomic writes (the one leaf module every writer uses): a reader never sees a half-written file.

Every writer goes through :func:`atomic_write_bytes`: write a temp file in the target's folder,
flush + fsync, then ``os.replace`` onto the final name (atomic on POSIX within one filesystem).
An interrupted run leaves either the old file or the new one, plus at most a ``.tmp-*`` file that
no reader trusts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_write_with", "to_jsonable",
           "check_writable"]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename)."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_with(path: str | Path, writer: Callable[[str], Any]) -> Path:
    """Call ``writer(temp_path)`` then move the temp file onto ``path``; clean up on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from numpy scalars/arrays, tuples and mappings; NaN/inf become null."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def check_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and prove it is writable before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(prefix=".write-probe-", dir=folder, delete=True)
        probe.close()
    except OSError as exc:
        raise PermissionError(f"{what} {str(folder)!r} is not writable: {exc.strerror or exc}") from None
    return folder
