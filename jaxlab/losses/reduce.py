"""Reductions of per-example losses that are correct across devices.

Every jaxlab loss returns per-example values; the mean over a batch sharded across devices is
``psum(Σ w_i ℓ_i) / psum(Σ w_i)``, not the mean of per-device means (which is wrong when devices
hold different numbers of valid examples).
"""

import jax
import jax.numpy as jnp
from jax import lax


def weighted_mean(
    per_example: jax.Array,
    *,
    where: jax.Array | None = None,
    weights: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """Σ_i w_i m_i ℓ_i / Σ_i w_i m_i over all elements (and all devices of ``axis_name``).

    Args:
      per_example: losses of any shape (e.g. ``[batch]`` or ``[batch, tokens]``).
      where: optional boolean mask of the same shape; masked-out elements count for nothing.
      weights: optional non-negative weights of the same shape.
      axis_name: a ``pmap``/``shard_map`` axis to reduce over as well (``lax.psum`` of the sum
        and of the count); ``None`` reduces this device only.

    Returns:
      A float32 scalar (float64 for float64 inputs); 0 when no element counts.
    """
    values = per_example.astype(jnp.promote_types(per_example.dtype, jnp.float32))
    w = jnp.ones_like(values) if weights is None else jnp.asarray(weights, values.dtype)
    if w.shape != values.shape:
        raise ValueError(f"weights must have shape {values.shape}, got weights.shape={w.shape}")
    if where is not None:
        if where.shape != values.shape:
            raise ValueError(f"where must have shape {values.shape}, got where.shape={where.shape}")
        w = jnp.where(where, w, 0)
        values = jnp.where(where, values, 0)  # a masked NaN/inf must not leak through 0 · x
    total, count = jnp.sum(w * values), jnp.sum(w)
    if axis_name is not None:
        total, count = lax.psum((total, count), axis_name)
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1), 0)
