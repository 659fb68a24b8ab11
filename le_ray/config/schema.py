"""The typed shape of a resolved le_ray config: one frozen pydantic model per JSON section.

Fields carry no defaults: ``configs/default.json`` is the single place where default values live,
and every user file, profile and ``--set`` is merged over it before validation. Models are frozen,
forbid unknown keys and validate strictly from JSON (no ``"5"`` → 5 coercion; lists become tuples).
Bounds ride on the annotations; cross-field rules raise :func:`checks_failed` from an ``after``
validator. :mod:`le_ray.config.messages` turns pydantic's errors into le_ray's one-line problems
(dotted key, value, what is allowed). See the README's config reference for each key.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from le_ray.config.load import SPACE_KINDS, is_distribution, merged_training
from le_ray.config.messages import checks_failed
from le_ray.registry import LOSS_NAMES, SECTION_READER, canonical_loss, losses_of, suggest

__all__ = ["Config", "TrainingSettings", "TrainingConfig", "DeviceConfig", "DataConfig", "SyntheticConfig",
           "CtrDatasetConfig", "FilterConfig", "ModelConfig", "RepeatsConfig", "RayConfig", "EvaluationConfig",
           "CTR_DATASETS", "SOURCE_KEYS", "TRAINING_SETTING_KEYS", "OPTIMISER_SETTING_KEYS", "LOSS_SPECIFIC_KEYS",
           "FrozenDict", "Section"]

CTR_DATASETS: tuple[str, ...] = ("avazu", "criteo", "yambda")
SOURCE_KEYS: tuple[str, ...] = ("synthetic", "ctr", *CTR_DATASETS)


class FrozenDict(dict):
    """A read-only dict that still pickles (Ray ships configs to workers; mappingproxy cannot be pickled)."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("config mappings are read-only; derive a new config with --set or a profile")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


Frozen = AfterValidator(_freeze)
PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
Activation = Literal["relu", "gelu", "silu", "swish", "tanh", "leaky_relu", "elu", "selu", "sigmoid", "identity"]
Norm = Literal["none", "batch", "layer"]
DropoutRate = Annotated[float, Field(ge=0, lt=1)]
#: a per-step lr multiplier: above 1 the lr grows every step until the loss is NaN
DecayFactor = Annotated[float, Field(gt=0, le=1)]


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys are errors, strict types, every float finite (a
    ``--set`` of ``Infinity`` or ``NaN`` is refused by name before any work, whatever the key's bounds)."""
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ProjectConfig(Section):
    seed: NonNegInt
    name: str


class ExperimentConfig(Section):
    active: str | None
    definitions: Annotated[Mapping[str, Mapping[str, Any]], Frozen]
    overrides: Annotated[Mapping[str, Any], Frozen]


class DeviceConfig(Section):
    use_mps: bool
    move_dataset_to_cuda: bool
    dtype: Literal["float32", "float64"]
    deterministic: bool
    num_threads: PositiveInt | None
    cuda_graphs: Literal["auto", "off"]  # auto: capture full-size training steps as CUDA graphs on CUDA, never on CPU
    matmul_precision: Literal["auto", "highest", "high"]  # float32 matmuls; high = TF32 on CUDA; auto = high on CUDA


class DataConfig(Section):
    source: Literal["synthetic", "ctr"]
    ctr_dataset: Literal["avazu", "criteo", "yambda"]
    train_split: Fraction
    use_test_set: bool
    standardize: bool


class ReweightingConfig(Section):
    enabled: bool
    negative_downsample_rate: NonNegFloat


Grid = tuple[float, ...]


class SyntheticConfig(Section):
    num_conditions: PositiveInt
    samples_per_condition: PositiveInt
    sigmoid_mu_range: Grid
    sigmoid_s_range: Grid
    age_mu_range: Grid
    age_sigma_range: Grid
    interest_scale_log10_range: Grid
    base_mu_ln: float
    base_sigma_ln: PositiveFloat
    age_min: int
    age_max: int
    condition_mode: Literal["uniform", "uniform_log10", "random"]
    uniform_log10_means: tuple[float, ...]
    uniform_log10_std: NonNegFloat
    numeric_features: tuple[str, ...]
    noise_mean: float
    noise_std: NonNegFloat
    test_split: Annotated[float, Field(ge=0, lt=1)]
    use_true_base_rates_for_le: bool
    reweighting: ReweightingConfig

    @model_validator(mode="after")
    def _checks(self) -> "SyntheticConfig":
        problems = []
        for name in ("sigmoid_mu_range", "sigmoid_s_range", "age_mu_range", "age_sigma_range",
                     "interest_scale_log10_range"):
            grid = getattr(self, name)
            if len(grid) != 3 or not 1 <= grid[2] <= 1_000_000 or not float(grid[2]).is_integer() or grid[0] > grid[1]:
                problems.append(f"{name}: got {list(grid)}; expected [low, high, points] with low <= high and "
                                "1 <= points <= 1,000,000")
        # One mean per condition, exactly: a longer list used to be cut silently (num_conditions=3 with the default
        # four means dropped the 4th, the rare ad), a shorter one refused. Nothing relies on the cut: every profile
        # gives as many means as conditions, and condition_mode "random" ignores the means (so it skips this rule).
        if self.condition_mode != "random" and len(self.uniform_log10_means) != self.num_conditions:
            problems.append(f"uniform_log10_means: got {len(self.uniform_log10_means)} value(s) but "
                            f"synthetic.num_conditions = {self.num_conditions}; expected one mean per condition "
                            f"(change synthetic.num_conditions or synthetic.uniform_log10_means so that they agree)")
        if any(m > 0 for m in self.uniform_log10_means):
            problems.append(f"uniform_log10_means: got {list(self.uniform_log10_means)}; expected log10 rates <= 0")
        allowed = ("age", "net_worth", "log10_net_worth")
        bad = [f for f in self.numeric_features if f not in allowed and not f.startswith("noise")]
        if bad or not self.numeric_features:
            problems.append(f"numeric_features: got {list(self.numeric_features)}; expected a non-empty list of "
                            "age, net_worth, log10_net_worth, noise*")
        for name in ("sigmoid_s_range", "age_sigma_range"):  # scales the generator divides by
            if getattr(self, name)[:1] and getattr(self, name)[0] <= 0:
                problems.append(f"{name}: got {list(getattr(self, name))}; expected low > 0 (a scale: the true "
                                "click probabilities would be NaN)")
        if max((abs(v) for v in self.interest_scale_log10_range[:2]), default=0) > 30:
            problems.append(f"interest_scale_log10_range: got {list(self.interest_scale_log10_range)}; expected "
                            "log10 scales within [-30, 30]")
        if self.base_mu_ln + 8 * self.base_sigma_ln > 80:  # exp(80) < float32's max (e^88.7) with room
            problems.append(f"base_mu_ln: got {self.base_mu_ln} with base_sigma_ln {self.base_sigma_ln}; expected "
                            "base_mu_ln + 8 * base_sigma_ln <= 80, so that net worth (LogNormal) stays inside float32's "
                            "range (beyond it the features are NaN)")
        if not 0 <= self.age_min < self.age_max:
            problems.append(f"age_max: got {self.age_max}; expected > age_min ({self.age_min}) >= 0")
        checks_failed(problems)
        return self


class FilterCacheConfig(Section):
    enabled: bool
    dir: str
    format: Literal["parquet", "csv"]
    overwrite: bool


FilterMode = Literal["ids", "top_k", "bottom_k", "top_count_rate_mix"]
FilterMetric = Literal["count", "frequency", "impressions", "rows", "mean", "rate", "click_rate", "median"]


class FilterConfig(Section):
    mode: FilterMode | None
    col: str | None
    ids: tuple[str | int | float, ...] | None
    k: PositiveInt | None
    metric: FilterMetric
    preselect_k: PositiveInt
    high_k: NonNegInt
    middle_k: NonNegInt
    low_k: NonNegInt
    min_count: PositiveInt | None
    apply_to_test: bool
    cache: FilterCacheConfig

    @model_validator(mode="after")
    def _checks(self) -> "FilterConfig":
        problems = []
        if self.mode in ("top_k", "bottom_k") and self.k is None:
            problems.append(f"k: got null; expected an integer >= 1 for mode {self.mode}")
        if self.mode == "ids" and not self.ids:
            problems.append(f"ids: got {list(self.ids or [])}; expected a non-empty list for mode ids")
        if self.mode == "top_count_rate_mix" and self.high_k + self.middle_k + self.low_k == 0:
            problems.append("high_k: got 0, with middle_k and low_k 0; expected at least one of them >= 1 for mode "
                            "top_count_rate_mix (it keeps high_k + middle_k + low_k values)")
        checks_failed(problems)
        return self


class CtrDatasetConfig(Section):
    """One CTR source after ``ctr.defaults`` is merged under ``ctr.datasets.<name>``."""
    train_path: str | None
    test_path: str | None
    format: Literal["auto", "csv", "tsv", "criteo_raw", "parquet"]
    label_col: str
    condition_col: str
    categorical_cols: tuple[str, ...]
    numeric_cols: tuple[str, ...]
    derived_time: bool
    device_counters: bool
    device_counter_cap: PositiveInt
    filter: FilterConfig
    filter_col: str | None
    filter_top_k: PositiveInt | None
    balance_by_condition: bool
    test_has_labels: bool
    categorical_max_values: PositiveInt
    max_conditions: PositiveInt
    weight_col: str | None
    plot_sample_size: NonNegInt
    drop_na: bool
    missing_numeric: Literal["log1p_indicator", "zero_indicator"]
    max_rows: PositiveInt | None
    split_test_from_train: bool
    positive_event_types: tuple[str, ...]


class CtrConfig(Section):
    dataset: str | None
    warn_root_csv: bool
    defaults: Annotated[Mapping[str, Any], Frozen]
    datasets: Annotated[Mapping[Literal["avazu", "criteo", "yambda"], CtrDatasetConfig], Frozen]


class ModelConfig(Section):
    name: str  # a folder level of a run's outputs (checked below)
    hidden_sizes: tuple[PositiveInt, ...]
    embed_dim: PositiveInt
    cat_embed_dim: PositiveInt
    activation: Activation | tuple[Activation, ...]
    norm: Norm | tuple[Norm, ...]
    dropout: DropoutRate | tuple[DropoutRate, ...]

    @model_validator(mode="after")
    def _checks(self) -> "ModelConfig":
        problems = []
        if not self.name.strip(" .") or re.search(r"[/\\\x00]", self.name):  # "../.." put every loss in one folder
            problems.append(f"name: got {self.name!r}; expected a folder name (no / or \\, not only dots)")
        n = len(self.hidden_sizes)
        if n == 0:
            problems.append("hidden_sizes: got []; expected at least one hidden layer width")
        for name in ("activation", "norm", "dropout"):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != n:
                problems.append(f"{name}: got a list of {len(value)}; expected one value or a list of "
                                f"{n} (one per hidden_sizes entry)")
        checks_failed(problems)
        return self


class FocalConfig(Section):
    alpha: Probability | None
    gamma: NonNegFloat


class CrossBatchConfig(Section):
    enabled: bool
    amplification_rate: PositiveFloat
    max_window: PositiveInt
    warm_start: bool  # windows start full at the base rate (not the reference's empty windows)


class LeConfig(Section):
    base_rate_prior: Literal["jeffreys", "none"]
    norm_strength: NonNegFloat


class TrainingSettings(Section):
    """Training knobs of one loss on one source: ``training.*`` ← ``by_loss.<loss>`` ← ``by_source.<key>``."""
    epochs: PositiveInt
    lr: PositiveFloat
    lr_decay: DecayFactor
    lr_category: PositiveFloat | None
    lr_category_decay: DecayFactor
    lr_zero_after_epochs: NonNegInt | None
    batch_size: PositiveInt
    eval_batch_size: PositiveInt
    weight_decay: NonNegFloat
    amp: Literal["off", "bf16"]
    focal: FocalConfig
    cross_batch: CrossBatchConfig
    le: LeConfig
    eval_every_n_batches: NonNegInt
    debug_le_inputs: bool
    debug_gradients: bool
    print_embedding_table: bool


TRAINING_SETTING_KEYS: tuple[str, ...] = tuple(TrainingSettings.model_fields)
#: The optimiser and schedule: what a fair comparison gives every loss alike. With
#: ``training.same_settings_for_all_losses`` every loss takes these from ``training.*``, and the audit warns
#: (``settings_differ``) when they differ between the compared losses.
OPTIMISER_SETTING_KEYS: tuple[str, ...] = ("epochs", "lr", "lr_decay", "lr_category", "lr_category_decay",
                                           "lr_zero_after_epochs", "batch_size", "weight_decay", "amp")
#: Settings that belong to one loss's definition (focal's alpha / gamma, LE's history and base-rate prior): they
#: keep their per-loss values under ``same_settings_for_all_losses`` and are never a fairness finding.
LOSS_SPECIFIC_KEYS: tuple[str, ...] = ("focal", "cross_batch", "le")


class TrainingConfig(TrainingSettings):
    loss_mode: str | tuple[str, ...]
    eval_compare_losses: bool
    same_settings_for_all_losses: bool  # true: every loss takes OPTIMISER_SETTING_KEYS from training.* (no per-loss)
    by_loss: Annotated[Mapping[str, Mapping[str, Any]], Frozen]


class EvaluationConfig(Section):
    split: Literal["train", "eval", "test"]
    use_test_labels: bool
    synthetic_truth: bool
    ece_method: Literal["custom", "adaptive", "smooth", "adaptive_lib", "smooth_lib"]
    ece_bins: Annotated[int, Field(ge=1, le=100_000)]  # per-ad bin tables are [ads, bins]: 1e9 ran out of memory
    ece_min_count: PositiveInt
    ece_smooth_bandwidth: PositiveFloat
    ece_smooth_grid_bins: Annotated[int, Field(ge=2, le=100_000)] | None
    small_prob_max: Annotated[float, Field(gt=0, le=1)]
    small_prob_quantile: Annotated[float, Field(gt=0, le=1)]
    print_per_condition_top_k: int


class PlotsConfig(Section):
    enabled: bool
    data_distributions: bool
    pretrain_predictions: bool
    mid_epoch_predictions: bool
    grad_sq_by_condition: bool
    ctr_filter_stats: bool
    post_training_data: bool
    le_stats: bool
    reliability: bool
    sample_size: PositiveInt
    dpi: Annotated[int, Field(ge=30, le=1200)]  # 10,000 ran every trial, then the figures ran out of memory


class ComparisonConfig(Section):
    enabled: bool
    sort_by: Literal["base_rate", "abs_delta_calibration", "abs_delta_le_ratio"]
    top_k: int


class RepeatsConfig(Section):
    enabled: bool
    num_runs: PositiveInt
    seed_stride: PositiveInt
    resample_data: bool
    alternative: Literal["two-sided", "greater", "less"]
    zero_method: Literal["wilcox", "pratt", "zsplit"]
    per_condition_alpha: Fraction
    per_condition_min_count: PositiveInt
    per_condition_top_k: int
    per_condition_correction: Literal["holm", "bh", "none"]
    per_condition_sort_by: Literal["p_value", "abs_delta_mean", "delta_mean", "count", "base_rate"]
    bootstrap_samples: PositiveInt  # draws of every bootstrap interval (per-metric and per-ad intervals)
    bootstrap_confidence: Fraction
    min_steps_per_epoch: PositiveInt
    min_eval_clicks: NonNegInt  # 0: no ad left out for few evaluation clicks (one with none still is)
    allow_unsound: bool
    max_estimated_hours: PositiveFloat  # the audit refuses a sweep estimated to take longer on the device at hand


class ReportConfig(Section):
    #: the verdict's rate-band edges e_1 < … < e_n (probabilities): bands < e_1, e_1–e_2, …, ≥ e_n; None = decades
    rate_bands: tuple[Probability, ...] | None

    @model_validator(mode="after")
    def _checks(self) -> "ReportConfig":
        bands = self.rate_bands
        ok = bands is None or (len(bands) >= 1 and all(0 < e < 1 for e in bands)
                               and all(a < b for a, b in zip(bands, bands[1:])))
        checks_failed([] if ok else
                      [f"rate_bands: got {list(bands)}; expected one or more edges strictly between 0 and 1 in "
                       "increasing order, e.g. [0.001, 0.01, 0.1] (bands < 0.1 %, 0.1–1 %, 1–10 %, ≥ 10 %)"])
        return self


def _json(value: Any) -> str:
    """``value`` as the JSON a user wrote (frozen mappings as objects)."""
    return json.dumps(value, default=lambda v: dict(v) if isinstance(v, Mapping) else str(v))


def _space_problems(loss: str, key: str, spec: Any) -> list[str]:
    """Problems of one ``tune.space.<loss>.<key>`` entry (its training key and its distribution)."""
    where = f"space.{loss}.{key}"
    node: Any = TrainingSettings
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not (isinstance(node, type) and issubclass(node, BaseModel)):  # a leaf reached: the rest is its spec
            leaf, rest = ".".join(parts[:i]), {parts[i]: spec}
            return [f"space.{loss}.{leaf}: got {_json(rest)}; expected one of "
                    + ", ".join(f'{{"{k}": ...}}' for k in SPACE_KINDS)]
        fields = node.model_fields
        if part not in fields:
            return [f"{where}: unknown training key; expected one of {', '.join(fields)}{suggest(part, fields)}"]
        node = fields[part].annotation
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f"{where}: {key} is a section; name one of its keys ({', '.join(node.model_fields)})"]
    reader = SECTION_READER.get(parts[0])
    if reader is not None and reader != loss:
        return [f"{where}: only {reader} reads {parts[0]}.*, so searching it for {loss} changes nothing; search it "
                f"under tune.space.{reader}"]
    if is_distribution(spec) and len(spec) > 1:
        return [f"{where}: got {_json(spec)}; expected one distribution, not {len(spec)} ({', '.join(spec)})"]
    if not is_distribution(spec):
        return [f"{where}: got {_json(spec)}; expected one of " + ", ".join(f'{{"{k}": ...}}' for k in SPACE_KINDS)]
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        ok = isinstance(args, (list, tuple)) and len(args) > 0
        return [] if ok else [f"{where}.choice: got {_json(args)}; expected a non-empty list of values"]
    nums = isinstance(args, (list, tuple)) and len(args) == 2 and all(
        isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)
    if not nums or not args[0] < args[1]:
        return [f"{where}.{kind}: got {_json(args)}; expected [low, high] with low < high, both finite"]
    if kind == "loguniform" and args[0] <= 0:
        return [f"{where}.loguniform: got {list(args)}; expected low > 0"]
    if kind == "int" and not all(float(a).is_integer() for a in args):
        return [f"{where}.int: got {list(args)}; expected two integers"]
    return []


class TuneConfig(Section):
    """``le-ray tune``: a search per loss over ``space.<loss>.<dotted training key>``, then a test sweep."""
    space: Annotated[Mapping[str, Mapping[str, Any]], Frozen]
    num_samples: PositiveInt
    metric: str
    scheduler: Literal["asha", "fifo"]
    grace_period: PositiveInt
    max_concurrent: PositiveInt | None
    validation_split: Fraction
    seed_offset: PositiveInt

    @model_validator(mode="after")
    def _checks(self) -> "TuneConfig":
        from le_ray.glossary import METRICS

        problems = []
        for loss, keys in self.space.items():
            if loss not in LOSS_NAMES:
                problems.append(f"space.{loss}: unknown loss; expected one of {', '.join(LOSS_NAMES)}"
                                f"{suggest(loss, LOSS_NAMES)}")
                continue
            for key, spec in keys.items():
                problems += _space_problems(loss, key, spec)
            if "epochs" in keys and self.scheduler == "asha":
                problems.append(f"space.{loss}.epochs: ASHA's budget is the epochs (it trains a sample up to the "
                                "configured training epochs), so it cannot search them; set tune.scheduler=fifo to "
                                "search epochs")
        ranked = [n for n, t in METRICS.items() if t.higher_is_better is not None]
        if self.metric not in ranked:
            problems.append(f"metric: got {json.dumps(self.metric)}; expected one of {', '.join(ranked)}"
                            f"{suggest(self.metric, ranked)}")
        checks_failed(problems)
        return self


class RayConfig(Section):
    address: str | None
    num_cpus: PositiveInt | None
    num_gpus: NonNegFloat | None
    gpus_per_trial: NonNegFloat | None
    cpus_per_trial: PositiveInt
    max_retries: NonNegInt
    retry_exceptions: bool
    include_dashboard: bool | None
    dashboard_host: str
    namespace: str | None


class OutputConfig(Section):
    dir: str
    results_dir: str
    save_plots: bool
    save_logs: bool


class Config(Section):
    """The resolved, validated, frozen configuration that flows through every le_ray layer."""
    project: ProjectConfig
    experiment: ExperimentConfig
    device: DeviceConfig
    data: DataConfig
    synthetic: SyntheticConfig
    ctr: CtrConfig
    model: ModelConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    plots: PlotsConfig
    comparison: ComparisonConfig
    repeats: RepeatsConfig
    report: ReportConfig
    tune: TuneConfig
    ray: RayConfig
    output: OutputConfig

    @property
    def source_key(self) -> str:
        """``synthetic`` or the active CTR dataset name (avazu/criteo/yambda)."""
        return "synthetic" if self.data.source == "synthetic" else self.data.ctr_dataset

    @property
    def active_ctr(self) -> CtrDatasetConfig:
        return self.ctr.datasets[self.data.ctr_dataset]

    @property
    def source_keys(self) -> tuple[str, ...]:
        """``by_source`` keys that apply, most specific first: (dataset, "ctr") or ("synthetic",)."""
        return ("synthetic",) if self.data.source == "synthetic" else (self.data.ctr_dataset, "ctr")

    @functools.cached_property
    def losses(self) -> tuple[str, ...]:
        """Canonical names of the losses ``training.loss_mode`` trains, in order."""
        return losses_of(self.training.loss_mode)

    @functools.cached_property
    def training_by_loss(self) -> Mapping[str, TrainingSettings]:
        """Resolved training settings of every registered loss on the active source (computed once).

        ``training.*`` with ``training.by_loss.<loss>`` and then its ``by_source.<key>`` merged over;
        every layer was validated when the config was, so this cannot fail. With
        ``training.same_settings_for_all_losses`` the :data:`OPTIMISER_SETTING_KEYS` come from ``training.*``
        for every loss (their per-loss overrides are ignored); loss-specific keys keep their layers.
        """
        plain = self.training.model_dump(mode="json")
        alike = {k: plain[k] for k in OPTIMISER_SETTING_KEYS} if self.training.same_settings_for_all_losses else {}
        return FrozenDict({loss: TrainingSettings.model_validate_json(json.dumps(
            {**merged_training(plain, loss, self.source_keys, TRAINING_SETTING_KEYS), **alike}))
            for loss in LOSS_NAMES})

    def training_for(self, loss: str) -> TrainingSettings:
        """Settings of ``loss`` (canonical name or alias) on the active source."""
        return self.training_by_loss[canonical_loss(loss)]
