"""One driver per sweep folder (le_ray/sweep/folder_lock.py): a second holder is refused naming the first, the lock
is gone when its holder ends (even by kill -9), and `le-ray repeats` on a held folder writes nothing."""

import os
import signal
import subprocess
import sys
import time

import pytest

from le_ray.errors import ResultsError
from le_ray.sweep.folder_lock import LOCK_NAME, hold_folder, probe_folder


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_is_reusable(tmp_path):
    with hold_folder(tmp_path, "le-ray repeats"):
        with pytest.raises(ResultsError, match=rf"is being run by another le_ray driver \(pid {os.getpid()} on host "
                                               r".* since .* \(le-ray repeats\)\); wait until it ends"):
            with hold_folder(tmp_path):
                pass
    with hold_folder(tmp_path):  # released on exit
        assert (tmp_path / LOCK_NAME).is_file()
        with pytest.raises(ResultsError, match=rf"pid {os.getpid()}"):
            probe_folder(tmp_path)
    probe_folder(tmp_path)  # free: nothing raised, and the holder's record is left as it was
    assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    code = ("import sys, time; from pathlib import Path; from le_ray.sweep.folder_lock import hold_folder\n"
            f"with hold_folder(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultsError, match=f"pid {holder.pid}"):
            with hold_folder(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    deadline = time.monotonic() + 30
    while True:  # the kernel drops the flock with the process; wait on that, not a fixed time
        try:
            with hold_folder(tmp_path):
                break
        except ResultsError:
            assert time.monotonic() < deadline, "the lock outlived its killed holder"
            time.sleep(0.05)


def test_repeats_on_a_held_folder_is_refused_before_it_records_anything(tmp_path, capsys):
    from le_ray.runners.repeats import main
    from le_ray.sweep.store import SweepStore

    argv = ["--profile", "quickstart", "--set", "repeats.num_runs=2", "--name", "busy", "--results-dir", str(tmp_path)]
    with hold_folder(SweepStore.open(tmp_path, "busy").root):  # a driver that has just opened its new folder
        assert main(argv) == 2
    assert "is being run by another le_ray driver" in capsys.readouterr().err
    assert not (tmp_path / "busy" / "config.history").exists()


def test_a_resume_of_a_held_sweep_is_refused_before_its_data_are_prepared(tmp_path, capsys, monkeypatch):
    import le_ray.runners.repeats as repeats
    from le_ray.config import load_config, to_dict
    from le_ray.sweep.store import SweepStore

    argv = ["--profile", "quickstart", "--set", "repeats.num_runs=2", "--name", "busy", "--results-dir", str(tmp_path)]
    store = SweepStore.open(tmp_path, "busy")
    store.record_run(to_dict(load_config(profile="quickstart", sets=["repeats.num_runs=2"])), argv)
    monkeypatch.setattr(repeats, "plan_trials", lambda *a, **k: pytest.fail("the data were prepared"))
    with hold_folder(store.root):
        assert repeats.main(argv) == 2
    assert "is being run by another le_ray driver" in capsys.readouterr().err
