"""Adversarial weight perturbation as drop-in ``jax.value_and_grad``: AMP and AWP.

Both return a function with the signature and outputs of ``jax.value_and_grad(loss_fn,
has_aux=...)``, like :func:`jaxlab.optim.sam_value_and_grad`: the value (and aux) at the clean
point θ, the gradient ``∇L(θ + Δ)`` at the perturbed point, so they are interchangeable in a
training step. They differ in how Δ is found:

=========== =============================================== ==================================
method      perturbation Δ                                  passes per step
=========== =============================================== ==================================
AMP         N projected (unnormalised) ascent steps in an   N + 1
            L2 ball of radius ε, per leaf or global
AWP         K normalised ascent steps, each leaf scaled by  K + 1
            its own norm, in ``‖v_l‖ ≤ γ‖w_l‖``
=========== =============================================== ==================================

**Parallel semantics.** The returned gradient is local, exactly like ``jax.value_and_grad``: the
training step averages it. With ``sync_axis_name=None`` each device ascends with its own local
gradients (one perturbation per device, as SAM's m-sharpness); with ``sync_axis_name`` set, every
ascent gradient is ``lax.pmean``-ed over that axis first, so all devices share one perturbation.
"""

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab._tree import tree_norm, upcast
from jaxlab.optim._checks import check_non_negative, check_positive

AMP_BALLS = ("layer", "global")
_AMP_EPS = 1e-12  # amp.py: clip_coef = epsilon / (dev.norm() + 1e-12)
_AWP_EPS = 1e-20  # utils_awp.py: EPS = 1E-20


def _check_steps(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {name}={value!r}")


def _check_callable(name: str, value) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {name}={value!r}")


def _perturbed(leaves: list, delta: list, treedef) -> Any:
    """θ + Δ, added in ≥ float32 and stored in each leaf's dtype (Δ = None: leaf unchanged)."""
    out = [
        p if d is None else (upcast(p) + d).astype(p.dtype)
        for p, d in zip(leaves, delta, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def _ascent_grad_fn(loss_fn, has_aux: bool, sync_axis_name: str | None):
    """Returns ``(params, args, kwargs) -> leaves of ∇L`` in ≥ float32, pmean-ed if synced."""
    grad_fn = jax.grad(loss_fn, has_aux=has_aux)

    def ascent_grad(params, args, kwargs):
        g = grad_fn(params, *args, **kwargs)
        g = g[0] if has_aux else g
        if sync_axis_name is not None:
            g = lax.pmean(g, sync_axis_name)
        return [upcast(x) for x in jax.tree.leaves(g)]

    return ascent_grad


def amp_value_and_grad(
    loss_fn: Callable[..., Any],
    epsilon: float,
    *,
    inner_lr: float = 1.0,
    inner_steps: int = 1,
    ball: Literal["layer", "global"] = "layer",
    has_aux: bool = False,
    sync_axis_name: str | None = None,
) -> Callable[..., Any]:
    """Adversarial model perturbation (AMP): gradient after projected ascent in an L2 ball.

    .. math::

      Δ_0 = 0, \\qquad Δ_{k+1} = Π_ε\\big(Δ_k + ζ\\,∇L(θ + Δ_k)\\big), \\quad k < N,
      \\qquad \\text{returns } \\big(L(θ),\\ ∇L(θ + Δ_N)\\big)

    with ζ = ``inner_lr`` and N = ``inner_steps``. The ascent step is not normalised. The
    projection follows the official code, ``Δ ← Δ · min(1, ε / (‖Δ‖ + 1e-12))``, taken per leaf
    (``ball="layer"``, as ``amp.py`` does per parameter tensor) or over all leaves at once
    (``ball="global"``, the single ball of the paper's AMP loss ``max_{‖Δ‖≤ε} L(θ+Δ)``). With
    one step and a binding ball (``ζ‖g‖ ≥ ε``), ``ball="global"`` is SAM with ρ = ε.

    Args:
      loss_fn: ``loss_fn(params, *args, **kwargs)`` returning a scalar, or ``(scalar, aux)``
        with ``has_aux``. Differentiated with respect to its first argument.
      epsilon: Radius ε ≥ 0 of the ball (ε = 0 gives the plain gradient).
      inner_lr: Ascent step ζ > 0 (official default 1).
      inner_steps: Number N ≥ 0 of ascent steps (0 gives ``jax.value_and_grad``).
      ball: ``"layer"`` (a ball of radius ε per leaf, official code) or ``"global"``.
      has_aux: As in ``jax.value_and_grad``; the aux is the one at the clean point.
      sync_axis_name: Mapped axis over which each ascent gradient is averaged before the step
        (one perturbation for all devices); None perturbs with each device's local gradient.

    Returns:
      ``f(params, *args, **kwargs) -> (value, grads)`` (``((value, aux), grads)`` with
      ``has_aux``): value and aux at θ, ``grads = ∇L(θ + Δ_N)`` local to the device.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxlab.optim.weight_perturbation import amp_value_and_grad
      >>> loss = lambda w: 0.5 * jnp.sum(w**2)
      >>> value, grads = amp_value_and_grad(loss, 0.5, ball="global")(jnp.array([3.0, 4.0]))
      >>> value, grads  # gradient at w + 0.5 w/‖w‖
      (Array(12.5, dtype=float32), Array([3.3, 4.4], dtype=float32))

    References:
      Zheng, Zhang, Mao, `Regularizing Neural Networks via Adversarial Model Perturbation
      <https://arxiv.org/abs/2010.04925>`_, CVPR 2021. Followed: the official ``amp.py`` of
      github.com/hiyouga/AMP-Regularizer (per-tensor clip, unnormalised step, ε-guard 1e-12).

    .. note::
      Costs N + 1 forward-backward passes. BatchNorm statistics, dropout keys and other state
      are whatever ``loss_fn`` makes of ``args``: every pass sees the same arguments.
    """
    _check_callable("loss_fn", loss_fn)
    check_non_negative("epsilon", epsilon)
    check_positive("inner_lr", inner_lr)
    _check_steps("inner_steps", inner_steps)
    if ball not in AMP_BALLS:
        raise ValueError(f"ball must be one of {AMP_BALLS}, got ball={ball!r}")
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)
    ascent_grad = _ascent_grad_fn(loss_fn, has_aux, sync_axis_name)

    def project(delta: list) -> list:
        if ball == "global":
            scale = jnp.minimum(1.0, epsilon / (tree_norm(delta) + _AMP_EPS))
            return [scale.astype(d.dtype) * d for d in delta]
        return [
            jnp.minimum(1.0, epsilon / (tree_norm(d) + _AMP_EPS)).astype(d.dtype) * d for d in delta
        ]

    def amp_fn(params, *args, **kwargs):
        out, grads = value_and_grad(params, *args, **kwargs)
        if inner_steps == 0:
            return out, grads
        leaves, treedef = jax.tree.flatten(params)
        g0 = [upcast(x) for x in jax.tree.leaves(grads)]
        if sync_axis_name is not None:
            g0 = lax.pmean(g0, sync_axis_name)
        delta = project([inner_lr * g for g in g0])

        def ascend(_, delta):
            g = ascent_grad(_perturbed(leaves, delta, treedef), args, kwargs)
            return project([d + inner_lr * gi for d, gi in zip(delta, g, strict=True)])

        delta = lax.fori_loop(0, inner_steps - 1, ascend, delta)
        grads = value_and_grad(_perturbed(leaves, delta, treedef), *args, **kwargs)[1]
        return out, grads

    return amp_fn


def _awp_flags(mask, params) -> list[bool]:
    """One static bool per leaf: whether AWP perturbs it (default: leaves with ndim > 1)."""
    if mask is None:
        return [jnp.ndim(p) > 1 for p in jax.tree.leaves(params)]
    mask = mask(params) if callable(mask) else mask
    full = jax.tree.map(lambda m, p: jax.tree.map(lambda _: bool(m), p), mask, params)
    return jax.tree.leaves(full)


def awp_value_and_grad(
    adv_loss_fn: Callable[..., Any],
    gamma: float = 5e-3,
    *,
    steps: int = 1,
    step_size: float | None = None,
    has_aux: bool = False,
    mask: Any = None,
    sync_axis_name: str | None = None,
) -> Callable[..., Any]:
    """Adversarial weight perturbation (AWP): gradient at a layer-wise relative perturbation.

    For every perturbed leaf (layer) l, with w the clean weights and ρ = ``adv_loss_fn``:

    .. math::

      v_l \\leftarrow Π_{γ\\|w_l\\|}\\Big(v_l + η\\,\\|w_l\\|\\,
        \\frac{∇_{v_l} ρ(w + v)}{\\|∇_{v_l} ρ(w + v)\\| + 10^{-20}}\\Big)
      \\quad (K \\text{ times from } v = 0),
      \\qquad \\text{returns } \\big(ρ(w),\\ ∇ρ(w + v)\\big)

    where ``Π_r(u) = u · min(1, r / (‖u‖ + 10⁻²⁰))`` and η = ``step_size`` (default γ). With
    one step (the official release) this is ``v_l = γ ‖w_l‖ g_l / (‖g_l‖ + 10⁻²⁰)``: the
    official ``diff_in_weights`` normalisation of one SGD step of the proxy model, so
    ``‖v_l‖ = γ‖w_l‖`` for every layer with a nonzero gradient.

    Args:
      adv_loss_fn: ``adv_loss_fn(params, *args, **kwargs)`` returning a scalar (or
        ``(scalar, aux)`` with ``has_aux``), typically the loss on adversarial inputs
        ``batch_adv``; ascended and then differentiated with respect to its first argument.
      gamma: Relative radius γ ≥ 0 (official default 5e-3; 0 gives the plain gradient).
      steps: Number K ≥ 0 of ascent steps (official: 1; 0 gives ``jax.value_and_grad``).
      step_size: η > 0, relative to ‖w_l‖; None uses γ, so one step reaches the boundary.
      has_aux: As in ``jax.value_and_grad``; the aux is the one at the clean point.
      mask: Pytree of bools (or a prefix, or a callable ``params -> pytree``) selecting the
        perturbed leaves. None follows the official code, which perturbs only weights with
        more than one dimension (kernels, embeddings), not biases or normalisation scales.
      sync_axis_name: Mapped axis over which each ascent gradient is averaged (one global
        perturbation); None perturbs with each device's local gradient.

    Returns:
      ``f(params, *args, **kwargs) -> (value, grads)`` (``((value, aux), grads)`` with
      ``has_aux``): value and aux at w, ``grads = ∇ρ(w + v)`` local to the device.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxlab.optim.weight_perturbation import awp_value_and_grad
      >>> loss = lambda p: jnp.sum(p["w"] @ jnp.ones(2)) + jnp.sum(p["b"])
      >>> params = {"w": jnp.array([[3.0, 4.0]]), "b": jnp.array([1.0])}
      >>> value, grads = awp_value_and_grad(loss, 0.1)(params)
      >>> float(value), grads["w"]  # linear loss: the gradient does not move
      (8.0, Array([[1., 1.]], dtype=float32))

    References:
      Wu, Xia, Wang, `Adversarial Weight Perturbation Helps Robust Generalization
      <https://arxiv.org/abs/2004.05884>`_, NeurIPS 2020. Followed: ``utils_awp.py`` of
      github.com/csdongxian/AWP (``diff_in_weights``, EPS = 1e-20, weights with ndim > 1) for
      one step, and the paper's projected update for K > 1.

    .. note::
      The official code computes the perturbation on a proxy copy of the model so that
      BatchNorm statistics are not updated by the ascent pass; here ``adv_loss_fn`` is pure,
      so the caller decides which pass updates them. Zero weights (``‖w_l‖ = 0``) or zero
      gradients give ``v_l = 0``, never NaN.
    """
    _check_callable("adv_loss_fn", adv_loss_fn)
    check_non_negative("gamma", gamma)
    _check_steps("steps", steps)
    if step_size is None:
        step_size = gamma
    else:
        check_positive("step_size", step_size)
    value_and_grad = jax.value_and_grad(adv_loss_fn, has_aux=has_aux)
    ascent_grad = _ascent_grad_fn(adv_loss_fn, has_aux, sync_axis_name)

    def awp_fn(params, *args, **kwargs):
        out, grads = value_and_grad(params, *args, **kwargs)
        if steps == 0:
            return out, grads
        leaves, treedef = jax.tree.flatten(params)
        flags = _awp_flags(mask, params)
        w_norm = [tree_norm(p) if f else None for p, f in zip(leaves, flags, strict=True)]

        def ascend(v: list, g: list) -> list:
            out = []
            for vl, gl, wn in zip(v, g, w_norm, strict=True):
                if wn is None:
                    out.append(None)
                    continue
                u = vl + (step_size * wn / (tree_norm(gl) + _AWP_EPS)) * gl
                out.append(jnp.minimum(1.0, gamma * wn / (tree_norm(u) + _AWP_EPS)) * u)
            return out

        g0 = [upcast(x) for x in jax.tree.leaves(grads)]
        if sync_axis_name is not None:
            g0 = lax.pmean(g0, sync_axis_name)
        v = ascend([None if wn is None else 0.0 for wn in w_norm], g0)  # from v = 0

        def body(_, v):
            return ascend(v, ascent_grad(_perturbed(leaves, v, treedef), args, kwargs))

        v = lax.fori_loop(0, steps - 1, body, v)
        grads = value_and_grad(_perturbed(leaves, v, treedef), *args, **kwargs)[1]
        return out, grads

    return awp_fn
