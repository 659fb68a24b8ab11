"""le-ray compare: comparison tables rebuilt from two stored run folders."""

import json

import polars as pl
import pytest

from le_ray.runners.compare_runs import main


def _run_folder(path, loss, pred_means, metrics):
    path.mkdir(parents=True)
    pl.DataFrame({"condition": [0, 1], "value": ["a", "b"], "count": [100, 50], "base_rate": [0.1, 0.02],
                  "pred_mean": pred_means, "calibration_ratio": [pred_means[0] / 0.1, pred_means[1] / 0.02],
                  "logloss": [0.3, 0.1], "le_ratio": [0.95, 1.01]}).write_csv(path / "per_condition.csv")
    (path / "metrics.json").write_text(json.dumps({"loss": loss, "metrics": metrics}))
    return path


def test_compare_two_runs(tmp_path, capsys):
    bce = _run_folder(tmp_path / "bce", "bce", [0.12, 0.03], {"accuracy": 0.9, "logloss": 0.30, "brier": 0.08,
                                                             "ece": 0.02})
    le = _run_folder(tmp_path / "le", "localized_entropy", [0.105, 0.021], {"accuracy": 0.9, "logloss": 0.27,
                                                                           "brier": 0.08, "ece": 0.01})
    assert main([str(bce), str(le), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "2 of 2" in out
    summary = pl.read_csv(tmp_path / "cmp" / "summary.csv")
    row = summary.filter(pl.col("metric") == "logloss").row(0, named=True)
    assert row["winner"] == "localized_entropy" and row["pct_change"] == pytest.approx(10.0)
    table = pl.read_csv(tmp_path / "cmp" / "conditions.csv")
    assert table["delta_pred_mean"].to_list() == pytest.approx([-0.015, -0.009])


def test_compare_rejects_non_run_folder(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "x")]) == 2
    assert "is not a le_ray run folder" in capsys.readouterr().err
