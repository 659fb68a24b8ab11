"""The typed shape of a resolved le_ray config: one frozen dataclass per JSON section.

Fields carry no defaults: ``configs/default.json`` is the single place where default values live,
and every user file or profile is merged over it before conversion. Range checks sit in field
metadata (``bounds``); cross-field rules in ``_checks``. See README "Config reference" for the
meaning of each key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from le_ray.typed import bounds

LossName = Literal["bce", "localized_entropy", "focal"]
LOSS_NAMES: tuple[str, ...] = ("bce", "localized_entropy", "focal")
LOSS_ALIASES: dict[str, str] = {"le": "localized_entropy", "localized_entropy": "localized_entropy",
                                "bce": "bce", "focal": "focal"}
ACTIVATIONS = ("relu", "gelu", "silu", "swish", "tanh", "leaky_relu", "elu", "selu", "sigmoid", "identity")
Activation = Literal["relu", "gelu", "silu", "swish", "tanh", "leaky_relu", "elu", "selu", "sigmoid", "identity"]
Norm = Literal["none", "batch", "layer"]
EceMethod = Literal["custom", "adaptive", "smooth", "adaptive_lib", "smooth_lib"]
FilterMode = Literal["ids", "top_k", "bottom_k", "top_count_rate_mix"]
FilterMetric = Literal["count", "frequency", "impressions", "rows", "mean", "rate", "click_rate", "median"]
CTR_DATASETS: tuple[str, ...] = ("avazu", "criteo", "yambda")


@dataclass(frozen=True)
class ProjectConfig:
    seed: int
    name: str


@dataclass(frozen=True)
class ExperimentConfig:
    active: str | None
    definitions: Mapping[str, Mapping[str, Any]]
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class DeviceConfig:
    use_mps: bool
    move_dataset_to_cuda: bool
    dtype: Literal["float32", "float64"]
    deterministic: bool
    num_threads: int | None = field(metadata=bounds(ge=1))


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "ctr"]
    ctr_dataset: Literal["avazu", "criteo", "yambda"]
    train_split: float = field(metadata=bounds(gt=0, lt=1))
    use_test_set: bool
    standardize: bool


@dataclass(frozen=True)
class ReweightingConfig:
    enabled: bool
    negative_downsample_rate: float = field(metadata=bounds(ge=0))


@dataclass(frozen=True)
class SyntheticConfig:
    num_conditions: int = field(metadata=bounds(ge=1))
    samples_per_condition: int = field(metadata=bounds(ge=1))
    sigmoid_mu_range: tuple[float, ...]
    sigmoid_s_range: tuple[float, ...]
    age_mu_range: tuple[float, ...]
    age_sigma_range: tuple[float, ...]
    interest_scale_log10_range: tuple[float, ...]
    base_mu_ln: float
    base_sigma_ln: float = field(metadata=bounds(gt=0))
    age_min: int
    age_max: int
    condition_mode: Literal["uniform", "uniform_log10", "random"]
    uniform_log10_means: tuple[float, ...]
    uniform_log10_std: float = field(metadata=bounds(ge=0))
    numeric_features: tuple[str, ...]
    noise_mean: float
    noise_std: float = field(metadata=bounds(ge=0))
    test_split: float = field(metadata=bounds(ge=0, lt=1))
    use_true_base_rates_for_le: bool
    reweighting: ReweightingConfig

    def _checks(self) -> list[str]:
        problems = []
        for name in ("sigmoid_mu_range", "sigmoid_s_range", "age_mu_range", "age_sigma_range",
                     "interest_scale_log10_range"):
            grid = getattr(self, name)
            if len(grid) != 3 or grid[2] < 1 or not float(grid[2]).is_integer() or grid[0] > grid[1]:
                problems.append(f"{name}: got {list(grid)}; expected [low, high, points] with low <= high, points >= 1")
        if self.condition_mode != "random" and len(self.uniform_log10_means) < self.num_conditions:
            problems.append(f"uniform_log10_means: got {len(self.uniform_log10_means)} value(s); expected one per "
                            f"condition (num_conditions = {self.num_conditions})")
        if any(m > 0 for m in self.uniform_log10_means):
            problems.append(f"uniform_log10_means: got {list(self.uniform_log10_means)}; expected log10 rates <= 0")
        allowed = ("age", "net_worth", "log10_net_worth")
        bad = [f for f in self.numeric_features if f not in allowed and not f.startswith("noise")]
        if bad or not self.numeric_features:
            problems.append(f"numeric_features: got {list(self.numeric_features)}; expected a non-empty list of "
                            "age, net_worth, log10_net_worth, noise*")
        if not 0 <= self.age_min < self.age_max:
            problems.append(f"age_max: got {self.age_max}; expected > age_min ({self.age_min}) >= 0")
        return problems


@dataclass(frozen=True)
class FilterCacheConfig:
    enabled: bool
    dir: str
    format: Literal["parquet", "csv"]
    overwrite: bool


@dataclass(frozen=True)
class FilterConfig:
    mode: FilterMode | None
    col: str | None
    ids: tuple[str | int | float, ...] | None
    k: int | None = field(metadata=bounds(ge=1))
    metric: FilterMetric
    preselect_k: int = field(metadata=bounds(ge=1))
    high_k: int = field(metadata=bounds(ge=0))
    middle_k: int = field(metadata=bounds(ge=0))
    low_k: int = field(metadata=bounds(ge=0))
    min_count: int | None = field(metadata=bounds(ge=1))
    apply_to_test: bool
    cache: FilterCacheConfig


@dataclass(frozen=True)
class CtrDatasetConfig:
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
    device_counter_cap: int = field(metadata=bounds(ge=1))
    filter: FilterConfig
    filter_col: str | None
    filter_top_k: int | None = field(metadata=bounds(ge=1))
    balance_by_condition: bool
    test_has_labels: bool
    categorical_max_values: int = field(metadata=bounds(ge=1))
    max_conditions: int = field(metadata=bounds(ge=1))
    weight_col: str | None
    plot_sample_size: int = field(metadata=bounds(ge=0))
    drop_na: bool
    missing_numeric: Literal["log1p_indicator", "zero_indicator"]
    max_rows: int | None = field(metadata=bounds(ge=1))
    split_test_from_train: bool
    positive_event_types: tuple[str, ...]


@dataclass(frozen=True)
class CtrConfig:
    dataset: str | None
    warn_root_csv: bool
    defaults: Mapping[str, Any]
    datasets: Mapping[str, CtrDatasetConfig]

    def _checks(self) -> list[str]:
        return [f"datasets.{name}: unknown dataset; expected one of {', '.join(CTR_DATASETS)}"
                for name in self.datasets if name not in CTR_DATASETS]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    hidden_sizes: tuple[int, ...] = field(metadata=bounds(ge=1))
    embed_dim: int = field(metadata=bounds(ge=1))
    cat_embed_dim: int = field(metadata=bounds(ge=1))
    activation: Activation | tuple[Activation, ...]
    norm: Norm | tuple[Norm, ...]
    dropout: float | tuple[float, ...] = field(metadata=bounds(ge=0, lt=1))

    def _checks(self) -> list[str]:
        problems = []
        n = len(self.hidden_sizes)
        if n == 0:
            problems.append("hidden_sizes: got []; expected at least one hidden layer width")
        for name in ("activation", "norm", "dropout"):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != n:
                problems.append(f"{name}: got a list of {len(value)}; expected one value or a list of "
                                f"{n} (one per hidden_sizes entry)")
        return problems


@dataclass(frozen=True)
class FocalConfig:
    alpha: float | None = field(metadata=bounds(ge=0, le=1))
    gamma: float = field(metadata=bounds(ge=0))


@dataclass(frozen=True)
class CrossBatchConfig:
    enabled: bool
    amplification_rate: float = field(metadata=bounds(gt=0))
    max_window: int = field(metadata=bounds(ge=1))


@dataclass(frozen=True)
class LeConfig:
    base_rate_prior: Literal["jeffreys", "none"]
    norm_strength: float = field(metadata=bounds(ge=0))


@dataclass(frozen=True)
class TrainingSettings:
    """Training knobs of one loss on one source: ``training.*`` ← ``by_loss.<loss>`` ← ``by_source.<key>``."""
    epochs: int = field(metadata=bounds(ge=1))
    lr: float = field(metadata=bounds(gt=0))
    lr_decay: float = field(metadata=bounds(gt=0))
    lr_category: float | None = field(metadata=bounds(gt=0))
    lr_category_decay: float = field(metadata=bounds(gt=0))
    lr_zero_after_epochs: int | None = field(metadata=bounds(ge=0))
    batch_size: int = field(metadata=bounds(ge=1))
    eval_batch_size: int = field(metadata=bounds(ge=1))
    weight_decay: float = field(metadata=bounds(ge=0))
    focal: FocalConfig
    cross_batch: CrossBatchConfig
    le: LeConfig
    eval_every_n_batches: int = field(metadata=bounds(ge=0))
    debug_le_inputs: bool
    debug_gradients: bool
    print_embedding_table: bool


TRAINING_SETTING_KEYS: tuple[str, ...] = tuple(TrainingSettings.__dataclass_fields__)


@dataclass(frozen=True)
class TrainingConfig(TrainingSettings):
    loss_mode: str | tuple[str, ...]
    eval_compare_losses: bool
    by_loss: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class EvaluationConfig:
    split: Literal["train", "eval", "test"]
    use_test_labels: bool
    ece_method: EceMethod
    ece_bins: int = field(metadata=bounds(ge=1))
    ece_min_count: int = field(metadata=bounds(ge=1))
    ece_smooth_bandwidth: float = field(metadata=bounds(gt=0))
    ece_smooth_grid_bins: int | None = field(metadata=bounds(ge=2))
    small_prob_max: float = field(metadata=bounds(gt=0, le=1))
    small_prob_quantile: float = field(metadata=bounds(gt=0, le=1))
    print_per_condition_top_k: int


@dataclass(frozen=True)
class PlotsConfig:
    enabled: bool
    data_distributions: bool
    pretrain_predictions: bool
    mid_epoch_predictions: bool
    grad_sq_by_condition: bool
    ctr_filter_stats: bool
    post_training_data: bool
    le_stats: bool
    reliability: bool
    sample_size: int = field(metadata=bounds(ge=1))
    dpi: int = field(metadata=bounds(ge=30))


@dataclass(frozen=True)
class ComparisonConfig:
    enabled: bool
    sort_by: Literal["base_rate", "abs_delta_calibration", "abs_delta_le_ratio"]
    top_k: int


@dataclass(frozen=True)
class RepeatsConfig:
    enabled: bool
    num_runs: int = field(metadata=bounds(ge=1))
    seed_stride: int = field(metadata=bounds(ge=1))
    resample_data: bool
    alternative: Literal["two-sided", "greater", "less"]
    zero_method: Literal["wilcox", "pratt", "zsplit"]
    per_condition_alpha: float = field(metadata=bounds(gt=0, lt=1))
    per_condition_min_count: int = field(metadata=bounds(ge=1))
    per_condition_top_k: int
    per_condition_correction: Literal["holm", "bh", "none"]
    per_condition_sort_by: Literal["p_value", "abs_delta_mean", "delta_mean", "count", "base_rate"]
    bootstrap_samples: int = field(metadata=bounds(ge=0))
    bootstrap_confidence: float = field(metadata=bounds(gt=0, lt=1))


@dataclass(frozen=True)
class RayConfig:
    address: str | None
    num_cpus: int | None = field(metadata=bounds(ge=1))
    num_gpus: float | None = field(metadata=bounds(ge=0))
    gpus_per_trial: float | None = field(metadata=bounds(ge=0))
    cpus_per_trial: int = field(metadata=bounds(ge=1))
    max_retries: int = field(metadata=bounds(ge=0))
    retry_exceptions: bool
    include_dashboard: bool | None
    dashboard_host: str
    namespace: str | None


@dataclass(frozen=True)
class OutputConfig:
    dir: str
    results_dir: str
    save_plots: bool
    save_logs: bool


@dataclass(frozen=True)
class Config:
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
    ray: RayConfig
    output: OutputConfig

    @property
    def source_key(self) -> str:
        """``synthetic`` or the active CTR dataset name (avazu/criteo/yambda)."""
        return "synthetic" if self.data.source == "synthetic" else self.data.ctr_dataset

    @property
    def active_ctr(self) -> CtrDatasetConfig:
        return self.ctr.datasets[self.data.ctr_dataset]
