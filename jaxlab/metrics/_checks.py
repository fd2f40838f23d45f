"""Eager argument checks of the metrics modules (ValueError/TypeError naming the argument)."""

import jax.numpy as jnp


def as_float(name: str, x, ndim: int | None = None, min_ndim: int | None = None):
    """``x`` as a floating array of the given rank, else raises naming ``name``."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating array, got {name}.dtype={x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got {name}.shape={x.shape}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have rank >= {min_ndim}, got {name}.shape={x.shape}")
    return x


def as_labels(name: str, labels, n: int):
    """Integer labels of shape ``(n,)``, else raises naming ``name``."""
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{name} must be integer class indices, got {name}.dtype={labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name}.shape={labels.shape} must be ({n},)")
    return labels


def check_int(name: str, value, minimum: int) -> None:
    """Raises unless ``value`` is a Python int ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")
