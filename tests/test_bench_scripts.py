"""The prepared GPU check must run end to end before a GPU is ever lent: its CPU smoke mode, every stage, and its
table's verdicts (judged only on CUDA figures); bench/report_scale.py runs at small sizes."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gpu_bench(name: str):
    """A module of bench/gpu_bench (the GPU check's parts), imported the way gpu_check.py imports it."""
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    return importlib.import_module(f"gpu_bench.{name}")


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_stage_and_writes_its_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    stages = _gpu_check().STAGES
    assert report["cuda"] is False  # a smoke run says its figures mean nothing
    assert all(name in report and "error" not in report[name] for name in stages), {n: report.get(n) for n in stages}
    assert report["agreement"]["loss_grad_within_1e-5"] and report["agreement"]["history_within_bound"]
    ceilings = report["ceiling"]["samples_per_s"]
    assert len(ceilings) == 2 and all(v > 0 for v in ceilings.values()) and not report["ceiling"]["errors"]
    runs = {k: v for k, v in report["throughput"].items() if k != "seconds"}
    assert {k.split("/")[1] for k in runs} == {"bce", "le", "le+history", "focal"}
    assert {k.split("/")[0] for k in runs} == {"default_net", "small_net"}
    assert all(r["samples_per_s"] > 0 and r["trial_over_train"] >= 1 for r in runs.values())
    assert set(report["step_ratio"]["4"]["vs_bce"]) == {"le", "le+history", "focal"}
    assert set(report["precision"]["runs"]) == {"highest", "high"}
    for shape in ("quickstart", "default_net"):
        assert report["packing"][shape]["1"]["speedup_vs_1"] == 1.0 and "2" in report["packing"][shape]
    launches = {k: v for k, v in report["launches"].items() if k != "seconds"}
    assert set(launches) == {"default_net/bce", "default_net/le+history", "small_net/bce", "small_net/le+history"}
    assert all(v["steps"] > 0 and v["aten_ops"] > 0 and v["top_host_ops_ms"] for v in launches.values())
    assert launches["small_net/le+history"]["aten_ops"] > launches["small_net/bce"]["aten_ops"]  # LE's own ops
    assert "tests/test_gpu.py" in report["pytest_gpu"]["command"]
    assert "le_ray.repeats" in report["quickstart"]["command"]
    assert report["table"] and all(row["pass"] is not False for row in report["table"])
    assert "GPU check on CPU" in done.stdout and "pass" in done.stdout


def _results(bce_rate, ceiling, trial_over_train, le_history_ratio, cuda=True):
    return {"cuda": cuda, "ceiling": {"samples_per_s": {"default_net/graph/high": ceiling}},
            "throughput": {"default_net/bce/auto": {"samples_per_s": bce_rate, "steady_samples_per_s": bce_rate,
                                                    "vs_ceiling": bce_rate / ceiling,
                                                    "trial_over_train": trial_over_train}},
            "step_ratio": {"2000": {"vs_bce": {"le+history": le_history_ratio}}}}


def _verdicts(results):
    return {row["what"].strip().split(":")[0]: row["pass"] for row in _gpu_check().table_rows(results)}


def test_table_judges_the_issue_targets_on_cuda_figures():
    good = _verdicts(_results(26e6, 29e6, 1.2, 1.1))
    assert good["default_net bce graphs=auto"] and good["default_net bce whole trial / training"]
    assert good["default_net bce graphs=auto / same-run graph ceiling"]
    assert good["step time le+history / BCE, 2000 conditions"]
    bad = _verdicts(_results(20e6, 29e6, 1.5, 1.3))  # under 25M, 0.69x the ceiling, 1.5x trial, 1.3x step
    assert bad["default_net bce graphs=auto"] is False and bad["default_net bce whole trial / training"] is False
    assert bad["default_net bce graphs=auto / same-run graph ceiling"] is False
    assert bad["step time le+history / BCE, 2000 conditions"] is False
    # 26M/s but only 0.8x of a faster same-run ceiling: the ratio row fails on its own
    assert _verdicts(_results(26e6, 32.5e6, 1.2, 1.1))["default_net bce graphs=auto / same-run graph ceiling"] is False


def test_table_never_judges_speed_measured_without_cuda():
    assert all(v is None for v in _verdicts(_results(20e6, 29e6, 1.5, 1.3, cuda=False)).values())


def test_step_clock_uses_intervals_inside_later_epochs_only():
    clock = _gpu_bench("common").StepClock(cuda=False)
    clock.marks = [(1, 0.0), (1, 5.0), (1, 5.1), (2, 10.0), (2, 10.2), (2, 10.4), (2, 10.6), (3, 20.0), (3, 20.2)]
    assert clock.median_step_s() == pytest.approx(0.2)  # epoch 1 (capture) and the gaps between epochs left out
    clock.marks = [(1, 0.0), (1, 0.3), (1, 0.4)]
    assert clock.median_step_s() == pytest.approx(0.2)  # one epoch: all of it


def test_sweep_spans_split_the_quickstart_wall_around_its_trials(tmp_path):
    """The quickstart stage's breakdown from trial files: launch → first start, span, last end → exit, medians."""
    (tmp_path / "trials").mkdir()
    timing = {"attach_data": 0.01, "setup": 0.02, "train": 0.2, "train_loop": 0.25, "evaluate": 0.03,
              "host_summary": 0.01, "total": 0.3}
    for i, (start, end, pid) in enumerate([(105.0, 105.5, 1), (105.2, 106.0, 2), (106.0, 107.5, 1)]):
        record = {"started_at": start, "finished_at": end, "worker_pid": pid, "device": "cuda:0 (Ray GPU ids)",
                  "gpu_ids": ["0"], "samples_per_second": 1e6 * (i + 1), "timings": {**timing, "train": 0.1 * (i + 1)}}
        (tmp_path / "trials" / f"t{i}.json").write_text(json.dumps(record))
    spans = _gpu_bench("subprocesses").sweep_spans(tmp_path, 100.0, 110.0)
    assert spans["launch_to_first_trial_s"] == pytest.approx(5.0)
    assert spans["trials_span_s"] == pytest.approx(2.5)
    assert spans["last_trial_to_exit_s"] == pytest.approx(2.5)
    assert spans["median_task_s"] == pytest.approx(0.8) and spans["workers"] == 2
    assert spans["median_phases_s"]["train"] == pytest.approx(0.2) and spans["devices"] == ["cuda:0"]
    assert _gpu_bench("subprocesses").sweep_spans(tmp_path / "missing") == {"trials": 0}


def test_launch_counts_split_kernels_launch_calls_and_graph_replays():
    """count_events on made-up profiler events: GPU kernels and their busy time, the host's launch calls (kernel
    and graph), and aten ops by self time."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    def event(name, device, us=0.0, self_us=0.0):
        return SimpleNamespace(name=name, device_type=device, self_cpu_time_total=self_us,
                               time_range=SimpleNamespace(elapsed_us=lambda: us))
    cpu, gpu = DeviceType.CPU, DeviceType.CUDA
    events = ([event("ampere_sgemm", gpu, 30.0)] * 4 + [event("Memcpy HtoD (Pinned -> Device)", gpu, 5.0)]
              + [event("cudaLaunchKernel", cpu)] * 2 + [event("__cudaLaunchKernel", cpu)]
              + [event("cudaLaunchKernelExC", cpu)] + [event("cudaGraphLaunch", cpu)] * 2 + [event("INVALID", cpu)]
              + [event("aten::mm", cpu, self_us=500.0)] * 2 + [event("aten::add_", cpu, self_us=100.0)])
    counts = _gpu_bench("launches").count_events(events, steps=2)
    assert counts["kernels"] == 4 and counts["copies_and_fills"] == 1 and counts["gpu_busy_s"] == pytest.approx(125e-6)
    assert counts["kernel_launch_calls"] == 4 and counts["graph_launches"] == 2
    assert counts["launch_calls_per_step"] == 2.0 and counts["aten_ops"] == 3
    assert counts["top_other_host_calls"] == {"cudaLaunchKernel": 2, "cudaGraphLaunch": 2, "__cudaLaunchKernel": 1,
                                              "cudaLaunchKernelExC": 1, "INVALID": 1}
    assert counts["top_host_ops_ms"] == {"aten::mm": 1.0, "aten::add_": 0.1}


def test_agreement_gives_each_device_its_own_leaf_and_gradient():
    """Each call differentiates a fresh copy of the logits: z itself never requires grad, and calling twice gives
    the same gradient (no pile-up), equal to BCE's by hand: (σ(z) − y)·w / Σw."""
    import torch

    from le_ray.config import load_config
    from le_ray.data.batches import Batch
    from le_ray.training.objectives import make_objective

    trials = _gpu_bench("trials")
    n = 64
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(n, generator=g), (torch.rand(n, generator=g) < 0.3).float()
    batch = Batch(torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.long), torch.zeros(n, dtype=torch.long), y,
                  torch.ones(n))
    bce = make_objective("bce", load_config().training_for("bce"), base_rates=torch.full((1,), 0.3), num_conditions=1,
                         device=torch.device("cpu"), dtype=torch.float32, with_history=False)
    (_, first), (_, second) = (trials.loss_and_logit_grad(bce, z, batch) for _ in range(2))
    assert not z.requires_grad and z.grad is None and first is not second
    assert torch.allclose(first, second) and torch.allclose(first, (torch.sigmoid(z) - y) / n, atol=1e-7)


def test_a_stage_that_crashes_keeps_the_figures_it_stored(tmp_path, monkeypatch):
    """run_stages: what a stage put in ctx["stage_out"] before it raised stays in the JSON beside the error."""
    from types import SimpleNamespace

    gpu_check = _gpu_check()

    def half_done(ctx):
        ctx["stage_out"]["default_net/bce/auto"] = {"samples_per_s": 2.0e7, "trial_over_train": 1.2}
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setitem(gpu_check.FUNCS, "throughput", half_done)
    ctx = {"results": {}, "late": lambda: False, "cuda": False}
    gpu_check.run_stages(["throughput"], ctx, SimpleNamespace(budget=330.0), tmp_path / "out.json")
    kept = json.loads((tmp_path / "out.json").read_text())["throughput"]
    assert kept["default_net/bce/auto"]["samples_per_s"] == 2.0e7 and kept["error"].startswith("RuntimeError: CUDA")


def test_report_scale_times_each_step_beside_the_scan_it_replaced():
    done = subprocess.run([sys.executable, "bench/report_scale.py", "--ads", "30", "60", "--seeds", "3",
                           "--scan-up-to", "30"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:2] in ("30", "60")]
    assert [(r[0], r[1]) for r in rows] == [(a, s) for a in ("30", "60") for s in ("picture", "medians", "rank-biserial")]
    assert all(float(r[2]) > 0 for r in rows)
    assert [r[3] == "n/a" for r in rows] == [False] * 3 + [True, True, False]  # no scan beyond --scan-up-to
