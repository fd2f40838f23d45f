"""MoMo and MoMo-Adam: momentum models for adaptive learning rates, exact to the official code.

Both transforms follow fabian-sp/MoMo (``momo.py``, ``momo_adam.py``) step for step, including the
proximal weight decay ``x⁺ = (x − τ D⁻¹d)/(1 + αλ)`` that ``optax.contrib.momo`` replaces by
``x/(1 + αλ) − τ d``. Beyond the reference they add a weight-decay mask, an ``axis_name`` for data
parallelism, and float32 scalars with the effective step ``τ`` exposed in the state.

**Weight-decay mask.** Let 𝒟 be the decayed leaves, 𝒰 the others, ``u = D⁻¹d`` (``D = I`` for
MoMo) and ``c = 1 + αλ``. The proximal step on the momentum model with decay ``(λ/2)‖x_𝒟‖²_D``
only on 𝒟,

    x⁺ = argmin_x max{(f̄ − γ + ⟨d, x⟩)/ρ, lb} + (λ/2)‖x_𝒟‖²_D + (1/2α)‖x − x_k‖²_D,

has the closed form ``x_𝒟⁺ = (x_𝒟 − τ u_𝒟)/c``, ``x_𝒰⁺ = x_𝒰 − τ u_𝒰`` with

    τ = min(α/ρ, [c(f̄ − ρ lb − γ) + ⟨d, x⟩_𝒟 + c⟨d, x⟩_𝒰]₊ / (⟨d, u⟩_𝒟 + c⟨d, u⟩_𝒰)).

MoMo* resets with the same split numerator, ``cap = c(f̄ − γ) + ⟨d, x⟩_𝒟 + c⟨d, x⟩_𝒰``; its
post-step estimate ``(f̄ + ⟨d, x⟩ − γ − ½τ⟨d, u⟩)/ρ`` has no λ and sums over all leaves. With
every leaf decayed this is the official code; with none decayed it is the official code at λ = 0.
``divide=False`` (MoMo-Adam) keeps this τ and applies ``(1 − αλ)x`` to 𝒟 only.

**axis_name.** When set, ``update`` first replaces the gradients and the loss by their
``lax.pmean`` over the axis (one all-reduce of gradient size plus a scalar); everything else
(moments, ⟨g, x⟩, ⟨d, x⟩, ‖d‖², τ, lb) is then computed from replicated quantities, so replicas
stay identical and equal the single-device step on the union of the per-device batches.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxlab._tree import accumulation_dtype, leaf_flags, tree_accumulation_dtype, tree_vdot, upcast
from jaxlab.optim._checks import check_non_negative, check_positive, check_unit_interval

WeightDecayMask = Any  # pytree (or prefix) of bools, or a callable params -> such a pytree


def _require(name: str, params, value) -> None:
    if params is None:
        raise ValueError(f"{name} needs `params`: call update(grads, state, params, value=loss)")
    if value is None:
        raise ValueError(f"{name} needs the loss: call update(grads, state, params, value=loss)")


def _ema(avg: jax.Array, new: jax.Array, b: jax.Array) -> jax.Array:
    """b·avg + (1−b)·new computed in ≥ float32, stored back in avg's dtype."""
    return (b * upcast(avg) + (1 - b) * new.astype(accumulation_dtype(avg))).astype(avg.dtype)


def _split_vdot(a: list, b: list, flags: list[bool]) -> tuple[jax.Array, jax.Array]:
    """(Σ over decayed leaves, Σ over the other leaves) of ⟨a, b⟩, accumulated in ≥ float32."""

    def part(keep: bool) -> jax.Array:
        pairs = [(x, y) for x, y, f in zip(a, b, flags, strict=True) if f == keep]
        return tree_vdot([x for x, _ in pairs], [y for _, y in pairs])

    return part(True), part(False)


def _model_step(
    params, d, u, loss_avg, gamma, rho, alpha, lb, *, weight_decay, mask, lower_bound, adapt, divide
):
    """Shared tail of both updates: solves the (masked) proximal model for τ, returns Δx.

    ``d`` and ``u = D⁻¹d`` are lists of leaves in ≥ float32 aligned with ``params``; the scalars
    are in the state's dtype. Returns ``(updates, τ, cap_active, lower bound)``.
    """
    x = jax.tree.leaves(params)
    flags = leaf_flags(mask, params)
    dot_dec, dot_other = _split_vdot(d, x, flags)
    sq_dec, sq_other = _split_vdot(d, u, flags)
    wd = alpha * weight_decay
    c = 1 + wd
    dot = dot_dec + c * dot_other
    if adapt:  # MoMo*: reset an estimate that lies above the model's own bound.
        cap = c * loss_avg + dot - c * gamma
        lb = jnp.where(cap < c * rho * lb, jnp.maximum(cap / (2 * c * rho), lower_bound), lb)
    num = jnp.maximum(c * (loss_avg - rho * lb) + dot - c * gamma, 0.0)
    den = sq_dec + c * sq_other
    t1 = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)  # d = 0: no step
    tau = jnp.minimum(alpha / rho, t1)
    if adapt:
        h = loss_avg + dot_dec + dot_other - gamma - 0.5 * tau * (sq_dec + sq_other)
        lb = jnp.maximum(h / rho, lower_bound)

    def delta(xi, ui, decayed):
        if not decayed:
            return (-tau * ui).astype(xi.dtype)
        step = -(wd * upcast(xi) + tau * ui)
        return (step / c if divide else step).astype(xi.dtype)

    deltas = [delta(xi, ui, f) for xi, ui, f in zip(x, u, flags, strict=True)]
    updates = jax.tree.unflatten(jax.tree.structure(params), deltas)
    return updates, tau, t1 >= alpha / rho, lb


class MomoState(NamedTuple):
    """State of :func:`momo`. Scalars are float32 (float64 for float64 params)."""

    count: jax.Array  # int32 number of steps taken.
    exp_avg: optax.Updates  # d_k, EMA of gradients, in the params' dtype.
    loss_avg: jax.Array  # f̄_k, EMA of losses.
    gamma: jax.Array  # γ_k, EMA of ⟨g_j, x_j⟩.
    lower_bound: jax.Array  # lb used in the last step (MoMo*: the current estimate).
    step_size: jax.Array  # τ_k of the last step.
    cap_active: jax.Array  # bool: the last τ_k was capped at α_k/ρ_k.


def momo(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    beta: float = 0.9,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
    bias_correction: bool = False,
    weight_decay_mask: WeightDecayMask | None = None,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""MoMo: SGD with momentum and a Polyak-type step size from a model of the loss.

    With step :math:`k = 1, 2, \dots`, :math:`\alpha = ` ``learning_rate(count)``, loss
    :math:`f_k`, gradient :math:`g_k` and :math:`c = 1 + \alpha\lambda`:

    .. math::

      \bar f_k &= \beta \bar f_{k-1} + (1-\beta) f_k, \quad
      d_k = \beta d_{k-1} + (1-\beta) g_k, \quad
      \gamma_k = \beta \gamma_{k-1} + (1-\beta) \langle g_k, x_k \rangle \\
      \tau_k &= \min\Big(\frac{\alpha}{\rho_k},
        \frac{[c(\bar f_k - \rho_k\,lb - \gamma_k) + \langle d_k, x_k\rangle]_+}{\|d_k\|^2}\Big),
      \qquad x_{k+1} = \frac{x_k - \tau_k d_k}{c}

    By default the averages start at the first sample and :math:`\rho_k = 1`; with
    ``bias_correction`` they start at zero and :math:`\rho_k = 1-\beta^k`. MoMo*
    (``adapt_lower_bound``) first resets :math:`lb \leftarrow \max(\mathrm{cap}/(2c\rho_k),
    lb_0)` if :math:`\mathrm{cap} = c(\bar f_k - \gamma_k) + \langle d_k, x_k\rangle < c\rho_k lb`,
    and after the step sets :math:`lb \leftarrow \max((\bar f_k + \langle d_k, x_k\rangle - \gamma_k
    - \tfrac12\tau_k\|d_k\|^2)/\rho_k, lb_0)`. If :math:`d_k = 0`, :math:`\tau_k = 0`. Weight decay
    is the proximal one of the paper (not optax's :math:`x/c - \tau d`); see the module docstring
    for the exact formula under ``weight_decay_mask``.

    Args:
      learning_rate: Upper bound α on the step (float > 0 or schedule of the int32 count).
      beta: Momentum coefficient in [0, 1).
      lower_bound: Lower bound lb₀ of the loss (0 suits most losses).
      weight_decay: λ ≥ 0 of the proximal decay ``(λ/2)‖x‖²``.
      adapt_lower_bound: Estimate the lower bound online (MoMo*, official ``use_fstar``).
      bias_correction: Zero-initialised averages with ρ_k = 1 − β^k (official option).
      weight_decay_mask: Pytree of bools (or prefix, or callable ``params -> pytree``), as in
        ``optax.masked``; True where the decay applies. None decays every leaf.
      axis_name: Mapped axis (pmap / shard_map) over which the gradients and the loss are
        averaged (``lax.pmean``) before anything else, so per-device gradients and losses may
        be passed and replicas stay identical. Every inner product is then computed from the
        averaged gradient, e.g. ⟨ḡ, x⟩ = mean over devices of ⟨g_i, x⟩. None: no collectives.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose updates are the full step Δx.

    Extra args:
      value: The loss at ``params`` for the batch of the gradients (scalar; Python floats work).

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from jaxlab.optim.momentum_models import momo
      >>> f = lambda x: jnp.sum(x**2)
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> opt = momo(weight_decay=0.1)
      >>> state = opt.init(params)
      >>> loss, grads = jax.value_and_grad(f)(params)
      >>> updates, state = opt.update(grads, state, params, value=loss)
      >>> optax.apply_updates(params, updates)
      Array([0.5, 1. , 1.5], dtype=float32)

    References:
      Schaipp, Ohana, Eickenberg, Defazio, Gower, `MoMo: Momentum Models for Adaptive Learning
      Rates <https://arxiv.org/abs/2305.07583>`_, ICML 2024. Code: github.com/fabian-sp/MoMo.

    .. note::
      Under ``pmap``/``shard_map`` the loss must be averaged like the gradients, otherwise τ
      differs per replica and the replicas drift apart: set ``axis_name`` (which averages both,
      so do not average the gradients again), or average both yourself and leave it None.
      With bf16 parameters the averages d are stored in bf16, but f̄, γ, lb, τ and every inner
      product are float32, since ``f̄ − γ + ⟨d, x⟩`` cancels heavily.
    """
    check_positive("learning_rate", learning_rate)
    check_unit_interval("beta", beta)
    check_non_negative("weight_decay", weight_decay)
    model_step = functools.partial(
        _model_step,
        weight_decay=weight_decay,
        mask=weight_decay_mask,
        lower_bound=lower_bound,
        adapt=adapt_lower_bound,
        divide=True,
    )

    def init_fn(params):
        zero = jnp.zeros((), tree_accumulation_dtype(params))
        return MomoState(
            count=jnp.zeros((), jnp.int32),
            exp_avg=optax.tree.zeros_like(params),
            loss_avg=zero,
            gamma=zero,
            lower_bound=jnp.asarray(lower_bound, zero.dtype),
            step_size=zero,
            cap_active=jnp.zeros((), bool),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args  # other links of the chain may need them
        _require("momo", params, value)
        dtype = state.loss_avg.dtype
        value = jnp.asarray(value, dtype)
        if axis_name is not None:
            updates, value = lax.pmean((updates, value), axis_name)
        count = optax.safe_increment(state.count)
        b = jnp.asarray(beta, dtype)
        if bias_correction:
            rho = 1 - b ** count.astype(dtype)
        else:  # the averages start at the first sample
            b, rho = jnp.where(state.count == 0, 0.0, b).astype(dtype), jnp.ones((), dtype)
        exp_avg = jax.tree.map(lambda m, g: _ema(m, g, b), state.exp_avg, updates)
        loss_avg = b * state.loss_avg + (1 - b) * value
        gamma = b * state.gamma + (1 - b) * tree_vdot(params, updates)
        alpha = learning_rate(state.count) if callable(learning_rate) else learning_rate
        alpha = jnp.asarray(alpha, dtype)
        d = [upcast(m) for m in jax.tree.leaves(exp_avg)]
        updates, tau, cap_active, lb = model_step(
            params, d, d, loss_avg, gamma, rho, alpha, state.lower_bound
        )
        return updates, MomoState(
            count, exp_avg, loss_avg, gamma, lb.astype(dtype), tau.astype(dtype), cap_active
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class MomoAdamState(NamedTuple):
    """State of :func:`momo_adam`. Scalars are float32 (float64 for float64 params)."""

    count: jax.Array  # int32 number of steps taken.
    exp_avg: optax.Updates  # d_k = m_k, EMA of gradients, in the params' dtype.
    exp_avg_sq: optax.Updates  # v_k, EMA of squared gradients, in the params' dtype.
    loss_avg: jax.Array  # f̄_k, zero-initialised EMA of losses.
    gamma: jax.Array  # γ_k, zero-initialised EMA of ⟨g_j, x_j⟩.
    lower_bound: jax.Array  # lb used in the last step (MoMo*: the current estimate).
    step_size: jax.Array  # τ_k of the last step.
    cap_active: jax.Array  # bool: the last τ_k was capped at α_k/ρ_k.


def momo_adam(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
    divide: bool = True,
    weight_decay_mask: WeightDecayMask | None = None,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""MoMo-Adam: Adam with a Polyak-type step size from a model of the loss.

    With step :math:`k = 1, 2, \dots`, zero-initialised averages (:math:`\bar f, d, \gamma` with
    ``b1``, :math:`v` with ``b2``), :math:`\rho_k = 1 - b_1^k`, :math:`c = 1 + \alpha\lambda`:

    .. math::

      D_k &= \sqrt{v_k / (1 - b_2^k)} + \epsilon, \qquad
      \tau_k = \min\Big(\frac{\alpha}{\rho_k},
        \frac{[c(\bar f_k - \rho_k\,lb - \gamma_k) + \langle d_k, x_k\rangle]_+}
             {\langle d_k, D_k^{-1} d_k\rangle}\Big) \\
      x_{k+1} &= \frac{x_k - \tau_k D_k^{-1} d_k}{c} \ \text{(divide)}, \qquad
      x_{k+1} = (1 - \alpha\lambda)x_k - \tau_k D_k^{-1} d_k \ \text{(not divide)}

    MoMo* (``adapt_lower_bound``) updates lb as in :func:`momo` with :math:`\|d_k\|^2` replaced
    by :math:`\langle d_k, D_k^{-1} d_k\rangle`. If :math:`d_k = 0`, :math:`\tau_k = 0`. See the
    module docstring for the exact formula under ``weight_decay_mask``.

    Args:
      learning_rate: Upper bound α on the step (float > 0 or schedule of the int32 count).
      b1: Decay of the first moment, loss and ⟨g, x⟩ averages, in [0, 1).
      b2: Decay of the second moment, in [0, 1).
      eps: ε > 0 added to the preconditioner D.
      lower_bound: Lower bound lb₀ of the loss (0 suits most losses).
      weight_decay: λ ≥ 0 of the proximal decay ``(λ/2)‖x‖²_D``.
      adapt_lower_bound: Estimate the lower bound online (MoMo*, official ``use_fstar``).
      divide: Proximal decay ``(x − τD⁻¹d)/(1+αλ)`` if True, AdamW-style ``(1−αλ)x − τD⁻¹d``
        if False (official option).
      weight_decay_mask: Pytree of bools (or prefix, or callable ``params -> pytree``), as in
        ``optax.masked``; True where the decay applies. None decays every leaf.
      axis_name: Mapped axis over which the gradients and the loss are averaged
        (``lax.pmean``) before anything else; see :func:`momo`. None: no collectives.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose updates are the full step Δx.

    Extra args:
      value: The loss at ``params`` for the batch of the gradients (scalar; Python floats work).

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from jaxlab.optim.momentum_models import momo_adam
      >>> f = lambda x: jnp.sum(x**2)
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> opt = momo_adam(learning_rate=1.0)
      >>> state = opt.init(params)
      >>> for _ in range(20):
      ...     loss, grads = jax.value_and_grad(f)(params)
      ...     updates, state = opt.update(grads, state, params, value=loss)
      ...     params = params + updates
      >>> bool(f(params) < 0.5)  # from 14
      True

    References:
      Schaipp, Ohana, Eickenberg, Defazio, Gower, `MoMo: Momentum Models for Adaptive Learning
      Rates <https://arxiv.org/abs/2305.07583>`_, ICML 2024. Code: github.com/fabian-sp/MoMo.

    .. note::
      Under ``pmap``/``shard_map`` average the loss like the gradients (``axis_name`` does both).
      With bf16 parameters d and v are stored in bf16; f̄, γ, lb, τ and every inner product are
      float32.
    """
    check_positive("learning_rate", learning_rate)
    check_unit_interval("b1", b1)
    check_unit_interval("b2", b2)
    check_positive("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    model_step = functools.partial(
        _model_step,
        weight_decay=weight_decay,
        mask=weight_decay_mask,
        lower_bound=lower_bound,
        adapt=adapt_lower_bound,
        divide=divide,
    )

    def init_fn(params):
        zero = jnp.zeros((), tree_accumulation_dtype(params))
        return MomoAdamState(
            count=jnp.zeros((), jnp.int32),
            exp_avg=optax.tree.zeros_like(params),
            exp_avg_sq=optax.tree.zeros_like(params),
            loss_avg=zero,
            gamma=zero,
            lower_bound=jnp.asarray(lower_bound, zero.dtype),
            step_size=zero,
            cap_active=jnp.zeros((), bool),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args  # other links of the chain may need them
        _require("momo_adam", params, value)
        dtype = state.loss_avg.dtype
        value = jnp.asarray(value, dtype)
        if axis_name is not None:
            updates, value = lax.pmean((updates, value), axis_name)
        count = optax.safe_increment(state.count)
        beta1, beta2 = jnp.asarray(b1, dtype), jnp.asarray(b2, dtype)
        rho, bc2 = 1 - beta1 ** count.astype(dtype), 1 - beta2 ** count.astype(dtype)
        exp_avg = jax.tree.map(lambda m, g: _ema(m, g, beta1), state.exp_avg, updates)
        exp_avg_sq = jax.tree.map(
            lambda v, g: _ema(v, jnp.square(upcast(g)), beta2), state.exp_avg_sq, updates
        )
        loss_avg = beta1 * state.loss_avg + (1 - beta1) * value
        gamma = beta1 * state.gamma + (1 - beta1) * tree_vdot(params, updates)
        alpha = learning_rate(state.count) if callable(learning_rate) else learning_rate
        alpha = jnp.asarray(alpha, dtype)
        d = [upcast(m) for m in jax.tree.leaves(exp_avg)]
        precond = [jnp.sqrt(upcast(v) / bc2) + eps for v in jax.tree.leaves(exp_avg_sq)]
        u = [di / pi for di, pi in zip(d, precond, strict=True)]
        updates, tau, cap_active, lb = model_step(
            params, d, u, loss_avg, gamma, rho, alpha, state.lower_bound
        )
        return updates, MomoAdamState(
            count,
            exp_avg,
            exp_avg_sq,
            loss_avg,
            gamma,
            lb.astype(dtype),
            tau.astype(dtype),
            cap_active,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
