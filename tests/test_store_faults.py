"""Faults of a sweep's results store: damaged trial records, a sweep folder removed mid-run, writes the file system
refuses (read-only, disk full) during a sweep, results paths that are not UTF-8, unwritable folders. No Ray starts:
the driver's Ray calls are stood in for where a test drives ``run_sweep``."""

import errno
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import le_ray.atomic as atomic
from le_ray.atomic import atomic_write_json, check_writable
from le_ray.errors import ResultsError, UserError
from le_ray.sweep.store import SweepStore, nearest_writable, plain_folder_name, resolve_results_dir, trials_frame


def _record(trial_id, loss="bce", seed=1):
    return {"trial_id": trial_id, "loss": loss, "seed": seed, "metrics": {"logloss": 0.2}, "timings": {"total": 1.0},
            "node": "n1", "device": "cpu (no accelerator)", "samples_per_second": 10.0}


# --------------------------------------------------------------------------- 1: a record without its keys


@pytest.mark.parametrize("content", [
    {},  # only the trial id (a hand edit, another version's schema)
    {"loss": "bce", "seed": 2},  # no metrics, timings, node, device
    {**_record("x", seed=2), "metrics": None},
    {**_record("x", seed=2), "seed": "2"},
    {**_record("x", seed=2), "timings": {"total": "slow"}},
    {**_record("x", seed=2), "curves": [1, 2]},
])
def test_a_record_without_the_keys_readers_index_counts_as_not_stored(tmp_path, caplog, content):
    store = SweepStore.open(tmp_path, "s")
    store.write_trial(_record("a"))
    damaged = store.trial_path("b")
    damaged.write_text(json.dumps({**content, "trial_id": "b"}))
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        assert store.finished_ids() == {"a"}  # a resume retrains b
        assert [r["trial_id"] for r in store.load_trials()] == ["a"]
        assert trials_frame(store.load_trials(["a", "b"])).height == 1
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and str(damaged) in warned[0] and "is not a complete trial record" in warned[0]
    assert "a resume of the sweep retrains it" in warned[0]
    store.write_trial(_record("b", seed=2))  # the resume replaces it
    assert store.finished_ids() == {"a", "b"}


def test_a_resume_warns_about_a_damaged_record_once(tmp_path, caplog):
    """The driver reads the stored trials before the run (pre-flight) and again once it holds the folder; the
    second read used a new store, so the same damaged file was warned about twice."""
    from le_ray.runners.repeats import Preflight

    SweepStore.open(tmp_path, "s").write_trial(_record("a"))
    (tmp_path / "s" / "trials" / "b.json").write_text(json.dumps({"trial_id": "b"}))
    read_before = SweepStore(tmp_path / "s")
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        assert read_before.finished_ids() == {"a"}
        pre = Preflight(None, tmp_path, "s", True, None, None, store=read_before)
        opened = pre.open_store()
        assert opened.finished_ids() == {"a"}
        assert Preflight(None, tmp_path, "s", True, None, None).open_store().finished_ids() == {"a"}
    assert opened is read_before
    assert len([r for r in caplog.records if "b.json" in r.getMessage()]) == 2  # the last line's new store warns


def test_a_preflight_store_of_a_new_folder_is_created_when_opened(tmp_path):
    pre = _preflight_of(tmp_path, "fresh")
    assert not (tmp_path / "fresh").exists()
    store = pre.open_store()
    assert (store.root / "trials").is_dir() and (store.root / "failures").is_dir()
    with pytest.raises(ResultsError, match="expected a plain folder name"):
        _preflight_of(tmp_path, "../escape").open_store()


def _preflight_of(results_dir, name):
    from le_ray.runners.repeats import Preflight

    return Preflight(None, results_dir, name, False, None, None, store=SweepStore(results_dir / name))


def test_the_report_counts_a_record_without_its_keys_as_missing(tmp_path, caplog):
    """The audit's case: ``{"trial_id": ...}`` alone made the report and the resume crash with KeyError: 'loss'."""
    import numpy as np

    from le_ray.report.sweep import build_report
    from tests.test_sweep_report import QUICK_RATES, _stored_sweep

    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, records = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "plots.enabled=false"],
                                   QUICK_RATES, factors, ["0", "1", "2", "3"], rows=3000)
    first = records[0]
    store.trial_path(first["trial_id"]).write_text(json.dumps({"trial_id": first["trial_id"]}))
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        text = build_report(store.root, echo=lambda *a: None).read_text()
    assert any(first["trial_id"] in r.getMessage() and "retrains it" in r.getMessage() for r in caplog.records)
    assert f"| trials | {len(records) - 1} of {len(records)} stored, 0 failed |" in text
    assert first["trial_id"] not in store.finished_ids()


# --------------------------------------------------------------------------- 2: the sweep folder removed


def test_writes_into_a_removed_sweep_folder_are_refused_and_never_recreate_it(tmp_path):
    store = SweepStore.open(tmp_path, "s")
    store.write_trial(_record("a"))
    shutil.rmtree(store.root)
    writes = [lambda: store.write_trial(_record("b")), lambda: store.write_failure("b", {"error": "x"}),
              lambda: store.write_json("manifest.json", {}), lambda: store.record_run({}, [])]
    for write in writes:
        with pytest.raises(ResultsError) as refused:
            write()
        assert f"the sweep folder {str(store.root)!r} was removed while the sweep ran" in str(refused.value)
        assert refused.value.removed and not store.root.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 3: writes the file system refuses


def _refusing_mkstemp(monkeypatch, folder_name, code):
    """mkstemp as in a read-only (EPERM, EACCES) or full (ENOSPC) folder named ``folder_name``; others as usual."""
    real = tempfile.mkstemp

    def mkstemp(prefix="", dir=None, **kwargs):
        if dir is not None and Path(dir).name == folder_name:
            raise OSError(code, __import__("os").strerror(code), str(Path(dir) / f"{prefix}x1z2y3"))
        return real(prefix=prefix, dir=dir, **kwargs)
    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOSPC])
def test_a_failed_atomic_write_names_the_target_not_the_temp_file(tmp_path, monkeypatch, code):
    target = tmp_path / "ro" / "t.json"
    target.parent.mkdir()
    _refusing_mkstemp(monkeypatch, "ro", code)
    with pytest.raises(OSError) as failed:
        atomic_write_json(target, {"v": 1})
    assert failed.value.errno == code and failed.value.filename == str(target) and ".tmp-" not in str(failed.value)

    def full(fd):  # the disk fills while the file is flushed
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*/ok/t\.json'$"):
        atomic_write_json(tmp_path / "ok" / "t.json", {"v": 1})
    assert list((tmp_path / "ok").iterdir()) == []  # the temp file is gone


def _fake_ray(monkeypatch, records):
    """Ray's calls in run_sweep stood in for: one future per record, finished in order; cancelled refs recorded."""
    import ray

    import le_ray.sweep.driver as driver

    specs = [SimpleNamespace(trial_id=r["trial_id"], loss=r["loss"], seed=r["seed"]) for r in records]
    futures = {f"ref{i}": spec for i, spec in enumerate(specs)}
    by_ref = {f"ref{i}": r for i, r in enumerate(records)}
    cancelled = []
    monkeypatch.setattr(driver, "_submit", lambda cfg, plan, fault, refs: dict(futures))
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns=1, timeout=None:  # once cancelled, none ends
                        ([], list(refs)) if cancelled else (list(refs)[:1], list(refs)[1:]))
    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: by_ref[ref])
    monkeypatch.setattr(ray, "cancel", lambda ref, force=False: cancelled.append(ref))
    return SimpleNamespace(specs=specs, pending=specs), cancelled


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOSPC])
def test_a_store_write_failing_mid_sweep_cancels_the_rest_and_names_the_trial_and_folder(tmp_path, monkeypatch,
                                                                                          code):
    from le_ray.sweep.driver import run_sweep

    store = SweepStore.open(tmp_path, "s")
    records = [_record(f"bce-s{s}-0123456789abcdef", seed=s) for s in (42, 43, 44, 45)]
    plan, cancelled = _fake_ray(monkeypatch, records)
    echoed = []

    def echo(line, live=False):  # the trials folder turns read-only (or fills) once the first trial is stored
        echoed.append(line)
        if line.startswith("[1/4]"):
            _refusing_mkstemp(monkeypatch, "trials", code)
    with pytest.raises(UserError) as failed:
        run_sweep(None, store, plan, echo=echo)
    message = str(failed.value)
    assert isinstance(failed.value, ResultsError) and ".tmp-" not in message
    assert message.startswith(f"cannot write trial {records[1]['trial_id']} into {str(store.trials_dir)!r}: "
                              f"{__import__('os').strerror(code)}; the sweep stopped and cancelled its 2 outstanding")
    assert f"1 of 4 trials are stored in {str(store.root)!r}" in message and "rerun the same command" in message
    assert cancelled == ["ref2", "ref3"] and store.finished_ids() == {records[0]["trial_id"]}


def test_a_sweep_folder_removed_mid_sweep_stops_the_sweep_without_recreating_it(tmp_path, monkeypatch):
    from le_ray.sweep.driver import run_sweep

    store = SweepStore.open(tmp_path, "s")
    records = [_record(f"bce-s{s}-0123456789abcdef", seed=s) for s in (42, 43, 44)]
    plan, cancelled = _fake_ray(monkeypatch, records)

    def echo(line, live=False):
        if line.startswith("[1/3]"):
            shutil.rmtree(store.root)
    with pytest.raises(ResultsError) as failed:
        run_sweep(None, store, plan, echo=echo)
    assert str(failed.value) == (
        f"cannot write trial {records[1]['trial_id']}: the sweep folder {str(store.root)!r} was removed while the "
        "sweep ran (it is not recreated without its config); the sweep stopped and cancelled its 1 outstanding "
        "trial(s); its trials went with the folder: start the sweep again")
    assert cancelled == ["ref2"] and not store.root.exists()


# --------------------------------------------------------------------------- 4: paths that are not UTF-8


def test_a_folder_name_that_is_not_utf8_is_refused_naming_the_flag():
    with pytest.raises(ResultsError, match=r"--name 'bad\\udcffname': expected a plain folder name, but it is not "
                                           "valid UTF-8"):
        plain_folder_name("bad\udcffname")
    with pytest.raises(ResultsError, match="--output-dir"):
        plain_folder_name("x\udcff", "--output-dir")


def test_a_results_dir_that_is_not_utf8_is_refused_naming_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.delenv("LE_RAY_RESULTS", raising=False)
    for cli, config, source in ((f"{tmp_path}/dir\udcff", "results", "--results-dir"),
                                (None, f"{tmp_path}/r\udcff", "output.results_dir")):
        with pytest.raises(ResultsError, match=f"^{source} .*: the results folder's path is not valid UTF-8"):
            resolve_results_dir(cli, config)
    monkeypatch.setenv("LE_RAY_RESULTS", f"{tmp_path}/e\udcff")
    with pytest.raises(ResultsError, match="^LE_RAY_RESULTS "):
        resolve_results_dir(None, "results")
    monkeypatch.delenv("LE_RAY_RESULTS")
    odd = tmp_path / "cwd\udcff"
    odd.mkdir()
    monkeypatch.chdir(odd)  # a relative folder under a working folder whose name is not UTF-8
    with pytest.raises(ResultsError, match="^output.results_dir .*cwd"):
        resolve_results_dir(None, "results")
    assert sorted(p.name for p in tmp_path.iterdir()) == [odd.name]


@pytest.mark.parametrize("flag", ["--name", "--results-dir"])
def test_repeats_refuses_a_name_or_results_dir_that_is_not_utf8_before_any_work(tmp_path, monkeypatch, capsys,
                                                                                 flag):
    import le_ray.runners.repeats as repeats

    monkeypatch.setattr(repeats, "plan_trials", lambda *a, **k: pytest.fail("the data were prepared"))
    value = "bad\udcffname" if flag == "--name" else f"{tmp_path}/dir\udcff"
    argv = ["--profile", "small_net", "--name", "ok", "--results-dir", str(tmp_path), flag, value]
    assert repeats.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"le-ray: {flag} ") and "not valid UTF-8" in err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 5: an existing, unwritable folder


def test_an_existing_folder_that_is_not_writable_is_not_said_to_be_uncreatable(tmp_path, monkeypatch):
    import os

    existing = tmp_path / "ro"
    existing.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **k: Path(path) != existing and real(path, mode, **k))
    with pytest.raises(ResultsError, match=f"^results folder {str(existing)!r} exists but is not writable$"):
        nearest_writable(existing)
    with pytest.raises(ResultsError, match=f"cannot be created: {str(existing)!r} is not writable"):
        nearest_writable(existing / "new")

    def refused(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(kwargs.get("dir")))
    monkeypatch.setattr(atomic.tempfile, "NamedTemporaryFile", refused)
    with pytest.raises(PermissionError, match=f"^results folder {str(existing)!r} exists but is not writable: "
                                              "Permission denied$"):
        check_writable(existing, "results folder")
