"""Sharpness measures: worst-case (SAM/ASAM-style), m-, and average-case sharpness; coherence.

λ_max against the stability threshold is in :mod:`jaxlab.curvature.stability`.

Everything here is a *measurement* of the loss at given parameters, not a claim about
generalisation: Andriushchenko et al. (https://arxiv.org/abs/2302.07011) find that no sharpness
definition correlates robustly with generalisation across settings.

Conventions: ``loss_fn(params, batch) -> scalar`` is the mean loss over ``batch``; with
``axis_name`` (under ``pmap`` / ``shard_map``) losses and gradients are ``pmean``-averaged over the
axis, i.e. measured on the mean loss over all shards (exact for equal shard sizes); keys must then
be the same on every device. The ``loss_fn``-taking functions are jitted with ``loss_fn`` static:
pass the same function object every call and a second call with the same shapes does not compile.
"""

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxlab._tree import tree_norm
from jaxlab.curvature.trace import (
    _check_callable,
    _check_choice,
    _check_int,
    _check_optional_int,
    _check_tree,
    _chunked_mean_var,
    _sample_probe,
    _stderr,
)
from jaxlab.optim._checks import check_non_negative, check_positive

_NORMS = ("l2", "linf")


class SharpnessResult(NamedTuple):
    """Worst-case sharpness found by projected ascent.

    Attributes:
      sharpness: ``L(w + ε) − L(w)`` at the best perturbation found (a lower bound on the max).
      loss: ``L(w)``.
      perturbation: the best ε, a pytree like ``params`` (parameter space).
    """

    sharpness: jax.Array
    loss: jax.Array
    perturbation: Any


def _apgd_checkpoints(num_steps: int) -> tuple[bool, ...]:
    """APGD's step-size checkpoints at fractions 0.22, 0.41, 0.57, … of the steps."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(q * num_steps) for q in p[1:]}
    return tuple(i in marks for i in range(num_steps))


def _loss_and_grad(loss_fn, batch, axis_name):
    def f(p):
        loss, grad = jax.value_and_grad(loss_fn)(p, batch)
        if axis_name is not None:
            loss, grad = jax.lax.pmean((loss, grad), axis_name)
        return loss, grad

    return f


def _ball_scale(params, adaptive, adaptive_eta):
    """T_w: ε = T_w ⊙ δ with ‖δ‖ ≤ ρ; |w| + η elementwise when adaptive, else 1."""
    if not adaptive:
        return jax.tree.map(lambda w: jnp.ones((), w.dtype), params)
    return jax.tree.map(lambda w: (jnp.abs(w) + adaptive_eta).astype(w.dtype), params)


def _project(delta, rho, norm):
    if norm == "linf":
        return jax.tree.map(lambda d: jnp.clip(d, -rho, rho), delta)
    n = tree_norm(delta)
    factor = jnp.where(n > rho, rho / jnp.where(n > 0, n, 1.0), 1.0)
    return jax.tree.map(lambda d: (d * factor).astype(d.dtype), delta)


def _ascent_direction(grad, norm):
    if norm == "linf":
        return jax.tree.map(jnp.sign, grad)
    n = tree_norm(grad)
    inv = jnp.where(n > 0, 1.0 / jnp.where(n > 0, n, 1.0), 0.0)
    return jax.tree.map(lambda g: (g * inv).astype(g.dtype), grad)


def _axpy(a, x, y):
    return jax.tree.map(lambda u, v: (a * u + v).astype(v.dtype), x, y)


def _random_init(key, params, rho, norm):
    if norm == "linf":
        return jax.tree.map(lambda u: u * rho, _sample_probe(key, params, "uniform"))
    z = _sample_probe(key, params, "normal")
    return _project(jax.tree.map(lambda x: x * (2.0 * rho), z), rho, "l2")


def _worst_case(loss_fn, params, batch, key, rho, step_size, adaptive_eta, *, config):
    norm, adaptive, num_steps, momentum, axis_name = config
    scale = _ball_scale(params, adaptive, adaptive_eta)
    value_grad = _loss_and_grad(loss_fn, batch, axis_name)

    def perturb(delta):
        return jax.tree.map(lambda w, t, d: (w + t * d).astype(w.dtype), params, scale, delta)

    def objective(delta):
        loss, grad = value_grad(perturb(delta))
        return loss, jax.tree.map(lambda g, t: (g * t).astype(g.dtype), grad, scale)

    loss0 = loss_fn(params, batch)
    if axis_name is not None:
        loss0 = jax.lax.pmean(loss0, axis_name)
    if key is None:
        delta0 = jax.tree.map(jnp.zeros_like, params)
    else:
        delta0 = _random_init(key, params, rho, norm)
    step0 = jnp.asarray(2.0 * rho if step_size is None else step_size, loss0.dtype)
    neg_inf = jnp.asarray(-jnp.inf, loss0.dtype)

    def body(carry, is_checkpoint):
        delta, prev, best, best_delta, step, hits, since, cp_best, cp_step = carry
        val, grad = objective(delta)
        improved = val > best
        best = jnp.where(improved, val, best)
        best_delta = jax.tree.map(lambda a, b: jnp.where(improved, a, b), delta, best_delta)
        hits, since = hits + improved, since + 1
        z = _project(_axpy(step, _ascent_direction(grad, norm), delta), rho, norm)
        moved = jax.tree.map(
            lambda d, zz, p: d + momentum * (zz - d) + (1.0 - momentum) * (d - p), delta, z, prev
        )
        new, prev = _project(moved, rho, norm), delta
        # APGD: halve the step and restart from the best point if few steps improved, or if
        # neither the step nor the best value changed since the last checkpoint.
        halve = is_checkpoint & ((hits < 0.75 * since) | ((step == cp_step) & (best <= cp_best)))
        pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(halve, u, v), a, b)  # noqa: E731
        new, prev = pick(best_delta, new), pick(best_delta, prev)
        step = jnp.where(halve, 0.5 * step, step)
        cp_best = jnp.where(is_checkpoint, best, cp_best)
        cp_step = jnp.where(is_checkpoint, step, cp_step)
        hits = jnp.where(is_checkpoint, 0, hits)
        since = jnp.where(is_checkpoint, 0, since)
        return (new, prev, best, best_delta, step, hits, since, cp_best, cp_step), None

    zero = jnp.zeros((), jnp.int32)
    carry0 = (delta0, delta0, neg_inf, delta0, step0, zero, zero, neg_inf, step0)
    checkpoints = jnp.asarray(_apgd_checkpoints(num_steps))
    carry, _ = jax.lax.scan(body, carry0, checkpoints)
    delta, best, best_delta = carry[0], carry[2], carry[3]
    val, _ = objective(delta)
    improved = val > best
    best = jnp.where(improved, val, best)
    best_delta = jax.tree.map(lambda a, b: jnp.where(improved, a, b), delta, best_delta)
    eps = jax.tree.map(lambda t, d: (t * d).astype(d.dtype), scale, best_delta)
    return SharpnessResult(sharpness=best - loss0, loss=loss0, perturbation=eps)


_STATIC = ("loss_fn", "config")
_worst_case_jit = jax.jit(_worst_case, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=("loss_fn", "m", "config"))
def _m_sharpness(loss_fn, params, batch, key, rho, step_size, adaptive_eta, *, m, config):
    groups = jax.tree.map(lambda x: x.reshape(x.shape[0] // m, m, *x.shape[1:]), batch)
    num_groups = jax.tree.leaves(groups)[0].shape[0]
    keys = None if key is None else jax.random.split(key, num_groups)
    local = (*config[:4], None)

    def one(group, k):
        return _worst_case(loss_fn, params, group, k, rho, step_size, adaptive_eta, config=local)

    per_group = jax.vmap(one)(groups, keys).sharpness
    mean = jnp.mean(per_group)
    if config[4] is not None:
        mean = jax.lax.pmean(mean, config[4])
    return mean, per_group


def _check_worst_case(loss_fn, params, rho, norm, adaptive_eta, num_steps, step_size, momentum):
    _check_callable("loss_fn", loss_fn)
    _check_tree("params", params)
    check_positive("rho", rho)
    _check_choice("norm", norm, _NORMS)
    check_non_negative("adaptive_eta", adaptive_eta)
    _check_int("num_steps", num_steps)
    if step_size is not None:
        check_positive("step_size", step_size)
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must be in (0, 1], got momentum={momentum!r}")


def worst_case_sharpness(
    loss_fn,
    params,
    batch,
    *,
    rho,
    norm="l2",
    adaptive=False,
    adaptive_eta=0.0,
    num_steps=20,
    step_size=None,
    momentum=0.75,
    key=None,
    axis_name=None,
) -> SharpnessResult:
    r"""Worst-case sharpness :math:`\max_{\|T_w^{-1}\epsilon\|_p \le \rho} L(w+\epsilon) - L(w)`.

    Maximised by projected gradient ascent with APGD's momentum and step-size halving
    (Croce & Hein; as in tml-epfl/sharpness-vs-generalization), over ``num_steps`` gradient
    evaluations. The ascent runs on :math:`\delta = T_w^{-1}\epsilon` in the plain ball
    :math:`\|\delta\|_p \le \rho`, so the (adaptive) projection is exact:

    .. math::

        z = \Pi(\delta_k + \alpha_k d_k),\quad
        \delta_{k+1} = \Pi\big(\delta_k + \mu (z - \delta_k) + (1-\mu)(\delta_k - \delta_{k-1})
        \big),

    with :math:`d_k = g/\|g\|_2` (L2) or :math:`\mathrm{sign}(g)` (L∞),
    :math:`g = T_w \nabla L(w + T_w\delta_k)`, :math:`\alpha_0 = 2\rho`. Adaptive (ASAM-style)
    sharpness uses :math:`T_w = \mathrm{diag}(|w| + \eta)`, otherwise :math:`T_w = I`. The best
    value seen is returned, so the result is a lower bound on the maximum (exact on convex
    quadratics with enough steps).

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean loss.
      params: point w.
      batch: data.
      rho: radius ρ > 0.
      norm: ``'l2'`` or ``'linf'``.
      adaptive: scale the ball by ``|w| + adaptive_eta`` elementwise (all leaves).
      adaptive_eta: η ≥ 0 of the adaptive scaling (ASAM uses 0.01; the tml-epfl evaluator 0).
      num_steps: ascent steps (gradient evaluations), ≥ 1.
      step_size: initial step α₀ in δ units; default 2ρ.
      momentum: APGD's μ in (0, 1] (0.75; 1 is plain projected ascent).
      key: random start in the ball; ``None`` starts at ε = 0 (then a zero gradient, e.g. at the
        exact minimum of a quadratic, leaves ε = 0: pass a key there).
      axis_name: ``pmap``/``shard_map`` axis: ascent on the mean loss over all shards.

    Returns:
      :class:`SharpnessResult` ``(sharpness, loss, perturbation)``.

    References:
      Foret et al., "Sharpness-aware minimization", https://arxiv.org/abs/2010.01412;
      Kwon et al., "ASAM", https://arxiv.org/abs/2102.11600; Andriushchenko et al., "A modern
      look at the relationship between sharpness and generalization",
      https://arxiv.org/abs/2302.07011; Croce & Hein, "Reliable evaluation of adversarial
      robustness…" (APGD), https://arxiv.org/abs/2003.01690.
    """
    _check_worst_case(loss_fn, params, rho, norm, adaptive_eta, num_steps, step_size, momentum)
    config = (norm, bool(adaptive), num_steps, momentum, axis_name)
    return _worst_case_jit(loss_fn, params, batch, key, rho, step_size, adaptive_eta, config=config)


def m_sharpness(
    loss_fn,
    params,
    batch,
    *,
    m,
    rho,
    norm="l2",
    adaptive=False,
    adaptive_eta=0.0,
    num_steps=20,
    step_size=None,
    momentum=0.75,
    key=None,
    axis_name=None,
):
    r"""m-sharpness: the worst-case sharpness of each group of m examples, averaged.

    .. math::

        S_m = \frac{1}{B/m} \sum_{j=1}^{B/m} \max_{\|T_w^{-1}\epsilon\|_p \le \rho}
        L_{B_j}(w + \epsilon) - L_{B_j}(w),

    each group maximised independently by :func:`worst_case_sharpness` (vmapped over groups).
    This is the quantity SAM with per-device batches of m examples implicitly penalises.

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean loss over a batch.
      params: point w.
      batch: pytree of arrays with a leading batch axis B divisible by ``m``.
      m: group size ≥ 1.
      rho: radius ρ > 0.
      norm: ``'l2'`` or ``'linf'``.
      adaptive: scale the ball by ``|w| + adaptive_eta``.
      adaptive_eta: η ≥ 0 of the adaptive scaling.
      num_steps: ascent steps per group.
      step_size: initial step (default 2ρ).
      momentum: APGD's μ.
      key: random starts (split per group); ``None`` starts at ε = 0.
      axis_name: ``pmap``/``shard_map`` axis: groups are formed within each device's shard and
        the mean is taken over all of them (equal shard sizes).

    Returns:
      ``(mean, per_group)``: the m-sharpness and the ``[B/m]`` values of this shard's groups.

    References:
      Foret et al., https://arxiv.org/abs/2010.01412 (§4.1); Andriushchenko & Flammarion,
      "Towards understanding sharpness-aware minimization", https://arxiv.org/abs/2206.06232.
    """
    _check_worst_case(loss_fn, params, rho, norm, adaptive_eta, num_steps, step_size, momentum)
    _check_int("m", m)
    sizes = {x.shape[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batch)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"batch leaves must share a leading batch axis, got sizes {sizes}")
    (size,) = sizes
    if size % m:
        raise ValueError(f"m must divide the batch size {size}, got m={m}")
    config = (norm, bool(adaptive), num_steps, momentum, axis_name)
    return _m_sharpness(
        loss_fn, params, batch, key, rho, step_size, adaptive_eta, m=m, config=config
    )


# ----------------------------------------------------------------------------------------------
# Average-case sharpness and gradient coherence


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "num_samples", "adaptive", "batch_size", "axis_name")
)
def _average_sharpness(
    loss_fn, params, batch, key, sigma, adaptive_eta, *, num_samples, adaptive, batch_size,
    axis_name,
):  # fmt: skip
    scale = _ball_scale(params, adaptive, adaptive_eta)

    def loss(p):
        value = loss_fn(p, batch)
        return value if axis_name is None else jax.lax.pmean(value, axis_name)

    loss0 = loss(params)

    def sample(k):
        z = _sample_probe(k, params, "normal")
        p = jax.tree.map(lambda w, t, zz: (w + sigma * t * zz).astype(w.dtype), params, scale, z)
        return loss(p) - loss0

    mean, var = _chunked_mean_var(sample, jax.random.split(key, num_samples), batch_size)
    return mean, _stderr(var, num_samples)


def average_sharpness(
    loss_fn,
    params,
    batch,
    *,
    sigma,
    key,
    num_samples=100,
    adaptive=False,
    adaptive_eta=0.0,
    batch_size=None,
    axis_name=None,
):
    r"""Average-case sharpness :math:`\mathbb E_{\delta} L(w + \delta) - L(w)` with its stderr.

    :math:`\delta = \sigma\, T_w z`, :math:`z \sim \mathcal N(0, I)`, :math:`T_w = I` or
    :math:`\mathrm{diag}(|w| + \eta)` (adaptive). For a quadratic this is exactly
    :math:`\tfrac{\sigma^2}{2}\mathrm{tr}(T_w H T_w)`, a trace (not a λ_max) measure.

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean loss.
      params: point w.
      batch: data.
      sigma: noise scale σ > 0.
      key: PRNG key (the same on every device under ``pmap``/``shard_map``).
      num_samples: Monte-Carlo samples (≥ 2).
      adaptive: elementwise ``|w| + adaptive_eta`` noise scaling.
      adaptive_eta: η ≥ 0.
      batch_size: samples per ``vmap``; ``None``: one per ``lax.scan`` step.
      axis_name: ``pmap``/``shard_map`` axis (mean loss over all shards).

    Returns:
      ``(estimate, stderr)``: sample mean and its standard error.

    References:
      Andriushchenko et al., https://arxiv.org/abs/2302.07011 (average-case sharpness);
      Keskar et al., https://arxiv.org/abs/1609.04836.
    """
    _check_callable("loss_fn", loss_fn)
    _check_tree("params", params)
    check_positive("sigma", sigma)
    check_non_negative("adaptive_eta", adaptive_eta)
    _check_int("num_samples", num_samples, 2)
    _check_optional_int("batch_size", batch_size)
    return _average_sharpness(
        loss_fn, params, batch, key, sigma, adaptive_eta, num_samples=num_samples,
        adaptive=bool(adaptive), batch_size=batch_size, axis_name=axis_name,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "axis_name"))
def _gradient_coherence(loss_fn, params, batch, *, batch_size, axis_name):
    def per_example(example):
        one = jax.tree.map(lambda x: x[None], example)
        g = jax.grad(loss_fn)(params, one)
        return g, jnp.square(tree_norm(g))

    (mean_grad, mean_sq), _ = _chunked_mean_var(per_example, batch, batch_size)
    if axis_name is not None:
        mean_grad, mean_sq = jax.lax.pmean((mean_grad, mean_sq), axis_name)
    num = jnp.square(tree_norm(mean_grad))
    return jnp.where(mean_sq > 0, num / jnp.where(mean_sq > 0, mean_sq, 1.0), 0.0)


def gradient_coherence(loss_fn, params, batch, *, batch_size=None, axis_name=None):
    r"""Coherence of per-example gradients :math:`\alpha = \|\mathbb E_i g_i\|^2 /
    \mathbb E_i \|g_i\|^2` (Chatterjee & Zielinski).

    :math:`\alpha \in [0, 1]`: 1 when all per-example gradients are equal, :math:`1/m` for m
    mutually orthogonal gradients of equal norm (the paper's :math:`\alpha_\perp`, so
    :math:`\alpha/\alpha_\perp = m\alpha`), near 0 for gradients that cancel. Per-example
    gradients :math:`g_i = \nabla_w \ell(w; x_i)` are ``loss_fn`` on batches of one example,
    computed ``batch_size`` at a time and never all stored.

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean loss (called on batches of one example).
      params: point w.
      batch: pytree of arrays with a leading batch axis (≥ 2 examples).
      batch_size: examples per ``vmap``; ``None``: one per ``lax.scan`` step.
      axis_name: ``pmap``/``shard_map`` axis: expectations over all shards (equal sizes).

    Returns:
      α as a float32 scalar (0 when every per-example gradient is zero).

    References:
      Chatterjee, "Coherent gradients", https://arxiv.org/abs/2002.10657 (2020); Chatterjee &
      Zielinski, "On the generalization mystery in deep learning",
      https://arxiv.org/abs/2203.10036 (2022), §4.
    """
    _check_callable("loss_fn", loss_fn)
    _check_tree("params", params)
    _check_optional_int("batch_size", batch_size)
    sizes = {x.shape[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batch)}
    if len(sizes) != 1 or None in sizes or min(sizes) < 2:
        raise ValueError(
            f"batch leaves must share a leading batch axis of size >= 2, got sizes {sizes}"
        )
    return _gradient_coherence(loss_fn, params, batch, batch_size=batch_size, axis_name=axis_name)
