"""prepare_data: splits, standardisation, base rates, balancing, determinism."""

import math

import numpy as np
import pytest

from le_ray.config import load_config
from le_ray.data.prepare import (balance_by_condition, le_base_rates, le_evaluation_rates, prepare_data, split_train_eval,
                                 standardize)


def _cfg(*sets):
    return load_config(sets=["synthetic.samples_per_condition=5000", *sets])


def test_split_sizes_and_disjointness():
    train, ev = split_train_eval(1000, 0.9, seed=3)
    assert len(train) == 900 and len(ev) == 100
    assert np.intersect1d(train, ev).size == 0 and np.all(np.diff(train) > 0)


def test_prepare_is_deterministic_and_standardised():
    a, b = prepare_data(_cfg()), prepare_data(_cfg())
    np.testing.assert_array_equal(a.train.x_num, b.train.x_num)
    np.testing.assert_array_equal(a.eval.y, b.eval.y)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != prepare_data(_cfg(), seed=99).fingerprint
    np.testing.assert_allclose(a.train.x_num.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.train.x_num.std(0), 1, atol=1e-4)
    n_labelled = len(a.train) + len(a.eval)
    assert len(a.train) == math.floor(0.9 * n_labelled)
    assert a.train.x_num.dtype == np.float32 and a.train.cond.dtype == np.int32
    # eval/test use the train statistics, not their own
    raw = prepare_data(_cfg("data.standardize=false"))
    for name in ("eval", "test"):
        expected = (getattr(raw, name).x_num - a.numeric_mean) / a.numeric_std
        np.testing.assert_allclose(getattr(a, name).x_num, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(raw.train.x_num.mean(0), a.numeric_mean, rtol=1e-5)


def test_standardize_constant_column():
    x = np.column_stack([np.ones(10), np.arange(10)]).astype(np.float32)
    mean, std = standardize(x)
    assert std[0] == 1.0 and mean[0] == 1.0
    mean, std = standardize(x, enabled=False)
    assert np.all(mean == 0) and np.all(std == 1)


def test_train_condition_rates_and_true_rates():
    d = prepare_data(_cfg())
    for j in range(d.num_conditions):
        m = d.train.cond == j
        assert d.train_condition_counts[j] == m.sum()
        assert d.train_condition_rates[j] == pytest.approx(d.train.y[m].mean())
        assert d.true_base_rates[j] == pytest.approx(d.train.p_true[m].mean())


def test_le_base_rates_priors():
    d = prepare_data(_cfg())
    n, pos = d.train_condition_counts, d.train_condition_positives
    np.testing.assert_allclose(le_base_rates(d, prior="jeffreys"), (pos + 0.5) / (n + 1))
    np.testing.assert_allclose(le_base_rates(d, prior="none"), pos / n)
    np.testing.assert_allclose(le_base_rates(d, prior="jeffreys", use_true_rates=True), d.true_base_rates)


def test_le_evaluation_rates_take_the_eval_splits_own_truth():
    """The earlier system's eval LE on synthetic data with true rates: the eval split's mean true probability per
    condition; the training rates for the train split, without the truth, or with use_true_rates off."""
    d = prepare_data(_cfg())
    own = le_evaluation_rates(d, "eval", prior="jeffreys", use_true_rates=True)
    for j in range(d.num_conditions):
        assert own[j] == pytest.approx(d.eval.p_true[d.eval.cond == j].mean(), rel=1e-12)
    assert not np.allclose(own, d.true_base_rates, rtol=1e-9, atol=0)  # two samples of the same rates
    np.testing.assert_array_equal(le_evaluation_rates(d, "train", prior="jeffreys", use_true_rates=True),
                                  d.true_base_rates)
    np.testing.assert_array_equal(le_evaluation_rates(d, "eval", prior="jeffreys"), le_base_rates(d, prior="jeffreys"))


def test_zero_positive_condition_warns_with_prior_none():
    # condition mean 1e-7 → with 5000 rows almost surely no positives in the last condition
    d = prepare_data(_cfg("synthetic.uniform_log10_means=[-2, -2, -2, -7]", "synthetic.uniform_log10_std=0.01"))
    assert d.train_condition_positives[3] == 0
    with pytest.warns(RuntimeWarning, match=r"conditions \['3'\]"):
        rates = le_base_rates(d, prior="none")
    assert rates[3] == 0
    assert 0 < le_base_rates(d, prior="jeffreys")[3] < 1e-3


def test_balance_by_condition_equal_counts():
    cond = np.array([0] * 10 + [1] * 3 + [2] * 5, dtype=np.int32)
    keep = balance_by_condition(cond, seed=1)
    assert np.bincount(cond[keep]).tolist() == [3, 3, 3]
    np.testing.assert_array_equal(keep, balance_by_condition(cond, seed=1))
    assert np.all(np.diff(keep) > 0)


def test_reweighting_only_on_train():
    with pytest.warns(FutureWarning):
        d = prepare_data(_cfg("synthetic.reweighting.enabled=true", "synthetic.condition_mode=random"))
    assert set(np.unique(d.train.w)) <= {1.0, 11.0} and (d.train.w > 1).any()
    assert np.all(d.eval.w == 1) and np.all(d.test.w == 1)


def test_no_test_set_when_disabled():
    assert prepare_data(_cfg("data.use_test_set=false")).test is None


def test_prepare_cli_json_on_avazu_sample(tmp_path, capsys):
    import json

    from le_ray.runners.prepare import main

    from .sample_data import require_sample

    train = require_sample("avazu", "avazu_sample.csv")
    out = tmp_path / "prep.json"
    code = main(["--profile", "avazu_top6_by_count", "--set", f"ctr.datasets.avazu.train_path={train}",
                 "--set", "ctr.datasets.avazu.test_path=null", "--set", f"output.dir={tmp_path}",
                 "--json", str(out)])
    assert code == 2  # batches of 16,384 / 25,000 on 6,183 train rows: one step per epoch, refused as a sweep would be
    data = json.loads(out.read_text())  # the JSON is written all the same
    assert {f["code"] for f in data["audit"]["findings"] if f["severity"] == "error"} == {"few_steps"}
    assert data["source_rows"] == 41557
    values = [c["value"] for c in data["conditions"]]
    assert values == ["18993", "20596", "21611", "15701", "15708", "15707"]  # PROVENANCE.md top-6 by count
    assert [c["rows"] for c in data["conditions"]] == [1496, 1481, 1336, 1254, 1185, 1145]
    assert data["kept_rows"] == sum(c["rows"] for c in data["conditions"])
    audited = data["audit"]["conditions"]  # after balancing: every ad down to the smallest (1,145 rows)
    assert sum(c["train_rows"] + c["eval_rows"] for c in audited) == data["labelled_rows"] == 6 * 1145
    out_text = capsys.readouterr().out
    assert "timings" in data and "18993" in out_text
    assert f"audit, row counts and timings (JSON): {out}" in out_text  # and where it went is said
    assert out_text.startswith("avazu: 41,557 source rows, 7,897 kept by the filter, 6,870 after balancing")
    assert (tmp_path / "prepare" / "avazu" / "top_k" / "filter_stats.png").exists()


def test_prepare_of_synthetic_rows_speaks_of_generated_rows_not_a_filter(tmp_path, capsys):
    """Synthetic data has no filter; '1,000,000 source rows, 900,000 kept by the filter' described the test hold-out."""
    from le_ray.runners.prepare import main

    main(["--profile", "small_net", "--set", "synthetic.samples_per_condition=500", "--set", "data.use_test_set=true",
          "--set", "plots.enabled=false", "--output-dir", str(tmp_path)])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("synthetic: 2,000 generated rows, 1,800 after balancing -> train") and "filter" not in first


def test_prepare_cli_missing_file_names_key(tmp_path, capsys):
    from le_ray.runners.prepare import main

    code = main(["--profile", "avazu_top6_by_count", "--set", f"ctr.datasets.avazu.train_path={tmp_path}/none.csv"])
    assert code == 2
    err = capsys.readouterr().err
    assert "ctr.datasets.avazu.train_path" in err and "none.csv" in err


def test_prepare_exits_2_on_an_undersized_csv_and_its_advice_makes_it_pass(tmp_path, capsys):
    """A 3,000-row CSV of one's own with the avazu_sample profile: too few optimiser steps, so exit 2, and the
    audit's one-liner (printed as a shell word) turns it into a sound experiment (exit 0)."""
    import re
    import shlex

    import polars as pl

    from le_ray.runners.prepare import main

    from .sample_data import require_sample

    small = tmp_path / "mine.csv"
    pl.read_csv(require_sample("avazu", "avazu_sample.csv"), infer_schema=False).head(3000).write_csv(small)
    argv = ["--profile", "avazu_sample", "--set", f"ctr.datasets.avazu.train_path={small}", "--set",
            "plots.enabled=false"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "few_steps" in captured.err and "ERROR [few_steps]" in captured.out
    advice = {shlex.split(m)[0] for m in re.findall(r"--set ('training\.by_loss\.\*\.batch_size=\d+')", captured.out)}
    assert len(advice) == 1
    assert main([*argv, "--set", advice.pop()]) == 0
    assert "ERROR" not in capsys.readouterr().out


def test_prepare_refuses_a_folder_as_json_before_preparing(tmp_path, capsys, monkeypatch):
    import le_ray.runners.prepare as prepare_runner

    def never(cfg):
        raise AssertionError("the data were prepared before --json was checked")
    monkeypatch.setattr(prepare_runner, "prepare_with_source", never)
    assert prepare_runner.main(["--profile", "quickstart", "--json", str(tmp_path)]) == 2
    assert "is a folder; expected the name of a file" in capsys.readouterr().err


def test_prepare_puts_the_filter_plot_under_output_dir(tmp_path, capsys):
    from le_ray.runners.prepare import main

    from .sample_data import require_sample

    train = require_sample("avazu", "avazu_sample.csv")
    main(["--profile", "avazu_sample", "--set", f"ctr.datasets.avazu.train_path={train}", "--output-dir",
          str(tmp_path / "o"), "--set", "plots.dpi=30"])
    assert list((tmp_path / "o" / "prepare" / "avazu").glob("*/filter_stats.png"))
