"""Weight averaging as pure pytree functions: parameter EMA and LAWA (latest-k checkpoint average).

Both keep fixed shapes, so their update functions jit once and run inside ``lax.scan`` or a
pmapped step. Averages are computed in float32 and stored in each leaf's dtype (or ``dtype``).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.optim._checks import check_unit_interval


def _f32(x):
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


class EmaParamsState(NamedTuple):
    """Exponential moving average of the parameters and the number of updates it has seen."""

    ema: Any
    count: jax.Array


def ema_params_init(params, *, dtype: Any | None = None) -> EmaParamsState:
    """Starts the EMA at ``params`` (stored in ``dtype``, by default each leaf's own)."""
    ema = jax.tree.map(lambda p: jnp.asarray(p, dtype or p.dtype), params)
    return EmaParamsState(ema=ema, count=jnp.zeros([], jnp.int32))


def ema_params_update(
    state: EmaParamsState, params, decay: optax.ScalarOrSchedule = 0.999
) -> EmaParamsState:
    """One EMA step, θ̄ ← δ θ̄ + (1 − δ) θ, with δ a constant or a schedule of the update count.

    A warmup of the decay such as timm's δ_t = min(δ, (1 + t)/(10 + t)) is a schedule:
    ``decay=lambda t: jnp.minimum(0.999, (1 + t) / (10 + t))``.

    References:
      Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", 1992; the
      EMA-teacher of MESA: Du et al., "Sharpness-Aware Training for Free", NeurIPS 2022,
      https://arxiv.org/abs/2205.14083.
    """
    if callable(decay):
        d = jnp.asarray(decay(state.count), jnp.float32)
    else:
        check_unit_interval("decay", decay)
        d = jnp.float32(decay)
    ema = jax.tree.map(
        lambda e, p: (d * _f32(e) + (1.0 - d) * _f32(p)).astype(e.dtype), state.ema, params
    )
    return EmaParamsState(ema=ema, count=optax.safe_increment(state.count))


class LawaState(NamedTuple):
    """Ring buffer of the latest ``k`` checkpoints (leading axis ``k`` on every leaf)."""

    buffer: Any
    count: jax.Array


def lawa_init(params, k: int) -> LawaState:
    """Allocates a ring buffer of ``k`` checkpoints, every slot holding ``params``."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got k={k!r}")
    buffer = jax.tree.map(lambda p: jnp.broadcast_to(p, (k, *jnp.shape(p))), params)
    return LawaState(buffer=buffer, count=jnp.zeros([], jnp.int32))


def lawa_push(state: LawaState, params) -> LawaState:
    """Stores ``params`` (e.g. at the end of an epoch), overwriting the oldest checkpoint."""
    k = jax.tree.leaves(state.buffer)[0].shape[0]
    slot = state.count % k
    buffer = jax.tree.map(
        lambda b, p: jax.lax.dynamic_update_index_in_dim(b, p.astype(b.dtype), slot, 0),
        state.buffer,
        params,
    )
    return LawaState(buffer=buffer, count=optax.safe_increment(state.count))


def lawa_average(state: LawaState):
    """Uniform average θ̄ = (1/n) Σ_{i<n} θ_{e−i} of the n = min(count, k) latest checkpoints.

    Used for evaluation; training continues from the raw weights. Before the first push the
    result is the ``params`` given to :func:`lawa_init`.

    References:
      Kaddour, "Stop Wasting My Time! Saving Days of ImageNet and BERT Training with Latest
      Weight Averaging", 2022, https://arxiv.org/abs/2209.14981.
    """
    k = jax.tree.leaves(state.buffer)[0].shape[0]
    n = jnp.clip(state.count, 1, k)
    weights = jnp.where(jnp.arange(k) < n, 1.0 / n, 0.0).astype(jnp.float32)
    return jax.tree.map(
        lambda b: jnp.tensordot(weights, _f32(b), axes=1).astype(b.dtype), state.buffer
    )
