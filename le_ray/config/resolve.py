"""Validate merged config data into the frozen :class:`Config`; resolve per-loss / per-source settings.

Per-loss training settings: ``training.*`` ← ``training.by_loss.<loss>`` ←
``training.by_loss.<loss>.by_source.<key>`` where ``key`` is the active CTR dataset name
(avazu/criteo/yambda, falling back to ``ctr``) or ``synthetic``. Every layer is validated on its own
so an error names the exact dotted key; one :class:`ConfigError` lists every problem before any work.
The more specific layer wins (the reference's precedence); :func:`shadowed_sets` says when a general
``--set`` is overridden by a more specific key, so the precedence is visible.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shlex
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from le_ray.config.load import (
    DEFAULT_CONFIG_PATH, LOSS_TABLES, WILDCARD, apply_set, canonical_loss_keys, deep_merge, is_distribution,
    merge_layers, parse_set, read_json, to_plain, training_layers,
)
from le_ray.config.messages import describe_value, problems_from
from le_ray.config.schema import (
    OPTIMISER_SETTING_KEYS, SOURCE_KEYS, TRAINING_SETTING_KEYS, Config, TrainingSettings,
)
from le_ray.errors import ConfigError
from le_ray.registry import LOSSES, loss_key, losses_of, suggest

__all__ = ["resolve_config", "load_config", "resolve_training", "source_key_candidates", "to_dict", "to_plain",
           "config_fingerprint", "Shadow", "shadowed_sets", "validate_model", "set_literal", "every_loss_set",
           "SAME_SETTINGS_KEY", "tuned_optimiser_keys", "DeprecatedKeyWarning", "with_training_values",
           "space_value_problems", "best_overrides", "ADDED_KEYS", "with_added_keys", "without_added_defaults"]

#: Keys added after sweep folders were first stored, each with the value that reproduces what a folder stored
#: without it ran: a stored config that lacks one is read with it (:func:`with_added_keys`), and a trial id leaves
#: it out of its hash at that value (:func:`without_added_defaults`), so re-reports and resumes of older folders go
#: on as before.
ADDED_KEYS: dict[str, Any] = {"training.cross_batch.warm_start": False}


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON data of a resolved config (what ``le-ray config show`` prints and sweeps store)."""
    return to_plain(cfg)


def _section_of(data: Any, dotted: str) -> tuple[dict[str, Any] | None, str]:
    """(the dict that holds the last part of ``dotted`` in ``data``, or None where a section on the way is
    missing; that last part)."""
    *parents, leaf = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def with_added_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the plain config ``data`` with each :data:`ADDED_KEYS` key it lacks set to its value, where
    the section above the key exists (a partial layer without that section stays without it)."""
    out = copy.deepcopy(dict(data))
    for key, value in ADDED_KEYS.items():
        section, leaf = _section_of(out, key)
        if section is not None and leaf not in section:
            section[leaf] = copy.deepcopy(value)
    return out


def without_added_defaults(plain: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``plain`` (the plain data of the config section at dotted ``prefix``, e.g. ``training``) without each
    :data:`ADDED_KEYS` key under it that holds its added value; ``plain`` is changed in place and returned."""
    for key, value in ADDED_KEYS.items():
        if key.startswith(prefix + "."):
            section, leaf = _section_of(plain, key[len(prefix) + 1:])
            if section is not None and leaf in section and section[leaf] == value:
                del section[leaf]
    return plain


def config_fingerprint(data: Any) -> str:
    """Stable short SHA-256 of JSON data (sorted keys); used for trial ids and cache keys."""
    text = json.dumps(to_plain(data), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validate_model(model: type[BaseModel], data: Any, problems: list[str], prefix: str = "") -> Any:
    """``model`` from JSON ``data`` (strict JSON mode); on failure append problems and return None."""
    try:
        return model.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        problems.extend(problems_from(exc, model, data, prefix))
        return None


def _flatten_space(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"focal": {"gamma": {"uniform": [..]}}}`` → ``{"focal.gamma": {"uniform": [..]}}`` (what --set writes)."""
    if isinstance(node, dict) and node and not is_distribution(node):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten_space(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: node}


def _flatten_tune_space(data: dict[str, Any]) -> None:
    space = (data.get("tune") or {}).get("space")
    if isinstance(space, dict):
        for loss, keys in space.items():
            if isinstance(keys, dict) and keys:  # {} = no search for this loss
                space[loss] = _flatten_space(keys)


def _merge_ctr_defaults(data: dict[str, Any]) -> None:
    ctr = data.get("ctr")
    if not isinstance(ctr, dict) or not isinstance(ctr.get("datasets"), dict):
        return
    defaults = ctr.get("defaults") or {}
    for name, spec in list(ctr["datasets"].items()):
        if isinstance(spec, dict) and isinstance(defaults, dict):
            ctr["datasets"][name] = deep_merge(defaults, spec)


class DeprecatedKeyWarning(FutureWarning):
    """A deprecated config spelling was mapped to its current key (the CLI prints it as one WARNING line)."""


def _apply_legacy_ctr_keys(data: dict[str, Any], problems: list[str]) -> None:
    """``ctr.dataset`` and ``filter_col``/``filter_top_k`` are deprecated spellings; map them and warn once. A
    deprecated ``ctr.dataset`` that contradicts a ``data.ctr_dataset`` set away from its default is a problem."""
    ctr = data.get("ctr", {})
    if isinstance(ctr, dict) and ctr.get("dataset"):
        current = (data.get("data") or {}).get("ctr_dataset")
        default = read_json(DEFAULT_CONFIG_PATH, "default config")["data"]["ctr_dataset"]
        if current not in (None, default, ctr["dataset"]):
            problems.append(f"ctr.dataset (deprecated): got {ctr['dataset']!r}, but data.ctr_dataset is {current!r}; "
                            "give only data.ctr_dataset")
        warnings.warn("ctr.dataset is deprecated; use data.ctr_dataset", DeprecatedKeyWarning, stacklevel=4)
        data.setdefault("data", {})["ctr_dataset"] = ctr["dataset"]
    for name, spec in (ctr.get("datasets") or {}).items() if isinstance(ctr, dict) else ():
        if isinstance(spec, dict) and spec.get("filter_top_k") is not None:
            warnings.warn(f"ctr.datasets.{name}.filter_top_k/filter_col are deprecated; use "
                          f"ctr.datasets.{name}.filter", DeprecatedKeyWarning, stacklevel=4)
            flt = spec.setdefault("filter", {})
            flt.update(mode="top_k", k=spec["filter_top_k"], metric="count")
            if spec.get("filter_col"):
                flt["col"] = spec["filter_col"]


def _base_training(training: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(training[k]) for k in TRAINING_SETTING_KEYS if k in training}


def _check_layer(base: dict, layer: Any, path: str, problems: list[str]) -> None:
    """Validate one override layer merged over ``base``; errors name keys under ``path``."""
    if not isinstance(layer, Mapping):
        problems.append(f"{path}: got {describe_value(layer)}; expected an object")
        return
    local: list[str] = []
    validate_model(TrainingSettings, deep_merge(base, layer), local)
    for problem in local:  # keys the layer does not set are reported at the layer that does
        key = problem.split(":", 1)[0].split("[", 1)[0]
        if _lookup(layer, key.split("."))[0]:
            problems.append(f"{path}.{problem}")


def _validate_training_layers(training: Mapping[str, Any], problems: list[str]) -> None:
    """Check every by_loss / by_source layer so errors name the exact dotted key."""
    by_loss = training.get("by_loss", {})
    if not isinstance(by_loss, Mapping):
        return
    base = _base_training(training)
    for loss, layer in by_loss.items():
        path = f"training.by_loss.{loss}"
        if loss not in LOSSES:
            problems.append(f"{path}: unknown loss; expected one of {', '.join(LOSSES)}{suggest(loss, LOSSES)}")
            continue
        layer = dict(layer) if isinstance(layer, Mapping) else layer
        sources = layer.pop("by_source", {}) if isinstance(layer, dict) else {}
        _check_layer(base, layer, path, problems)
        if not isinstance(sources, Mapping):
            problems.append(f"{path}.by_source: got {describe_value(sources)}; expected an object")
            continue
        for source, sub in sources.items():
            if source not in SOURCE_KEYS:
                problems.append(f"{path}.by_source.{source}: unknown source; expected one of "
                                f"{', '.join(SOURCE_KEYS)}{suggest(source, SOURCE_KEYS)}")
            else:
                _check_layer(deep_merge(base, layer) if isinstance(layer, Mapping) else base, sub,
                             f"{path}.by_source.{source}", problems)


def with_training_values(settings: TrainingSettings, values: Mapping[str, Any], problems: list[str] | None = None
                         ) -> TrainingSettings | None:
    """``settings`` with each dotted training key of ``values`` replaced, validated like a config layer. With
    ``problems`` a refused value is appended there (None returned); without, pydantic's error is raised."""
    plain = to_plain(settings)
    for key, value in values.items():
        apply_set(plain, key.split("."), value)
    if problems is None:
        return TrainingSettings.model_validate_json(json.dumps(plain))
    return validate_model(TrainingSettings, plain, problems)


def _refused(settings: TrainingSettings, key: str, value: Any) -> str | None:
    """Why the training settings refuse ``key`` = ``value`` (the config's message), or None."""
    problems: list[str] = []
    with_training_values(settings, {key: value}, problems)
    return f"training.{problems[0]}" if problems else None


def _distribution_problem(settings: TrainingSettings, key: str, kind: str, args: Any) -> str | None:
    """Why ``{kind: args}`` can draw a value ``settings`` refuse for ``key``, or None. The values tried bound what it
    draws: every choice; the ends of a range; for uniform / loguniform also a float just above low, since they never
    draw integers (the validation is strict: 100.0 is not an integer)."""
    if kind == "choice":
        tried = [(f"choice {json.dumps(value, default=str)}", value) for value in args]
    else:
        low, high = (int(args[0]), int(args[1])) if kind == "int" else (float(args[0]), float(args[1]))
        whole = (math.ceil(low), math.floor(high))
        between = (whole[0] + min(high, whole[0] + 1)) / 2  # a non-integer beside an integer of the range
        between = between if not float(between).is_integer() else (low + high) / 2
        if kind != "int" and whole[0] <= whole[1] and _refused(settings, key, between) \
                and not _refused(settings, key, whole[0]):
            return f"draws floats, but training.{key} takes integers: use {{\"int\": [{whole[0]}, {whole[1]}]}}"
        tried = [(f"low end {low}", low), (f"high end {high}", high)]
    for what, value in tried:
        why = _refused(settings, key, value)
        if why:
            return f"{what} is refused by {why}"
    return None


def space_value_problems(cfg: Config) -> list[str]:
    """Each ``tune.space`` distribution that can draw a value its loss's training settings would refuse (the key's
    type, bounds, literals), checked on the active source's settings before any search starts instead of inside a
    Ray trial."""
    problems = []
    for loss, keys in cfg.tune.space.items():
        for key, spec in keys.items():
            for kind, args in spec.items():
                why = _distribution_problem(cfg.training_for(loss), key, kind, args)
                if why:
                    problems.append(f"tune.space.{loss}.{key}.{kind}: {why}")
    return problems


def _grace_problems(cfg: Config) -> list[str]:
    """ASHA whose grace period reaches every searched loss's epochs: it could stop no sample (a FIFO search in
    ASHA's name)."""
    epochs = {loss: cfg.training_for(loss).epochs for loss in cfg.losses if cfg.tune.space.get(loss)}
    if cfg.tune.scheduler != "asha" or not epochs or cfg.tune.grace_period < max(epochs.values()):
        return []
    return [f"tune.grace_period: got {cfg.tune.grace_period}; ASHA stops a sample only after it, so it must be below "
            f"the epochs of a searched loss ({', '.join(f'{loss} {n}' for loss, n in epochs.items())}): lower it, or "
            "set tune.scheduler=fifo"]


def _cross_checks(cfg: Config, problems: list[str]) -> None:
    problems.extend(space_value_problems(cfg) + _grace_problems(cfg))
    if cfg.data.source == "ctr" and cfg.data.ctr_dataset not in cfg.ctr.datasets:
        problems.append(f"data.ctr_dataset: got {cfg.data.ctr_dataset!r}; no ctr.datasets entry of that name")
    if cfg.evaluation.split == "test" and not cfg.data.use_test_set:
        problems.append("evaluation.split: got \"test\"; expected train or eval while data.use_test_set is false")
    elif cfg.evaluation.split == "test":
        problems.extend(_no_test_split(cfg))


def _no_test_split(cfg: Config) -> list[str]:
    """``evaluation.split`` test on a source that makes no test split (it failed in every trial, after the data)."""
    if cfg.data.source == "synthetic" and cfg.synthetic.test_split == 0:
        return ["evaluation.split: got \"test\" but synthetic.test_split is 0, so there is no test split; expected "
                "train or eval, or synthetic.test_split > 0"]
    if cfg.data.source == "ctr" and cfg.data.ctr_dataset in cfg.ctr.datasets:
        ds, where = cfg.active_ctr, f"ctr.datasets.{cfg.data.ctr_dataset}"
        if ds.test_path is None and not ds.split_test_from_train:
            return [f"evaluation.split: got \"test\" but {where}.test_path is null and {where}.split_test_from_train "
                    f"is false, so there is no test split; expected train or eval, or a test file ({where}.test_path) "
                    "or a held-out part of the train file (split_test_from_train true)"]
    return []


def resolve_config(data: Mapping[str, Any]) -> Config:
    """Validate merged JSON data into the frozen :class:`Config` (raises ConfigError listing every problem); a
    stored config without a key of :data:`ADDED_KEYS` is read with its value."""
    data = with_added_keys(data)
    problems: list[str] = []
    _apply_legacy_ctr_keys(data, problems)
    aliases = _aliases_written(data)
    data = canonical_loss_keys(data)  # aliases (le) accepted as keys of training.by_loss and tune.space
    _flatten_tune_space(data)
    _merge_ctr_defaults(data)
    cfg = validate_model(Config, data, problems)
    training = data.get("training", {})
    if isinstance(training, Mapping):
        _validate_training_layers(training, problems)
        try:
            losses_of(training.get("loss_mode", "both"))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if cfg is not None and not problems:
        _cross_checks(cfg, problems)
    if problems:
        raise ConfigError([_named_as_written(p, aliases) for p in problems])
    return cfg


def _aliases_written(data: Mapping[str, Any]) -> dict[str, str]:
    """``{"tune.space.localized_entropy": "le"}``: the loss tables' keys written as an alias, by canonical path."""
    out = {}
    for section, key in LOSS_TABLES:
        table = (data.get(section) or {}).get(key) if isinstance(data.get(section), Mapping) else None
        for name in table if isinstance(table, Mapping) else ():
            if loss_key(name) not in (None, name):
                out[f"{section}.{key}.{loss_key(name)}"] = name
    return out


def _named_as_written(problem: str, aliases: Mapping[str, str]) -> str:
    """``problem`` with a canonical loss path the user wrote as an alias shown as both (``localized_entropy (le)``)."""
    for path, alias in aliases.items():
        if problem.startswith((f"{path}.", f"{path}:")):
            return f"{path} ({alias}){problem[len(path):]}"
    return problem


def load_config(config_path: str | Path | None = None, *, profile: str | None = None,
                sets: Iterable[str] = ()) -> Config:
    """Resolve the full config: default ← file ← profile ← experiment.overrides ← --set."""
    sets = list(sets)
    data = merge_layers(config_path, profile=profile, sets=sets)
    cfg = resolve_config(data)
    for shadow in shadowed_sets(data, sets, source_key_candidates(cfg), cfg.losses):
        warnings.warn(shadow.message, ConfigShadowWarning, stacklevel=2)
    return cfg


def source_key_candidates(cfg: Config) -> tuple[str, ...]:
    """by_source keys to look up, most specific first: (dataset, "ctr") or ("synthetic",)."""
    return cfg.source_keys


def resolve_training(cfg: Config, loss: str) -> TrainingSettings:
    """Settings of ``loss`` on the active source (see :attr:`Config.training_by_loss`)."""
    return cfg.training_for(loss)


class ConfigShadowWarning(UserWarning):
    """A general ``--set`` that a more specific per-loss / per-source key overrides for some loss."""


def set_literal(dotted: str, value: Any) -> str:
    """``dotted=VALUE`` as one shell word that ``--set`` parses back to ``value`` (quoted when needed)."""
    text = value if isinstance(value, str) and _parses_as_string(value) else json.dumps(value)
    return shlex.quote(f"{dotted}={text}")


def _parses_as_string(text: str) -> bool:
    try:
        return isinstance(json.loads(text), str) and json.loads(text) == text
    except json.JSONDecodeError:
        return True


def every_loss_set(key: str, value: Any) -> str:
    """The one-liner that sets training key ``key`` for every loss at once (see :func:`le_ray.config.load.expand_set`)."""
    return f"--set {set_literal(f'training.by_loss.{WILDCARD}.{key}', value)}"


SAME_SETTINGS_KEY = "training.same_settings_for_all_losses"


@dataclass(frozen=True)
class Shadow:
    """``set_key`` (a training key given with --set) has no effect for ``loss``: ``winner_key`` = ``winner_value``
    wins — a more specific per-loss / per-source key, or ``training.same_settings_for_all_losses`` (then the
    per-loss ``set_key`` is ignored)."""
    set_key: str
    set_value: Any
    loss: str
    winner_key: str
    winner_value: Any

    @property
    def setting(self) -> str:
        """The training key itself (``batch_size``, ``cross_batch.enabled``)."""
        parts = self.set_key.split(".")
        return ".".join(parts[5:] if "by_source" in parts[3:4] else parts[3:] if parts[1] == "by_loss" else parts[1:])

    @property
    def message(self) -> str:
        if self.winner_key == SAME_SETTINGS_KEY:
            return (f"--set {set_literal(self.set_key, self.set_value)} has no effect on {LOSSES[self.loss].label}: "
                    f"{SAME_SETTINGS_KEY} is true, so every loss takes {self.setting} from training.{self.setting} "
                    f"(--set {set_literal(f'training.{self.setting}', self.set_value)})")
        every = ("" if self.set_key.startswith("training.by_loss.") else
                 f", or every loss at once with {every_loss_set(self.setting, self.set_value)}")
        return (f"--set {set_literal(self.set_key, self.set_value)} does not apply to {LOSSES[self.loss].label}: "
                f"{self.winner_key} = {describe_value(self.winner_value)} is more specific and wins; set that key "
                f"instead (--set {set_literal(self.winner_key, self.set_value)}){every}")


def _lookup(tree: Mapping[str, Any], parts: list[str]) -> tuple[bool, Any]:
    node: Any = tree
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _ignored_sets(parts: list[str], value: Any, losses: Iterable[str]) -> list[Shadow]:
    """A per-loss ``--set`` of an optimiser key while same_settings_for_all_losses is true: ignored for its losses."""
    if len(parts) < 4 or parts[:2] != ["training", "by_loss"]:
        return []
    setting = _setting_of(parts)
    if setting not in OPTIMISER_SETTING_KEYS:
        return []
    key = loss_key(parts[2])  # None for * or an unknown name: then every loss
    named = [key] if key is not None else list(losses)
    return [Shadow(".".join(parts), value, loss, SAME_SETTINGS_KEY, True) for loss in named if loss in losses]


def shadowed_sets(data: Mapping[str, Any], sets: Iterable[str], candidates: tuple[str, ...],
                  losses: Iterable[str]) -> list[Shadow]:
    """Every ``--set training.<key>`` that a ``by_loss`` / ``by_source`` value overrides for one of ``losses``, and
    (with ``training.same_settings_for_all_losses``) every per-loss ``--set`` of an optimiser key, which is ignored."""
    training = data.get("training") or {}
    by_loss, alike = training.get("by_loss") or {}, training.get("same_settings_for_all_losses") is True
    losses = tuple(losses)
    out: list[Shadow] = []
    for assignment in sets:
        parts, value = parse_set(assignment)
        if alike:
            out += _ignored_sets(parts, value, losses)
        if parts[:2] == ["training", "by_loss"]:
            out += [] if alike and _setting_of(parts) in OPTIMISER_SETTING_KEYS else \
                _per_loss_shadow(by_loss, parts, value, candidates, losses)
            continue
        if parts[0] != "training" or len(parts) < 2 or parts[1] not in TRAINING_SETTING_KEYS:
            continue
        if alike and parts[1] in OPTIMISER_SETTING_KEYS:
            continue  # every loss takes it from training.*: nothing can shadow it
        for loss in losses:
            for prefix, layer in reversed(training_layers(by_loss, loss, candidates)):
                found, winner = _lookup(layer, parts[1:])
                if found:
                    if winner != value:
                        out.append(Shadow(".".join(parts), value, loss, f"{prefix}.{'.'.join(parts[1:])}", winner))
                    break
    return out


def overridden_for_every_loss(data: Mapping[str, Any], dotted: str) -> bool:
    """Whether the general training key ``dotted`` (``training.<key>``, e.g. ``training.lr``) trains nothing in the
    resolved config ``data`` (:func:`to_dict`): every loss it trains takes that key from a more specific
    ``by_loss`` / ``by_source`` layer. False for any other key, and for an optimiser key under
    ``training.same_settings_for_all_losses`` (then every loss takes it from ``training.*``)."""
    parts = dotted.split(".")
    if parts[0] != "training" or len(parts) < 2 or parts[1] not in TRAINING_SETTING_KEYS:
        return False
    training, cfg = data.get("training") or {}, resolve_config(data)
    if training.get("same_settings_for_all_losses") is True and parts[1] in OPTIMISER_SETTING_KEYS:
        return False
    by_loss, losses = training.get("by_loss") or {}, losses_of(cfg.training.loss_mode)
    return bool(losses) and all(any(_lookup(layer, parts[1:])[0] for _, layer in
                                    training_layers(by_loss, loss, cfg.source_keys)) for loss in losses)


def _setting_of(parts: list[str]) -> str:
    """The top training key of a ``training.by_loss...`` path (``lr`` of ``training.by_loss.bce.by_source.x.lr``)."""
    return parts[5] if len(parts) > 5 and parts[3] == "by_source" else parts[3] if len(parts) > 3 else ""


def _per_loss_shadow(by_loss: Mapping[str, Any], parts: list[str], value: Any, candidates: tuple[str, ...],
                     losses: tuple[str, ...]) -> list[Shadow]:
    """A ``--set training.by_loss.<loss>.<key>`` that the loss's active ``by_source`` entry overrides."""
    loss = loss_key(parts[2]) if len(parts) >= 4 else None
    if loss is None or parts[3] not in TRAINING_SETTING_KEYS:
        return []
    layers = training_layers(by_loss, loss, candidates)
    if loss not in losses or len(layers) < 2:
        return []
    prefix, layer = layers[-1]
    found, winner = _lookup(layer, parts[3:])
    return [Shadow(".".join(parts), value, loss, f"{prefix}.{'.'.join(parts[3:])}", winner)] \
        if found and winner != value else []


def tuned_optimiser_keys(cfg: Config) -> list[str]:
    """Problems of ``le-ray tune`` under ``training.same_settings_for_all_losses``: a ``tune.space`` entry that
    tunes an optimiser key per loss would be ignored (every loss takes it from ``training.*``)."""
    if not cfg.training.same_settings_for_all_losses:
        return []
    return [f"tune.space.{loss}.{key}: tunes an optimiser setting per loss, but {SAME_SETTINGS_KEY} is true, so "
            f"every loss trains with training.{key}; drop the entry or set {SAME_SETTINGS_KEY}=false"
            for loss, keys in cfg.tune.space.items() for key in keys if key.split(".")[0] in OPTIMISER_SETTING_KEYS]


def best_overrides(cfg: Config, records: Iterable[Mapping[str, Any]]) -> list[str]:
    """``--set`` strings that give every loss its best sample's settings on the active source: ``records`` are
    ``le-ray tune``'s per-loss searches (``{"loss": ..., "best": {"config": {key: value}} or None}``)."""
    source = cfg.source_keys[0]
    return [f"training.by_loss.{record['loss']}.by_source.{source}.{key}={json.dumps(value)}"
            for record in records for key, value in (((record.get("best") or {}).get("config")) or {}).items()]

