"""Test-only fault injection (le_ray.sweep.faults): the barrier that makes concurrency a condition, not a race."""

import threading
import time

from le_ray.sweep import faults


def test_the_barrier_holds_each_party_until_all_have_arrived(tmp_path):
    env = {f"{faults.PREFIX}_BARRIER": "3", f"{faults.PREFIX}_DIR": str(tmp_path)}
    passed = []

    def party(seed):
        faults.before_trial(env, "bce", seed)
        passed.append((seed, len(list(tmp_path.glob("arrived-*")))))

    threads = [threading.Thread(target=party, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("arrived-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert passed == []  # two of three arrived: both still wait
    party(3)
    for t in threads:
        t.join(30)
    assert sorted(s for s, _ in passed) == [1, 2, 3] and all(n == 3 for _, n in passed)


def test_a_party_alone_leaves_at_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(faults, "BARRIER_DEADLINE_S", 0.2)
    started = time.monotonic()
    faults.before_trial({f"{faults.PREFIX}_BARRIER": "2", f"{faults.PREFIX}_DIR": str(tmp_path)}, "bce", 1)
    assert time.monotonic() - started >= 0.2 and (tmp_path / "arrived-bce-1").is_file()
