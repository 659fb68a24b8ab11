"""le-ray compare: comparison tables rebuilt from two stored run folders."""

import json

import polars as pl
import pytest

from le_ray.runners.compare_runs import main


def _run_folder(path, loss, pred_means, metrics, counts=(100, 50), rates=(0.1, 0.02)):
    path.mkdir(parents=True)
    pl.DataFrame({"condition": [0, 1], "value": ["a", "b"], "count": list(counts), "base_rate": list(rates),
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


def test_compare_sets_one_loss_from_two_runs_side_by_side(tmp_path, capsys):
    """UX audit: BCE at one lr against BCE at another (two runs) was refused; they compare by their roles."""
    slow = _run_folder(tmp_path / "a", "bce", [0.12, 0.03], {"logloss": 0.30})
    fast = _run_folder(tmp_path / "b", "bce", [0.11, 0.02], {"logloss": 0.33})
    assert main([str(slow), str(fast), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert f"bce_baseline is {slow}, bce_candidate is {fast}" in out
    row = pl.read_csv(tmp_path / "cmp" / "summary.csv").filter(pl.col("metric") == "logloss").row(0, named=True)
    assert row["winner"] == "bce_baseline" and row["pct_change"] == pytest.approx(-10.0)
    table = pl.read_csv(tmp_path / "cmp" / "conditions.csv")
    assert table["delta_pred_mean"].to_list() == pytest.approx([-0.01, -0.01])
    assert "smaller: 2 of 2" in out  # both nearer their base rates: 0.11 vs 0.12 (0.1), 0.02 vs 0.03 (0.02)


def test_compare_refuses_one_folder_as_both_runs_without_a_traceback(tmp_path, capsys):
    bce = _run_folder(tmp_path / "a", "bce", [0.12, 0.03], {})
    assert main([str(bce), str(tmp_path / "a" / "."), "--out", str(tmp_path / "cmp")]) == 2
    assert "are the same folder" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_a_file_as_out_before_reading_the_runs(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main([str(tmp_path / "no-run"), str(tmp_path / "no-run-2"), "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_compare_warns_when_the_runs_were_evaluated_on_different_data(tmp_path, capsys):
    bce = _run_folder(tmp_path / "bce", "bce", [0.12, 0.03], {}, counts=(100, 50), rates=(0.1, 0.02))
    le = _run_folder(tmp_path / "le", "localized_entropy", [0.105, 0.021], {}, counts=(100, 52), rates=(0.1, 0.025))
    assert main([str(bce), str(le), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "evaluated on different data" in out
    assert "condition 1: 50 rows at rate 0.02 (bce) vs 52 rows at rate 0.025 (localized_entropy)" in out
    assert "condition 0" not in out.split("per condition")[0]
    assert "different data" in (tmp_path / "cmp" / "comparison.txt").read_text()


def test_compare_says_nothing_of_data_when_both_runs_share_it(tmp_path, capsys):
    bce = _run_folder(tmp_path / "bce", "bce", [0.12, 0.03], {})
    le = _run_folder(tmp_path / "le", "localized_entropy", [0.105, 0.021], {})
    assert main([str(bce), str(le), "--out", str(tmp_path / "cmp")]) == 0
    assert "different data" not in capsys.readouterr().out
