"""Gradient projections: ⊥Grad (drop the weight direction) and Bloop (gradient surgery with an EMA).

Both remove from one vector its component along another, g − (⟨g, d⟩/‖d‖²) d, with the inner
products and norms accumulated in at least float32 (:mod:`jaxlab._tree`) and the result cast back
to each update's dtype.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab._tree import accumulation_dtype, tree_norm, tree_sq_norm, tree_vdot
from jaxlab.optim._checks import check_non_negative, check_positive, check_unit_interval


def _project_out(g, w, eps: float, rescale: bool):
    """g − (⟨g, w⟩/(‖w‖² + ε)) w over a pytree, optionally rescaled to ‖g‖; dtypes of ``g``."""
    coeff = tree_vdot(g, w) / (tree_sq_norm(w) + eps)
    perp = jax.tree.map(
        lambda a, b: a.astype(accumulation_dtype(a)) - coeff * b.astype(accumulation_dtype(a)), g, w
    )
    if rescale:
        ratio = tree_norm(g) / (tree_norm(perp) + eps)
        perp = jax.tree.map(lambda p: ratio * p, perp)
    return jax.tree.map(lambda p, a: p.astype(a.dtype), perp, g)


def scale_by_perp_grad(
    *, eps: float = 1e-30, per_tensor: bool = True, rescale: bool = True
) -> optax.GradientTransformationExtraArgs:
    """⊥Grad: removes from the gradient its component along the current weights.

    For each parameter tensor θ with gradient g (or for the whole pytree when
    ``per_tensor=False``):

    .. math::

      g_⊥ = g − \\frac{⟨g, θ⟩}{‖θ‖² + ε}\\,θ, \\qquad
      \\mathrm{out} = g_⊥ \\cdot \\frac{‖g‖}{‖g_⊥‖ + ε} \\quad (\\text{or } g_⊥
      \\text{ if } \\texttt{rescale=False})

    The removed direction is the one along which the loss falls just by scaling the weights (and
    the logits), "naïve loss minimization", which the paper links to delayed grokking and
    Softmax Collapse. Chain it before any optimizer, e.g.
    ``optax.chain(scale_by_perp_grad(), optax.adamw(1e-3))`` for the paper's ⊥AdamW; decay added
    by the optimizer after it is not projected, as in the official wrapper.

    Follows the official PyTorch ``OrthoGrad`` wrapper (``orthograd.py`` of
    LucasPrietoAl/grokking-at-the-edge-of-numerical-stability): per tensor, ε = 1e-30 added to
    ‖θ‖² and to ‖g_⊥‖, and g_⊥ rescaled to the norm of g. The paper's equation has no
    rescaling; ``rescale=False`` gives it. ``per_tensor=False`` projects the flattened pytree
    (one global θ). To project only some leaves (the official code skips parameter groups past
    ``regular``), wrap it in ``optax.masked``.

    Args:
      eps: ε > 0, added to ‖θ‖² and ‖g_⊥‖; makes zero weights and zero gradients give zero.
      per_tensor: project each leaf on its own weights (official); else the whole pytree.
      rescale: rescale g_⊥ to the norm of g (official code); ``False`` gives the bare g_⊥.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``params``; its state
      is ``optax.EmptyState``.

    References:
      Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability",
      ICLR 2025, https://arxiv.org/abs/2501.04697.
    """
    check_positive("eps", eps)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("scale_by_perp_grad needs `params`: call update(g, state, params).")
        if per_tensor:
            updates = jax.tree.map(lambda g, w: _project_out(g, w, eps, rescale), updates, params)
        else:
            updates = _project_out(updates, params, eps, rescale)
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class BloopState(NamedTuple):
    """State of :func:`bloop`."""

    count: jax.Array  # int32 step counter; 0 before the first update
    main_ema: optax.Updates  # ḡ, the EMA of the main-loss gradient


def bloop(
    aux_weight: float = 0.1, *, ema_decay: float = 0.9, eps: float = 1e-7
) -> optax.GradientTransformationExtraArgs:
    """Bloop: main-loss gradient plus the auxiliary gradient projected orthogonally to its EMA.

    With g the main-loss gradient (the ``updates``), a the auxiliary-loss gradient
    (``aux_grads=``), ρ = 1 − ``ema_decay`` and λ = ``aux_weight``:

    .. math::

      ḡ_1 = g_1, \\qquad ḡ_t = ḡ_{t-1} + ρ\\,(g_t − ḡ_{t-1})

      d_t = g_t + λ\\Big(a_t − \\frac{⟨a_t, ḡ_t⟩}{‖ḡ_t‖² + ε}\\,ḡ_t\\Big)

    so that, to first order, a step along d decreases the main loss as a step along g does while
    also decreasing the auxiliary loss among the main loss's minimizers. The EMA (not the
    mini-batch g) keeps the projected auxiliary term orthogonal to the main gradient in
    expectation. Chain an optimizer after it: ``optax.chain(bloop(0.1), optax.sgd(0.1))``.

    Follows ``bloop_direction`` of the official JAX code (apple/ml-bloop, ``src/bloop/optim.py``):
    the EMA is updated with the current main gradient *before* projecting, there is no
    debiasing, ε = 1e-7 is added to ‖ḡ‖², and the projection is global over the pytree. The EMA
    starts at the first main gradient (the official ``init="grad"``, used by its ImageNet
    example); the official library's default EMA weight ρ = 0.1 gives ``ema_decay=0.9``.

    Args:
      aux_weight: λ ≥ 0, weight of the projected auxiliary gradient.
      ema_decay: 1 − ρ in [0, 1); 0 projects on the current main gradient (no EMA).
      eps: ε > 0 added to ‖ḡ‖².

    Returns:
      An ``optax.GradientTransformationExtraArgs``; its state is :class:`BloopState`.

    Extra args:
      aux_grads: the auxiliary-loss gradient, a pytree shaped like the updates (required).
        Under ``optax.masked`` pass ``mask_compatible_extra_args=True`` so it is masked too.

    References:
      Hsieh, Thornton, Ndiaye, Klein, Cuturi & Ablin, "Careful with that Scalpel: Improving
      Gradient Surgery with an EMA", ICML 2024, https://arxiv.org/abs/2402.02998.
    """
    check_non_negative("aux_weight", aux_weight)
    check_unit_interval("ema_decay", ema_decay)
    check_positive("eps", eps)

    def init_fn(params):
        return BloopState(count=jnp.zeros([], jnp.int32), main_ema=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None, *, aux_grads, **extra_args):
        del params, extra_args
        first = state.count == 0

        def ema(m, g):
            m, g = m.astype(accumulation_dtype(g)), g.astype(accumulation_dtype(g))
            return jnp.where(first, g, m + (1 - ema_decay) * (g - m))

        main_ema = optax.tree.cast_like(jax.tree.map(ema, state.main_ema, updates), state.main_ema)
        coeff = tree_vdot(aux_grads, main_ema) / (tree_sq_norm(main_ema) + eps)

        def direction(g, a, m):
            dtype = accumulation_dtype(g)
            perp = a.astype(dtype) - coeff * m.astype(dtype)
            return (g.astype(dtype) + aux_weight * perp).astype(g.dtype)

        updates = jax.tree.map(direction, updates, aux_grads, main_ema)
        return updates, BloopState(count=optax.safe_increment(state.count), main_ema=main_ema)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
