"""Hyper-parameter configs: dataclasses with defaults, overrides checked by name, type and range.

Every model has a `Config` dataclass; the trainer has `TrainConfig`. The Python API takes
typed values (`widths=(128, 64)`); `--set key=value` strings are parsed against the field's
declared type at the command line only (`parse_sets`, `parse_value`). An unknown key or a bad
value is a `ConfigError` that lists the valid keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A setting (a hyper-parameter, an option) that does not exist or has a bad value."""


def field_types(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def describe_keys(config_cls: type) -> str:
    defaults = dataclasses.asdict(config_cls())
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items())


def _optional(kind: Any) -> Any:
    """T for a field typed `T | None` (None: "use the default that fits the other settings"), else None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(rest) == 1 and len(typing.get_args(kind)) == 2:
            return rest[0]
    return None


def parse_value(key: str, text: str, kind: Any) -> Any:
    """Turn the string `text` into a value of `kind` (bool, int, float, str, Literal, tuple of int, or T | None)."""
    if _optional(kind) is not None:
        return None if text.lower() == "none" else parse_value(key, text, _optional(kind))
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise ConfigError(f"{key}={text!r}: must be one of {', '.join(map(str, choices))}")
        return text
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(kind)
        return tuple(parse_value(key, part, inner) for part in text.split(",") if part)
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r}: expected true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected {kind.__name__}") from None
    if kind is str:
        return text
    raise ConfigError(f"{key}: cannot parse values of type {kind}")


def check_value(key: str, value: Any, kind: Any) -> Any:
    """Check a Python value (from JSON or keyword arguments) against `kind`; returns it, coerced."""
    if _optional(kind) is not None:
        return None if value is None else check_value(key, value, _optional(kind))
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{key}={value!r}: must be one of {', '.join(map(str, typing.get_args(kind)))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{key}={value!r}: expected a sequence")
        (inner, *_) = typing.get_args(kind)
        return tuple(check_value(key, v, inner) for v in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, float, str) and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise ConfigError(f"{key}={value!r}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def build(config_cls: type, overrides: dict[str, Any] | None = None, owner: str = "") -> Any:
    """Make `config_cls(**defaults)` with typed `overrides` applied, everything checked.

    A string given for a field of another type is an error that shows the typed value to pass:
    strings are parsed at the command line only. Range checks live in the dataclass's
    `__post_init__`, which raises `ConfigError`.
    """
    types = field_types(config_cls)
    owner = owner or config_cls.__name__
    values = {}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ConfigError(f"{owner}: unknown key {key!r}; valid keys: {describe_keys(config_cls)}")
        if isinstance(value, str) and types[key] is not str and typing.get_origin(types[key]) is not typing.Literal:
            raise ConfigError(f"{owner}: {key}={value!r} is a string; the Python API takes typed values, "
                              f"here {key}={parse_value(key, value, types[key])!r} (--set parses strings on the "
                              "command line only)")
        values[key] = check_value(key, value, types[key])
    return config_cls(**values)


def positive(**values: float) -> None:
    """Raise ConfigError naming each value that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"{key}={value!r}: must be > 0")


def non_negative(**values: float) -> None:
    """Raise ConfigError naming each value that is < 0."""
    for key, value in values.items():
        if value < 0:
            raise ConfigError(f"{key}={value!r}: must be >= 0")


def odd(**values: int) -> None:
    """Raise ConfigError naming each value that is not an odd number >= 1 (kernel sizes)."""
    for key, value in values.items():
        if value < 1 or value % 2 == 0:
            raise ConfigError(f"{key}={value!r}: must be an odd number >= 1")


def in_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}={value!r}: must lie in [{low}, {high}]")


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """Parse ['key=value', ...] from the command line."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out
