"""Resuming `le-ray tune` (le_ray.runners.tune_resume): the short resume line a stopped tune prints, `--name X`
alone resuming the stored tune's command, and the refusal of a rerun with another config or of a repeats sweep's
name."""

import pytest

from le_ray.config import load_config

from .tune_cases import TINY, _RayStarted, _no_ray, tiny_args


def test_a_stop_while_ray_starts_ends_tune_with_the_resume_command(tmp_path, monkeypatch, capsys):
    """The stop handlers are on before ray.init: a Ctrl-C while Ray starts stops the tune like one mid-trial."""
    import os
    import signal
    import time

    import le_ray.runners.tune as tune

    def connect(cfg, stop):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while stop.signum is None and time.monotonic() < deadline:
            time.sleep(0.01)
    monkeypatch.setattr(tune, "connect_ray", connect)
    monkeypatch.setattr(tune, "_tune_and_test", lambda *a: pytest.fail("the tune went on after the stop"))
    assert tune.main([*tiny_args(), "--results-dir", str(tmp_path), "--name", "t", "--allow-unsound"]) == 130
    out = capsys.readouterr().out
    assert f"stopped (SIGINT); resume with: le-ray tune --name t --results-dir {tmp_path} --allow-unsound\n" in out


def test_the_short_resume_line_of_a_stopped_tune_resumes_it(tmp_path, monkeypatch, capsys):
    """Before, a stop printed the whole `python -m le_ray.tune --profile ... --set ... --name t` command, though
    `le-ray tune --name t` resumes a stored tune with the command it stores; and a stop while Ray started left no
    stored command, so that short form was refused ('no stored sweep')."""
    import shlex

    from le_ray.sweep.driver import StopRequested

    tune = _no_ray(monkeypatch)
    full = [*tiny_args(), "--results-dir", str(tmp_path), "--name", "t"]

    def stopped(cfg, stop):
        raise StopRequested(2)
    monkeypatch.setattr(tune, "connect_ray", stopped)
    assert tune.main(full) == 130
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == f"stopped (SIGINT); resume with: le-ray tune --name t --results-dir {tmp_path}"
    ran = []
    monkeypatch.setattr(tune, "connect_ray", lambda cfg, stop: None)
    monkeypatch.setattr(tune, "_tune_and_test", lambda args, argv, cfg, *rest: ran.append((argv, cfg)) or 0)
    assert tune.main(shlex.split(line.split("resume with: ")[1])[2:]) == 0  # `le-ray tune` runs this main
    argv, cfg = ran[0]
    assert argv[:2] == ["--profile", "small_net"] and cfg.tune.num_samples == 2  # the stored command's config


def test_a_tune_rerun_with_another_search_space_is_refused(tmp_path):
    from le_ray.config import to_dict
    from le_ray.errors import ResultsError
    from le_ray.runners.tune import TUNE_DIR, _check_resume
    from le_ray.atomic import atomic_write_json

    cfg = load_config(profile="small_net", sets=TINY)
    atomic_write_json(tmp_path / "t" / TUNE_DIR / "config.json", {"config": to_dict(cfg), "argv": []})
    other = load_config(profile="small_net", sets=[*TINY, 'tune.space.bce.lr={"loguniform": [0.002, 0.02]}'])
    _check_resume(tmp_path / "t", other)  # nothing searched or trained yet (every sample failed): the fix may run
    atomic_write_json(tmp_path / "t" / TUNE_DIR / "bce.json", {"loss": "bce", "samples": []})  # a stored search
    _check_resume(tmp_path / "t", cfg)  # the same config resumes
    for unread in ("tune.max_concurrent=1", 'tune.space.focal.lr={"loguniform": [0.001, 0.01]}'):  # focal: not compared
        _check_resume(tmp_path / "t", load_config(profile="small_net", sets=[*TINY, unread]))
    with pytest.raises(ResultsError, match=r"searches and trials of another config.*\n  - tune.space.bce.lr.loguniform"):
        _check_resume(tmp_path / "t", other)
    batch = load_config(profile="small_net", sets=[*TINY, "training.batch_size=64"])  # the searches trained at 128
    with pytest.raises(ResultsError, match=r"\n  - training.batch_size: 128 -> 64\n.*`le-ray tune --name t` "
                                           r"alone\), or start a new tune") as info:
        _check_resume(tmp_path / "t", batch)
    assert "--extend" not in str(info.value)  # le-ray tune has none


def test_tune_name_alone_resumes_the_stored_tune_and_an_unknown_name_is_refused(tmp_path, monkeypatch, capsys):
    """Before, `le-ray tune --name t` resolved the default config and was refused with a 20-key diff."""
    from le_ray.atomic import atomic_write_json
    from le_ray.config import to_dict

    tune = _no_ray(monkeypatch)
    argv = [*tiny_args(), "--results-dir", str(tmp_path), "--name", "t"]
    cfg = load_config(profile="small_net", sets=TINY)
    atomic_write_json(tmp_path / "t" / "tune" / "config.json", {"config": to_dict(cfg), "argv": argv})
    with pytest.raises(_RayStarted):  # resumed with the stored profile and sets: no refusal, on to Ray
        tune.main(["--name", "t", "--results-dir", str(tmp_path)])
    assert "le_ray tune: profile small_net" in capsys.readouterr().out
    stored = []
    monkeypatch.setattr(tune, "connect_ray", lambda cfg, stop: None)
    monkeypatch.setattr(tune, "_tune_and_test", lambda args, argv, *rest: stored.append(argv) or 0)
    assert tune.main(["--name", "t", "--results-dir", str(tmp_path)]) == 0
    assert stored[0][:2] == ["--profile", "small_net"]  # the full command is what the folder stores again
    atomic_write_json(tmp_path / "t" / "tune" / "config.json", {"config": to_dict(cfg), "argv": stored[0]})
    assert tune.main(["--name", "t", "--results-dir", str(tmp_path)]) == 0  # so a second resume by name works
    assert stored[1][:2] == ["--profile", "small_net"]
    assert tune.main(["--name", "tt", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no stored sweep 'tt'" in err and "resumes a stored tune" in err


def test_tune_name_of_a_repeats_sweep_says_what_it_is(tmp_path, monkeypatch, capsys):
    tune = _no_ray(monkeypatch)
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "config.resolved.json").write_text("{}")
    assert tune.main(["--name", "r1", "--results-dir", str(tmp_path)]) == 2
    assert "is a sweep of `le-ray repeats`, not a tune" in capsys.readouterr().err


def test_a_tune_run_reads_its_folder_through_one_store(tmp_path, monkeypatch, caplog):
    """A damaged test-trial file was warned about by each pre-flight of one run (before the searches, on a finished
    tune, before the test sweep): each built its own store. The run now hands one store to all of them."""
    tune = _no_ray(monkeypatch)
    monkeypatch.setattr(tune, "connect_ray", lambda cfg, stop: None)
    stores = []
    monkeypatch.setattr(tune, "_tune_and_test", lambda *a: stores.append(a[-1]) or 0)
    full = [*tiny_args(), "--results-dir", str(tmp_path), "--name", "t"]
    assert tune.main(full) == 0
    damaged = tmp_path / "t" / "trials" / "bce-s1-0123.json"
    damaged.write_text('{"trial_id": "bce-s1-0123"}')
    with caplog.at_level("WARNING", logger="le_ray.sweep"):
        assert tune.main(full) == 0
        assert stores[-1].finished_ids() == set()  # the test sweep's pre-flight reads the same store again
    assert len([r for r in caplog.records if str(damaged) in r.getMessage()]) == 1
