"""Validation and (de)serialisation helpers shared by the core's frozen config dataclasses.

Every helper raises :class:`~gpr_ros.core.errors.ConfigError` with the offending name and
value; ``config_from_dict`` rejects unknown keys so a typo in a YAML file is an error, not a
silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
import math
from typing import Any

import numpy as np

from gpr_ros.core.errors import ConfigError


def real(value: Any, name: str) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(result):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return result


def positive(value: Any, name: str) -> float:
    result = real(value, name)
    if result <= 0.0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return result


def non_negative(value: Any, name: str) -> float:
    result = real(value, name)
    if result < 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return result


def probability(value: Any, name: str) -> float:
    result = real(value, name)
    if not 0.0 <= result <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    return result


def integer(value: Any, name: str, minimum: int) -> int:
    number = real(value, name)
    if number != int(number) or int(number) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(number)


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def vector3(value: Any, name: str) -> tuple[float, float, float]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be 3 real numbers, got {value!r}") from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must be 3 finite real numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def config_from_dict(cls: Any, data: Mapping[str, Any]) -> Any:
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name} config must be a mapping, got {type(data).__name__}")
    names = tuple(f.name for f in fields(cls))
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown {name} key(s) {unknown}; expected a subset of {names}")
    return cls(**data)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain values of a config dataclass: tuples become lists, nested configs their
    ``to_dict()``."""
    result: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        result[f.name] = list(value) if isinstance(value, tuple) else value
    return result


def positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``), as float.

    :raises ConfigError: otherwise, naming ``name`` and the bound.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0.0 or (number == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def config_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two JSON-like values (saved configs) differ, as ``'key.sub: old -> new'`` lines.

    :param old: the saved value.
    :param new: the current value.
    :param path: dotted prefix of the names.
    :return: one line per differing leaf (empty when equal).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(f"{name}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}")
            else:
                out.extend(config_differences(old[key], new[key], name))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def describe_differences(old: Any, new: Any, most: int = 5) -> str:
    """:func:`config_differences` on one line for an error message: the first ``most``.

    :param old: the saved value.
    :param new: the current value.
    :param most: differences shown; more are summarised as ``'; ...'``.
    :return: ``'a.b: 1 -> 2; c: x -> y'`` (empty when equal).
    """
    lines = config_differences(old, new)
    return "; ".join(lines[:most]) + ("; ..." if len(lines) > most else "")
