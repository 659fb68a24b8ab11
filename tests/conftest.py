"""Suite-wide options: ``--under-load`` (or ``LE_RAY_UNDER_LOAD=1``, which ``.ci/run`` sets) runs a CPU-burning
process beside every Ray test (``-m ray``), started before the first one and killed at the end (tests/load.py)."""

import os

import pytest

from .load import start_burner, stop_burner


def pytest_addoption(parser):
    parser.addoption("--under-load", action="store_true", help="run a CPU-burning process beside the Ray tests")


@pytest.fixture(scope="session")
def _burner_holder(request):
    holder: dict = {}
    yield holder
    if "proc" in holder:
        stop_burner(holder["proc"])


@pytest.fixture(autouse=True)
def _cpu_burner(request, _burner_holder):
    wanted = request.config.getoption("--under-load") or os.environ.get("LE_RAY_UNDER_LOAD") == "1"
    if wanted and request.node.get_closest_marker("ray") and "proc" not in _burner_holder:
        _burner_holder["proc"] = start_burner()
    yield
