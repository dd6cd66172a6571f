"""Argument checks shared by callbacks and update rules: each error names the argument and the
accepted values."""

from __future__ import annotations

from typing import Any

import numpy as np


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` unless it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def optional_positive_int(value: Any, name: str) -> int | None:
    """``None``, or ``value`` checked by :func:`positive_int`."""
    if value is None:
        return None
    try:
        return positive_int(value, name)
    except ValueError:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}") from None


def optional_fraction(value: Any, name: str) -> float | None:
    """``None``, or ``value`` as a float in (0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] or None, got {value!r}")
    return float(value)
