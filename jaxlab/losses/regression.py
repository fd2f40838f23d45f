"""Regression losses (the time-series survey catalogue), elementwise or per series, float32.

Elementwise losses take ``predictions, targets`` of one shape ``[...]`` and return that shape;
per-series losses (RMSE, MASE) reduce the last (time) axis and return ``[...]`` without it.
Masked-out entries (``where=False``) give 0 and no NaN, in values and gradients.

References:
  Jadon, Patil & Jadon, `A Comprehensive Survey of Regression Based Loss Functions for Time
  Series Forecasting <https://arxiv.org/abs/2211.02989>`_, 2022.
"""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast


def _prepare(predictions, targets, where, fill=1.0):
    """Checks shapes, upcasts, and replaces masked-out entries by a harmless ``fill``."""
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions and targets must have one shape, got predictions.shape="
            f"{predictions.shape} and targets.shape={targets.shape}"
        )
    for name, x in (("predictions", predictions), ("targets", targets)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{name} must be floating, got {name}.dtype={x.dtype}")
    predictions, targets = upcast(predictions), upcast(targets)
    if where is not None:
        if jnp.shape(where) != predictions.shape:
            raise ValueError(f"where must have shape {predictions.shape}, got {jnp.shape(where)}")
        predictions = jnp.where(where, predictions, fill)
        targets = jnp.where(where, targets, fill)
    return predictions, targets


def _mask(loss, where):
    return loss if where is None else jnp.where(where, loss, 0.0)


def _positive(name, value):
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {name}={value}")


def absolute_error(predictions, targets, *, where=None) -> jax.Array:
    """Absolute error ``abs(ŷ − y)`` (MAE after ``weighted_mean``); shape ``[...]``."""
    p, t = _prepare(predictions, targets, where)
    return _mask(jnp.abs(p - t), where)


def squared_error(predictions, targets, *, where=None) -> jax.Array:
    """Squared error ``(ŷ − y)²`` (MSE after ``weighted_mean``); as optax.losses.squared_error."""
    p, t = _prepare(predictions, targets, where)
    return _mask((p - t) ** 2, where)


def root_mean_squared_error(predictions, targets, *, where=None) -> jax.Array:
    """Per-series RMSE ``sqrt(mean_t (ŷ_t − y_t)²)`` over the last axis; ``[..., T] → [...]``.

    The mean counts only ``where``-valid steps; a series with none gives 0. The square root's
    gradient at an exact fit is taken as 0 (instead of NaN).
    """
    p, t = _prepare(predictions, targets, where)
    valid = jnp.ones(p.shape, bool) if where is None else jnp.asarray(where)
    count = jnp.sum(valid, axis=-1)
    mse = jnp.sum(_mask((p - t) ** 2, where), axis=-1) / jnp.maximum(count, 1)
    return jnp.where(mse > 0, jnp.sqrt(jnp.where(mse > 0, mse, 1.0)), 0.0)


def huber_loss(predictions, targets, *, delta: float = 1.0, where=None) -> jax.Array:
    """Huber loss: ``½r²`` for ``abs(r) ≤ δ``, ``δ(abs(r) − ½δ)`` beyond (r = ŷ − y).

    Same as ``optax.losses.huber_loss`` (which it generalises with ``where``); default δ = 1.
    Huber, `Robust Estimation of a Location Parameter`, 1964.
    """
    _positive("delta", delta)
    p, t = _prepare(predictions, targets, where)
    a = jnp.abs(p - t)
    quadratic = jnp.minimum(a, delta)
    return _mask(0.5 * quadratic**2 + delta * (a - quadratic), where)


def log_cosh(predictions, targets, *, where=None) -> jax.Array:
    """Log-cosh loss ``log cosh(ŷ − y)``, computed as ``logaddexp(r, −r) − log 2`` (no overflow).

    Same as ``optax.losses.log_cosh`` with a ``where`` mask.
    """
    p, t = _prepare(predictions, targets, where)
    r = p - t
    return _mask(jnp.logaddexp(r, -r) - jnp.log(2.0), where)


def quantile_loss(predictions, targets, *, quantile: float = 0.5, where=None) -> jax.Array:
    """Pinball loss ``max(q·r, (q − 1)·r)`` with ``r = y − ŷ``; at ``q = ½`` it is ``½·abs(r)``.

    Its minimiser over ŷ is the q-quantile of y (Koenker & Bassett 1978); default q = 0.5.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got quantile={quantile}")
    p, t = _prepare(predictions, targets, where)
    r = t - p
    return _mask(jnp.maximum(quantile * r, (quantile - 1) * r), where)


def absolute_percentage_error(predictions, targets, *, eps: float = 1e-8, where=None):
    """Absolute percentage error ``abs(ŷ − y) / max(abs(y), eps)`` (MAPE, as a fraction)."""
    _positive("eps", eps)
    p, t = _prepare(predictions, targets, where)
    return _mask(jnp.abs(p - t) / jnp.maximum(jnp.abs(t), eps), where)


def symmetric_absolute_percentage_error(predictions, targets, *, eps: float = 1e-8, where=None):
    """sMAPE term ``2·abs(ŷ − y) / (abs(y) + abs(ŷ) + eps)``, in ``[0, 2]``."""
    _positive("eps", eps)
    p, t = _prepare(predictions, targets, where)
    return _mask(2 * jnp.abs(p - t) / (jnp.abs(t) + jnp.abs(p) + eps), where)


def squared_log_error(predictions, targets, *, where=None) -> jax.Array:
    """Squared log error ``(log(1 + ŷ) − log(1 + y))²`` (MSLE; RMSLE is its root).

    Needs ``ŷ, y > −1``; values at or below −1 give NaN, as the logarithm does.
    """
    p, t = _prepare(predictions, targets, where, fill=0.0)
    return _mask((jnp.log1p(p) - jnp.log1p(t)) ** 2, where)


def mean_absolute_scaled_error(
    predictions, targets, history, *, season: int = 1, eps: float = 1e-8, where=None
) -> jax.Array:
    """Per-series MASE ``mean_t abs(ŷ_t − y_t) / (mean_s abs(h_s − h_{s−m}) + eps)``.

    Shapes: ``predictions, targets, where: [..., T]``, in-sample ``history: [..., H]`` with
    ``H > season = m`` (default 1, the naive forecast); returns ``[...]``. Hyndman & Koehler,
    `Another look at measures of forecast accuracy`, 2006.
    """
    if not (isinstance(season, int) and season >= 1):
        raise ValueError(f"season must be an int ≥ 1, got season={season!r}")
    _positive("eps", eps)
    p, t = _prepare(predictions, targets, where)
    history = upcast(jnp.asarray(history))
    if history.shape[:-1] != p.shape[:-1] or history.shape[-1] <= season:
        raise ValueError(
            f"history must have shape {p.shape[:-1]} + (H,) with H > season={season}, got "
            f"history.shape={history.shape}"
        )
    scale = jnp.mean(jnp.abs(history[..., season:] - history[..., :-season]), axis=-1)
    valid = jnp.ones(p.shape, bool) if where is None else jnp.asarray(where)
    mae = jnp.sum(_mask(jnp.abs(p - t), where), axis=-1) / jnp.maximum(jnp.sum(valid, -1), 1)
    return mae / (scale + eps)


def absolute_directional_loss(predictions, targets, *, where=None) -> jax.Array:
    """Absolute directional loss ``−sign(R·R̂)·abs(R)``; its mean is MADL.

    ``targets`` are realised returns R, ``predictions`` the forecast returns R̂; shape ``[...]``.
    A right direction earns ``abs(R)``, a wrong one costs it. The loss is piecewise constant in
    R̂ (zero gradient almost everywhere), as in the paper's definition.

    References:
      Michańków, Sakowski & Ślepaczuk, `Mean Absolute Directional Loss as a New Loss Function
      for Machine Learning Problems in Algorithmic Investment Strategies
      <https://arxiv.org/abs/2309.10546>`_, 2023.
    """
    p, t = _prepare(predictions, targets, where)
    return _mask(-jnp.sign(t * p) * jnp.abs(t), where)
