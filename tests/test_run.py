"""The diagnostic run: folder layout, files per loss, run_log, empty eval, unlabelled test, Avazu sample."""

import dataclasses
import json

import numpy as np
import pytest
import polars as pl
from matplotlib import image as mpimg

import le_ray.runners.run as run_module
from le_ray.config import load_config
from le_ray.data.filters import filter_mode_of
from le_ray.runners.run import main

from .sample_data import require_sample

pytestmark = pytest.mark.slow

SMALL = ["--profile", "small_net", "--set", "synthetic.samples_per_condition=600", "--set", "training.epochs=1",
         "--set", "training.loss_mode=all", "--set", "training.batch_size=512",
         "--set", "training.by_loss.bce.by_source={}", "--set", "training.by_loss.localized_entropy.by_source={}",
         "--set", "training.by_loss.focal.by_source={}",
         "--set", "plots.dpi=40"]
LOSS_FILES = ("avg.png", "loss.png", "preds.png", "calibration.png", "reliability.png", "run_log.txt",
              "metrics.json", "per_condition.csv")


def _png_ok(path):
    img = mpimg.imread(path)
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert img.std() > 0.01, f"{path} is a flat image"


def test_layout_files_and_log(tmp_path, capsys):
    assert main([*SMALL, "--output-dir", str(tmp_path), "--name", "r"]) == 0
    printed = capsys.readouterr().out
    for label in ("bce", "le", "focal"):
        folder = tmp_path / "r" / label / "synthetic" / "small" / "none"
        for name in LOSS_FILES:
            assert (folder / name).exists(), f"{label}/{name}"
        for name in ("avg.png", "loss.png", "preds.png", "calibration.png"):
            _png_ok(folder / name)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["metrics"]["logloss"] > 0 and metrics["curves"]["epoch"] == [0, 1]
        per_cond = pl.read_csv(folder / "per_condition.csv")
        assert per_cond.height == 4 and "calibration_ratio" in per_cond.columns
        assert (folder / "test_predictions.parquet").exists()
        log_text = (folder / "run_log.txt").read_text()
        assert "=== training bce ===" in log_text and "epoch 0" in log_text
    comparison = tmp_path / "r" / "comparison" / "synthetic" / "small" / "none"
    for name in ("report.md", "comparison.txt", "conditions_le_vs_bce.csv", "summary_le_vs_bce.csv",
                 "conditions_focal_vs_bce.csv", "calibration_closeness.csv", "data_distributions.png"):
        assert (comparison / name).exists(), name
    report = (comparison / "report.md").read_text()
    assert "](../../../../le/synthetic/small/none/avg.png)" in report
    # a document: facts, metrics of every loss side by side, comparison tables inline, sections by display name
    for heading in ("| fact | value |", "| metric | BCE | LE | focal |", "## LE vs BCE", "## Per ad, every loss",
                    "\n## LE\n", "\n## focal\n"):
        assert heading in report, heading
    assert "localized_entropy:" not in report and "## le\n" not in report
    # run_log.txt holds what was printed (the same lines, in order)
    log_lines = (comparison / "run_log.txt").read_text().splitlines()
    printed_lines = [line for line in printed.splitlines() if line.strip()]
    assert [line for line in log_lines if line.strip()][:40] == printed_lines[:40]


def test_filter_mode_folder_names():
    assert filter_mode_of(load_config()) == "none"
    cfg = load_config(profile="avazu_top6_by_count")
    assert filter_mode_of(cfg) == "top_k"
    cfg = load_config(profile="avazu_top6_by_count", sets=["ctr.datasets.avazu.filter.mode=null",
                                                           "ctr.datasets.avazu.filter.k=null"])
    assert filter_mode_of(cfg) == "none"


def test_empty_eval_split(tmp_path, monkeypatch):
    original = run_module.prepare_with_source

    def empty_eval(cfg, **kw):
        data, source = original(cfg, **kw)
        return dataclasses.replace(data, eval=data.eval.take(np.zeros(0, dtype=np.int64))), source

    monkeypatch.setattr(run_module, "prepare_with_source", empty_eval)
    assert main([*SMALL, "--set", "training.loss_mode=both", "--set", "plots.enabled=false", "--output-dir",
                 str(tmp_path), "--name", "r"]) == 0
    metrics = json.loads((tmp_path / "r" / "bce" / "synthetic" / "small" / "none" / "metrics.json").read_text())
    assert metrics["curves"]["eval_loss"] == [None, None]  # NaN, written as null
    assert metrics["metrics"] == {}


def _avazu_args(tmp_path, *extra):
    train = require_sample("avazu", "avazu_sample.csv")
    test = require_sample("avazu", "avazu_test_format_sample.csv")
    return ["--profile", "avazu_top6_by_count", "--set", f"ctr.datasets.avazu.train_path={train}",
            "--set", f"ctr.datasets.avazu.test_path={test}", "--set", "training.epochs=1",
            "--set", "plots.dpi=40", "--set", "training.batch_size=2048",
            "--set", "training.by_loss.bce.by_source={}", "--set", "training.by_loss.localized_entropy.by_source={}",
         "--set", "training.by_loss.focal.by_source={}",
            "--output-dir", str(tmp_path), "--name", "r", *extra]


def test_avazu_sample_run_with_unlabelled_test_set(tmp_path, capsys):
    assert main(_avazu_args(tmp_path)) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "r" / "le" / "avazu" / "default" / "top_k"
    for name in LOSS_FILES:
        assert (folder / name).exists(), name
    per_cond = pl.read_csv(folder / "per_condition.csv")
    assert per_cond.height == 6
    assert set(per_cond["value"].cast(pl.String).to_list()) == {"18993", "20596", "21611", "15701", "15708", "15707"}
    preds = pl.read_parquet(folder / "test_predictions.parquet")
    assert preds.height > 0 and set(preds.columns) == {"row_id", "condition", "condition_value", "p"}
    assert preds["p"].is_between(0, 1).all()
    assert "test-set predictions" in out and "labels not used" in out
    assert (tmp_path / "r" / "comparison" / "avazu" / "default" / "top_k" / "filter_stats.png").exists()


def test_evaluation_on_unlabelled_test_split_skips_label_metrics(tmp_path, capsys):
    args = _avazu_args(tmp_path, "--set", "evaluation.split=test", "--set", "training.loss_mode=bce",
                       "--set", "plots.enabled=false")
    assert main(args) == 0
    assert "has no usable labels; label metrics skipped" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "r" / "bce" / "avazu" / "default" / "top_k" / "metrics.json").read_text())
    assert metrics["has_labels"] is False and metrics["metrics"] == {}


def test_bad_config_exits_cleanly(tmp_path, capsys):
    assert main(["--set", "training.lr=0", "--output-dir", str(tmp_path), "--name", "r"]) == 2
    assert "training.lr: got 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_two_runs_with_default_names_write_two_folders_and_never_overwrite(tmp_path, capsys):
    import time as _time

    args = [*SMALL, "--set", "training.loss_mode=bce", "--set", "plots.enabled=false", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    first = sorted(p.name for p in tmp_path.iterdir())
    deadline = _time.time() + 5
    while _time.strftime("%Y%m%d-%H%M%S", _time.gmtime()) == first[0].rsplit("-", 2)[-2] + "-" + first[0].rsplit(
            "-", 1)[-1] and _time.time() < deadline:  # default names carry the UTC second
        _time.sleep(0.05)
    assert main(args) == 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(f.startswith("small_net-") for f in folders)
    assert main([*args, "--name", folders[0]]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--name", folders[0], "--overwrite"]) == 0
