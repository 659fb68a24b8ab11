"""Pydantic validation errors → le_ray's problems: ``"<dotted.key>: got <value>; expected <what is allowed>"``.

Pydantic reports one error per failed check, with union members and dict keys as extra location
parts. A user wants one line per key: the location is walked through the model's fields, a union is
reported once at the key that holds it, and "expected" describes the whole annotation (type, choices,
bounds) rather than the one check that failed. Unknown keys get the allowed keys and a "did you
mean" suggestion; cross-field checks (:func:`le_ray.config.schema.checks_failed`) come through as
written, prefixed with their section's key.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pydantic_core import PydanticCustomError
from le_ray.registry import suggest

__all__ = ["problems_from", "describe_value", "describe_annotation", "checks_failed", "CHECKS_ERROR", "human_size"]

CHECKS_ERROR = "le_ray_checks"


def checks_failed(problems: list[str]) -> None:
    """Raise a section's cross-field problems (each ``"<key>: got ...; expected ..."``) at once, from a validator."""
    if problems:
        raise PydanticCustomError(CHECKS_ERROR, "\n".join(problems))

_BOUND_WORDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="), (annotated_types.Lt, "lt", "<"),
                (annotated_types.Le, "le", "<="))


def describe_value(value: Any) -> str:
    """Short JSON rendering of a value for messages (80 characters at most)."""
    try:
        text = json.dumps(value, default=list)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def distinct_values(values: list[Any], min_digits: int = 4) -> list[str]:
    """``values`` for a sentence that sets them side by side: floats with the fewest significant digits (at least
    ``min_digits``) that keep unequal ones apart (0.01187 and 0.006549, not 0.01187122073706163; 0.99951 and
    0.99949 where 4 digits would print both as 0.9995) and round none to a whole number it is not (0.99997, not 1),
    anything else as :func:`describe_value` writes it."""
    floats = sorted({v for v in values if isinstance(v, float) and math.isfinite(v)})

    def enough(d: int) -> bool:  # unequal values stay apart, and none rounds to a whole number it is not (0.99997
        shown = [float(f"{v:.{d}g}") for v in floats]  # as "1" would read as no decay at all)
        return len(set(shown)) == len(floats) and all(s == v or s != round(s) for s, v in zip(shown, floats))

    digits = next((d for d in range(min_digits, 18) if enough(d)), 17)
    return [f"{v:.{digits}g}" if isinstance(v, float) and math.isfinite(v) else describe_value(v) for v in values]


def human_size(n_bytes: float | None) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``, ``1.0 GiB`` (powers of 1,024); ``unknown``
    for None."""
    if n_bytes is None:
        return "unknown"
    size, unit = float(n_bytes), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def _bounds(metadata: list) -> list[str]:
    words = []
    for item in metadata:
        inner = item.metadata if isinstance(item, FieldInfo) else [item]
        for constraint in inner:
            for kind, attr, word in _BOUND_WORDS:
                if isinstance(constraint, kind):
                    words.append(f"{word} {getattr(constraint, attr)}")
    return words


def _unwrap(tp: Any) -> tuple[Any, list]:
    """(bare type, constraint metadata) of a possibly ``Annotated`` type."""
    if get_origin(tp) is typing.Annotated:
        base, *meta = get_args(tp)
        inner, more = _unwrap(base)
        return inner, meta + more
    return tp, []


def describe_annotation(tp: Any, metadata: list | None = None) -> str:
    """What a value of type ``tp`` must be, in words (``a number > 0 and < 1``, ``one of "a", "b"``)."""
    tp, meta = _unwrap(tp)
    bounds = _bounds((metadata or []) + meta)
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_annotation(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in get_args(tp))
    if origin is tuple:
        each = describe_annotation(get_args(tp)[0])
        return f"a list, each {each}" if get_args(tp)[1:] == (Ellipsis,) else f"a list of {len(get_args(tp))}, each {each}"
    if origin in (dict, Mapping) or (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return "an object"
    words = {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    text = words.get(tp, getattr(tp, "__name__", str(tp)))
    return f"{text} {' and '.join(bounds)}" if bounds else text


def _step(tp: Any, part: Any) -> tuple[Any, list, bool]:
    """Descend one location part from type ``tp``: (next type, its metadata, whether ``part`` is a real key)."""
    tp, _ = _unwrap(tp)
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
        info = tp.model_fields[part]
        return info.annotation, list(info.metadata), True
    if origin in (dict, Mapping) and isinstance(part, str) and part != "[key]":
        return get_args(tp)[1], [], True
    if origin is tuple and isinstance(part, int):
        return get_args(tp)[0], [], True
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:  # X | None: pydantic reports no union member part
            return _step(options[0], part)
    return tp, [], False


def _locate(model: type[BaseModel], loc: tuple) -> tuple[list, Any, list, bool, bool]:
    """(path parts, type, metadata, stopped at a union or key, the loc ended on a dict key) for ``loc``."""
    parts: list = []
    tp, meta = model, []
    for i, part in enumerate(loc):
        if i + 1 < len(loc) and loc[i + 1] == "[key]":  # a dict key that is not allowed
            return parts, tp, meta, True, True
        nxt, nxt_meta, real = _step(tp, part)
        if not real:
            return parts, tp, meta, i < len(loc), False
        parts.append(part)
        tp, meta = nxt, nxt_meta
    return parts, tp, meta, False, False


def _dotted(prefix: str, parts: list) -> str:
    out = prefix
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else str(part))
    return out


def _allowed_keys(model: type[BaseModel], parts: list) -> list[str]:
    tp = model
    for part in parts:
        tp, _, _ = _step(tp, part)
    tp, _ = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _value_at(data: Any, parts: list) -> Any:
    for part in parts:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _problem(model: type[BaseModel], err: dict, data: Any, prefix: str) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        parts, key = list(loc[:-1]), loc[-1]
        allowed = _allowed_keys(model, parts)
        return (f"{_dotted(prefix, [*parts, key])}: unknown key; allowed keys here: {', '.join(allowed)}"
                f"{suggest(key, allowed)}")
    parts, tp, meta, _, on_key = _locate(model, loc)
    path = _dotted(prefix, parts)
    if err["type"] == CHECKS_ERROR:
        return "\n".join(f"{path}.{line}" if path else line for line in err["msg"].splitlines())
    if on_key:
        key, allowed = loc[len(parts)], [str(a) for a in get_args(get_args(_unwrap(tp)[0])[0])]
        return f"{path}.{key}: unknown key; allowed keys here: {', '.join(allowed)}{suggest(key, allowed)}"
    if err["type"] == "missing":
        return f"{path}: missing; expected {describe_annotation(tp, meta)}"
    value, expected = _value_at(data, parts), describe_annotation(tp, meta)
    if err["type"] == "finite_number":
        expected = expected.replace("a number", "a finite number", 1)
    return f"{path}: got {describe_value(value)}; expected {expected}"


def problems_from(exc: ValidationError, model: type[BaseModel], data: Any, prefix: str = "") -> list[str]:
    """One message per offending key of ``data`` validated as ``model`` (duplicates from unions merged)."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        for line in _problem(model, err, data, prefix).splitlines():
            if line not in out:
                out.append(line)
    return out
