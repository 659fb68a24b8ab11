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
from le_ray.registry import suggest

__all__ = ["CONFIG_DIR", "DEFAULT_CONFIG_PATH", "PROFILES_DIR", "Profile", "deep_merge", "read_json", "parse_set",
           "apply_set", "profiles", "profile_names", "merge_layers", "to_plain", "training_layers", "merged_training"]

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "default.json"
PROFILES_DIR = CONFIG_DIR / "profiles"
_PROFILE_META = ("extends", "description")


@dataclass(frozen=True)
class Profile:
    """A named override layer: what it is for, what it extends, its overrides, where it was defined."""
    name: str
    description: str
    extends: tuple[str, ...]
    overrides: Mapping[str, Any]
    source: str


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
    return found


def profile_names(config_path: str | Path | None = None) -> list[str]:
    """Names of every profile (files and the user's definitions), sorted."""
    return sorted(profiles(read_json(config_path) if config_path is not None else None))


def _profile_layers(known: Mapping[str, Profile], name: str, chain: tuple[str, ...] = ()) -> list[Mapping[str, Any]]:
    """The override dicts of profile ``name``, parents (``extends``) first."""
    if name not in known:
        raise ConfigError(f"experiment.active / --profile: got {name!r}; expected one of {', '.join(sorted(known))}"
                          f"{suggest(name, known)}")
    if name in chain:
        raise ConfigError(f"profile {name!r}: extends forms a cycle {' -> '.join(chain + (name,))}")
    layers: list[Mapping[str, Any]] = []
    for parent in known[name].extends:
        layers += _profile_layers(known, parent, chain + (name,))
    return layers + [known[name].overrides]


def merge_layers(config_path: str | Path | None = None, *, profile: str | None = None,
                 sets: Iterable[str] = ()) -> dict[str, Any]:
    """Steps 1-5 of the resolution order, as plain JSON data (not yet validated)."""
    data = read_json(DEFAULT_CONFIG_PATH, "default config")
    user = read_json(config_path) if config_path is not None else {}
    data = deep_merge(data, user)
    experiment = data.setdefault("experiment", {})
    active = profile if profile is not None else experiment.get("active")
    if active:
        for layer in _profile_layers(profiles(user), active):
            data = deep_merge(data, layer)
    data = deep_merge(data, data.get("experiment", {}).get("overrides", {}) or {})
    data["experiment"]["active"] = active
    for assignment in sets:
        apply_set(data, *parse_set(assignment))
    return data


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
