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


def atomic_write_bytes(path: str | Path, data: bytes, *, make_parents: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename); ``make_parents`` as in
    :func:`atomic_write_with`."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data), make_parents=make_parents)


def atomic_write_with(path: str | Path, writer: Callable[[str], Any], *, make_parents: bool = True) -> Path:
    """Call ``writer(temp_path)`` then move the temp file onto ``path``; clean up on failure.

    ``make_parents``: create ``path``'s missing folders first; False writes only into an existing folder (else
    FileNotFoundError), for a caller that must not recreate a folder removed under it. An OSError (not writable, no
    space left) is raised as the same kind of error about ``path``, with its errno and reason: never naming the temp
    file, which is gone by then.
    """
    path = Path(path)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    except OSError as exc:
        raise _about(exc, path) from exc
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, OSError):
            raise _about(exc, path) from exc
        raise
    return path


def _about(exc: OSError, path: Path) -> OSError:
    """A new error of ``exc``'s kind about ``path``: its errno and reason with ``path`` as the file name (an error
    without an errno keeps its own words, with the path added)."""
    if exc.errno is None:
        message = f"{exc} (writing {str(path)!r})"
        try:
            return type(exc)(message)
        except TypeError:  # a subclass that takes other arguments
            return OSError(message)
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def _remove_quietly(tmp: str) -> None:
    """Remove a failed write's temp file; a folder that no longer lets it be removed keeps it (no reader trusts
    ``.tmp-*`` files, and the next run removes them)."""
    try:
        Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str, *, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write_with`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


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


def atomic_write_json(path: str | Path, data: Any, *, make_parents: bool = True) -> Path:
    """Write ``data`` (:func:`to_jsonable`) to ``path`` as indented JSON, atomically (:func:`atomic_write_with`)."""
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n",
                             make_parents=make_parents)


def check_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and prove it is writable before any work starts; a PermissionError says whether
    the folder cannot be created or exists but is not writable."""
    folder = Path(folder)
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"{what} {str(folder)!r} is not writable: it cannot be created "
                              f"({exc.strerror or exc})") from None
    try:
        probe = tempfile.NamedTemporaryFile(prefix=".write-probe-", dir=folder, delete=True)
        probe.close()
    except OSError as exc:
        state = "exists but is not writable" if existed else "was created but is not writable"
        raise PermissionError(f"{what} {str(folder)!r} {state}: {exc.strerror or exc}") from None
    return folder
