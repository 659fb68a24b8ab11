"""Where the real public sample rows live, for tests that read them.

Lookup order: ``$LE_RAY_SAMPLE_DATA``, then ``<repo>/../shared/data``. A test that needs a file
calls :func:`require_sample`; when the file is missing it is skipped with the reason — unless the
``CI`` environment variable is set, where a missing sample is a failure (CI must find the data).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "LE_RAY_SAMPLE_DATA"
DEFAULT_DIR = REPO_ROOT.parent / "shared" / "data"


def _candidates() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    return ([Path(env).expanduser()] if env else []) + [DEFAULT_DIR]


def sample_data_dir() -> Path | None:
    """The first sample folder (holding ``avazu/`` or ``criteo/``) in lookup order, or None."""
    for folder in _candidates():
        if (folder / "avazu").is_dir() or (folder / "criteo").is_dir():
            return folder.resolve()
    return None


def require_sample(*parts: str) -> Path:
    """Path of sample file ``parts`` (e.g. ``"avazu", "avazu_sample.csv"``); skip or fail if missing."""
    for folder in _candidates():
        path = folder.joinpath(*parts)
        if path.is_file():
            return path.resolve()
    looked = ", ".join(str(folder) for folder in _candidates())
    reason = (f"real sample file {'/'.join(parts)} not found (looked in {looked}); set {ENV_VAR} to the folder "
              "holding avazu/ and criteo/")
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)
