"""Suite-wide options and the Ray instances the tests share.

* ``--under-load`` (or ``LE_RAY_UNDER_LOAD=1``, which ``.ci/run`` sets) runs a CPU-burning process beside
  every Ray test (``-m ray``), started before the first one and killed at the end (tests/load.py).
* ``shared_ray``: the session's one local Ray instance (2 CPUs, no GPU, a dashboard, every server on 127.0.0.1),
  started the way ``le_ray.sweep.driver.connect_ray`` starts one, by the first test that asks for it, and kept
  until the end of the session. Starting Ray and its workers (each imports torch) costs seconds per instance; a
  test that shares this one pays it once per session and reuses warm workers. Trials take their fault hooks from the
  driver's environment at submission (le_ray/sweep/faults.py), so tests cannot leak state into each other
  through the workers.
* ``no_ray``: a test that starts its own cluster (a Ray ``Cluster``, fake GPUs) shuts the shared instance down
  first; the next test that asks for ``shared_ray`` starts it again, so such tests come last in their module.
* ``ray_head``: one ``ray start --head`` with token authentication, every server on 127.0.0.1 and a temp dir of
  its own, for the tests that submit Ray jobs (``ray job submit``); started on first use, stopped at the end of
  the session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from .load import start_burner, stop_burner

REPO = Path(__file__).resolve().parents[1]


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


# --------------------------------------------------------------------------- the shared local instance

SHARED_RAY_SETS = ("ray.num_cpus=2", "ray.num_gpus=0", "ray.include_dashboard=true")  # dashboard: on loopback too


_SHARED: dict = {}  # "gcs": the address of the shared instance while this process is connected to it


def start_shared_ray() -> None:
    """Connect this process to the shared instance, starting it when it is not running.

    ``connect_ray`` is the production path for a new local instance (loopback only, ``address="local"``);
    the only change is ``log_to_driver=False``, so worker output is not forwarded into whichever test's
    captured stdout is current when it arrives. A connection to another cluster is closed first.
    """
    import ray

    from le_ray.config import load_config
    from le_ray.sweep.driver import connect_ray

    if ray.is_initialized():
        if ray.get_runtime_context().gcs_address == _SHARED.get("gcs"):
            return
        ray.shutdown()
    init = ray.init
    with mock.patch.object(ray, "init", lambda **kw: init(**{**kw, "log_to_driver": False})):
        connect_ray(load_config(sets=list(SHARED_RAY_SETS)))
    _SHARED["gcs"] = ray.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def _shared_ray_session():
    yield start_shared_ray
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def shared_ray(_shared_ray_session):
    """The session's local Ray instance (see the module docstring); yields the ``ray`` module."""
    import ray

    _shared_ray_session()
    yield ray


@pytest.fixture
def no_ray():
    """No Ray instance in this process: the test starts its own (the shared one is restarted on demand)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


# --------------------------------------------------------------------------- a head for `ray job submit`

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NO_AGENT = "No available agent to submit job"


@dataclass(frozen=True)
class RayHead:
    """A running ``ray start --head``: the CLI, its jobs address and the environment (token) to reach it."""
    ray_cli: str
    address: str
    env: dict

    def submit(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """``ray job submit`` of ``command`` with the repository's runtime env; waits for the job to end.

        A head answers "No available agent to submit job" (HTTP 500, no job created) until its node's job
        agent has registered, which can be after ``ray job list`` already works: such an answer is retried.
        """
        argv = [self.ray_cli, "job", "submit", "--address", self.address, "--runtime-env", "jobs/runtime_env.yaml",
                "--", *command]
        deadline = time.time() + 120
        while True:
            done = subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            if done.returncode == 0 or NO_AGENT not in done.stdout + done.stderr or time.time() > deadline:
                return done
            time.sleep(0.5)


def _wait_for_job_agent(head: RayHead, proc: subprocess.Popen, deadline: float) -> None:
    """Poll the jobs API until it answers (``ray job list`` succeeds); retry connection errors and 5xx answers
    until ``deadline``."""
    while True:
        probe = subprocess.run([head.ray_cli, "job", "list", "--address", head.address], env=head.env,
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return
        assert proc.poll() is None, f"ray start --head exited with {proc.returncode}"
        assert time.time() < deadline, f"the job agent never came up: {probe.stdout[-2000:]}{probe.stderr[-2000:]}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A local head (`ray start --head`, token auth, dashboard on 127.0.0.1, 2 CPUs) that accepts Ray jobs."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_DISABLE_USAGE_STATS": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # 127.0.0.1 stays loopback
    env.pop("RAY_ADDRESS", None)
    gcs, dash, agent = free_port(), free_port(), free_port()
    # A temp dir of its own: a job's driver finds its cluster through the temp dir's `ray_current_cluster`, which
    # any other Ray started on the machine meanwhile (another test session, a user's sweep) would overwrite in the
    # shared /tmp/ray. Short, so the session's socket paths stay under the 107-byte limit.
    temp = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")
    log = (tmp_path_factory.mktemp("ray_head") / "ray_start.log").open("w")  # a file: an unread pipe could fill
    # the job agent's HTTP port is fixed (52365) unless given: another Ray instance of the session (the shared one,
    # a test's cluster) may hold it, and the head would then never accept a job ("No available agent")
    proc = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
                             "--num-cpus=2", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             "--include-dashboard=true", f"--dashboard-agent-listen-port={agent}",
                             f"--temp-dir={temp}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(ray_cli, f"http://127.0.0.1:{dash}", env)
    try:
        _wait_for_job_agent(head, proc, deadline=time.time() + 180)
        yield head
    finally:
        # SIGTERM to `ray start` alone: it drains the node through the GCS, then stops its processes (seconds);
        # the same signal to the whole group would stop the GCS first and leave it waiting 30 s for it
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            _kill_group(proc.pid)  # whatever is left
            log.close()
            shutil.rmtree(temp, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
