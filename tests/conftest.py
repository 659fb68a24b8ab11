"""Suite-wide options: ``--under-load`` runs a CPU-burning process beside the tests (see tests/load.py)."""

import pytest

from .load import start_burner, stop_burner


def pytest_addoption(parser):
    parser.addoption("--under-load", action="store_true", help="run a CPU-burning process beside the tests")


@pytest.fixture(scope="session", autouse=True)
def _cpu_burner(request):
    if not request.config.getoption("--under-load"):
        yield None
        return
    proc = start_burner()
    yield proc
    stop_burner(proc)
