"""Induced-metric scaling: the natural-gradient step for the metric of the loss graph (θ, L(θ))."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from jaxlab._tree import accumulation_dtype, tree_sq_norm
from jaxlab.optim._checks import check_non_negative, check_unit_interval
from jaxlab.optim.weight_decay import MaskOrFn, with_weight_decay


class InducedMetricState(NamedTuple):
    """State of :func:`scale_by_induced_metric`."""

    count: jax.Array  # int32 step counter t, 0 before the first update
    trace_ema: jax.Array  # float32 EMA of ξ‖g‖² (not bias-corrected)
    mu: optax.Updates | None  # EMA of the updates; None without momentum


def scale_by_induced_metric(
    xi: float = 0.1, *, ema_decay: float = 0.0, momentum: float | None = None
) -> optax.GradientTransformationExtraArgs:
    """Scales the updates by 1/(1 + ξ‖g‖²), the inverse of the loss graph's induced metric.

    The metric induced on parameter space by the embedding of the graph of the loss is
    G = I + ξ g gᵀ; by Sherman–Morrison its natural-gradient step is

    .. math::

      G^{-1} g = \\frac{g}{1 + ξ‖g‖²}, \\qquad ‖G^{-1} g‖ ≤ \\frac{1}{2\\sqrt{ξ}}

    with ‖g‖ the global norm over the pytree: SGD for small gradients, a smoothed gradient
    clipping for large ones. In general, with β = ``ema_decay`` and t = 1, 2, ...:

    .. math::

      a_t = β a_{t-1} + (1 − β)\\,ξ‖g_t‖², \\qquad s_t = \\Big(1 + \\frac{a_t}{1 − β^t}\\Big)^{-1}

      \\mathrm{out}_t = s_t\\,g_t \\quad\\text{or, with momentum μ,}\\quad
      \\mathrm{out}_t = s_t\\,\\frac{m_t}{1 − μ^t},\\; m_t = μ m_{t-1} + (1 − μ) g_t

    The defaults (β = 0, no momentum) give exactly the Sherman–Morrison step above.

    Follows ``custom_sgd`` of the official code (harveyThomas4692/Induced-Metric-Optimiser,
    ``optimisers/jax_imp.py``): ξ multiplies ‖g‖² directly (ξ here is the paper's coefficient
    of g gᵀ, i.e. the square of an embedding scale), ‖g‖ is global, the scale comes from the
    raw incoming updates and multiplies the bias-corrected momentum. Placed after a
    preconditioner it uses the norm of the preconditioned update, not the official RMS variant's
    Σ g²/(√v̂ + ε).

    Args:
      xi: ξ ≥ 0; 0 leaves the updates unchanged (besides momentum).
      ema_decay: β in [0, 1), decay of the bias-corrected EMA of ξ‖g‖² (official: 0.1).
      momentum: μ in [0, 1) for a bias-corrected EMA of the updates, or ``None`` for none.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; its state is :class:`InducedMetricState`.

    References:
      Harvey, "The Optimiser Hidden in Plain Sight: Training with the Loss Landscape's Induced
      Metric", 2025, https://arxiv.org/abs/2509.03594.
    """
    check_non_negative("xi", xi)
    check_unit_interval("ema_decay", ema_decay)
    if momentum is not None:
        check_unit_interval("momentum", momentum)

    def init_fn(params):
        mu = None if momentum is None else optax.tree.zeros_like(params)
        return InducedMetricState(
            count=jnp.zeros([], jnp.int32), trace_ema=jnp.zeros([], jnp.float32), mu=mu
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = optax.safe_increment(state.count)
        trace = xi * tree_sq_norm(updates).astype(state.trace_ema.dtype)
        trace_ema = ema_decay * state.trace_ema + (1 - ema_decay) * trace
        scale = 1 / (1 + trace_ema / (1 - ema_decay**count))
        if momentum is None:
            mu, direction = None, updates
        else:
            mu = optax.tree.cast_like(
                optax.tree.update_moment(updates, state.mu, momentum, 1), state.mu
            )
            direction = optax.tree.bias_correction(mu, momentum, count)
        updates = jax.tree.map(
            lambda d, g: (scale * d.astype(accumulation_dtype(g))).astype(g.dtype),
            direction,
            updates,
        )
        return updates, InducedMetricState(count=count, trace_ema=trace_ema, mu=mu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def induced_metric_sgd(
    learning_rate: ScalarOrSchedule = 0.1,
    xi: float = 0.1,
    *,
    momentum: float | None = 0.9,
    ema_decay: float = 0.1,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """Induced-metric SGD: θ ← θ − η (s_t m̂_t + λθ), the official ``custom_sgd``.

    :func:`scale_by_induced_metric` with momentum, then learning-rate-coupled weight decay
    (θ ← θ − ηλθ, which the paper argues is the natural choice) and the learning rate. The
    defaults (η = 0.1, ξ = 0.1, μ = 0.9, β = 0.1) are the official code's; ``momentum=None`` and
    ``ema_decay=0`` give plain SGD on g/(1 + ξ‖g‖²). See :func:`scale_by_induced_metric` for the
    arguments and :func:`jaxlab.optim.with_weight_decay` for ``mask``.

    References:
      Harvey, "The Optimiser Hidden in Plain Sight: Training with the Loss Landscape's Induced
      Metric", 2025, https://arxiv.org/abs/2509.03594.
    """
    return with_weight_decay(
        scale_by_induced_metric(xi, ema_decay=ema_decay, momentum=momentum),
        learning_rate,
        weight_decay=weight_decay,
        mode="coupled",
        mask=mask,
    )
