"""The printed table and the JSON's ``table``: one row per figure, with its target and PASS / FAIL where it
has one (speed targets judged only on CUDA)."""

from __future__ import annotations

import torch

from gpu_bench.common import STAGES


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1e5:
            return f"{v / 1e6:.2f}M"
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def _row(rows: list, what: str, value, target: str = "", ok: bool | None = None) -> None:
    rows.append({"what": what, "value": value, "target": target,
                 "pass": None if ok is None or value is None else bool(ok)})


def _speed_row(r: dict, rows: list, what: str, value, target: str = "", ok: bool | None = None) -> None:
    """A speed figure: judged against its target only when it was measured on CUDA."""
    _row(rows, what, value, target if r.get("cuda") else "", ok if r.get("cuda") else None)


def _throughput_rows(r: dict, rows: list) -> None:
    tp = r.get("throughput", {})
    for key, f in tp.items():
        if not isinstance(f, dict):
            continue
        shape, loss, mode = key.split("/")
        label = f"{shape} {loss} graphs={mode}: samples/s (steady {_fmt(f.get('steady_samples_per_s'))})"
        target, ok = "", None
        if mode == "auto" and loss == "bce":
            need = 25e6 if shape == "default_net" else 5e6
            target, ok = f">= {need / 1e6:g}M", f["samples_per_s"] >= need
        _speed_row(r, rows, label, f["samples_per_s"], target, ok)
        headline = (shape, loss, mode) == ("default_net", "bce", "auto")
        if f.get("vs_ceiling") is not None:
            _speed_row(r, rows, f"  {shape} {loss} graphs={mode} / same-run graph ceiling", f["vs_ceiling"],
                       ">= 0.85" if headline else "", f["vs_ceiling"] >= 0.85 if headline else None)
        if mode == "auto":
            _speed_row(r, rows, f"  {shape} {loss} whole trial / training", f["trial_over_train"], "<= 1.3",
                       f["trial_over_train"] is not None and f["trial_over_train"] <= 1.3)


def _other_rows(r: dict, rows: list) -> None:
    for c, v in r.get("step_ratio", {}).items():
        for loss, ratio in (v.get("vs_bce", {}) if isinstance(v, dict) else {}).items():
            need = 1.15 if loss == "le+history" else 1.10
            _speed_row(r, rows, f"step time {loss} / BCE, {c} conditions", ratio, f"<= {need}", ratio <= need)
    ag = r.get("agreement", {})
    for kind in ("loss", "grad"):
        for loss, v in ag.get(f"max_rel_{kind}", {}).items():
            _row(rows, f"CUDA vs CPU {loss} {kind}: max rel diff", v, "<= 1e-5", v <= 1e-5)
    if isinstance(ag.get("history_max_rel"), float):
        _row(rows, "CUDA vs CPU LE history window sums: max rel diff", ag["history_max_rel"],
             f"<= {ag['history_bound']:.2g} (N*eps32)", ag["history_within_bound"])
    pr = r.get("precision", {})
    if "high_over_highest_samples_per_s" in pr:
        _row(rows, "matmul high / highest: BCE default_net samples/s", pr["high_over_highest_samples_per_s"])
        _row(rows, "matmul high - highest: eval logloss", pr["logloss_high_minus_highest"])
    for key, v in r.get("launches", {}).items():
        if isinstance(v, dict):
            _row(rows, f"{key.replace('/', ' ')}: kernel launch calls per step ({_fmt(v['graph_launches'])} graph "
                 f"launches, {v['kernels']} kernels, GPU busy {_fmt(v['gpu_busy_s'])} s)", v["launch_calls_per_step"])
            _row(rows, f"  {key.replace('/', ' ')}: host aten ops in the trial ({v['steps']} steps)", v["aten_ops"])
    q = r.get("quickstart", {})
    if "wall_s" in q:
        _speed_row(r, rows, f"quickstart sweep wall s ({q.get('trials')} trials, rc {q.get('returncode')})",
                   q["wall_s"], "<= 30", q["wall_s"] <= 30 and q.get("returncode") == 0)
        for key, what in (("launch_to_first_trial_s", "launch -> first trial start"),
                          ("trials_span_s", "first trial start -> last trial end"),
                          ("last_trial_to_exit_s", "last trial end -> exit (report, Ray shutdown)"),
                          ("median_task_s", "median trial task, in the worker")):
            if key in q:
                _row(rows, f"  quickstart: {what}, s", q[key])
    for shape in ("quickstart", "default_net"):
        for k, g in r.get("packing", {}).get(shape, {}).items():
            _row(rows, f"{k} {shape} trials at once: trials/min (x{_fmt(g.get('speedup_vs_1'))} of one)",
                 g["trials_per_min"])
        if f"{shape}_choose_k" in r.get("packing", {}):
            _row(rows, f"  {shape}: fewest trials per GPU within 5% of the best", r["packing"][f"{shape}_choose_k"])
    pt = r.get("pytest_gpu", {})
    if "returncode" in pt:
        code = "timeout" if pt["returncode"] is None else pt["returncode"]
        _row(rows, f"pytest -m gpu: {' '.join(pt.get('summary', []))}", code, "exit 0", code == 0)


def table_rows(r: dict) -> list[dict]:
    rows: list = []
    for key, v in r.get("ceiling", {}).get("samples_per_s", {}).items():
        _row(rows, f"ceiling (plain PyTorch) {key.replace('/', ' ')}: samples/s", v)
    _throughput_rows(r, rows)
    _other_rows(r, rows)
    for name in STAGES:
        v = r.get(name)
        if isinstance(v, dict) and "error" in v:
            _row(rows, f"stage {name} crashed", v["error"], "runs", False)
        elif isinstance(v, dict) and "skipped" in v:
            _row(rows, f"stage {name} skipped", v["skipped"])
    return rows


def print_table(r: dict) -> None:
    device = r.get("device", {}).get("name", "CPU (figures mean nothing)")
    print(f"\nGPU check on {device}, torch {torch.__version__}, {r['time']}")
    print(f"{'what':<78} {'value':>12}  {'target':<22} pass")
    for row in r["table"]:
        verdict = "" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
        print(f"{row['what'][:78]:<78} {_fmt(row['value'])[:12]:>12}  {row['target']:<22} {verdict}", flush=True)

