"""Config layers as plain JSON data: defaults, the user's file, profiles, overrides, ``--set``.

Resolution order (later wins; objects merge key by key, lists and scalars replace):

1. ``configs/default.json`` (every key with its default; no profiles),
2. the user's ``--config FILE`` (may be partial),
3. the profile ``--profile NAME`` (or ``experiment.active``): ``configs/profiles/<NAME>.json``, or
   ``experiment.definitions.<NAME>`` of the user's file (which wins over a file of the same name);
   a profile may say ``"extends": "<profile>"`` (or a list), applied first, and carries a one-line
   ``"description"``,
4. ``experiment.overrides``,
5. each ``--set dotted.key=VALUE`` in order (VALUE parsed as JSON, else taken as a plain string).

``--set training.by_loss.*.<key>=VALUE`` sets ``<key>`` for every loss at once (a key of a loss-specific section,
``focal.*``, ``cross_batch.*``, ``le.*``: for the loss that reads it, :data:`le_ray.registry.SECTION_READER`): it
expands to ``training.by_loss.<loss>.<key>`` for every registered loss (and every loss key already in the config), and
to each ``training.by_loss.<loss>.by_source.<source>.<key>`` that already holds ``<key>``, so no more specific
value shadows it and the command takes effect whatever the source. :class:`Provenance` says which layer
(default, config file, profile, ``experiment.overrides``, ``--set``, tuned) set a dotted key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from le_ray.config.messages import describe_value
from le_ray.errors import ConfigError
from le_ray.registry import LOSS_NAMES, SECTION_READER, loss_key, suggest

__all__ = ["CONFIG_DIR", "DEFAULT_CONFIG_PATH", "PROFILES_DIR", "Profile", "deep_merge", "read_json", "parse_set",
           "apply_set", "profiles", "profile_names", "merge_layers", "to_plain", "training_layers", "merged_training",
           "WILDCARD", "expand_set", "apply_sets", "Provenance", "provenance", "merge_with_provenance",
           "LOSS_TABLES", "canonical_loss_keys", "SPACE_KINDS", "is_distribution"]

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "default.json"
PROFILES_DIR = CONFIG_DIR / "profiles"
_PROFILE_META = ("extends", "description")
WILDCARD = "*"
#: The search distributions of a ``tune.space.<loss>.<key>`` entry: ``{"loguniform": [low, high]}``, ...
SPACE_KINDS = ("loguniform", "uniform", "choice", "int")


@dataclass(frozen=True)
class Profile:
    """A named override layer: what it is for, what it extends, its overrides, where it was defined."""
    name: str
    description: str
    extends: tuple[str, ...]
    overrides: Mapping[str, Any]
    source: str


def is_distribution(value: Any) -> bool:
    """Whether ``value`` is a ``tune.space`` entry's distribution: a non-empty object whose keys are all
    :data:`SPACE_KINDS`. A distribution is one value, not a section of keys."""
    return isinstance(value, Mapping) and bool(value) and all(key in SPACE_KINDS for key in value)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in: dicts recurse, anything else replaces. A search distribution
    replaces whole (merging ``{"uniform": ..}`` into a profile's ``{"loguniform": ..}`` would give one entry two)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
                and not (is_distribution(value) or is_distribution(out[key])):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _DuplicateKey(Exception):
    pass


def _without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict, refusing a key given twice (``json`` keeps the last one without a word)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_json(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a JSON object from ``path`` with an error that names the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r}: file not found")
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_without_duplicates)
    except _DuplicateKey as exc:
        raise ConfigError(f"{what} {str(path)!r}: key {str(exc)!r} appears twice in one object (JSON would keep the "
                          "last silently); keep one") from None
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


def apply_set(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``data[parts[0]]...[parts[-1]] = value``, creating objects on the way."""
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


def _profile(name: str, raw: Any, source: str) -> Profile:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected an object of config overrides")
    body = dict(raw)
    extends = body.pop("extends", [])
    description = body.pop("description", "")
    extends = (extends,) if isinstance(extends, str) else tuple(extends)
    if not isinstance(description, str) or not all(isinstance(e, str) for e in extends):
        raise ConfigError(f"{source}: description must be a string and extends a profile name or a list of them")
    return Profile(name, description, extends, body, source)


def profiles(user_data: Mapping[str, Any] | None = None) -> dict[str, Profile]:
    """Every profile: ``configs/profiles/*.json``, then the user's ``experiment.definitions`` (same name wins)."""
    found = {p.stem: _profile(p.stem, read_json(p, "profile file"), str(p)) for p in sorted(PROFILES_DIR.glob("*.json"))}
    definitions = ((user_data or {}).get("experiment") or {}).get("definitions") or {}
    if not isinstance(definitions, Mapping):
        raise ConfigError("experiment.definitions: expected an object of profiles")
    for name, raw in definitions.items():
        found[name] = _profile(name, raw, f"experiment.definitions.{name}")
    _check_sections(found.values())  # every profile, used or not: a typo in one is found now
    return found


def profile_names(config_path: str | Path | None = None) -> list[str]:
    """Names of every profile (files and the user's definitions), sorted."""
    return sorted(profiles(read_json(config_path) if config_path is not None else None))


def _profile_layers(known: Mapping[str, Profile], name: str, chain: tuple[str, ...] = ()
                    ) -> list[tuple[str, Mapping[str, Any]]]:
    """(profile name, override dict) of profile ``name`` and its parents (``extends``), parents first."""
    if name not in known:
        where = (f"profile {chain[-1]!r} ({known[chain[-1]].source}): extends" if chain
                 else "experiment.active / --profile")
        raise ConfigError(f"{where}: got {name!r}; expected one of {', '.join(sorted(known))}{suggest(name, known)}")
    if name in chain:
        raise ConfigError(f"profile {name!r}: extends forms a cycle {' -> '.join(chain + (name,))}")
    layers: list[tuple[str, Mapping[str, Any]]] = []
    for parent in known[name].extends:
        layers += _profile_layers(known, parent, chain + (name,))
    return layers + [(name, known[name].overrides)]


def _check_sections(found: Iterable[Profile]) -> None:
    """Every profile's top-level keys are config sections (those of configs/default.json, read once): a typo is
    named where it was written, not as an unknown top-level key of the merged config."""
    sections = read_json(DEFAULT_CONFIG_PATH, "default config")
    for profile in found:
        unknown = [key for key in profile.overrides if key not in sections]
        if unknown:
            raise ConfigError([f"{profile.source}.{key}: unknown section in profile {profile.name!r}; expected one of "
                               f"{', '.join(sections)}{suggest(key, sections)}" for key in unknown])


def expand_set(data: Mapping[str, Any], parts: list[str]) -> list[list[str]]:
    """The concrete key paths of one ``--set`` path: itself, or for ``training.by_loss.*.<key>`` one path per
    loss plus one per ``by_source`` entry of that loss that already holds ``<key>`` (see the module docstring)."""
    if WILDCARD not in parts:
        return [parts]
    dotted = ".".join(parts)
    if parts[:2] != ["training", "by_loss"] or parts.index(WILDCARD) != 2 or parts[3:].count(WILDCARD) \
            or len(parts) < 4:
        raise ConfigError(f"--set {dotted}: * is allowed only in training.by_loss.*.<key> (every loss at once)")
    rest = parts[3:]
    by_loss = (data.get("training") or {}).get("by_loss") or {}
    names = [n for n in by_loss if n not in LOSS_NAMES] + list(LOSS_NAMES)
    reader = SECTION_READER.get(rest[2] if rest[0] == "by_source" and len(rest) > 2 else rest[0])
    if reader is not None:  # a loss-specific section: only the loss that reads it
        names = [n for n in names if loss_key(n) == reader]
    out = []
    for name in names:
        out.append(["training", "by_loss", name, *rest])
        sources = (by_loss.get(name) or {}).get("by_source") if isinstance(by_loss.get(name), dict) else None
        if rest[0] != "by_source" and isinstance(sources, dict):
            out += [["training", "by_loss", name, "by_source", s, *rest] for s, layer in sources.items()
                    if _holds(layer, rest)]
    return out


def _holds(tree: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(tree, Mapping) or part not in tree:
            return False
        tree = tree[part]
    return True


def _nested(parts: list[str], value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` of ``["a", "b"]``: one ``--set`` as a layer."""
    node: Any = copy.deepcopy(value)
    for part in reversed(parts):
        node = {part: node}
    return node


def apply_sets(data: dict[str, Any], sets: Iterable[str], label: str = "--set") -> list[tuple[str, dict[str, Any]]]:
    """Apply ``--set`` assignments in order (wildcards expanded); returns each applied path as a (label, layer)."""
    layers = []
    for assignment in sets:
        parts, value = parse_set(assignment)
        for path in expand_set(data, parts):
            apply_set(data, path, copy.deepcopy(value))
            layers.append((label, _nested(path, value)))
    return layers


def _layered(config_path: str | Path | None, profile: str | None, sets: Iterable[str], tuned: Iterable[str] = ()
             ) -> tuple[dict[str, Any], list[tuple[str, Mapping[str, Any]]]]:
    """Steps 1-5 of the resolution order: the merged data and every (label, layer) that went into it."""
    data = read_json(DEFAULT_CONFIG_PATH, "default config")
    layers: list[tuple[str, Mapping[str, Any]]] = [("default", copy.deepcopy(data))]
    user = read_json(config_path) if config_path is not None else {}
    data = deep_merge(data, user)
    if user:
        layers.append((f"--config {Path(config_path).name}", user))
    experiment = data.setdefault("experiment", {})
    active = profile if profile is not None else experiment.get("active")
    for name, layer in _profile_layers(profiles(user), active) if active else ():
        data = deep_merge(data, layer)
        layers.append((f"profile {name}", layer))
    overrides = data.get("experiment", {}).get("overrides", {}) or {}
    data = deep_merge(data, overrides)
    layers.append(("experiment.overrides", overrides))
    data["experiment"]["active"] = active
    layers += apply_sets(data, sets)
    layers += apply_sets(data, tuned, "tuned")
    return data, layers


def merge_layers(config_path: str | Path | None = None, *, profile: str | None = None,
                 sets: Iterable[str] = ()) -> dict[str, Any]:
    """Steps 1-5 of the resolution order, as plain JSON data (not yet validated)."""
    return _layered(config_path, profile, sets)[0]


def merge_with_provenance(config_path: str | Path | None = None, *, profile: str | None = None,
                          sets: Iterable[str] = (), tuned: Iterable[str] = ()) -> tuple[dict[str, Any], "Provenance"]:
    """:func:`merge_layers` (``tuned``: sets applied last) and the :class:`Provenance` of the same layers, from one
    reading of the files."""
    data, layers = _layered(config_path, profile, sets, tuned)
    return data, Provenance(tuple(layers))


LOSS_TABLES = (("training", "by_loss"), ("tune", "space"))


def canonical_loss_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with loss aliases renamed in the tables keyed by loss (:data:`LOSS_TABLES`: ``training.by_loss``,
    ``tune.space``): an alias's object (``le``) is merged over its canonical entry (``localized_entropy``), which
    keeps its place or is added at the end. An alias whose value, or whose canonical entry's value, is not an
    object stays as it is (validation names it). A new dict; ``data`` is left as it is."""
    out = dict(data)
    for section, key in LOSS_TABLES:
        part = out.get(section)
        table = part.get(key) if isinstance(part, Mapping) else None
        if not isinstance(table, Mapping):
            continue
        table = dict(table)
        for name in list(table):
            canonical = loss_key(name)
            if canonical not in (None, name) and isinstance(table[name], Mapping) \
                    and isinstance(table.get(canonical, {}), Mapping):
                table[canonical] = deep_merge(table.get(canonical, {}), table.pop(name))
        out[section] = {**part, key: table}
    return out


@dataclass(frozen=True)
class Provenance:
    """Where each config value comes from: the layers of the resolution order as (label, plain data), in order.

    Labels: ``default`` (configs/default.json), ``--config <file>``, ``profile <name>``, ``experiment.overrides``,
    ``--set``, ``tuned`` (the best sample of ``le-ray tune``).
    """
    layers: tuple[tuple[str, Mapping[str, Any]], ...]

    def origin(self, dotted: str) -> str:
        """The label of the last layer that sets ``dotted`` (``default`` when none of them does)."""
        parts = dotted.split(".")
        for label, layer in reversed(self.layers):
            if _holds(canonical_loss_keys(layer), parts):
                return label
        return "default"


def provenance(config_path: str | Path | None = None, *, profile: str | None = None, sets: Iterable[str] = (),
               tuned: Iterable[str] = ()) -> Provenance:
    """The :class:`Provenance` of the config that these arguments resolve to (``tuned``: sets applied last)."""
    return merge_with_provenance(config_path, profile=profile, sets=sets, tuned=tuned)[1]


def to_plain(value: Any) -> Any:
    """Plain JSON data (dicts, lists, scalars) of a pydantic model, mapping or sequence."""
    if hasattr(value, "model_dump"):
        return to_plain(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def training_layers(by_loss: Mapping[str, Any], loss: str, source_keys: tuple[str, ...]
                    ) -> list[tuple[str, Mapping[str, Any]]]:
    """(dotted prefix, override dict) of ``loss``'s layers that apply, general first: ``by_loss.<loss>``,
    then the first of ``source_keys`` present under its ``by_source``."""
    layer = dict(by_loss.get(loss, {}) or {})
    sources = layer.pop("by_source", {}) or {}
    out = [(f"training.by_loss.{loss}", layer)]
    source = next((s for s in source_keys if s in sources), None)
    if source is not None:
        out.append((f"training.by_loss.{loss}.by_source.{source}", sources[source]))
    return out


def merged_training(training: Mapping[str, Any], loss: str, source_keys: tuple[str, ...],
                    setting_keys: Iterable[str]) -> dict[str, Any]:
    """The training settings of ``loss`` as plain data: ``training``'s ``setting_keys`` with its layers merged over."""
    merged = {k: copy.deepcopy(training[k]) for k in setting_keys if k in training}
    for _, layer in training_layers(to_plain(training.get("by_loss", {})), loss, source_keys):
        merged = deep_merge(merged, layer)
    return merged
