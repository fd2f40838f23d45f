"""Eager validation of static model hyperparameters (raised at module construction)."""

import numbers
from collections.abc import Sequence


def _is_positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not ``bool``) greater than zero."""
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")


def check_positive_ints(name: str, values: object) -> None:
    """Raise ``ValueError`` unless ``values`` is a sequence of positive integers."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of positive integers, got {name}={values!r}")
    if not all(_is_positive_int(v) for v in values):
        raise ValueError(f"{name} must contain positive integers only, got {name}={values!r}")


def check_rate(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1`` (a dropout probability)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {name}={value!r}")
