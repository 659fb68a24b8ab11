"""The tiny tune config and the Ray stand-in shared by the tune tests (tests/test_tune.py,
tests/test_tune_resume.py)."""

TINY = ["synthetic.samples_per_condition=600", "synthetic.uniform_log10_means=[-0.8,-1,-1.2,-1.4]",
        "training.epochs=2", "training.loss_mode=both", "training.by_loss={}", "training.batch_size=128",
        "repeats.num_runs=2", "repeats.bootstrap_samples=100", "repeats.min_steps_per_epoch=1",
        "repeats.min_eval_clicks=1", "ray.cpus_per_trial=1", "plots.dpi=40", "tune.num_samples=2",
        'tune.space.bce.lr={"loguniform": [0.001, 0.01]}', 'tune.space.le.lr={"loguniform": [0.001, 0.01]}']


def tiny_args(sets=TINY):
    return ["--profile", "small_net", *[a for item in sets for a in ("--set", item)]]


class _RayStarted(Exception):
    pass


def _no_ray(monkeypatch):
    import le_ray.runners.tune as tune

    def connect(cfg, stop):
        raise _RayStarted
    monkeypatch.setattr(tune, "connect_ray", connect)
    return tune
