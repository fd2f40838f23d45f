"""Construction-time checks of hyperparameters, raising ``ValueError`` that names the argument.

Schedules (callables) and traced values (e.g. under ``optax.inject_hyperparams``) are not checked:
only concrete numbers can be.
"""

import numbers

import numpy as np


def _concrete(value) -> float | None:
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0:
        return float(value)
    return None


def check_positive(name: str, value) -> None:
    """Raises unless ``value`` > 0 (or is a schedule or traced)."""
    x = _concrete(value)
    if x is not None and not x > 0:
        raise ValueError(f"{name} must be > 0, got {name}={value!r}")


def check_non_negative(name: str, value) -> None:
    """Raises unless ``value`` ≥ 0 (or is a schedule or traced)."""
    x = _concrete(value)
    if x is not None and not x >= 0:
        raise ValueError(f"{name} must be >= 0, got {name}={value!r}")


def check_unit_interval(name: str, value) -> None:
    """Raises unless 0 ≤ ``value`` < 1 (decay rates of moving averages)."""
    x = _concrete(value)
    if x is not None and not 0 <= x < 1:
        raise ValueError(f"{name} must be in [0, 1), got {name}={value!r}")
