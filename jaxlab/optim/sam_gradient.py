"""SAM as a drop-in for ``jax.value_and_grad``: the gradient at the adversarially perturbed point.

:func:`sam_value_and_grad` is the stateless half of the SAM family: SAM and ASAM need no optimizer
state, so the two gradient evaluations can live in the gradient function and any optimizer takes
the result. The stateful variants (GSAM, LookSAM, F-SAM, diagnostics, ρ schedules) are in
:func:`jaxlab.optim.sharpness_aware.sam`, which shares the perturbation rules defined here.

Semantics follow google-research/sam (``flax_training.get_sam_gradient`` and ``train_step``):
value and aux from the clean pass, the perturbed pass's aux discarded, the same arguments (PRNG
keys, dropout) for both passes, a per-device perturbation by default. Unlike it, the
normalisation has an ε, so a zero gradient gives a zero perturbation instead of NaN.
"""

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab._tree import leaf_flags, tree_norm, upcast
from jaxlab.optim._checks import check_non_negative, check_positive

LeafMask = Any  # pytree (or prefix) of bools, or a callable params -> such a pytree
PERTURBATIONS = ("sam", "asam", "layerwise")


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """num/den where den > 0, else 0 (no NaN in either branch of the select)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _perturbation(
    direction,
    params,
    rho,
    *,
    rule: str = "sam",
    eta=0.01,
    scale_flags: list[bool] | None = None,
    perturb_flags: list[bool] | None = None,
    eps=1e-12,
    return_norm: bool = False,
):
    """The ascent step ε (a tree like ``params``, leaves in ≥ float32) for a perturbation rule.

    ``sam``: ε = ρ d/(‖d‖ + eps). ``asam``: ε = ρ T² d/(‖T d‖ + eps) with T = |w| + η on the
    leaves of ``scale_flags`` and T = 1 elsewhere. ``layerwise``: ε_l = ρ ‖w_l‖ d_l/(‖d_l‖ + eps)
    per leaf. Leaves outside ``perturb_flags`` get ε = 0 and do not enter the norms.
    ``return_norm`` also returns ‖ε‖ (for ``sam`` from ‖d‖, without another pass over ε).
    """
    d, w = jax.tree.leaves(direction), jax.tree.leaves(params)
    n = len(w)
    perturb_flags = [True] * n if perturb_flags is None else perturb_flags
    scale_flags = [True] * n if scale_flags is None else scale_flags
    d = [
        upcast(x) if f else jnp.zeros_like(upcast(x)) for x, f in zip(d, perturb_flags, strict=True)
    ]
    e_norm = None
    if rule == "sam":
        d_norm = tree_norm(d)
        scale = rho / (d_norm + eps)
        e = [scale.astype(x.dtype) * x for x in d]
        e_norm = scale * d_norm
    elif rule == "asam":
        t = [jnp.abs(upcast(p)) + eta if s else 1.0 for p, s in zip(w, scale_flags, strict=True)]
        td = [ti * x for x, ti in zip(d, t, strict=True)]
        scale = rho / (tree_norm(td) + eps)
        e = [scale.astype(x.dtype) * ti * x for x, ti in zip(td, t, strict=True)]
    elif rule == "layerwise":
        e = [rho * tree_norm([p]) * x / (tree_norm([x]) + eps) for x, p in zip(d, w, strict=True)]
        e = [x.astype(y.dtype) for x, y in zip(e, d, strict=True)]
    else:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got perturbation={rule!r}")
    e_tree = jax.tree.unflatten(jax.tree.structure(params), e)
    if not return_norm:
        return e_tree
    return e_tree, tree_norm(e) if e_norm is None else e_norm


def _add(params, e):
    """params + ε, added in ≥ float32 and cast back to each leaf's dtype."""
    return jax.tree.map(lambda p, x: (upcast(p) + x).astype(p.dtype), params, e)


def _check_argnums(argnums) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, numbers.Integral) else argnums
    if not isinstance(nums, Sequence) or not all(isinstance(i, numbers.Integral) for i in nums):
        raise TypeError(f"argnums must be an int or a tuple of ints, got argnums={argnums!r}")
    return tuple(int(i) for i in nums)


def sam_value_and_grad(
    loss_fn: Callable[..., Any],
    rho=0.05,
    *,
    adaptive: bool = False,
    eta: float = 0.01,
    adaptive_mask: LeafMask | None = None,
    has_aux: bool = False,
    sync_axis_name: str | None = None,
    group_size: int | None = None,
    batch_argnum: int = 1,
    argnums: int | Sequence[int] = 0,
    eps: float = 1e-12,
) -> Callable[..., tuple[Any, Any]]:
    r"""``jax.value_and_grad`` of the SAM objective: the clean value, the perturbed gradient.

    With :math:`g = \nabla L(w)` at the clean point,

    .. math::

      \epsilon = \rho\,\frac{g}{\|g\|_2 + \mathrm{eps}} \ \text{(SAM)}, \qquad
      \epsilon = \rho\,\frac{T^2 g}{\|T g\|_2 + \mathrm{eps}},\ T = |w| + \eta
      \ \text{(ASAM, ``adaptive``)}

    and the returned gradient is :math:`\nabla L(w + \epsilon)`, while the returned value (and
    aux) are those of the clean pass :math:`L(w)`. Both passes get the same arguments, so PRNG
    keys and dropout masks match. Norms are accumulated in float32; ε is added in float32 and
    cast back to each parameter's dtype.

    Args:
      loss_fn: As for ``jax.value_and_grad``: a scalar loss, or ``(loss, aux)`` with
        ``has_aux``. With ``group_size`` it must be the *mean* over the batch.
      rho: Radius ρ ≥ 0 (a float or a traced scalar, e.g. a schedule evaluated in the step).
      adaptive: ASAM's perturbation instead of SAM's.
      eta: ASAM's η ≥ 0 in T = |w| + η (0.01 in the official ASAM class).
      adaptive_mask: Which leaves of the differentiated arguments ASAM scales by T (pytree or
        prefix of bools, or callable returning one, as in ``optax.masked``); the others have
        T = 1, as biases in the official code. None scales every leaf (as davda54/sam).
      has_aux: As for ``jax.value_and_grad``.
      sync_axis_name: Mapped axis (pmap / shard_map) over which the clean gradient is
        ``lax.pmean``-ed before the perturbation: one global ε (google-research/sam's
        ``--sync_perturbations``). None: each device perturbs with its local gradient
        (m-sharpness with m = the per-device batch, google-research/sam's default).
      group_size: m. When set, the batch (argument ``batch_argnum``, a pytree whose leaves share
        a leading axis divisible by m) is split into micro-groups of m examples; each group
        perturbs with its own gradient (``vmap`` over groups) and the returned gradient and value
        are means over groups; aux gets a leading group axis. Exclusive with ``sync_axis_name``.
      batch_argnum: Position of the batch among the positional arguments (for ``group_size``).
      argnums: As for ``jax.value_and_grad``; the differentiated arguments are perturbed
        jointly (one norm over all of them).
      eps: Added to the norm in the normalisation.

    Returns:
      A function with the signature of ``loss_fn`` returning ``(value, grads)``, or
      ``((value, aux), grads)`` with ``has_aux``, like ``jax.value_and_grad(loss_fn, ...)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxlab.optim.sam_gradient import sam_value_and_grad
      >>> loss = lambda w: jnp.sum(w**2)
      >>> value, grads = sam_value_and_grad(loss, rho=0.5)(jnp.array([3.0, 4.0]))
      >>> value, grads  # value at w, gradient at w + 0.5 w/‖w‖ = [3.3, 4.4]
      (Array(25., dtype=float32), Array([6.6, 8.8], dtype=float32))

    References:
      Foret, Kleiner, Mobahi, Neyshabur, `Sharpness-Aware Minimization for Efficiently Improving
      Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021 (code:
      google-research/sam). Kwon, Kim, Park, Choi, `ASAM: Adaptive Sharpness-Aware Minimization
      <https://arxiv.org/abs/2102.11600>`_, ICML 2021 (code: SamsungLabs/ASAM, whose
      ``ascent_step`` this follows, with eps 1e-12 instead of 1e-16).

    .. note::
      The returned gradient is *local*, exactly like ``jax.value_and_grad``: average it over
      devices (``lax.pmean``) in the step, as for any gradient. Use
      ``jax.shard_map(..., check_vma=False)`` or pmap: under ``check_vma=True`` the gradient of
      replicated parameters is already ``psum``-ed over the axis, so the "local" ascent would be
      a global one of the wrong scale; there, cast the parameters with
      ``jax.lax.pcast(params, axis, to="varying")`` before calling. BatchNorm: return the new
      batch statistics as aux; they come from the clean pass and the perturbed pass's are
      discarded (as in google-research/sam).
    """
    check_non_negative("rho", rho)
    check_non_negative("eta", eta)
    check_positive("eps", eps)
    nums = _check_argnums(argnums)
    if group_size is not None:
        if not isinstance(group_size, numbers.Integral) or group_size < 1:
            raise ValueError(f"group_size must be an int >= 1, got group_size={group_size!r}")
        if sync_axis_name is not None:
            raise ValueError(
                "group_size (per-group perturbations) and sync_axis_name (one global "
                f"perturbation) exclude each other, got group_size={group_size!r}, "
                f"sync_axis_name={sync_axis_name!r}"
            )
        if batch_argnum in nums:
            raise ValueError(f"batch_argnum={batch_argnum!r} is among argnums={argnums!r}")
    rule = "asam" if adaptive else "sam"
    value_and_grad = jax.value_and_grad(loss_fn, argnums=argnums, has_aux=has_aux)
    grad = jax.grad(loss_fn, argnums=argnums, has_aux=has_aux)

    single = isinstance(argnums, numbers.Integral)

    def primals_of(args):
        return args[nums[0]] if single else tuple(args[i] for i in nums)

    def with_primals(args, primals):
        new = (primals,) if single else primals
        args = list(args)
        for i, p in zip(nums, new, strict=True):
            args[i] = p
        return tuple(args)

    def one_group(*args, **kwargs):
        out, g = value_and_grad(*args, **kwargs)
        ascent = g if sync_axis_name is None else lax.pmean(g, sync_axis_name)
        primals = primals_of(args)
        e = _perturbation(
            ascent,
            primals,
            rho,
            rule=rule,
            eta=eta,
            scale_flags=leaf_flags(adaptive_mask, primals) if adaptive else None,
            eps=eps,
        )
        g_perturbed = grad(*with_primals(args, _add(primals, e)), **kwargs)
        return out, g_perturbed[0] if has_aux else g_perturbed

    if group_size is None:
        return one_group

    def grouped(*args, **kwargs):
        batch = args[batch_argnum]
        sizes = {x.shape[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batch)}
        if len(sizes) != 1 or None in sizes or next(iter(sizes)) % group_size:
            raise ValueError(
                f"group_size={group_size} needs every leaf of argument {batch_argnum} (the "
                "batch) to share a leading axis divisible by it, got leading sizes "
                f"{sorted(sizes, key=str)}"
            )
        split = jax.tree.map(lambda x: x.reshape((-1, group_size, *x.shape[1:])), batch)
        args = list(args)
        args[batch_argnum] = split
        in_axes = tuple(0 if i == batch_argnum else None for i in range(len(args)))
        out, g = jax.vmap(lambda *a: one_group(*a, **kwargs), in_axes=in_axes)(*args)
        g = jax.tree.map(lambda x: jnp.mean(upcast(x), axis=0).astype(x.dtype), g)
        if has_aux:
            return (jnp.mean(out[0]), out[1]), g
        return jnp.mean(out), g

    return grouped
