"""Argparse types that refuse a number out of its range with a one-line reason (exit 2), before any work.

Leaf module: the CLI and `tagger train`'s options (below the CLI) both use it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T", int, float)


def checked(convert: Callable[[str], T], ok: Callable[[T], bool], must: str) -> Callable[[str], T]:
    """An argparse type: `convert` the text, then refuse a value that is not `ok`, saying what it `must` be."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} {must}")
        return value

    return parse


def int_between(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from `low` to `high` (inclusive; no upper bound when None)."""
    if high is None:
        return checked(int, lambda v: v >= low, f"must be a whole number of at least {low}")
    return checked(int, lambda v: low <= v <= high, f"must be a whole number from {low} to {high}")


def float_between(
    low: float, high: float, *, open_low: bool = False, open_high: bool = False
) -> Callable[[str], float]:
    """A number in [low, high], either end excluded on request (an infinite `high` is no bound)."""
    left, right = "(" if open_low else "[", ")" if open_high else "]"

    def ok(v: float) -> bool:
        return (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    return checked(float, ok, f"must be in {left}{low:g}, {high:g}{right}")


probability = checked(float, lambda v: 0.0 <= v <= 1.0, "is not a probability (0 to 1)")
positive_int = int_between(1)
positive_float = checked(float, lambda v: v > 0, "must be above 0")
port = int_between(0, 65535)


_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def age(text: str) -> timedelta:
    """A duration: `30d`, `12h`, `90m`, `45s`, or a number of days (`30`, `0.5`)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: use 30d, 12h, 90m, 45s or a number of days")
    return timedelta(**{_UNITS[found.group(2) or "d"]: float(found.group(1))})
