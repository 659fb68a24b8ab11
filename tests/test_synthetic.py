"""Synthetic generator: determinism, the log10-normal mapping, features, splits, reweighting."""

import math

import numpy as np
import pytest

from le_ray.config import load_config
from le_ray.data.synthetic import expected_condition_rate, generate_synthetic, reweight_negatives


def _cfg(*sets):
    return load_config(sets=["synthetic.samples_per_condition=20000", *sets]).synthetic


def test_same_seed_identical_arrays_other_seed_differs():
    a = generate_synthetic(_cfg(), seed=7)
    b = generate_synthetic(_cfg(), seed=7)
    c = generate_synthetic(_cfg(), seed=8)
    for name in ("x_num", "cond", "y", "p_true", "row_id"):
        np.testing.assert_array_equal(getattr(a.labelled, name), getattr(b.labelled, name))
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.labelled.p_true, c.labelled.p_true)


def test_per_condition_mean_matches_log10_normal_mean():
    cfg = load_config(sets=["synthetic.samples_per_condition=200000"]).synthetic
    rows = generate_synthetic(cfg, seed=3, test_split=0.0).labelled
    for j, mean in enumerate(cfg.uniform_log10_means):
        p = rows.p_true[rows.cond == j]
        # rank mapping gives exact normal quantiles, so the empirical mean is close to the closed form
        assert p.mean() == pytest.approx(expected_condition_rate(mean, cfg.uniform_log10_std), rel=0.03)
        # and the log10 quantiles follow the bell: median of log10 p ~= mean
        assert np.median(np.log10(p)) == pytest.approx(mean, abs=0.01)
        assert rows.y[rows.cond == j].mean() == pytest.approx(p.mean(), rel=0.15, abs=2e-4)


def test_rank_is_kept_from_features():
    cfg = _cfg()
    random_mode = generate_synthetic(load_config(sets=["synthetic.samples_per_condition=20000",
                                                       "synthetic.condition_mode=random"]).synthetic,
                                     seed=1, test_split=0.0).labelled
    uniform = generate_synthetic(cfg, seed=1, test_split=0.0).labelled
    # same RNG stream → same features; the mapping is monotone in the feature-driven p
    np.testing.assert_array_equal(random_mode.x_num, uniform.x_num)
    # (rows tied in the feature-driven p, e.g. clipped at 1, may be mapped in either order)
    j = (random_mode.cond == 0) & (random_mode.p_true > 0) & (random_mode.p_true < 1)
    assert j.sum() > 1000
    order = np.argsort(random_mode.p_true[j], kind="stable")
    assert np.all(np.diff(uniform.p_true[j][order]) >= 0)


def test_feature_driven_probability_formula():
    cfg = load_config(sets=["synthetic.samples_per_condition=2000", "synthetic.condition_mode=random",
                            'synthetic.numeric_features=["age", "net_worth"]']).synthetic
    out = generate_synthetic(cfg, seed=5, test_split=0.0)
    rows, par = out.labelled, out.parameters
    age, worth = rows.x_num[:, 0].astype(np.float64), rows.x_num[:, 1].astype(np.float64)
    j = rows.cond
    base = 1 / (1 + np.exp(-(np.log10(worth + 1) - par["sigmoid_mu"][j]) / par["sigmoid_s"][j]))
    pdf = lambda x, m, s: np.exp(-0.5 * ((x - m) / s) ** 2) / s  # noqa: E731  (constants cancel)
    interest = pdf(age, par["age_mu"][j], par["age_sigma"][j]) / pdf(50, par["age_mu"][j], par["age_sigma"][j])
    expected = np.clip(base * interest / par["interest_scale"][j], 0, 1)
    np.testing.assert_allclose(rows.p_true, expected, rtol=2e-5, atol=1e-7)  # x_num is float32
    assert age.min() >= 10 and age.max() < 100 and np.all(age == np.round(age))
    for key, (lo, hi, _) in {"sigmoid_mu": cfg.sigmoid_mu_range, "age_sigma": cfg.age_sigma_range}.items():
        assert np.all((par[key] >= lo) & (par[key] <= hi))


def test_noise_features_and_feature_order():
    cfg = load_config(sets=["synthetic.samples_per_condition=5000",
                            'synthetic.numeric_features=["noise_a", "age", "log10_net_worth", "noise_b"]',
                            "synthetic.noise_mean=3", "synthetic.noise_std=2"]).synthetic
    out = generate_synthetic(cfg, seed=0, test_split=0.0)
    assert out.numeric_features == ("noise_a", "age", "log10_net_worth", "noise_b")
    x = out.labelled.x_num
    assert x[:, 0].mean() == pytest.approx(3, abs=0.05) and x[:, 0].std() == pytest.approx(2, rel=0.03)
    assert x[:, 3].mean() == pytest.approx(3, abs=0.05)
    assert x[:, 1].min() >= 10


def test_test_split_is_last_part_of_a_permutation():
    cfg = _cfg()
    out = generate_synthetic(cfg, seed=2)
    n = cfg.num_conditions * cfg.samples_per_condition
    assert len(out.test) == math.floor(cfg.test_split * n)
    assert len(out.labelled) + len(out.test) == n
    assert np.intersect1d(out.labelled.row_id, out.test.row_id).size == 0
    assert generate_synthetic(cfg, seed=2, test_split=0.0).test is None


def test_reweighting_keeps_positives_and_uses_unbiased_weight():
    rows = generate_synthetic(_cfg("synthetic.condition_mode=random"), seed=4, test_split=0.0).labelled
    rate = 4.0
    with pytest.warns(FutureWarning, match="deprecated"):
        kept, w = reweight_negatives(rows, rate, seed=1)
    for j in np.unique(rows.cond):
        pos = (rows.cond == j) & (rows.y == 1)
        neg = (rows.cond == j) & (rows.y == 0)
        kept_j = kept.cond == j
        assert (kept.y[kept_j] == 1).sum() == pos.sum()
        assert (kept.y[kept_j] == 0).sum() == math.ceil(neg.sum() / (rate + 1))
    assert set(np.unique(w[kept.y == 0])) == {rate + 1}
    assert np.all(w[kept.y == 1] == 1)
    # weighted negative count estimates the full count within one weight unit per condition
    assert abs(w[kept.y == 0].sum() - (rows.y == 0).sum()) <= (rate + 1) * len(np.unique(rows.cond))
