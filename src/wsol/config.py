"""YAML configuration files: loading, ``key.path=value`` overrides and typed dataclass schemas.

A config file is a YAML mapping whose sections map onto (nested) dataclasses. :func:`build_dataclass` checks
every key and value against the dataclass fields and their type hints, so a typo never passes silently::

    train.lr_stpe_epochs: unknown key; did you mean 'lr_step_epochs'?
    train.optimizer: must be one of 'sgd', 'adam', 'nadam', got 'nadm' (did you mean 'nadam'?)

Overrides given on the command line (``train.lr=0.01 model.pooling=spam``) are parsed with YAML's scalar rules
(``0.01`` → float, ``true`` → bool, ``null`` → None, ``[1, 2]`` → list) and applied before validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "apply_overrides",
    "build_dataclass",
    "dataclass_to_dict",
    "load_yaml",
    "suggest",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message names the file / key path."""


def suggest(name: str, valid: Sequence[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid name, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; an empty file gives ``{}``.

    Raises:
        ConfigError: missing/unreadable file, YAML syntax error (with line and column), or a top level that
            is not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist" if not p.exists() else f"config path {p} is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {p}: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{p}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a deep copy of ``config`` with each ``"a.b.c=value"`` override applied.

    Missing intermediate mappings are created (an unknown key is then reported by :func:`build_dataclass`).

    Raises:
        ConfigError: an override without ``=``, an empty key, an unparsable value, or a path through a
            non-mapping value.
    """
    out = _deep_copy(config)
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: cannot parse the value {raw!r}") from None
        node = out
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value ({nxt!r}), not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type hint ``tp`` (ints are accepted for floats); return the value to store."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        if value in args and type(value) is type(next(a for a in args if a == value)):
            return value
        options = ", ".join(repr(a) for a in args)
        hint = suggest(str(value), [str(a) for a in args]) if isinstance(value, str) else ""
        raise ConfigError(f"{where}: must be one of {options}, got {value!r}{hint}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err).split(": ", 1)[-1])
        raise ConfigError(f"{where}: {' or '.join(errors)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a section (mapping), got {value!r}")
        return build_dataclass(tp, value, where)
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{where}: must be a list of {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a mapping, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, inner, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where}: must be {_type_name(tp)}, got {value!r}")
    return value


def build_dataclass(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Instantiate dataclass ``cls`` from a mapping, checking every key and value.

    Nested dataclass fields take nested mappings; missing keys keep their defaults. Errors from the
    dataclass' own ``__post_init__`` / ``validate`` (``ValueError``) are re-raised as :class:`ConfigError`
    prefixed with ``where``.

    Raises:
        ConfigError: unknown key (closest valid key suggested), a value of the wrong type, a missing
            required key, or an invalid value rejected by the dataclass.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    values = {} if values is None else values
    label = where or "config"
    if not isinstance(values, Mapping):
        raise ConfigError(f"{label}: must be a section (mapping), got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{path}: unknown key{suggest(str(key), list(fields))}; valid keys: {', '.join(fields)}")
        kwargs[key] = _coerce(value, hints[key], path)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{label}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{label}: {err}") from None


def dataclass_to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-ready structure of a (nested) dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [dataclass_to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): dataclass_to_dict(v) for k, v in obj.items()}
    return obj
