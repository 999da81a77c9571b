"""Reading config values: numbers written as YAML text, and each value checked and converted against its field's
default (`coerce`), with errors that name the key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


def parse_number(text: str) -> Any:
    """YAML reads `1e-4` as a string (it needs `1.0e-4`); read such numbers as floats."""
    try:
        return float(text)
    except ValueError:
        return text


def coerce(value: Any, spec: dataclasses.Field, name: str) -> Any:
    """Check / convert a value against its field's default type (numbers from YAML, tuples from lists)."""
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
    if default is None:
        return value
    if value is None:
        raise ValueError(f"{name} cannot be null: give a value like its default {default!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        return finite_number(value, type(default), name)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list of {len(default)} numbers, got {value!r}")
        return tuple(finite_number(item, float, name) for item in value)
    if isinstance(default, dict) and not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping, got {value!r}")
    return value


def finite_number(value: Any, kind: type, name: str) -> int | float:
    """`value` as a finite `kind` (int or float); `ValueError` naming `name` for text, inf, nan or a fraction."""
    number = parse_number(value) if isinstance(value, str) else value
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if kind is int and float(number) != int(number):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return kind(number)
