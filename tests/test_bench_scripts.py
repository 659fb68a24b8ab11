"""The prepared GPU check must run end to end before a GPU is ever lent: its CPU smoke mode, every stage."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_gpu_check_smoke_runs_every_stage_and_writes_its_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cuda"] is False  # a smoke run says its figures mean nothing
    assert {"device", "agreement", "throughput", "step_ratio", "fractional"} <= set(report)
    assert report["agreement"]["within_1e-5"] and report["agreement"]["history_equal"]
    assert {"bce", "le", "le+history", "focal", "bce_bf16"} <= set(report["throughput"])
    assert all(r["samples_per_s"] > 0 for k, r in report["throughput"].items() if k != "seconds")
    assert all(ids == ["0"] for ids in report["fractional"]["gpu_ids"])  # Ray's (fake) GPU reached every trial
