"""Argument checks at the point where a value enters: integers, floats and choices, each error naming the argument,
the value received and what is allowed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any


def is_count(value: Any) -> bool:
    """Whether `value` is an integer >= 1 (a Python or NumPy integer; a bool is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_int(name: str, value: Any, minimum: int | None = 1, maximum: int | None = None) -> int:
    """`value` if it is an int (not a bool) in `[minimum, maximum]` (a bound of None is open), else raise.

    Raises:
        TypeError: `value` is not an int, or is a bool.
        ValueError: `value` is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {_int_range(minimum, maximum)}, got {value}")
    return value


def check_float(
    name: str, value: Any, low: float = -math.inf, high: float = math.inf, include_low: bool = True
) -> float:
    """`float(value)` if `value` is a finite real number (not a bool) in `[low, high]` (`(low, high]` when
    `include_low` is False), else raise.

    Raises:
        TypeError: `value` is not an int or float, or is a bool.
        ValueError: `value` is NaN, infinite or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    inside = (low <= value if include_low else low < value) and value <= high
    if not math.isfinite(value) or not inside:
        opening = "[" if include_low else "("
        raise ValueError(f"{name} must be a finite number in {opening}{low}, {high}], got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """`value` if it is one of `choices`, else raise `ValueError` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _int_range(minimum: int | None, maximum: int | None) -> str:
    """The allowed integers in words, for an error message: "a positive int", "an int in [0, 9]", ..."""
    if maximum is None and minimum in (0, 1):
        return "a positive int" if minimum == 1 else "a non-negative int"
    low = "-inf" if minimum is None else str(minimum)
    return f"an int in [{low}, {'inf' if maximum is None else maximum}]"
