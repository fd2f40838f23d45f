"""Stability thresholds: λ_max of the (preconditioned) Hessian against 2/η and its relatives.

A quadratic with curvature λ is stable under gradient descent with step η iff λ < 2/η; heavy-ball
momentum β moves the edge to (2 + 2β)/η and Adam (frozen preconditioner P) to
(2 + 2β₁)/((1 − β₁)η) on P^{-1/2} H P^{-1/2}. Training at the Edge of Stability hovers at these
thresholds (Cohen et al. 2021, 2022). ``hessian_sharpness`` is jitted with ``loss_fn`` static: pass
the same function object every call and a second call with the same shapes does not compile.
"""

import functools

import jax
import jax.numpy as jnp

from jaxlab.curvature.eigen import lanczos_eigenvalues
from jaxlab.curvature.operators import hessian_operator
from jaxlab.curvature.trace import (
    _check_callable,
    _check_choice,
    _check_int,
    _check_tree,
    _sample_probe,
    hutchinson_trace,
)
from jaxlab.optim._checks import check_non_negative, check_positive, check_unit_interval

_OPTIMIZERS = ("gd", "momentum", "adam")


# ----------------------------------------------------------------------------------------------
# Stability thresholds


def stability_threshold(learning_rate, *, optimizer="gd", momentum=0.9, b1=0.9):
    r"""The largest (preconditioned) sharpness at which the optimizer is stable on a quadratic.

    .. math::

        \text{gd: } \frac{2}{\eta},\qquad
        \text{momentum (heavy ball): } \frac{2 + 2\beta}{\eta},\qquad
        \text{adam: } \frac{2 + 2\beta_1}{(1 - \beta_1)\,\eta}

    (``38/η`` for Adam's β₁ = 0.9). For GD and momentum compare with λ_max(H); for Adam with the
    λ_max of the preconditioned Hessian :math:`P^{-1}H`, :math:`P = \mathrm{diag}(\sqrt{\hat\nu}
    + \epsilon)` (see :func:`preconditioned_operator`), treating P as frozen.

    Args:
      learning_rate: η > 0 (a number or a traced scalar).
      optimizer: ``'gd'``, ``'momentum'`` (heavy-ball / ``optax.sgd(momentum=β)``) or ``'adam'``.
      momentum: β in [0, 1) for ``'momentum'``.
      b1: β₁ in [0, 1) for ``'adam'``.

    Returns:
      The threshold (a float, or a scalar array for traced inputs).

    References:
      Cohen et al., "Gradient descent on neural networks typically occurs at the edge of
      stability", https://arxiv.org/abs/2103.00065; Cohen et al., "Adaptive gradient methods at
      the edge of stability", https://arxiv.org/abs/2207.14484.
    """
    check_positive("learning_rate", learning_rate)
    _check_choice("optimizer", optimizer, _OPTIMIZERS)
    check_unit_interval("momentum", momentum)
    check_unit_interval("b1", b1)
    if optimizer == "gd":
        return 2.0 / learning_rate
    if optimizer == "momentum":
        return (2.0 + 2.0 * momentum) / learning_rate
    return (2.0 + 2.0 * b1) / ((1.0 - b1) * learning_rate)


def sharpness_ratio(lambda_max, learning_rate, *, optimizer="gd", momentum=0.9, b1=0.9):
    """``lambda_max / stability_threshold(...)``: 1 is the edge of stability, > 1 unstable.

    Args:
      lambda_max: λ_max(H) for ``'gd'``/``'momentum'``, λ_max(P⁻¹H) for ``'adam'``.
      learning_rate: η > 0.
      optimizer: ``'gd'``, ``'momentum'`` or ``'adam'``.
      momentum: β for ``'momentum'``.
      b1: β₁ for ``'adam'``.

    Returns:
      The ratio (same type as ``lambda_max``).
    """
    threshold = stability_threshold(learning_rate, optimizer=optimizer, momentum=momentum, b1=b1)
    return lambda_max / threshold


def trace_stability_ratio(trace, learning_rate):
    r"""``tr(H)·η/2``: the SGD linear-stability trace bound :math:`\mathrm{tr}(H) \le 2/\eta`.

    Single-sample SGD near an interpolating minimum is linearly stable only if (roughly)
    :math:`\mathrm{tr}(H) \le 2/\eta` (Wu, Wang & Su); a ratio above 1 flags instability.

    Args:
      trace: tr(H), e.g. from :func:`jaxlab.curvature.trace.hessian_trace`.
      learning_rate: η > 0.

    Returns:
      ``trace * learning_rate / 2``.

    References:
      Wu, Wang & Su, "The alignment property of SGD noise and how it helps select flat minima",
      https://arxiv.org/abs/2207.02628; Ma & Ying, "On linear stability of SGD and
      input-smoothness of neural networks", https://arxiv.org/abs/2105.13462.
    """
    check_positive("learning_rate", learning_rate)
    return trace * learning_rate / 2.0


def adam_preconditioner(nu, *, eps=1e-8, count=None, b2=0.999):
    r"""Adam's diagonal preconditioner :math:`P = \sqrt{\hat\nu} + \epsilon` as a pytree.

    :math:`\hat\nu = \nu / (1 - \beta_2^t)` when ``count`` (= t) is given, else ``ν`` as passed
    (already bias-corrected, or bias correction ignored). The Adam step is
    :math:`\eta P^{-1}\hat m`, so the relevant curvature is :math:`P^{-1}H`.

    Args:
      nu: second-moment pytree (``optax.ScaleByAdamState.nu``).
      eps: ε added after the square root, as in ``optax.adam``.
      count: step count t ≥ 1 of the state (``ScaleByAdamState.count``) for bias correction.
      b2: β₂ for the bias correction.

    Returns:
      ``P`` shaped like ``nu`` (float32 or wider).
    """
    check_non_negative("eps", eps)
    check_unit_interval("b2", b2)
    _check_tree("nu", nu)

    def leaf(v):
        v = v.astype(jnp.promote_types(v.dtype, jnp.float32))
        if count is not None:
            v = v / (1.0 - jnp.asarray(b2, v.dtype) ** jnp.asarray(count, v.dtype))
        return jnp.sqrt(v) + eps

    return jax.tree.map(leaf, nu)


def preconditioned_operator(matvec, preconditioner):
    r"""The symmetric operator :math:`v \mapsto P^{-1/2} A P^{-1/2} v` for a diagonal P > 0.

    It is similar to :math:`P^{-1}A` (same eigenvalues), so its λ_max is the preconditioned
    sharpness that Adam equilibrates at ``38/η`` (β₁ = 0.9), and symmetric solvers (Lanczos)
    apply. Eigenvectors ``u`` of it give those of :math:`P^{-1}A` as :math:`P^{-1/2}u`.

    Args:
      matvec: symmetric ``v -> A v`` on pytrees.
      preconditioner: the diagonal of P as a pytree like the vectors (e.g.
        :func:`adam_preconditioner`), entries > 0.

    Returns:
      ``matvec(v)`` of the preconditioned operator.

    References:
      Cohen et al., https://arxiv.org/abs/2207.14484; init2winit's ``precondition_mvp_fn``.
    """
    _check_callable("matvec", matvec)
    _check_tree("preconditioner", preconditioner)
    inv_sqrt = jax.tree.map(jax.lax.rsqrt, preconditioner)

    def scale(v):
        return jax.tree.map(lambda x, s: (x * s).astype(x.dtype), v, inv_sqrt)

    return lambda v: scale(matvec(scale(v)))


@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "optimizer", "max_steps", "num_trace_probes", "axis_name"),
)
def _hessian_sharpness(
    loss_fn, params, batch, key, learning_rate, momentum, b1, preconditioner, tol,
    *, optimizer, max_steps, num_trace_probes, axis_name,
):  # fmt: skip
    hvp = hessian_operator(loss_fn, params, batch, axis_name=axis_name)
    op = hvp if preconditioner is None else preconditioned_operator(hvp, preconditioner)
    key_eig, key_trace = jax.random.split(key)
    v0 = _sample_probe(key_eig, params, "normal")
    eig = lanczos_eigenvalues(op, v0, k=1, max_steps=max_steps, tol=tol)
    lambda_max = eig.eigenvalues[0]
    threshold = stability_threshold(learning_rate, optimizer=optimizer, momentum=momentum, b1=b1)
    out = {
        "lambda_max": lambda_max,
        "residual": eig.residuals[0],
        "threshold": jnp.asarray(threshold, lambda_max.dtype),
        "ratio": lambda_max / threshold,
    }
    if num_trace_probes:
        trace, stderr = hutchinson_trace(op, params, key_trace, num_probes=num_trace_probes)
        out.update(trace=trace, trace_stderr=stderr, trace_ratio=trace * learning_rate / 2.0)
    return out


def hessian_sharpness(
    loss_fn,
    params,
    batch,
    *,
    key,
    learning_rate,
    optimizer="gd",
    momentum=0.9,
    b1=0.9,
    preconditioner=None,
    num_trace_probes=0,
    max_steps=100,
    tol=1e-6,
    axis_name=None,
) -> dict[str, jax.Array]:
    r"""λ_max of the (preconditioned) Hessian and its ratio to the optimizer's stability threshold.

    Lanczos with a Ritz-residual stop (:func:`~jaxlab.curvature.eigen.lanczos_eigenvalues`) on
    :math:`H` for ``'gd'``/``'momentum'``, or on :math:`P^{-1/2}HP^{-1/2}` when a
    ``preconditioner`` P is given (Adam: :func:`adam_preconditioner`), whose spectrum is that of
    :math:`P^{-1}H`. Optionally Hutchinson's trace of the same operator, with the SGD trace
    bound ``tr·η/2``.

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean loss.
      params: point θ.
      batch: data (the Hessian is that of the loss on this batch).
      key: PRNG key (Lanczos start vector and trace probes).
      learning_rate: η > 0.
      optimizer: ``'gd'``, ``'momentum'`` or ``'adam'`` (see :func:`stability_threshold`).
      momentum: β for ``'momentum'``.
      b1: β₁ for ``'adam'``.
      preconditioner: diagonal P pytree like ``params``; required for ``'adam'``.
      num_trace_probes: Hutchinson probes for the trace; 0 skips it.
      max_steps: maximum Lanczos steps.
      tol: relative Ritz-residual tolerance.
      axis_name: ``pmap``/``shard_map`` axis: the Hessian of the mean loss over all shards.

    Returns:
      A dict of scalars: ``lambda_max``, ``residual`` (Ritz residual of the top pair),
      ``threshold``, ``ratio``; with ``num_trace_probes > 0`` also ``trace``, ``trace_stderr``
      and ``trace_ratio`` (= tr·η/2, meaningful for SGD without preconditioning).

    References:
      Cohen et al., https://arxiv.org/abs/2103.00065 and https://arxiv.org/abs/2207.14484.
    """
    _check_callable("loss_fn", loss_fn)
    _check_tree("params", params)
    check_positive("learning_rate", learning_rate)
    _check_choice("optimizer", optimizer, _OPTIMIZERS)
    check_unit_interval("momentum", momentum)
    check_unit_interval("b1", b1)
    if optimizer == "adam" and preconditioner is None:
        raise ValueError("optimizer='adam' needs preconditioner=adam_preconditioner(nu, ...)")
    if preconditioner is not None:
        _check_tree("preconditioner", preconditioner)
    _check_int("num_trace_probes", num_trace_probes, 0)
    if num_trace_probes == 1:
        raise ValueError("num_trace_probes must be 0 or >= 2, got num_trace_probes=1")
    _check_int("max_steps", max_steps)
    check_non_negative("tol", tol)
    return _hessian_sharpness(
        loss_fn, params, batch, key, learning_rate, momentum, b1, preconditioner, tol,
        optimizer=optimizer, max_steps=max_steps, num_trace_probes=num_trace_probes,
        axis_name=axis_name,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Worst-case (adversarial) sharpness
