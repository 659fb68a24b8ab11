"""Which code a run records (le_ray.version): the commit of a clean checkout, a marked and hashed commit of one with
uncommitted edits, and the short form the reports print. Run against a real git repository in a temp folder."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from le_ray import version

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _run(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A one-commit repository whose checkout version records (instead of the package's own)."""
    _run(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("lr = 0.004\n")
    _run(tmp_path, "add", "model.py")
    _run(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")

    monkeypatch.setattr(version, "_PACKAGE", tmp_path)
    monkeypatch.delenv("LE_RAY_GIT_COMMIT", raising=False)
    return tmp_path


def test_a_clean_checkout_records_its_head_and_uncommitted_edits_are_marked_and_hashed(repo):
    head = _run(repo, "rev-parse", "HEAD").decode().strip()
    assert version.git_commit() == head
    (repo / ".git" / "info" / "exclude").write_text("results.txt\n")
    (repo / "results.txt").write_text("an ignored file is not code\n")
    assert version.git_commit() == head
    (repo / "helpers.py").write_text("x = 1\n")  # review: a new module the run imports is uncommitted code too
    untracked = version.git_commit()
    content = b"\0untracked helpers.py\0x = 1\n"
    assert untracked == f"{head}-dirty-{hashlib.sha256(content).hexdigest()[:8]}"
    (repo / "helpers.py").unlink()
    (repo / "model.py").write_text("lr = 0.01\n")
    diff = _run(repo, "diff", "HEAD", "--no-ext-diff", "--binary")
    edited = version.git_commit()
    assert edited == f"{head}-dirty-{hashlib.sha256(diff).hexdigest()[:8]}"
    _run(repo, "add", "model.py")  # staged edits still differ from HEAD
    assert version.git_commit() == edited
    (repo / "model.py").write_text("lr = 0.02\n")  # another edit: another record, so a resumed sweep can tell
    assert version.git_commit() not in (edited, head)
    assert version.short_commit(edited) == f"{head[:12]}-dirty-{edited[-8:]}"
    assert version.version_string().endswith(f"(commit {head[:12]}-dirty-{version.git_commit()[-8:]})")


def test_the_environment_variable_wins_and_no_checkout_records_nothing(repo, monkeypatch):
    monkeypatch.setenv("LE_RAY_GIT_COMMIT", "0123456789abcdef0123-dirty-1a2b3c4d")
    assert version.git_commit() == "0123456789abcdef0123-dirty-1a2b3c4d"
    assert version.short_commit(version.git_commit()) == "0123456789ab-dirty-1a2b3c4d"
    monkeypatch.delenv("LE_RAY_GIT_COMMIT")
    monkeypatch.setattr(version, "_git", lambda *args: None)
    assert version.git_commit() is None and version.version_string() == f"le_ray {version.__version__}"
    assert version.short_commit("0123456789abcdef") == "0123456789ab"
