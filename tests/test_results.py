"""Results store: folder checks, atomic trial files, manifest facts, result tables."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from le_ray.atomic import atomic_write_json, atomic_write_with, check_writable
from le_ray.sweep.store import (ResultsError, SweepStore, ad_ids, environment_manifest, per_condition_frame,
                                pooled_per_condition, resolve_results_dir, trials_frame)


def _record(trial_id, loss, seed, logloss):
    return {"trial_id": trial_id, "loss": loss, "seed": seed, "status": "ok", "metrics": {"logloss": logloss},
            "timings": {"total": 1.0}, "node": "n1", "device": "cpu (no accelerator)", "samples_per_second": 10.0,
            "per_condition": {"condition": [0], "count": [3], "base_rate": [0.1], "pred_mean": [0.12]}}


def test_store_writes_and_reads_trials(tmp_path):
    store = SweepStore.open(tmp_path, "s")
    store.write_trial(_record("b", "bce", 2, 0.3))
    store.write_trial(_record("a", "bce", 1, 0.2))
    store.write_failure("c", {"loss": "le", "seed": 1, "error": "boom"})
    assert store.finished_ids() == {"a", "b"}
    assert [r["seed"] for r in store.load_trials()] == [1, 2]
    assert [r["trial_id"] for r in store.load_trials(["b", "missing"])] == ["b"]
    assert store.failures()["c"]["error"] == "boom"
    store.write_trial(_record("c", "le", 1, 0.25))  # a later success clears the failure record
    assert "c" not in store.failures()
    assert not [p for p in (tmp_path / "s" / "trials").iterdir() if p.name.startswith(".tmp")]
    frame = trials_frame(store.load_trials())
    assert frame.height == 3 and {"logloss", "seconds_total", "node", "device"} <= set(frame.columns)


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "t.json"
    atomic_write_json(target, {"v": 1})

    def broken(tmp):
        with open(tmp, "w") as fh:
            fh.write("{half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, broken)
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


_HALF_WRITER = """
import sys, time
from le_ray.atomic import atomic_write_with
def half(tmp):
    with open(tmp, "w") as fh:
        fh.write('{"trial_id": "a", "metrics": {"logl')
        fh.flush()
        time.sleep(600)  # killed here, mid-write
atomic_write_with(sys.argv[1], half)
"""


def test_sigkill_during_a_write_leaves_the_old_file_and_a_temp_no_reader_trusts(tmp_path):
    store = SweepStore.open(tmp_path, "s")
    store.write_trial(_record("a", "bce", 1, 0.2))
    target = tmp_path / "s" / "trials" / "a.json"
    before = target.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", _HALF_WRITER, str(target)])
    deadline = time.time() + 60
    while not any(p.stat().st_size for p in target.parent.glob(".tmp-*")):
        assert child.poll() is None and time.time() < deadline, "the writer never started writing"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert target.read_bytes() == before  # the old, complete trial file is untouched
    assert [r["metrics"] for r in store.load_trials()] == [{"logloss": 0.2}]  # readers skip the half-written temp
    assert store.clean_temporary_files() == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_unusable_locations(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        check_writable(blocker / "sub", "results folder")
    with pytest.raises(ResultsError, match="plain folder name"):
        SweepStore.open(tmp_path, "a/b")
    monkeypatch.setenv("LE_RAY_RESULTS", str(tmp_path / "env"))
    assert resolve_results_dir(None, "results") == tmp_path / "env"
    assert resolve_results_dir(str(tmp_path / "cli"), "results") == tmp_path / "cli"
    monkeypatch.delenv("LE_RAY_RESULTS")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    with pytest.raises(ResultsError, match="absolute --results-dir"):
        resolve_results_dir(None, "results")


def test_manifest_versions_and_commit(monkeypatch):
    manifest = environment_manifest()
    assert manifest["packages"]["torch"].startswith("2.") and manifest["le_ray_version"]
    monkeypatch.setenv("LE_RAY_GIT_COMMIT", "abc123")
    assert environment_manifest()["git_commit"] == "abc123"


def _sums_record(loss, seed, conditions):
    import numpy as np

    from le_ray import metrics

    cond = np.repeat(np.asarray(conditions), 50)
    p = np.full(cond.size, 0.1)
    y = (np.arange(cond.size) % 10 == 0).astype(float)
    sums = metrics.condition_sums(p, y, cond, num_conditions=4)
    return {"trial_id": f"{loss}-{seed}", "loss": loss, "seed": seed, "condition_sums": metrics.sums_to_record(sums)}


def test_per_condition_tables_carry_the_ad_id():
    values = ["17753", "18993", "20345", "21611"]
    assert ad_ids([3, 0, 7], values) == ["21611", "17753", "7"] and ad_ids([2], None) == ["2"]
    records = [_sums_record("bce", 1, [0, 2]), _sums_record("bce", 2, [0, 3])]
    frame = per_condition_frame(records, values)
    assert frame.columns[:2] == ["condition", "ad_id"]
    assert dict(zip(frame["condition"], frame["ad_id"])) == {0: "17753", 2: "20345", 3: "21611"}
    pooled = pooled_per_condition(records, "bce", values)
    assert pooled.columns[:2] == ["condition", "ad_id"]
    assert sorted(zip(pooled["condition"], pooled["ad_id"])) == [(0, "17753"), (2, "20345"), (3, "21611")]
    assert pooled.filter(pooled["condition"] == 0)["count"][0] == 100  # pooled over both seeds
    assert per_condition_frame(records)["ad_id"].to_list()[:2] == ["0", "2"]  # values unknown: the index


def test_unreadable_trial_file_counts_as_not_stored_and_a_resume_replaces_it(tmp_path, caplog):
    """A damaged trial file (not JSON, or JSON that is not that trial's record) is pending for a resume, skipped by
    readers with one warning naming it, and replaced atomically when the trial is stored again."""
    store = SweepStore.open(tmp_path, "s")
    store.write_trial(_record("a", "bce", 1, 0.2))
    (tmp_path / "s" / "trials" / "b.json").write_text('{"bad": ')
    (tmp_path / "s" / "trials" / "c.json").write_text('{"bad": 1}')
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        assert store.finished_ids() == {"a"}  # what a resume skips: b and c are retrained
        assert [r["trial_id"] for r in store.load_trials()] == ["a"]
        assert [r["trial_id"] for r in store.load_trials(["a", "b", "c"])] == ["a"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2  # once per file
    assert any("b.json" in m and "cannot be read as JSON" in m and "retrains it" in m for m in warned)
    assert any("c.json" in m and "is not the record of that trial" in m for m in warned)
    store.write_trial(_record("b", "bce", 2, 0.3))  # the resumed trial
    assert store.finished_ids() == {"a", "b"} and [r["seed"] for r in store.load_trials(["a", "b"])] == [1, 2]
    assert not list((tmp_path / "s" / "trials").glob(".tmp-*"))


def test_a_damaged_failure_file_still_marks_its_trial_failed(tmp_path, caplog):
    store = SweepStore.open(tmp_path, "s")
    store.write_failure("a", {"loss": "bce", "seed": 1, "error": "RuntimeError('x')"})
    (tmp_path / "s" / "failures" / "b.json").write_text('{"err')
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        failures = store.failures()
    assert failures["a"]["error"] == "RuntimeError('x')"
    assert failures["b"]["error"].startswith("failed; its failure file cannot be read")
    assert any("b.json" in r.getMessage() for r in caplog.records)


def test_report_with_a_damaged_trial_file_counts_it_as_missing(tmp_path, caplog):
    """The report skips a damaged trial file with a warning naming it and lists the trial as missing, as it does a
    failed trial's (le_ray/sweep/store.py, load_trials, says why)."""
    import numpy as np

    from le_ray.report.sweep import build_report
    from tests.test_sweep_report import QUICK_RATES, _stored_sweep

    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, records = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "plots.enabled=false"],
                                   QUICK_RATES, factors, ["0", "1", "2", "3"], rows=3000)
    damaged = store.trial_path(records[0]["trial_id"])
    damaged.write_text('{"bad": ')
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        text = build_report(store.root, echo=lambda *a: None).read_text()
    assert any(str(damaged) in r.getMessage() for r in caplog.records)
    first = records[0]
    assert f"| trials | {len(records) - 1} of {len(records)} stored, 0 failed |" in text
    assert f"**Missing trials** (statistics use complete pairs only):\n\n- {first['loss']} seed {first['seed']} " \
           f"(`{first['trial_id']}`)" in text


def test_report_of_a_folder_that_does_not_exist_says_so(tmp_path, capsys):
    from le_ray.report.__main__ import main

    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"le-ray: sweep folder {str(tmp_path / 'nope')!r}: no such folder\n"
