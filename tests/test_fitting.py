"""A trial that no Ray node can hold is refused before any task is queued, instead of waiting forever.

The pure check (``node_shortfall``) is fed hand-written ``ray.nodes()`` lists; its message and the refuse / warn
choice (``require_trial_fits``) run against a faked ``ray`` module; one end-to-end run on the shared local instance
(2 CPUs, no GPU: tests/conftest.py) asks for 4 CPUs per trial and must end with exit status 2 and the message, well
within a deadline, leaving the sweep folder as a stop while Ray starts leaves it.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager

import pytest

from le_ray.config import load_config
from le_ray.errors import UserError
from le_ray.sweep import driver
from le_ray.sweep.driver import concurrent_trials
from le_ray.sweep.fitting import Shortfall, node_shortfall, shortfall_message


def node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
    """One ``ray.nodes()`` entry as Ray 2.x returns it (only the keys the check reads, plus some it must ignore)."""
    resources = {"CPU": cpus, "memory": 8e9, "object_store_memory": 2e9, "node:127.0.0.1": 1.0}
    if gpus:
        resources["GPU"] = gpus
    return {"NodeID": "n", "Alive": alive, "alive": alive, "Resources": resources}


def ray_section(*sets: str):
    return load_config(profile="quickstart", sets=list(sets)).ray


# --------------------------------------------------------------------------- the pure check


@pytest.mark.parametrize("nodes,cpus,gpus", [
    ([node(2)], 1, 0.0),
    ([node(2)], 2, 0.0),                      # exactly the node's CPUs
    ([node(1), node(4)], 4, 0.0),             # the second node holds it
    ([node(16, 1)], 4, 1.0),
    ([node(2, 1)], 1, 0.125),                 # a share of one GPU: eight such trials fit a 1-GPU node
    ([node(2, 1)], 1, 1 / 3),                 # a float share just under a third
    ([node(2, 2)], 1, 2.0),
    ([node(2), node(2, 1)], 1, 0.5),          # the GPU node
])
def test_a_node_that_holds_one_trial_is_no_shortfall(nodes, cpus, gpus):
    assert node_shortfall(nodes, cpus, gpus) is None


def test_no_node_with_the_cpus_is_a_cpu_shortfall():
    short = node_shortfall([node(2), node(1)], 4, 0.0)
    assert short == Shortfall(cpus=4.0, gpus=0.0, max_cpus=2.0, max_gpus=0.0, alive=2, cpu_room=2.0, gpu_room=None)


def test_no_node_with_the_gpus_is_a_gpu_shortfall():
    assert node_shortfall([node(2)], 1, 1.0) == Shortfall(1.0, 1.0, 2.0, 0.0, 1, cpu_room=None, gpu_room=0.0)
    assert node_shortfall([node(8, 1)], 1, 2.0) == Shortfall(1.0, 2.0, 8.0, 1.0, 1, cpu_room=None, gpu_room=1.0)


def test_dead_nodes_are_ignored():
    big_but_dead = node(64, 8, alive=False)
    assert node_shortfall([big_but_dead, node(2)], 4, 1.0) == Shortfall(4.0, 1.0, 2.0, 0.0, 1)
    assert node_shortfall([big_but_dead], 1, 0.0) == Shortfall(1.0, 0.0, 0.0, 0.0, 0)
    assert node_shortfall([big_but_dead, node(8, 8)], 4, 1.0) is None


def test_cpus_on_one_node_and_gpus_on_another_do_not_add_up():
    short = node_shortfall([node(8), node(2, 1)], 4, 0.5)
    assert short is not None and (short.max_cpus, short.max_gpus) == (8.0, 1.0)
    assert (short.cpu_room, short.gpu_room) == (2.0, 0.0)  # CPUs beside a GPU; GPUs beside 4 CPUs


# --------------------------------------------------------------------------- the message


def test_the_local_refusal_names_the_request_the_node_and_the_cpu_keys():
    text = shortfall_message(node_shortfall([node(2)], 4, 0.0), ray_section("ray.cpus_per_trial=4"), local=True)
    assert "4 CPUs and 0 GPUs" in text and "ray.cpus_per_trial = 4" in text  # the request and its key
    assert "2 CPUs and 0 GPUs" in text  # the largest node
    assert "ray.cpus_per_trial to 2 or less" in text and "ray.num_cpus" in text
    assert "ray.num_gpus" not in text and "add a node" not in text


def test_the_local_refusal_for_a_gpu_names_the_gpu_keys():
    text = shortfall_message(node_shortfall([node(2)], 1, 1.0), ray_section("ray.gpus_per_trial=1"), local=True)
    assert "1 CPU and 1 GPU" in text and "ray.gpus_per_trial = 1" in text and "2 CPUs and 0 GPUs" in text
    assert "ray.gpus_per_trial to 0 or null" in text and "ray.num_gpus" in text
    assert "ray.cpus_per_trial to" not in text and "ray.num_cpus" not in text


def test_both_short_needs_both_fixes_and_either_fits_needs_one():
    both = shortfall_message(node_shortfall([node(2)], 4, 1.0), ray_section(), local=True)
    assert "ray.cpus_per_trial to 2 or less" in both and ", and set ray.gpus_per_trial to 0" in both
    split = shortfall_message(node_shortfall([node(8), node(2, 1)], 4, 0.5), ray_section(), local=False)
    assert "none with both at once" in split and split.count("Either lower ray.cpus_per_trial to 2 or less") == 1


def test_a_cluster_gets_a_warning_that_names_a_larger_node_not_the_local_keys():
    text = shortfall_message(node_shortfall([node(2), node(2)], 4, 0.0), ray_section("ray.cpus_per_trial=4"),
                             local=False)
    assert text.startswith("no Ray node can run a trial yet") and "2 alive nodes" in text
    assert "add a node" in text and "ray.cpus_per_trial to 2 or less" in text and "ray.num_cpus" not in text


def test_an_auto_gpu_share_is_shown_as_auto():
    text = shortfall_message(node_shortfall([node(2)], 4, 0.0), ray_section("ray.cpus_per_trial=4"), local=True)
    assert "ray.gpus_per_trial = null (auto: 0)" in text


# --------------------------------------------------------------------------- refuse or warn, before any task


def _fake_ray(monkeypatch, nodes: list[dict]) -> None:
    """A connected Ray (module functions only) whose nodes are ``nodes``; nothing may be submitted or put."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": sum(n["Resources"]["CPU"] for n in nodes)})
    monkeypatch.setattr(ray, "remote", lambda fn: pytest.fail("a task was submitted"))
    monkeypatch.setattr(ray, "put", lambda data: pytest.fail("data was put"))


def test_a_local_instance_refuses_before_a_warm_up_task_is_submitted(monkeypatch):
    _fake_ray(monkeypatch, [node(2)])
    cfg = load_config(profile="quickstart", sets=["ray.cpus_per_trial=4"])
    assert driver.local_instance(cfg)
    with pytest.raises(UserError, match=r"4 CPUs and 0 GPUs .* 2 CPUs and 0 GPUs"):
        driver.warm_up_workers(cfg, 6)


def test_a_cluster_reached_by_address_warns_and_goes_on(monkeypatch, caplog):
    _fake_ray(monkeypatch, [node(2)])
    cfg = load_config(profile="quickstart", sets=["ray.cpus_per_trial=4", 'ray.address="127.0.0.1:6379"'])
    assert not driver.local_instance(cfg)
    with caplog.at_level(logging.WARNING, logger="le_ray.sweep"):
        driver.require_trial_fits(cfg, {"num_cpus": 4, "num_gpus": 0.0})
    warnings = [r.getMessage() for r in caplog.records if "no Ray node can run a trial yet" in r.getMessage()]
    assert len(warnings) == 1 and "add a node" in warnings[0]


def test_nodes_at_real_addresses_are_a_cluster_even_without_an_address_in_the_config(monkeypatch, caplog):
    """A caller that ran ray.init(address=...) itself, without RAY_ADDRESS: its nodes are not on the loopback, so a
    request none holds is a warning (an autoscaler may add a node), not a refusal."""
    remote = [dict(node(2), NodeManagerAddress="10.0.0.7")]
    _fake_ray(monkeypatch, remote)
    cfg = load_config(profile="quickstart", sets=["ray.cpus_per_trial=4"])
    assert driver.local_instance(cfg) and not driver.local_instance(cfg, remote)
    with caplog.at_level(logging.WARNING, logger="le_ray.sweep"):
        driver.require_trial_fits(cfg, {"num_cpus": 4, "num_gpus": 0.0})
    assert any("no Ray node can run a trial yet" in r.getMessage() for r in caplog.records)


def test_a_fitting_trial_passes_silently(monkeypatch, caplog):
    _fake_ray(monkeypatch, [node(2, 1)])
    with caplog.at_level(logging.WARNING, logger="le_ray.sweep"):
        driver.require_trial_fits(load_config(profile="quickstart"), {"num_cpus": 2, "num_gpus": 0.125})
    assert not caplog.records


def test_concurrent_trials_says_zero_when_no_trial_fits():
    assert concurrent_trials({"CPU": 2.0}, 4, 0.0) == 0
    assert concurrent_trials({"CPU": 8.0}, 1, 1.0) == 0  # a GPU trial on a cluster without GPUs
    assert concurrent_trials({}, 1, 0.0) == 0
    assert concurrent_trials({"CPU": 2.0, "GPU": 1.0}, 1, 0.125) == 2


# --------------------------------------------------------------------------- end to end, on the shared instance

TINY = ["--profile", "quickstart", "--allow-unsound", "--set", "repeats.num_runs=2",
        "--set", "synthetic.samples_per_condition=3000", "--set", "training.by_loss.*.epochs=1",
        "--set", "training.by_loss.*.batch_size=512", "--set", "repeats.min_steps_per_epoch=1",
        "--set", "repeats.min_eval_clicks=1"]
DEADLINE_S = 120.0


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_asking_for_more_cpus_than_the_node_has_ends_at_once(shared_ray, tmp_path, monkeypatch, capsys):
    """``ray.cpus_per_trial=4`` on the 2-CPU shared instance (started by connect_ray, so local): exit 2 with the
    message, long before the deadline, and the sweep folder holds its config only (no manifest, trial or failure),
    as after a stop while Ray starts, so the same command with a smaller request resumes it.

    ``main`` runs in a thread so that a hang fails the test instead of the session; the signal handlers it would
    install (main thread only) are replaced by a plain flag, which the test sets to stop a hanging sweep cleanly.
    """
    import le_ray.runners.repeats as repeats

    flag = driver.StopFlag()

    @contextmanager
    def no_signals():
        yield flag
    monkeypatch.setattr(repeats, "stop_on_signals", no_signals)
    result: dict = {}
    argv = [*TINY, "--set", "ray.cpus_per_trial=4", "--results-dir", str(tmp_path), "--name", "s"]
    thread = threading.Thread(target=lambda: result.setdefault("rc", repeats.main(argv)), daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        flag.signum = signal.SIGINT  # the driver cancels its queued trials and returns
        thread.join(30)
        pytest.fail(f"the sweep was still waiting after {DEADLINE_S:.0f} s: {capsys.readouterr().out[-2000:]}")
    err = capsys.readouterr().err
    assert result["rc"] == 2, err[-2000:]
    assert "le-ray: no Ray node can ever run a trial: each trial asks Ray for 4 CPUs and 0 GPUs" in err
    assert "one alive node, with 2 CPUs and 0 GPUs" in err and "Lower ray.cpus_per_trial to 2 or less" in err
    root = tmp_path / "s"
    assert (root / "config.resolved.json").is_file() and len(list((root / "config.history").glob("*.json"))) == 1
    assert not (root / "manifest.json").exists() and not list(root.rglob(".tmp-*"))
    assert not list((root / "trials").iterdir()) and not list((root / "failures").iterdir())
