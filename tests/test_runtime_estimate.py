"""Sweep time estimates, the audit's ``too_slow_here`` refusal, the automatic GPU packing, the ``decades`` profile."""

import math
from types import SimpleNamespace

import pytest

from le_ray.config import load_config
from le_ray.data.prepare import prepare_data
from le_ray.data.synthetic import expected_condition_rate
from le_ray.glossary import TESTED_METRICS
from le_ray.stats import min_pairs_for_alpha
from le_ray.sweep import runtime_estimate as R
from le_ray.sweep.audit import _runtime_findings, audit_experiment
from le_ray.sweep.driver import GPU_PACKING, auto_gpus_per_trial


def test_mlp_macs_by_hand():
    # 7 inputs -> 256 -> 256 -> 128 -> 64 -> 1: 7*256 + 256*256 + 256*128 + 128*64 + 64
    assert R.mlp_macs(7, (256, 256, 128, 64)) == 1792 + 65536 + 32768 + 8192 + 64
    assert R.mlp_macs(3, ()) == 3


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_training_rate_meets_its_anchors_and_falls_with_work(device):
    small, large = R.ANCHORS[device].small, R.ANCHORS[device].large
    assert R.training_rate(device, small.macs) == pytest.approx(small.samples_per_s)
    assert R.training_rate(device, large.macs) == pytest.approx(large.samples_per_s)
    assert R.training_rate(device, small.macs / 10) == pytest.approx(small.samples_per_s)  # overhead-bound floor
    assert R.training_rate(device, 2 * large.macs) == pytest.approx(large.samples_per_s / 2)  # compute-bound
    mid = math.sqrt(small.macs * large.macs)  # geometric midpoint: geometric mean of the two rates
    assert R.training_rate(device, mid) == pytest.approx(math.sqrt(small.samples_per_s * large.samples_per_s))


def test_cpu_rate_scales_with_threads_and_gpu_rate_does_not():
    assert R.training_rate("cpu", 50_000, threads=4) == pytest.approx(4 * R.training_rate("cpu", 50_000))
    assert R.training_rate("cuda", 50_000, threads=4) == R.training_rate("cuda", 50_000)


def test_estimate_sweep_by_hand():
    large = R.ANCHORS["cuda"].large
    rows = int(large.samples_per_s)  # one second of training per epoch
    est = R.estimate_sweep("cuda", train_rows=rows, epochs_by_loss={"bce": 1, "focal": 2}, seeds=3, macs=large.macs,
                           slots=1)
    factor = R.ANCHORS["cuda"].trial_over_training
    assert est.trial_s == pytest.approx({"bce": factor, "focal": 2 * factor})
    assert est.wall_s == pytest.approx(R.FIXED_S + 3 * 3 * factor) and est.trials == 6
    packed = R.estimate_sweep("cuda", train_rows=rows, epochs_by_loss={"bce": 1, "focal": 2}, seeds=3,
                              macs=large.macs, slots=4, sharing=4)
    assert packed.wall_s == pytest.approx(R.FIXED_S + 9 * factor / 1.98)  # 4 default_nets on one H200: 1.98x one
    two_gpus = R.estimate_sweep("cuda", train_rows=rows, epochs_by_loss={"bce": 1, "focal": 2}, seeds=3,
                                macs=large.macs, slots=4, sharing=2)
    assert two_gpus.wall_s == pytest.approx(R.FIXED_S + 9 * factor / (2 * 1.51))
    # however many slots, the sweep lasts at least its longest trial
    wide = R.estimate_sweep("cuda", train_rows=rows, epochs_by_loss={"bce": 1, "focal": 2}, seeds=3,
                            macs=large.macs, slots=1000)
    assert wide.wall_s == pytest.approx(R.FIXED_S + 2 * factor)
    # a resumed sweep: the stored trials do not run again (2 of focal's 3 and all of BCE's stored: 1 focal trial)
    resumed = R.estimate_sweep("cuda", train_rows=rows, epochs_by_loss={"bce": 1, "focal": 2}, seeds=3,
                               macs=large.macs, slots=1, stored={"bce": 3, "focal": 2})
    assert resumed.trials == 1 and resumed.wall_s == pytest.approx(R.FIXED_S + 2 * factor)
    done = R.estimate_sweep("cuda", train_rows=rows, epochs_by_loss={"bce": 1, "focal": 2}, seeds=3,
                            macs=large.macs, slots=1, stored={"bce": 3, "focal": 3})
    assert done.trials == 0 and done.wall_s == R.FIXED_S


def test_packed_speedup_follows_the_measured_rows():
    small, large = R.ANCHORS["cuda"].small.macs, R.ANCHORS["cuda"].large.macs
    assert R.packed_speedup("cuda", 8, small) == pytest.approx(1.48) and R.packed_speedup("cuda", 8, large) == 2.35
    assert R.packed_speedup("cuda", 2, large) == pytest.approx(1.51) and R.packed_speedup("cuda", 1, large) == 1.0
    assert R.packed_speedup("cuda", 16, large) == pytest.approx(2.35)  # beyond the table: nothing more
    assert R.packed_speedup("cuda", 3, large) == pytest.approx(1.51 + (1.98 - 1.51) * math.log(1.5) / math.log(2))
    mid = math.sqrt(small * large)  # halfway in log macs: halfway between the two shapes
    assert R.packed_speedup("cuda", 4, mid) == pytest.approx((1.41 + 1.98) / 2)
    assert R.packed_speedup("cpu", 8, large) == 1.0  # CPU trials never share a device
    speedups = [R.packed_speedup("cuda", k, large) for k in (1, 1.5, 2, 3, 4, 6, 8)]
    assert speedups == sorted(speedups)  # more trials per GPU never lowers the trials per minute


def test_two_packed_trials_are_estimated_faster_than_one():
    """Sharing one GPU two ways finishes a sweep sooner than one trial at a time (measured 1.24-1.51x), never
    later: each packed trial keeps speed-up / k of a lone trial's rate, not the 8-way figure."""
    large = R.ANCHORS["cuda"].large
    common = dict(train_rows=int(large.samples_per_s), epochs_by_loss={"bce": 1}, seeds=20, macs=large.macs)
    alone = R.estimate_sweep("cuda", slots=1, **common)
    pair = R.estimate_sweep("cuda", slots=2, sharing=2, **common)
    assert pair.wall_s < alone.wall_s
    assert (alone.wall_s - R.FIXED_S) / (pair.wall_s - R.FIXED_S) == pytest.approx(1.51)


def test_trial_device():
    assert R.trial_device(None, None, cuda_available=False, ray_job=False)[0] == "cpu"
    assert R.trial_device(None, None, cuda_available=True, ray_job=False)[0] == "cuda"
    assert R.trial_device(None, 0.25, cuda_available=False, ray_job=False)[0] == "cuda"
    assert R.trial_device("ray://head:10001", None, cuda_available=False, ray_job=False)[0] == "cuda"
    assert R.trial_device(None, None, cuda_available=False, ray_job=True)[0] == "cuda"
    assert R.trial_device(None, 0.0, cuda_available=True, ray_job=True)[0] == "cpu"  # explicitly no GPU


@pytest.mark.parametrize("init,count,expected", [(0, 2, 2), (0, 0, 0), (100, 3, 0), (None, 0, 0)])
def test_visible_cuda_devices_asks_the_driver_library(monkeypatch, init, count, expected):
    """cuInit then cuDeviceGetCount through ctypes (a stand-in library here); no library (None), a driver
    error (100: no device) or no device gives 0."""
    import ctypes

    class Driver:
        def cuInit(self, flags):
            return init

        def cuDeviceGetCount(self, out):
            out._obj.value = count
            return 0

    def load(name):
        assert name == "libcuda.so.1"
        if init is None:
            raise OSError("libcuda.so.1: cannot open shared object file")
        return Driver()
    monkeypatch.setattr(ctypes, "CDLL", load)
    assert R.visible_cuda_devices() == expected


def test_the_sweep_driver_never_imports_torch():
    """The driver plans, audits, estimates and starts Ray without torch (only its trials need it)."""
    import subprocess
    import sys

    code = ("import sys, le_ray.runners.repeats, le_ray.report.sweep, le_ray.cli.console; "
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]"]


def test_format_duration():
    assert [R.format_duration(s) for s in (40, 150, 1500, 3900)] == ["40 s", "2.5 min", "25 min", "1 h 05 min"]


# --------------------------------------------------------------------------- packing

def _share(width, rows, gpus=1.0):
    return auto_gpus_per_trial((width, width // 2), rows, gpus)


def test_auto_packing_needs_gpus_and_gives_a_unit_fraction():
    assert _share(128, 1000, gpus=0) == 0.0
    for width in (32, 128, 256, 512, 4096):
        for rows in (None, 10_000, 10**7, 10**9):
            share = _share(width, rows)
            assert 0 < share <= 1 and (1 / share) == pytest.approx(round(1 / share))


def test_auto_packing_never_packs_more_for_a_wider_net_or_more_rows():
    widths, rows = (16, 64, 128, 200, 256, 300, 1024), (None, 10**5, 10**7, 5 * 10**7, 10**9)
    for r in rows:
        shares = [_share(w, r) for w in widths]
        assert shares == sorted(shares), (r, shares)
    for w in widths:
        shares = [_share(w, r) for r in rows]
        assert shares == sorted(shares), (w, shares)


def test_auto_packing_never_asks_for_more_than_the_cluster_has():
    assert _share(4096, 10**9, gpus=0.5) == 0.5
    assert _share(4096, 10**9, gpus=4) == 1.0


@pytest.mark.parametrize("gpus", [0, 1, 4])
def test_trial_resources_follow_the_auto_choice_unless_set(monkeypatch, gpus):
    import ray

    from le_ray.sweep.driver import _resources

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": float(gpus)})  # no Ray started
    auto = load_config(profile="small_net")
    assert _resources(auto, 10_000)["num_gpus"] == auto_gpus_per_trial(auto.model.hidden_sizes, 10_000, gpus)
    assert (_resources(auto, 10_000)["num_gpus"] > 0) == (gpus > 0)
    assert _resources(load_config(profile="small_net", sets=["ray.gpus_per_trial=0.5"]), 10_000)["num_gpus"] == 0.5


def test_concurrent_trials_are_bounded_by_cpus_and_by_the_gpu_share():
    from le_ray.sweep.driver import concurrent_trials

    one_gpu_host = {"CPU": 16.0, "GPU": 1.0}
    assert concurrent_trials(one_gpu_host, 1, 0.125) == 8  # the quickstart on one H200: 8 trials, not 16
    assert concurrent_trials(one_gpu_host, 4, 0.125) == 4  # CPUs the tighter bound
    assert concurrent_trials(one_gpu_host, 1, 0.0) == 16 and concurrent_trials({"CPU": 2.0}, 1, 0.0) == 2
    assert concurrent_trials({"CPU": 16.0, "GPU": 1.0}, 1, 1 / 3) == 3  # 1 / (1/3) in floats is 2.9999...
    assert concurrent_trials({"CPU": 16.0, "GPU": 2.0}, 1, 1.0) == 2
    # no slot when the totals cannot hold one trial (require_trial_fits says so before any task)
    assert concurrent_trials({"CPU": 1.0}, 2, 0.0) == 0 and concurrent_trials({"CPU": 8.0}, 1, 0.5) == 0


@pytest.mark.parametrize("gpus", [0, 1])
def test_warm_up_starts_one_task_per_slot(monkeypatch, gpus):
    """As many warm-up tasks as trials can run at once: 8 on a 16-CPU host with one GPU and the quickstart's
    1/8 share, 16 without a GPU, never more than the pending trials."""
    import ray

    from le_ray.sweep import driver

    submitted = []

    class FakeTask:  # ray.remote(fn).options(**o).remote() without a Ray cluster
        def options(self, **options):
            submitted.append(options)
            return self

        def remote(self):
            return object()
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": float(gpus)})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": float(gpus)}}])
    monkeypatch.setattr(ray, "remote", lambda fn: FakeTask())
    cfg = load_config(profile="quickstart")
    assert len(driver.warm_up_workers(cfg, 30)) == (8 if gpus else 16)
    assert submitted[-1]["num_gpus"] == (0.125 if gpus else 0.0)
    assert len(driver.warm_up_workers(cfg, 5)) == 5


def test_packing_table_ends_with_a_catch_all_row():
    assert GPU_PACKING[-1][:2] == (None, None) and all(k >= 1 for *_, k in GPU_PACKING)


# --------------------------------------------------------------------------- the audit

def _tiny(*sets):
    cfg = load_config(sets=["synthetic.samples_per_condition=2000", "training.epochs=1", "repeats.num_runs=2", *sets])
    return cfg, prepare_data(cfg)


def test_audit_refuses_a_sweep_estimated_beyond_the_limit_naming_the_keys():
    cfg, data = _tiny("repeats.max_estimated_hours=0.000001")
    found = [f for f in audit_experiment(cfg, [data]).findings if f.code == "too_slow_here"]
    assert len(found) == 1 and found[0].severity == "error"
    assert {"repeats.max_estimated_hours", "ray.address", "repeats.allow_unsound"} <= set(found[0].keys)
    assert "estimated" in found[0].message and "max_estimated_hours = 1e-06" in found[0].message


@pytest.mark.parametrize("sets", [[], ["data.use_test_set=false", "data.train_split=0.75"]])
def test_planned_synthetic_shape_matches_the_prepared_data(sets):
    cfg, data = _tiny(*sets)
    assert R.planned_synthetic_shape(cfg) == (len(data.train), data.num_numeric + cfg.model.embed_dim)
    assert R.planned_synthetic_shape(load_config(profile="avazu_sample")) is None


def test_audit_passes_a_small_sweep_under_the_default_limit():
    cfg, data = _tiny()
    assert not [f for f in audit_experiment(cfg, [data]).findings if f.code == "too_slow_here"]


# --------------------------------------------------------------------------- the decades profile

def _decades():
    cfg = load_config(profile="decades")
    syn = cfg.synthetic
    rates = [expected_condition_rate(m, syn.uniform_log10_std) for m in syn.uniform_log10_means]
    return cfg, rates, R.planned_synthetic_shape(cfg)[0]


def test_decades_spans_1e5_to_1e1_log_spaced_with_enough_clicks_and_seeds():
    cfg, rates, _ = _decades()
    assert cfg.synthetic.num_conditions == len(rates) >= 10
    assert rates[0] == pytest.approx(1e-5, rel=1e-3) and rates[-1] == pytest.approx(1e-1, rel=1e-3)
    steps = [math.log10(b / a) for a, b in zip(rates[:-1], rates[1:])]
    assert max(steps) - min(steps) < 1e-3  # log-spaced
    eval_rows = cfg.synthetic.samples_per_condition * (1 - cfg.data.train_split)
    # Poisson(20) falls below 10 with probability 0.005: "keeps >= 10 evaluation clicks" with room
    assert eval_rows * rates[0] >= 20
    assert set(cfg.losses) == {"bce", "localized_entropy", "focal"}
    need = max(min_pairs_for_alpha(cfg.repeats.per_condition_alpha, m_tests=m, alternative=cfg.repeats.alternative,
                                   correction=cfg.repeats.per_condition_correction)
               for m in (len(rates), len(TESTED_METRICS)))
    assert cfg.repeats.num_runs >= need


def test_decades_is_refused_on_a_cpu_machine_and_fits_15_minutes_on_one_gpu(monkeypatch):
    cfg, _, train_rows = _decades()
    epochs = {loss: cfg.training_for(loss).epochs for loss in cfg.losses}
    width = len(cfg.synthetic.numeric_features) + cfg.model.embed_dim
    gpu = R.estimate_for_config(cfg, train_rows=train_rows, input_width=width, epochs_by_loss=epochs,
                                cuda_available=True)
    assert gpu.wall_s <= 15 * 60  # at the issue-19 target rates
    # a CPU-only machine with 16 cores, no cluster: the audit's finding, without preparing 75M rows
    monkeypatch.setattr(R, "visible_cuda_devices", lambda: 0)
    monkeypatch.setattr(R.os, "cpu_count", lambda: 16)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    data = SimpleNamespace(num_numeric=len(cfg.synthetic.numeric_features), cat_vocab_sizes=(), train=range(train_rows))
    found = _runtime_findings(cfg, {loss: {"epochs": e} for loss, e in epochs.items()}, data)
    assert [f.code for f in found] == ["too_slow_here"]
    assert "on cpu" in found[0].message and "on one H200-class GPU about" in found[0].message


def test_decades_is_refused_on_a_cpu_before_its_rows_are_generated(tmp_path, capsys, monkeypatch):
    """On a CPU-only machine `le-ray repeats --profile decades` exits 2 naming too_slow_here and the estimated
    time, creates no folder and never prepares data (plan_trials is not reached)."""
    import le_ray.runners.repeats as repeats

    monkeypatch.setattr(R, "visible_cuda_devices", lambda: 0)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def no_preparation(cfg):  # would generate 10^8 rows
        raise AssertionError("data were prepared before the refusal")

    monkeypatch.setattr(repeats, "plan_trials", no_preparation)
    assert repeats.main(["--profile", "decades", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "too_slow_here" in err and "estimated" in err and "on cpu" in err and "GPU" in err
    assert list(tmp_path.iterdir()) == []


def test_prepare_says_before_generating_decades_rows_that_a_sweep_would_be_refused(capsys, monkeypatch):
    """`le-ray prepare --profile decades` on a CPU prints the too_slow_here refusal first, then prepares (the
    audit it exists for), instead of saying so only after minutes of generating 10^8 rows."""
    import le_ray.runners.prepare as prepare

    monkeypatch.setattr(R, "visible_cuda_devices", lambda: 0)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    class Prepared(Exception):
        pass

    def preparing(cfg):
        assert "would be refused here (error too_slow_here): estimated" in capsys.readouterr().out
        raise Prepared
    monkeypatch.setattr(prepare, "prepare_with_source", preparing)
    with pytest.raises(Prepared):
        prepare.main(["--profile", "decades"])

    def unsound(cfg):
        assert "would start only because repeats.allow_unsound is set here (error too_slow_here)" in (
            capsys.readouterr().out)
        raise Prepared
    monkeypatch.setattr(prepare, "prepare_with_source", unsound)
    with pytest.raises(Prepared):
        prepare.main(["--profile", "decades", "--set", "repeats.allow_unsound=true"])


def test_no_worker_is_warmed_up_when_no_trial_is_pending():
    """A resume with every trial stored starts no warm-up task (and needs no Ray for it)."""
    from le_ray.config import load_config
    from le_ray.sweep.driver import warm_up_workers

    assert warm_up_workers(load_config(profile="quickstart"), 0) == []


def test_worker_warm_up_runs_the_trial_code_once_here():
    """The warm-up body itself, in this process: a model summary and one optimiser step (on CPU here; on a
    GPU worker also on the GPU, tests/test_gpu.py)."""
    import os

    from le_ray.sweep.driver import _import_trial_modules

    assert _import_trial_modules() == os.getpid()
