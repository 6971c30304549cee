"""Hyper-parameter checks shared by the optimizers and schedules: each returns the value
normalised (a Python float, a bool, a tuple) or raises a ValueError naming the owner."""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["real", "non_negative", "in_range", "betas", "flag"]


def real(owner: str, name: str, value) -> float:
    """``value`` as a Python float (never a NumPy float64 scalar), or a clear ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}")
    return float(value)


def non_negative(owner: str, name: str, value) -> float:
    value = real(owner, name, value)
    if value < 0.0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return value


def in_range(owner: str, name: str, value, low: float, high: float, high_open: bool) -> float:
    """``low <= value <= high`` (``< high`` when ``high_open``)."""
    value = real(owner, name, value)
    if value < low or value > high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{owner}: {name} must be in [{low}, {high}{bracket}, got {value!r}")
    return value


def betas(owner: str, value) -> tuple:
    """A pair ``(beta1, beta2)`` of moment decays, each in [0, 1) (Adam's family)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {value!r}")
    return tuple(in_range(owner, f"betas[{i}]", b, 0.0, 1.0, True) for i, b in enumerate(value))


def flag(owner: str, name: str, value) -> bool:
    """An on/off option (``maximize``, ``amsgrad``, ``centered``): True or False (a NumPy
    bool too), never a truthy string such as ``"False"``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)
