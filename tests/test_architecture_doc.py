"""ARCHITECTURE.md and CONTRIBUTING.md name only paths that exist: a module moved or removed fails here until the
pages follow it.

A path is any ``le_ray/...``, ``tests/...`` or ``bench/...`` token in either page (in prose, tables or the
diagrams); a token ending in ``/`` names a folder, anything else a file; a ``::test`` suffix is cut off.
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ("ARCHITECTURE.md", "CONTRIBUTING.md")
PATH = re.compile(r"(?<![\w./-])((?:le_ray|tests|bench)/[\w./-]*[\w/])")


def named_paths(text: str) -> set[str]:
    """Every repository path the text names (``le_ray/x.py``, ``tests/y.py``, ``bench/z/``)."""
    return {match.split("::")[0] for match in PATH.findall(text)}


def test_named_paths_are_found_in_text():
    text = ("the loop (le_ray/training/loop.py), `tests/test_train.py::test_x`, bench/README.md. "
            "Plots live in le_ray/report/plots/; not a path: my_le_ray/x.py or le_ray.training.loop")
    assert named_paths(text) == {"le_ray/training/loop.py", "tests/test_train.py", "bench/README.md",
                                 "le_ray/report/plots/"}


@pytest.mark.parametrize("page", PAGES)
def test_every_path_a_page_names_exists(page):
    paths = named_paths((REPO / page).read_text())
    assert len(paths) >= 10, f"{page} names too few paths to be a guide"
    missing = sorted(p for p in paths if not (REPO / p).exists() or (p.endswith("/") and not (REPO / p).is_dir()))
    assert not missing, f"{page} names paths that do not exist: {missing}"


def test_the_readme_links_both_pages():
    readme = (REPO / "README.md").read_text()
    for page in PAGES:
        assert f"]({page})" in readme, f"README does not link {page}"
