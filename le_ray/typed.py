"""Convert plain JSON-like data into frozen, typed dataclasses, collecting errors by dotted key.

The converter understands the small type vocabulary the config uses: ``bool``, ``int``, ``float``,
``str``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, unions of those, ``dict[str, X]`` and
nested dataclasses. Lists become tuples and dicts become read-only mappings, so a converted object
is immutable all the way down. Range checks ride on dataclass field metadata
(``field(metadata=bounds(gt=0))``); cross-field checks are a ``_checks(self) -> list[str]`` method.

Every problem is recorded as ``"<dotted.key>: got <value>; expected <what is allowed>"`` and the
caller raises them together, so a user fixes a whole config in one round.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from le_ray.errors import ConfigError

__all__ = ["ConfigError", "FrozenDict", "bounds", "convert", "to_plain", "describe_value"]


class FrozenDict(dict):
    """A read-only dict that still pickles (Ray ships configs to workers; mappingproxy cannot be pickled)."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("config mappings are read-only; derive a new config with --set or a profile")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def bounds(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> dict[str, Any]:
    """Field metadata for a numeric range check (open with gt/lt, closed with ge/le)."""
    return {"bounds": {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}}


def describe_value(value: Any) -> str:
    """Short JSON-ish rendering of a value for error messages."""
    try:
        text = json.dumps(to_plain(value))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_type(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true/false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {_describe_type(get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return f"an object of {_describe_type(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return getattr(tp, "__name__", str(tp))


def _describe_bounds(b: dict[str, float]) -> str:
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return "a number " + " and ".join(f"{words[k]} {v}" for k, v in b.items())


def _check_bounds(value: Any, b: dict[str, float]) -> bool:
    if isinstance(value, tuple):
        return all(_check_bounds(v, b) for v in value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True
    return (("gt" not in b or value > b["gt"]) and ("ge" not in b or value >= b["ge"])
            and ("lt" not in b or value < b["lt"]) and ("le" not in b or value <= b["le"]))


class _Invalid(Exception):
    """Raised inside conversion of one value; carries the 'expected' text."""


def _convert_scalar(tp: Any, value: Any) -> Any:
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif get_origin(tp) is Literal:
        if any(value == a and type(value) is type(a) for a in get_args(tp)):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r}")
    raise _Invalid(_describe_type(tp))


def convert(tp: Any, value: Any, path: str, problems: list[str], *, partial: bool = False) -> Any:
    """Convert ``value`` to ``tp``; append messages to ``problems`` and return None on failure.

    With ``partial=True`` a dataclass may miss fields and comes back as a dict of the present,
    converted keys (used for override layers such as ``training.by_loss.<loss>``).
    """
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, problems, partial=partial)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, value, path, problems, partial=partial)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: got {describe_value(value)}; expected {_describe_type(tp)}")
            return None
        item_tp = get_args(tp)[0]
        return tuple(convert(item_tp, v, f"{path}[{i}]", problems, partial=partial) for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            problems.append(f"{path}: got {describe_value(value)}; expected an object")
            return None
        item_tp = get_args(tp)[1]
        return FrozenDict({k: convert(item_tp, v, f"{path}.{k}", problems, partial=partial)
                           for k, v in value.items()})
    if tp is Any:
        return value
    try:
        return _convert_scalar(tp, value)
    except _Invalid as exc:
        problems.append(f"{path}: got {describe_value(value)}; expected {exc}")
        return None


def _convert_union(tp: Any, value: Any, path: str, problems: list[str], *, partial: bool) -> Any:
    options = get_args(tp)
    if value is None and type(None) in options:
        return None
    # Try each option silently; report against the whole union when none fits.
    for option in options:
        if option is type(None):
            continue
        trial: list[str] = []
        result = convert(option, value, path, trial, partial=partial)
        if not trial:
            return result
        if len([o for o in options if o is not type(None)]) == 1:
            problems.extend(trial)
            return None
    problems.append(f"{path}: got {describe_value(value)}; expected {_describe_type(tp)}")
    return None


def _convert_dataclass(cls: Any, value: Any, path: str, problems: list[str], *, partial: bool) -> Any:
    if not isinstance(value, Mapping):
        problems.append(f"{path}: got {describe_value(value)}; expected an object with keys "
                        + ", ".join(f.name for f in dataclasses.fields(cls)))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    start = len(problems)
    for key in value:
        if key not in fields:
            problems.append(f"{_join(path, key)}: unknown key; allowed keys here: {', '.join(fields)}")
    out: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name not in value:
            if not partial:
                problems.append(f"{key_path}: missing; expected {_describe_type(hints[name])}")
            continue
        converted = convert(hints[name], value[name], key_path, problems, partial=partial)
        b = f.metadata.get("bounds")
        if b and converted is not None and not _check_bounds(converted, b):
            problems.append(f"{key_path}: got {describe_value(value[name])}; expected {_describe_bounds(b)}")
        out[name] = converted
    if partial or len(problems) > start:
        return out if partial else None
    obj = cls(**out)
    checks = getattr(obj, "_checks", None)
    if checks is not None:
        problems.extend(_join(path, msg) for msg in checks())
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def to_plain(value: Any) -> Any:
    """Turn a converted object back into plain JSON data (dicts, lists, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
