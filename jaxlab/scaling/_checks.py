"""Eager checks of scaling-law arguments (ValueError naming the argument and its value)."""

import numpy as np


def positive_scalar(name: str, value) -> float:
    """``value`` as a float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {name}={value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a number > 0, got {name}={value!r}")
    return v


def paired(names: tuple[str, str], x, y, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long 1-D float64 arrays with at least ``min_size`` finite entries."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < min_size:
        raise ValueError(
            f"{names[0]} and {names[1]} must be 1-D of equal length >= {min_size}, got shapes "
            f"{a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"{names[0]} and {names[1]} must be finite")
    return a, b


def positive_data(name: str, x) -> None:
    """Raises unless concrete ``x`` is finite and > 0 everywhere (traced values are not checked)."""
    try:
        a = np.asarray(x, np.float64)
    except Exception:  # a tracer under jit: nothing to check eagerly
        return
    if a.size == 0 or not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ValueError(f"{name} must be finite and > 0, got {name}={x!r}")
