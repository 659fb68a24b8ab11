"""The diagnostic run: folder layout, files per loss, run_log, empty eval, unlabelled test, Avazu sample."""

import dataclasses
import json
import shlex
from importlib import metadata

import numpy as np
import pytest
import polars as pl
from matplotlib import image as mpimg

import le_ray.runners.run as run_module
from le_ray.config import load_config, to_plain
from le_ray.data.filters import filter_mode_of
from le_ray.runners.run import main
from le_ray.version import git_commit

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
    # run.json: what reproduces the run (reproducibility audit: a run folder held no resolved config, packages or
    # thread count, and a --config file only by its path)
    provenance = json.loads((tmp_path / "r" / "run.json").read_text())
    assert shlex.split(provenance["command"]) == ["python", "-m", "le_ray.run", *SMALL, "--output-dir", str(tmp_path),
                                                  "--name", "r"]
    sets = [SMALL[i + 1] for i, word in enumerate(SMALL) if word == "--set"]
    assert provenance["config"] == to_plain(load_config(profile="small_net", sets=sets))
    assert provenance["packages"]["torch"] == metadata.version("torch")
    assert provenance["torch_threads"] == metrics["torch_threads"] >= 1
    assert len(provenance["data_fingerprint"]) == 16 and provenance["git_commit"] == git_commit()


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
    report = (tmp_path / "r" / "comparison" / "avazu" / "default" / "top_k" / "report.md").read_text()
    per_ad = report.split("## Per ad, every loss")[1].split("\n## ")[0]
    ads = {line.split(" | ")[0].lstrip("| ") for line in per_ad.splitlines()
           if line.startswith("| ") and "---" not in line}
    assert ads == {"ad", "18993", "20596", "21611", "15701", "15708", "15707"}  # the ad ids, not condition indices


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


def _report(root):
    return (root / "comparison" / "synthetic" / "small" / "none" / "report.md").read_text()


def test_report_says_what_one_seed_can_say_and_reads_calibration_against_the_truth(tmp_path, capsys):
    assert main([*SMALL, "--set", "plots.enabled=false", "--output-dir", str(tmp_path), "--name", "r"]) == 0
    printed = capsys.readouterr().out
    assert f"output: {tmp_path / 'r'};" in printed or printed.split("output: ")[1].split("\n")[0] == str(tmp_path / "r")
    report = _report(tmp_path / "r")
    assert "## How to read this run" in report and "One seed per loss (seed " in report
    # the seed sweep it points to is this run's experiment: every config option kept (a UX audit found the --set
    # dropped), and a command that parses back to the same config
    sweep = shlex.join(["le-ray", "repeats", *SMALL, "--set", "plots.enabled=false"])
    assert f"`{sweep}` (this run's config)" in report
    words = shlex.split(sweep)[2:]
    assert load_config(None, profile=words[1], sets=words[3::2]) == load_config(
        None, profile="small_net", sets=[*SMALL[3::2], "plots.enabled=false"])
    assert "| le_ray | le_ray" not in report and "| le_ray | 0." in report  # the name once
    glossary = report.split("## Glossary")[1]  # the terms the report uses, defined (UX audit: none were)
    assert "- **le_ratio** (lower is better): " in glossary and "- **ece_small** (lower is better): " in glossary
    assert "**delta**" not in glossary and "**rank_biserial**" not in glossary  # a run makes no paired test
    assert "| metric | BCE | LE | better in this run |" in report and "| winner |" not in report
    header = next(line for line in report.splitlines() if line.startswith("| ad |"))
    assert "ratio to truth (LE)" in header and header.rstrip(" |").endswith("closest to 1 (truth)")
    # the sweep-only findings (seeds, shared split) say nothing of one run
    assert "`fixed_split`" not in report and "`underpowered`" not in report


def test_a_run_the_audit_finds_unsound_trains_and_its_report_says_so(tmp_path, capsys):
    args = [*SMALL, "--set", "training.batch_size=4096", "--set", "training.loss_mode=bce", "--set",
            "plots.enabled=false", "--output-dir", str(tmp_path), "--name", "r"]
    assert main(args) == 0
    assert "the audit found 1 error(s): this run trains anyway" in capsys.readouterr().out
    report = _report(tmp_path / "r")
    assert "**The experiment audit found 1 error(s)** (`few_steps`; see Audit)" in report
    fine = [*SMALL, "--set", "training.batch_size=32", "--set", "training.loss_mode=bce", "--set",
            "plots.enabled=false", "--output-dir", str(tmp_path), "--name", "fine"]
    assert main(fine) == 0
    assert "audit found" not in capsys.readouterr().out and "audit found" not in _report(tmp_path / "fine")


def test_overwrite_replaces_the_old_run_whole_and_a_failed_rerun_puts_it_back(tmp_path, capsys, monkeypatch):
    first = [*SMALL, "--set", "plots.enabled=false", "--output-dir", str(tmp_path), "--name", "r"]
    assert main(first) == 0
    old_le = tmp_path / "r" / "le" / "synthetic" / "small" / "none" / "metrics.json"
    old_text = old_le.read_text()
    (tmp_path / "r" / "mine.txt").write_text("kept with the run it belongs to")

    def fail(state):
        raise RuntimeError("boom")
    monkeypatch.setattr(run_module, "_train_losses", fail)
    with pytest.raises(RuntimeError, match="boom"):
        main([*first, "--set", "training.loss_mode=bce", "--overwrite"])
    assert old_le.read_text() == old_text and (tmp_path / "r" / "mine.txt").exists()
    assert "holds the earlier run again, unchanged" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # nothing set aside is left behind
    def interrupt(state):
        raise KeyboardInterrupt
    monkeypatch.setattr(run_module, "_train_losses", interrupt)  # Ctrl-C: the old run back, 130, no traceback
    assert main([*first, "--set", "training.loss_mode=bce", "--overwrite"]) == 130
    assert old_le.read_text() == old_text and capsys.readouterr().err.endswith(
        "holds the earlier run again, unchanged\nle-ray: stopped (SIGINT)\n")
    monkeypatch.undo()
    assert main([*first, "--set", "training.loss_mode=bce", "--overwrite"]) == 0
    assert not (tmp_path / "r" / "le").exists() and not (tmp_path / "r" / "mine.txt").exists()
    assert (tmp_path / "r" / "bce" / "synthetic" / "small" / "none" / "metrics.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "thesis.tex").write_text("x")
    assert main([*SMALL, "--output-dir", str(tmp_path), "--name", "r", "--overwrite"]) == 2
    assert "is not a le_ray run folder" in capsys.readouterr().err
    assert (tmp_path / "r" / "thesis.tex").exists()


def test_a_run_that_fails_part_way_says_so_in_its_folder(tmp_path, monkeypatch):
    def fail(state):
        print("about to fail")
        raise RuntimeError("boom")
    monkeypatch.setattr(run_module, "_train_losses", fail)
    with pytest.raises(RuntimeError):
        main([*SMALL, "--output-dir", str(tmp_path), "--name", "r"])
    log_text = (tmp_path / "r" / "run_log.txt").read_text()
    assert "about to fail" in log_text and log_text.rstrip().endswith("FAILED: RuntimeError: boom")


def test_a_diverging_run_ends_in_one_line_naming_the_setting_and_its_folder_says_why(tmp_path, capsys):
    """A NaN training loss (here lr 1e9) is the user's to fix: exit 2 and the message, not a traceback."""
    args = [*SMALL, "--set", "training.loss_mode=bce", "--set", "training.lr=1e9"]
    assert main([*args, "--output-dir", str(tmp_path), "--name", "r"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("le-ray: non-finite bce training loss") and "training.lr" in err and "Traceback" not in err
    assert "FAILED: NonFiniteLossError: non-finite bce training loss" in (tmp_path / "r" / "run_log.txt").read_text()


def test_a_run_that_fails_before_writing_anything_leaves_no_folder(tmp_path, monkeypatch):
    def fail(state, origins=None):
        raise RuntimeError("no data")
    monkeypatch.setattr(run_module, "_prepare", fail)
    with pytest.raises(RuntimeError):
        main([*SMALL, "--output-dir", str(tmp_path), "--name", "r"])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("every", [0, 1])
def test_mid_epoch_predictions(tmp_path, capsys, every):
    """Mid-epoch prediction plots exist only where the loss evaluates mid-epoch; else the run says why none."""
    args = [*SMALL[:-2], "--set", "training.loss_mode=bce", "--set", "plots.mid_epoch_predictions=true",
            "--set", f"training.eval_every_n_batches={every}", "--output-dir", str(tmp_path), "--name", "r"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    drawn = sorted((tmp_path / "r" / "bce" / "synthetic" / "small" / "none").glob("preds_step*.png"))
    note = "plots.mid_epoch_predictions is true, but bce evaluates only at epoch ends"
    if every:
        assert drawn and note not in printed
    else:
        assert not drawn and note in printed


def test_the_output_switches_hold_for_every_file_and_the_headings_name_the_split(tmp_path, capsys):
    """Tune / run audit: output.save_plots=false still wrote four PNGs; output.save_logs=false wrote no report.md but
    printed its path; the headings said "evaluation split" when evaluation.split was train; a --name that is a file
    gave a NotADirectoryError traceback."""
    args = [*SMALL, "--set", "training.loss_mode=bce", "--set", "output.save_plots=false", "--set",
            "output.save_logs=false", "--output-dir", str(tmp_path), "--name", "quiet"]
    assert main(args) == 0
    assert not list((tmp_path / "quiet").rglob("*.png")) and not list((tmp_path / "quiet").rglob("report.md"))
    last = [line for line in capsys.readouterr().out.splitlines() if line.strip()][-1]
    assert "output.save_logs is false, so no report.md or run_log.txt was written" in last and "report:" not in last
    assert main([*SMALL, "--set", "training.loss_mode=bce", "--set", "evaluation.split=train", "--output-dir",
                 str(tmp_path), "--name", "train"]) == 0
    report = next((tmp_path / "train").rglob("report.md")).read_text()
    assert "## Metrics on the train split" in report and "evaluation split" not in report
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert main([*SMALL, "--output-dir", str(tmp_path), "--name", "afile"]) == 2
    assert "is a file; choose another --name" in capsys.readouterr().err


def test_the_calibration_figures_read_the_truth_where_the_data_hold_it():
    """Tune/run audit: report.md reads calibration from the ratio to the true click probability, while the figures
    drew the ratio to the noisy evaluation rate (an ad with no evaluation click was an empty column)."""
    from le_ray.report.run_outputs import against_truth

    synthetic = pl.DataFrame({"condition": [0, 1], "base_rate": [0.02, 0.0], "calibration_ratio": [1.5, float("nan")],
                              "true_rate": [0.025, 0.001], "calibration_ratio_true": [1.2, 0.9]})
    drawn, words = against_truth(synthetic)
    assert words == "true click probability"
    assert drawn["base_rate"].to_list() == [0.025, 0.001] and drawn["calibration_ratio"].to_list() == [1.2, 0.9]
    ctr = synthetic.drop("true_rate", "calibration_ratio_true")
    drawn, words = against_truth(ctr)
    assert words == "evaluation click rate" and drawn.equals(ctr)


def test_the_comparison_figure_reads_every_loss_against_the_truth():
    """The per-loss figures read the truth; the every-loss comparison figure still drew the evaluation rate."""
    from le_ray.report.run_outputs import comparison_figure_table

    def table(ratio, ratio_true):
        return pl.DataFrame({"condition": [0, 1], "count": [100, 100], "base_rate": [0.02, 0.0],
                             "pred_mean": [0.03, 0.001], "calibration_ratio": ratio, "logloss": [0.1, 0.01],
                             "le_ratio": [1.0, 1.0], "true_rate": [0.025, 0.001], "calibration_ratio_true": ratio_true})

    tables = {"bce": table([1.5, float("nan")], [1.2, 0.9]), "localized_entropy": table([1.1, float("nan")], [0.88, 1.3]),
              "focal": table([0.5, float("nan")], [0.4, 2.0])}
    wide, words = comparison_figure_table(tables, "bce", "localized_entropy")
    wide = wide.sort("condition")
    assert words == "true click probability" and wide["base_rate"].to_list() == [0.025, 0.001]
    assert wide["calibration_ratio_bce"].to_list() == [1.2, 0.9]
    assert wide["calibration_ratio_localized_entropy"].to_list() == [0.88, 1.3]
    assert wide["calibration_ratio_focal"].to_list() == [0.4, 2.0]
    ctr = {k: t.drop("true_rate", "calibration_ratio_true") for k, t in tables.items()}
    wide, words = comparison_figure_table(ctr, "bce", "localized_entropy")
    assert words == "evaluation click rate" and wide.sort("condition")["calibration_ratio_focal"].to_list()[0] == 0.5


def test_a_short_training_time_is_written_in_milliseconds():
    from le_ray.report.run_markdown import seconds_text

    assert seconds_text(0.042) == "42 ms" and seconds_text(0.1) == "0.1 s" and seconds_text(12.34) == "12.3 s"


def test_the_closeness_table_prints_top_k_ads_and_its_csv_keeps_every_one(tmp_path, capsys):
    """At 5,000 ads a run printed the |1 - calibration ratio| table whole (5,000 lines) while the per-condition
    comparison beside it printed comparison.top_k rows."""
    assert main([*SMALL, "--set", "plots.enabled=false", "--set", "comparison.top_k=2", "--output-dir", str(tmp_path),
                 "--name", "r"]) == 0
    text = (tmp_path / "r" / "comparison" / "synthetic" / "small" / "none" / "comparison.txt").read_text()
    closeness = text.split("|1 - calibration ratio| per loss", 1)[1].split("\n\n", 1)[0]
    assert len([line for line in closeness.splitlines() if line.strip()[:1].isdigit()]) == 2
    csv = pl.read_csv(tmp_path / "r" / "comparison" / "synthetic" / "small" / "none" / "calibration_closeness.csv")
    assert csv.height == 4
