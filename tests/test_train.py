"""Training loop: schedules, curves, determinism, non-finite guard, diagnostics."""

import math

import numpy as np
import pytest
import torch

from le_ray.config import load_config, training_for
from le_ray.data.arrays import Split
from le_ray.data.batches import to_tensors
from le_ray.data.prepare import le_base_rates, prepare_data
from le_ray.training.model import build_model
from le_ray.training.objectives import make_objective
from le_ray.training.loop import (NonFiniteLossError, base_rate_entropy, bce_sum, build_optimizer, evaluate_loss,
                                 normalised_entropy, predict_logits, train_model)

CPU = torch.device("cpu")


def _setup(loss="bce", *sets):
    cfg = load_config(profile="small_net", sets=["synthetic.samples_per_condition=2000", "training.epochs=2",
                                                 "training.batch_size=1000", "training.eval_batch_size=700",
                                                 "training.by_loss={}", *sets])  # general keys apply to every loss
    data = prepare_data(cfg)
    settings = training_for(cfg, loss)
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), dtype=torch.float32)
    torch.manual_seed(0)
    model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                        cat_vocab_sizes=data.cat_vocab_sizes)
    make = lambda h: make_objective(loss, settings, base_rates=rates, num_conditions=data.num_conditions,  # noqa
                                    device=CPU, dtype=torch.float32, with_history=h)
    tr = to_tensors(data.train, device=CPU, dtype=torch.float32)
    ev = to_tensors(data.eval, device=CPU, dtype=torch.float32)
    return cfg, data, settings, model, make, tr, ev


@pytest.mark.parametrize("loss", ["bce", "localized_entropy", "focal"])
def test_curves_have_epoch_zero_and_loss_decreases(loss):
    _, _, settings, model, make, tr, ev = _setup(loss, "training.lr=0.01")
    torch.manual_seed(0)
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    assert out.curves.epoch == [0, 1, 2]
    assert all(math.isfinite(v) for v in out.curves.train_loss + out.curves.eval_loss)
    assert out.curves.eval_loss[-1] < out.curves.eval_loss[0]
    assert out.steps == 2 * tr.num_batches(settings.batch_size)
    assert out.samples_seen == 2 * len(tr)


def test_same_seed_same_curves():
    runs = []
    for _ in range(2):
        _, _, settings, model, make, tr, ev = _setup("localized_entropy", "training.cross_batch.enabled=true")
        runs.append(train_model(model, tr, ev, make(True), make(False), settings, seed=4).curves.as_dict())
    assert runs[0] == runs[1]


def test_lr_decay_per_step_and_two_groups():
    _, _, settings, model, make, tr, ev = _setup("bce", "training.lr_decay=0.5", "training.lr_category=0.1",
                                                 "training.lr_category_decay=0.9", "training.epochs=1")
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    steps = out.steps
    assert out.final_lrs[0] == pytest.approx(settings.lr * 0.5 ** steps)
    assert out.final_lrs[1] == pytest.approx(0.1 * 0.9 ** steps)


def test_lr_zero_after_epochs_freezes_base_group_only():
    _, _, settings, model, make, tr, ev = _setup("bce", "training.lr_category=0.05", "training.lr_zero_after_epochs=1")
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    assert out.final_lrs[0] == 0.0 and out.final_lrs[1] > 0


def test_single_group_without_lr_category():
    _, _, settings, model, *_ = _setup("bce")
    assert len(build_optimizer(model, settings).param_groups) == 1


def test_train_loss_is_weight_averaged_over_batches():
    # lr ~0 → the model never changes; with dropout 0 train and eval modes agree, so the
    # B-weighted average of batch means equals the whole-split mean (the epoch-0 train loss)
    _, _, settings, model, make, tr, ev = _setup("bce", "training.lr=1e-30", "training.epochs=1",
                                                 "model.dropout=0", "training.batch_size=300")
    assert len(tr) % 300 != 0  # a short last batch makes plain batch averaging differ
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    assert out.curves.train_loss[1] == pytest.approx(out.curves.train_loss[0], rel=1e-5)


def test_eval_every_n_batches_curve_and_callback():
    _, _, settings, model, make, tr, ev = _setup("bce", "training.eval_every_n_batches=3")
    seen = []
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1,
                      on_batch_eval=lambda step, p: seen.append((step, len(p))))
    total = out.steps
    assert out.curves.batch_step == list(range(3, total + 1, 3))
    assert len(out.curves.batch_eval_loss) == len(out.curves.batch_step)
    assert seen and seen[0] == (3, len(ev))


@pytest.mark.parametrize("loss", ["bce", "localized_entropy"])
def test_last_evaluation_is_the_trained_models_and_matches_a_fresh_one(loss):
    # the trial's final evaluation reuses the last epoch's eval logits: they must be the trained model's, bit
    # for bit, and the recorded eval loss / NE must be what the split-level functions give for them
    _, data, settings, model, make, tr, ev = _setup(loss)
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    fresh = predict_logits(model, ev, settings.eval_batch_size)
    assert out.final_eval_logits is not None and torch.equal(out.final_eval_logits, fresh)
    assert out.curves.eval_loss[-1] == evaluate_loss(model, ev, make(False), settings.eval_batch_size,
                                                     loss_batch_size=settings.batch_size)
    bce = float(bce_sum(fresh, ev.whole()))
    assert out.curves.eval_ne[-1] == normalised_entropy(bce, base_rate_entropy(ev))
    unlabelled = to_tensors(data.eval.without_labels(), device=CPU, dtype=torch.float32)
    assert train_model(model, tr, unlabelled, make(True), make(False), settings, seed=1).final_eval_logits is None


def test_the_eval_le_curve_is_on_the_train_curves_scale():
    """The eval LE was normalised over the whole eval split at once: ~N_eval / batch size (here 3.6×) below the
    train curve, which averages per-batch LE. Both now average over batches of the training batch size, as the
    earlier system's evaluate(); an untrained model (lr ~0, no dropout) gives both nearly the same value."""
    _, _, settings, model, make, tr, ev = _setup("localized_entropy", "training.lr=1e-30", "model.dropout=0",
                                                 "training.batch_size=200", "training.epochs=1")
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    train0, eval0 = out.curves.train_loss[0], out.curves.eval_loss[0]
    assert eval0 == pytest.approx(train0, rel=0.25)
    whole = evaluate_loss(model, ev, make(False), settings.eval_batch_size)  # one normalisation over 720 rows
    assert whole < eval0 / 2.5
    assert eval0 == evaluate_loss(model, ev, make(False), settings.eval_batch_size, loss_batch_size=200)


def test_empty_and_unlabelled_eval_give_nan():
    _, _, settings, model, make, tr, ev = _setup("bce")
    empty = Split(np.zeros((0, tr.x_num.shape[1]), np.float32), np.zeros((0, 0), np.int32), np.zeros(0, np.int32),
                  np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert math.isnan(evaluate_loss(model, to_tensors(empty, device=CPU, dtype=torch.float32), make(False), 10))
    assert math.isnan(evaluate_loss(model, None, make(False), 10))
    out = train_model(model, tr, to_tensors(empty, device=CPU, dtype=torch.float32), make(True), make(False),
                      settings, seed=1)
    assert all(math.isnan(v) for v in out.curves.eval_loss)


def test_non_finite_loss_names_epoch_batch_and_conditions():
    _, data, settings, model, make, tr, ev = _setup("localized_entropy", "training.lr=1e30")
    with torch.no_grad():
        model.net[-1].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 1; conditions involved \(ids\): \[0, 1, 2, 3\]"):
        train_model(model, tr, ev, make(True), make(False), settings, seed=1)


def test_zero_positive_condition_with_raw_rates_explodes_jeffreys_does_not():
    cfg, data, settings, model, make, tr, ev = _setup("localized_entropy", "synthetic.uniform_log10_means=[-1,-1,-1,-9]",
                                                      "synthetic.uniform_log10_std=0.01")
    assert data.train_condition_positives[3] == 0
    raw = torch.tensor(data.train_condition_rates, dtype=torch.float64)  # what prior "none" gives
    jeff = torch.tensor(le_base_rates(data, prior="jeffreys"), dtype=torch.float64)
    tr64 = to_tensors(data.train, device=CPU, dtype=torch.float64)
    model = model.double()
    obj = lambda r: make_objective("localized_entropy", settings, base_rates=r, num_conditions=4,  # noqa
                                   device=CPU, dtype=torch.float64, with_history=False)
    assert evaluate_loss(model, tr64, obj(raw), 1000) > 1e3 * evaluate_loss(model, tr64, obj(jeff), 1000)


def test_grad_sq_diagnostics_shapes_and_ratio():
    _, data, settings, model, make, tr, ev = _setup("bce", "training.epochs=1")
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1, track_grad_sq=True)
    g = out.grad_sq
    assert len(g["count"]) == data.num_conditions and g["count"].sum() == len(tr)
    np.testing.assert_allclose(g["ratio_raw"], g["le_mse"] / g["bce_mse"])
    # LE rescales a condition's BCE gradient by 1/den_j: rarer conditions (small den) get larger ratios
    assert np.all(np.isfinite(g["ratio_normalised"]))
    assert g["ratio_raw"][3] > g["ratio_raw"][0]


def test_normalised_entropy_curves_share_one_scale():
    from le_ray.training.loop import base_rate_entropy, normalised_entropy
    _, _, settings, model, make, tr, ev = _setup("localized_entropy", "training.lr=0.01")
    p = float((tr.w * tr.y).sum() / tr.w.sum())
    assert base_rate_entropy(tr) == pytest.approx(len(tr) * -(p * math.log(p) + (1 - p) * math.log(1 - p)))
    assert math.isnan(normalised_entropy(1.0, 0.0))
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    c = out.curves
    assert len(c.train_ne) == len(c.eval_ne) == len(c.epoch) == 3
    # NE is per row: the untrained model's train and eval NE agree closely; LE's raw values do not
    assert c.train_ne[0] == pytest.approx(c.eval_ne[0], rel=0.2)
    assert c.eval_ne[-1] < c.eval_ne[0]


def test_bf16_autocast_trains_and_keeps_float32_losses():
    from le_ray.training.loop import forward
    _, _, settings, model, make, tr, ev = _setup("bce", "training.amp=\"bf16\"", "training.lr=0.01")
    batch = next(tr.sequential(64))
    assert forward(model, batch, "bf16").dtype == torch.float32
    assert not torch.equal(forward(model, batch, "bf16"), forward(model, batch, "off"))
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=1)
    assert all(math.isfinite(v) for v in out.curves.eval_loss) and out.curves.eval_loss[-1] < out.curves.eval_loss[0]
