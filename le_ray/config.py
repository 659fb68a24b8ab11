"""Load, merge and validate le_ray configs; resolve per-loss / per-source training settings.

Resolution order (later wins, dicts merge key by key, lists and scalars replace):

1. ``configs/default.json`` (every key with its default),
2. the user's ``--config FILE`` (may be partial),
3. ``experiment.definitions[active]`` where ``active`` is ``--profile NAME`` or ``experiment.active``
   (a definition may name ``"extends": "<profile>"`` or a list of them, applied first),
4. ``experiment.overrides``,
5. each ``--set dotted.key=VALUE`` in order (VALUE parsed as JSON, else taken as a plain string).

Per-loss training settings: ``training.*`` ← ``training.by_loss.<loss>`` ←
``training.by_loss.<loss>.by_source.<key>`` where ``key`` is the active CTR dataset name
(avazu/criteo/yambda, falling back to ``ctr``) or ``synthetic``. Everything is validated before any
work: one :class:`ConfigError` names every bad dotted key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from le_ray.config_schema import (
    CTR_DATASETS, LOSS_ALIASES, LOSS_NAMES, TRAINING_SETTING_KEYS, Config, TrainingSettings,
)
from le_ray.typed import ConfigError, convert, describe_value, to_plain

__all__ = [
    "CONFIG_DIR", "DEFAULT_CONFIG_PATH", "Config", "ConfigError", "TrainingSettings", "canonical_loss",
    "config_fingerprint", "deep_merge", "load_config", "parse_set", "profile_names", "resolve_config",
    "losses_of", "training_for", "source_key_candidates", "to_dict",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "default.json"
_SOURCE_KEYS = ("synthetic", "ctr", *CTR_DATASETS)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in: dicts recurse, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_json(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a JSON object from ``path`` with an error that names the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r}: file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r}: expected a JSON object at the top level")
    return data


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """Split ``dotted.key=VALUE``; VALUE is JSON when it parses, else the plain string."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=VALUE (e.g. training.lr=0.001)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


def _apply_set(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: {'.'.join(parts[:i + 1])} is "
                              f"{describe_value(child)}, not an object")
        node = child
    node[parts[-1]] = value


def _profile_layers(definitions: Mapping[str, Any], name: str, chain: tuple[str, ...] = ()) -> list[dict]:
    """The override dicts of profile ``name``, parents (``extends``) first."""
    if name not in definitions:
        known = ", ".join(sorted(definitions)) or "(none defined)"
        raise ConfigError(f"experiment.active / --profile: got {name!r}; expected one of {known}")
    if name in chain:
        raise ConfigError(f"experiment.definitions.{name}.extends: cycle {' -> '.join(chain + (name,))}")
    definition = dict(definitions[name])
    if not isinstance(definitions[name], Mapping):
        raise ConfigError(f"experiment.definitions.{name}: expected an object of config overrides")
    parents = definition.pop("extends", [])
    layers: list[dict] = []
    for parent in [parents] if isinstance(parents, str) else parents:
        layers += _profile_layers(definitions, parent, chain + (name,))
    return layers + [definition]


def profile_names(config_path: str | Path | None = None) -> list[str]:
    """Names of the profiles defined in the default config merged with ``config_path``."""
    data = read_json(DEFAULT_CONFIG_PATH, "default config")
    if config_path is not None:
        data = deep_merge(data, read_json(config_path))
    return sorted(data.get("experiment", {}).get("definitions", {}))


def merge_layers(config_path: str | Path | None = None, *, profile: str | None = None,
                 sets: Iterable[str] = ()) -> dict[str, Any]:
    """Steps 1-5 of the resolution order, as plain JSON data (not yet validated)."""
    data = read_json(DEFAULT_CONFIG_PATH, "default config")
    if config_path is not None:
        data = deep_merge(data, read_json(config_path))
    experiment = data.setdefault("experiment", {})
    if profile is not None:
        experiment["active"] = profile
    active = experiment.get("active")
    if active:
        for layer in _profile_layers(experiment.get("definitions", {}), active):
            data = deep_merge(data, layer)
    data = deep_merge(data, data.get("experiment", {}).get("overrides", {}) or {})
    data["experiment"]["active"] = active
    for assignment in sets:
        _apply_set(data, *parse_set(assignment))
    return data


def canonical_loss(name: str, where: str = "training.loss_mode") -> str:
    """Map ``le`` → ``localized_entropy``; error on anything that is not a loss name."""
    if not isinstance(name, str) or name.strip().lower() not in LOSS_ALIASES:
        raise ConfigError(f"{where}: got {describe_value(name)}; expected one of bce, localized_entropy (le), focal")
    return LOSS_ALIASES[name.strip().lower()]


def losses_of(loss_mode: str | Iterable[str]) -> tuple[str, ...]:
    """Canonical loss names from ``training.loss_mode`` (one name, ``both``, ``all``, a list or 'a,b')."""
    if isinstance(loss_mode, str):
        mode = loss_mode.strip().lower()
        if mode == "both":
            return ("bce", "localized_entropy")
        if mode == "all":
            return LOSS_NAMES
        items = [part for part in mode.split(",") if part.strip()]
    else:
        items = list(loss_mode)
    if not items:
        raise ConfigError("training.loss_mode: got an empty selection; expected a loss name, both, all or a list")
    out: list[str] = []
    for i, item in enumerate(items):
        name = canonical_loss(item, "training.loss_mode" if isinstance(loss_mode, str) else f"training.loss_mode[{i}]")
        if name not in out:
            out.append(name)
    return tuple(out)


def _normalise_loss_keys(data: dict[str, Any]) -> None:
    """Accept ``le`` as a key of ``training.by_loss`` by renaming it to ``localized_entropy``."""
    by_loss = data.get("training", {}).get("by_loss")
    if not isinstance(by_loss, dict):
        return
    for key in list(by_loss):
        canonical = LOSS_ALIASES.get(key)
        if canonical and canonical != key:
            by_loss[canonical] = deep_merge(by_loss.get(canonical, {}), by_loss.pop(key))


def _merge_ctr_defaults(data: dict[str, Any]) -> None:
    ctr = data.get("ctr")
    if not isinstance(ctr, dict) or not isinstance(ctr.get("datasets"), dict):
        return
    defaults = ctr.get("defaults") or {}
    for name, spec in list(ctr["datasets"].items()):
        if isinstance(spec, dict) and isinstance(defaults, dict):
            ctr["datasets"][name] = deep_merge(defaults, spec)


def _apply_legacy_ctr_keys(data: dict[str, Any]) -> None:
    """``ctr.dataset`` and ``filter_col``/``filter_top_k`` are deprecated spellings; map them and warn once."""
    ctr = data.get("ctr", {})
    if isinstance(ctr, dict) and ctr.get("dataset"):
        warnings.warn("ctr.dataset is deprecated; use data.ctr_dataset", FutureWarning, stacklevel=3)
        data.setdefault("data", {})["ctr_dataset"] = ctr["dataset"]
    for name, spec in (ctr.get("datasets") or {}).items() if isinstance(ctr, dict) else ():
        if isinstance(spec, dict) and spec.get("filter_top_k") is not None:
            warnings.warn(f"ctr.datasets.{name}.filter_top_k/filter_col are deprecated; use "
                          f"ctr.datasets.{name}.filter", FutureWarning, stacklevel=3)
            flt = spec.setdefault("filter", {})
            flt.update(mode="top_k", k=spec["filter_top_k"], metric="count")
            if spec.get("filter_col"):
                flt["col"] = spec["filter_col"]


def _validate_training_layers(training: Mapping[str, Any], problems: list[str]) -> None:
    """Check every by_loss / by_source layer on its own so errors name the exact dotted key."""
    by_loss = training.get("by_loss", {})
    if not isinstance(by_loss, Mapping):
        return
    for loss, layer in by_loss.items():
        path = f"training.by_loss.{loss}"
        if loss not in LOSS_NAMES:
            problems.append(f"{path}: unknown loss; expected one of bce, localized_entropy (le), focal")
            continue
        if not isinstance(layer, Mapping):
            problems.append(f"{path}: got {describe_value(layer)}; expected an object")
            continue
        sources = layer.get("by_source", {})
        convert(TrainingSettings, {k: v for k, v in layer.items() if k != "by_source"}, path, problems, partial=True)
        if not isinstance(sources, Mapping):
            problems.append(f"{path}.by_source: got {describe_value(sources)}; expected an object")
            continue
        for source, sub in sources.items():
            if source not in _SOURCE_KEYS:
                problems.append(f"{path}.by_source.{source}: unknown source; expected one of {', '.join(_SOURCE_KEYS)}")
            else:
                convert(TrainingSettings, sub, f"{path}.by_source.{source}", problems, partial=True)


def resolve_config(data: Mapping[str, Any]) -> Config:
    """Validate merged JSON data into the frozen :class:`Config` (raises ConfigError)."""
    data = copy.deepcopy(dict(data))
    _apply_legacy_ctr_keys(data)
    _normalise_loss_keys(data)
    _merge_ctr_defaults(data)
    problems: list[str] = []
    cfg = convert(Config, data, "", problems)
    training = data.get("training", {})
    if isinstance(training, Mapping):
        _validate_training_layers(training, problems)
        try:
            losses_of(training.get("loss_mode", "both"))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if cfg is not None and not problems:
        if cfg.data.source == "ctr" and cfg.data.ctr_dataset not in cfg.ctr.datasets:
            problems.append(f"data.ctr_dataset: got {cfg.data.ctr_dataset!r}; no ctr.datasets entry of that name")
        if cfg.evaluation.split == "test" and not cfg.data.use_test_set:
            problems.append("evaluation.split: got \"test\"; expected train or eval while data.use_test_set is false")
        for loss in losses_of(cfg.training.loss_mode):
            _resolve_training(cfg, loss, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(config_path: str | Path | None = None, *, profile: str | None = None,
                sets: Iterable[str] = ()) -> Config:
    """Resolve the full config: default ← file ← profile ← experiment.overrides ← --set."""
    return resolve_config(merge_layers(config_path, profile=profile, sets=sets))


def source_key_candidates(cfg: Config) -> tuple[str, ...]:
    """by_source keys to look up, most specific first: (dataset, "ctr") or ("synthetic",)."""
    return ("synthetic",) if cfg.data.source == "synthetic" else (cfg.data.ctr_dataset, "ctr")


def _resolve_training(cfg: Config, loss: str, problems: list[str]) -> TrainingSettings | None:
    base = {k: to_plain(getattr(cfg.training, k)) for k in TRAINING_SETTING_KEYS}
    layer = to_plain(cfg.training.by_loss.get(loss, {}))
    sources = layer.pop("by_source", {})
    merged = deep_merge(base, layer)
    source = next((s for s in source_key_candidates(cfg) if s in sources), None)
    if source is not None:
        merged = deep_merge(merged, sources[source])
    where = f"training (loss {loss}, source {source or cfg.source_key})"
    return convert(TrainingSettings, merged, where, problems)


def training_for(cfg: Config, loss: str) -> TrainingSettings:
    """Training settings of ``loss`` on the active source (see module docstring)."""
    problems: list[str] = []
    settings = _resolve_training(cfg, canonical_loss(loss, "loss"), problems)
    if problems:
        raise ConfigError(problems)
    return settings


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON data of a resolved config (what ``le-ray config show`` prints)."""
    return to_plain(cfg)


def config_fingerprint(data: Any) -> str:
    """Stable short SHA-256 of JSON data (sorted keys); used for trial ids and cache keys."""
    text = json.dumps(to_plain(data), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
