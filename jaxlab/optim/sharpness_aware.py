"""The SAM family as one optax transform: a perturbation rule × a combination rule, one call a step.

``sam(inner, rho, perturbation=..., combination=...)`` wraps any optax transform. Each
``update(grads, state, params, loss_fn=..., value=...)`` receives the clean gradient ``g`` (the one
the training step computed anyway), takes the ascent step ε from a *perturbation rule*, evaluates
``∇loss_fn`` at ``w + ε`` and hands the *combination* of the two gradients to ``inner``.

Perturbation rules (ε):

- ``sam``: ρ g/(‖g‖ + eps) (google-research/sam).
- ``asam``: ρ T²g/(‖Tg‖ + eps), T = |w| + η on the ``adaptive_mask`` leaves, 1 elsewhere
  (SamsungLabs/ASAM ``ascent_step``).
- ``fsam``: ρ d/(‖d‖ + eps), d = g − σ m_{t−1}, m_t = λ m_{t−1} + (1−λ) g (nblt/F-SAM).
- ``layerwise``: ε_l = ρ ‖w_l‖ g_l/(‖g_l‖ + eps) for each leaf l (AWP's relative ball).

Combination rules (gradient given to ``inner``, with g_p = ∇L(w + ε)):

- ``sam``: g_p.
- ``gsam``: g_p − α g_⊥ with g_⊥ = g − ⟨g, ĝ_p⟩ ĝ_p (big_vision ``gsam_gradient``).
- ``looksam``: at steps 0, k, 2k, ...: g_p, storing the unit ĝ_v of
  g_v = g_p − (⟨g, g_p⟩/‖g‖²) g; at the other steps g + α‖g‖ ĝ_v = g + α (‖g‖/‖g_v‖) g_v
  (LookSAM, Algorithm 1, with global norms).

ρ may be a schedule of the outer step count (never reset); :func:`gsam_rho_schedule` makes
GSAM's ρ_t ∝ lr_t. F-SAM's first step has no m yet and perturbs along g, as the official code.
"""

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxlab._tree import (
    leaf_flags,
    tree_accumulation_dtype,
    tree_norm,
    tree_sq_norm,
    tree_vdot,
    upcast,
)
from jaxlab.optim._checks import check_non_negative, check_positive, check_unit_interval
from jaxlab.optim.sam_gradient import LeafMask, _add, _perturbation, _safe_div

PERTURBATION_RULES = ("sam", "asam", "fsam", "layerwise")
COMBINATION_RULES = ("sam", "gsam", "looksam")
INNER_VALUES = ("perturbed", "clean")
_DEFAULT_ALPHA = {"sam": 0.0, "gsam": 0.6, "looksam": 0.7}


def _choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {name}={value!r}")


def gsam_rho_schedule(
    learning_rate: optax.ScalarOrSchedule,
    rho_max: float,
    rho_min: float,
    lr_max: float,
    lr_min: float,
) -> optax.Schedule:
    r"""GSAM's radius proportional to the learning rate, as a schedule of the same step count.

    .. math::

      \rho_t = \rho_{\min} + (\rho_{\max} - \rho_{\min})
        \frac{\mathrm{lr}_t - \mathrm{lr}_{\min}}{\mathrm{lr}_{\max} - \mathrm{lr}_{\min}}

    and :math:`\rho_t = \rho_{\max}` when :math:`\mathrm{lr}_{\max} = \mathrm{lr}_{\min}`
    (big_vision ``gsam_gradient``). Pass the schedule of ``inner`` so both count the same steps.

    Args:
      learning_rate: The learning rate (float or schedule of the step count).
      rho_max: ρ at ``lr_max`` (≥ ``rho_min``).
      rho_min: ρ at ``lr_min`` (≥ 0).
      lr_max: Largest learning rate of the schedule.
      lr_min: Smallest learning rate of the schedule (≤ ``lr_max``).

    Returns:
      A schedule ``count -> ρ_t`` for :func:`sam`'s ``rho``.

    References:
      Zhuang et al., `Surrogate Gap Guided Sharpness-Aware Minimization
      <https://arxiv.org/abs/2203.08065>`_, ICLR 2022, Algorithm 1.
    """
    check_non_negative("rho_min", rho_min)
    check_non_negative("lr_min", lr_min)
    if rho_max < rho_min:
        raise ValueError(f"rho_max must be >= rho_min={rho_min!r}, got rho_max={rho_max!r}")
    if lr_max < lr_min:
        raise ValueError(f"lr_max must be >= lr_min={lr_min!r}, got lr_max={lr_max!r}")

    def schedule(count):
        if lr_max == lr_min:
            return jnp.asarray(rho_max, jnp.float32)
        lr = learning_rate(count) if callable(learning_rate) else learning_rate
        return rho_min + (rho_max - rho_min) * (lr - lr_min) / (lr_max - lr_min)

    return schedule


def _fsam_direction(ascent, ema, g_mean, first, sigma, lam):
    """nblt/F-SAM: d = g − σ m_{t−1}, m_t = λ m_{t−1} + (1−λ) ḡ; at first d = g and m = ḡ."""

    def direction(a, m):
        return jnp.where(first, upcast(a), upcast(a) - sigma * upcast(m))

    def average(m, a):
        return jnp.where(first, upcast(a), lam * upcast(m) + (1 - lam) * upcast(a)).astype(m.dtype)

    return jax.tree.map(direction, ascent, ema), jax.tree.map(average, ema, g_mean)


def _gsam_direction(g, g_p, alpha):
    """big_vision ``gsam_gradient`` (``minimize_fp=True``): g_p − α (g − ⟨g, ĝ_p⟩ ĝ_p)."""
    inv = _safe_div(1.0, tree_norm(g_p))
    coef = tree_vdot(g, g_p) * inv * inv
    return jax.tree.map(lambda p, c: upcast(p) - alpha * (upcast(c) - coef * upcast(p)), g_p, g)


def _orthogonal_direction(g_s, g, like, keep):
    """LookSAM's unit direction g_v/‖g_v‖, g_v = g_s − (⟨g, g_s⟩/‖g‖²) g, in ``like``'s dtypes.

    Stored normalised, so that the k − 1 reuse steps need no ‖g_v‖ pass; 0 if g_v = 0 or unless
    ``keep`` (ρ > 0), so that ρ = 0 stores no rounding noise that the reuse step would scale up
    to α‖g‖.
    """
    coef = _safe_div(tree_vdot(g, g_s), tree_sq_norm(g))
    g_v = jax.tree.map(lambda s, m: upcast(s) - coef * upcast(m), g_s, g)
    inv = jnp.where(keep, _safe_div(1.0, tree_norm(g_v)), 0.0)
    return jax.tree.map(lambda v, o: (inv * v).astype(o.dtype), g_v, like)


class SAMDiagnostics(NamedTuple):
    """What the last step saw; under ``axis_name`` each is the mean over devices.

    On LookSAM steps without a perturbed pass, ``sharpness``, ``cosine`` and
    ``perturbation_norm`` are those of the last refresh and ``perturbed_loss`` is
    ``loss + sharpness``.
    """

    loss: jax.Array  # L(w), the clean loss (``value`` if given).
    perturbed_loss: jax.Array  # L(w + ε).
    sharpness: jax.Array  # L(w + ε) − L(w).
    grad_norm: jax.Array  # ‖g‖ of the clean gradient.
    cosine: jax.Array  # cos(g, g_p), 0 if either is 0.
    rho: jax.Array  # ρ_t used this step.
    perturbation_norm: jax.Array  # ‖ε‖, the radius actually taken (≠ ρ for ASAM/layerwise).


class SAMState(NamedTuple):
    """State of :func:`sam`."""

    count: jax.Array  # int32 outer steps taken; drives ρ's schedule and LookSAM's period.
    inner_state: optax.OptState
    grad_ema: optax.Updates | None  # F-SAM's m_t in the params' dtype (else None).
    ortho: optax.Updates | None  # LookSAM's unit g_v/‖g_v‖ in the params' dtype (else None).
    diagnostics: SAMDiagnostics


def sam(
    inner: optax.GradientTransformation,
    rho: optax.ScalarOrSchedule = 0.05,
    *,
    perturbation: str = "sam",
    combination: str = "sam",
    alpha: float | None = None,
    k: int = 5,
    eta: float = 0.01,
    adaptive_mask: LeafMask | None = None,
    sigma: float = 1.0,
    lam: float = 0.9,
    perturbation_mask: LeafMask | None = None,
    axis_name: str | None = None,
    sync_perturbation: bool = False,
    has_aux: bool = False,
    inner_value: str = "perturbed",
    diagnostics: bool = True,
    eps: float = 1e-12,
) -> optax.GradientTransformationExtraArgs:
    r"""Sharpness-aware minimization around ``inner``: SAM, ASAM, F-SAM, GSAM, LookSAM.

    With the clean gradient :math:`g = \nabla L(w)` passed as ``grads``, ε from the
    perturbation rule and :math:`g_p = \nabla L(w + \epsilon)` (see the module docstring):

    .. math::

      \mathrm{SAM{:}}\ u = \mathrm{inner}(g_p), \quad
      \mathrm{GSAM{:}}\ u = \mathrm{inner}\big(g_p - \alpha\,(g - \langle g,
        \hat g_p\rangle \hat g_p)\big), \quad
      \mathrm{LookSAM{:}}\ u = \mathrm{inner}\big(g + \alpha \tfrac{\|g\|}{\|g_v\|} g_v\big)
      \ \text{off-period}

    Every step costs the given gradient plus one gradient of ``loss_fn`` (plus one forward pass
    if ``value`` is not given); LookSAM's off-period steps skip the second gradient entirely
    (``lax.cond``), so they cost the given gradient only. ρ = 0 gives ``inner`` exactly (for
    LookSAM by taking g_v = 0 at ρ = 0: its scaled reuse term has no limit as ρ → 0); a zero
    gradient gives ε = 0, never NaN.

    Args:
      inner: The optimizer applied to the combined gradient (any optax transform; extra args
        such as ``value`` are forwarded, so ``sam(momo())`` works).
      rho: Radius ρ ≥ 0, a float or a schedule of the outer step count.
      perturbation: ``"sam"``, ``"asam"``, ``"fsam"`` or ``"layerwise"``.
      combination: ``"sam"``, ``"gsam"`` or ``"looksam"``.
      alpha: GSAM's α (default 0.6, big_vision ViT) or LookSAM's α (default 0.7).
      k: LookSAM's period: the perturbed gradient is computed at steps 0, k, 2k, ...; k = 1 is
        SAM.
      eta: ASAM's η in T = |w| + η.
      adaptive_mask: Leaves ASAM scales by T (``optax.masked``-style pytree or callable);
        others have T = 1 like biases in the official code. None: all leaves.
      sigma: F-SAM's σ ≥ 0, the weight of the subtracted gradient average.
      lam: F-SAM's λ in [0, 1), the decay of the gradient average m.
      perturbation_mask: Leaves that are perturbed (``optax.masked``-style); the others get
        ε = 0 and stay out of every norm, e.g. only normalisation layers as in SAM-ON. Use it
        rather than ``optax.masked``, under which ``loss_fn`` would get params with masked-out
        leaves.
      axis_name: Mapped axis (pmap / shard_map) of data parallelism. The gradient handed to
        ``inner``, the losses and the diagnostics are ``lax.pmean``-ed over it, so pass the
        *local* clean gradient and a ``loss_fn`` of the local batch. None: no collectives.
      sync_perturbation: Average the clean gradient over ``axis_name`` before the ascent (one
        global ε). False: each device perturbs with its own gradient (m-sharpness,
        google-research/sam's default). F-SAM's m and LookSAM's decomposition always use the
        averaged gradients, so the state stays replicated.
      has_aux: ``loss_fn`` returns ``(loss, aux)``; the aux is discarded.
      inner_value: The ``value`` forwarded to ``inner``: ``"perturbed"`` is L(w + ε), the value
        of the SAM objective whose gradient ``inner`` receives (what MoMo's model of the loss
        needs); on LookSAM's off-period steps it is L(w) + the last sharpness. ``"clean"`` is
        L(w).
      diagnostics: Compute ``grad_norm``, ``cosine`` and ``perturbation_norm`` (three extra
        passes over the parameters, ~25 % of a SAM step for a small MLP on CPU); if False
        they are 0 and only the losses, sharpness and ρ are recorded.
      eps: Added to the norms in the normalisations.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; the state is a :class:`SAMState` whose
      ``diagnostics`` hold the last step's L(w), L(w+ε), ‖g‖, cos(g, g_p), ρ_t and ‖ε‖.

    Extra args:
      loss_fn: ``params -> loss`` (or ``(loss, aux)``) on the batch of ``grads``, e.g.
        ``lambda p: loss(p, batch, rng)`` with the same PRNG key as the clean pass.
      value: The clean loss L(w) (optional; computed with one forward pass if missing).
      Any other keyword is forwarded to ``inner``.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from jaxlab.optim.sharpness_aware import sam
      >>> loss = lambda w: jnp.sum(w**2)
      >>> opt = sam(optax.sgd(0.5), rho=5.0)
      >>> params = jnp.array([3.0, 4.0])
      >>> state = opt.init(params)
      >>> value, grads = jax.value_and_grad(loss)(params)
      >>> updates, state = opt.update(grads, state, params, loss_fn=loss, value=value)
      >>> updates  # -0.5 · ∇L(w + 5 w/‖w‖) = -0.5 · ∇L([6, 8])
      Array([-6., -8.], dtype=float32)
      >>> state.diagnostics.sharpness  # L(w + ε) − L(w) = 100 − 25
      Array(75., dtype=float32)

    References:
      Foret et al., `SAM <https://arxiv.org/abs/2010.01412>`_, ICLR 2021. Kwon et al., `ASAM
      <https://arxiv.org/abs/2102.11600>`_, ICML 2021. Zhuang et al., `GSAM
      <https://arxiv.org/abs/2203.08065>`_, ICLR 2022 (code: big_vision
      ``trainers/proj/gsam``). Liu et al., `LookSAM <https://arxiv.org/abs/2203.02714>`_,
      CVPR 2022. Li et al., `Friendly SAM <https://arxiv.org/abs/2403.12350>`_, CVPR 2024
      (code: nblt/F-SAM).

    .. note::
      **Weight decay.** An L2 term in ``loss_fn`` (and in the clean gradient) is *inside* the
      perturbation, as in google-research/sam. For decay *outside* it, keep it out of the loss
      and let ``inner`` apply it, e.g. ``sam(sgdw(lr, weight_decay=λ, weight_decay_mode="l2"))``
      adds λw (at the clean w) to the gradient after the SAM combination.
      **BatchNorm.** Compute the new batch statistics in your clean pass; the perturbed pass
      runs ``loss_fn`` whose aux is discarded, so statistics come from the clean pass.
      **pmap / shard_map.** Without ``axis_name``, per-device gradients make the replicas
      diverge silently. Use ``shard_map(check_vma=False)``: with ``check_vma=True`` the
      gradient of replicated parameters is ``psum``-ed implicitly (see
      :func:`jaxlab.optim.sam_gradient.sam_value_and_grad`).
      **dtype.** Norms, inner products and diagnostics are float32 (float64 for float64
      params); ε is added in float32 and cast to each leaf's dtype.
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(f"inner must be an optax.GradientTransformation, got inner={inner!r}")
    _choice("perturbation", perturbation, PERTURBATION_RULES)
    _choice("combination", combination, COMBINATION_RULES)
    _choice("inner_value", inner_value, INNER_VALUES)
    check_non_negative("rho", rho)
    alpha = _DEFAULT_ALPHA[combination] if alpha is None else alpha
    check_non_negative("alpha", alpha)
    if isinstance(k, numbers.Real) and (k != int(k) or k < 1):
        raise ValueError(f"k must be an int >= 1, got k={k!r}")
    check_non_negative("eta", eta)
    check_non_negative("sigma", sigma)
    check_unit_interval("lam", lam)
    check_positive("eps", eps)
    if sync_perturbation and axis_name is None:
        raise ValueError("sync_perturbation=True needs an axis_name, got axis_name=None")
    inner = optax.with_extra_args_support(inner)
    fsam, looksam = perturbation == "fsam", combination == "looksam"
    rule = "sam" if fsam else perturbation

    def pmean(x):
        return x if axis_name is None else lax.pmean(x, axis_name)

    def init_fn(params):
        zero = jnp.zeros((), tree_accumulation_dtype(params))
        return SAMState(
            count=jnp.zeros((), jnp.int32),
            inner_state=inner.init(params),
            grad_ema=optax.tree.zeros_like(params) if fsam else None,
            ortho=optax.tree.zeros_like(params) if looksam else None,
            diagnostics=SAMDiagnostics(*[zero] * len(SAMDiagnostics._fields)),
        )

    def update_fn(updates, state, params=None, *, loss_fn=None, value=None, **extra_args):
        if params is None or loss_fn is None:
            raise ValueError("sam needs params and loss_fn: update(g, state, params, loss_fn=f)")
        dtype = state.diagnostics.loss.dtype
        count, g = state.count, updates
        rho_t = jnp.asarray(rho(count) if callable(rho) else rho, dtype)

        def loss_of(p):
            out = loss_fn(p)
            return out[0] if has_aux else out

        clean = loss_of(params) if value is None else value
        local_g_norm = tree_norm(g) if diagnostics else 0.0
        clean, g_norm = pmean((jnp.asarray(clean, dtype), jnp.asarray(local_g_norm, dtype)))
        g_mean = pmean(g) if axis_name is not None and (sync_perturbation or fsam or looksam) else g
        ascent = g_mean if sync_perturbation else g
        grad_ema = state.grad_ema
        if fsam:
            ascent, grad_ema = _fsam_direction(ascent, grad_ema, g_mean, count == 0, sigma, lam)

        def perturbed_pass():
            e, e_norm = _perturbation(
                ascent,
                params,
                rho_t,
                rule=rule,
                eta=eta,
                scale_flags=leaf_flags(adaptive_mask, params),
                perturb_flags=leaf_flags(perturbation_mask, params),
                eps=eps,
                return_norm=True,
            )
            loss_p, g_p = jax.value_and_grad(loss_of)(_add(params, e))
            if diagnostics:
                cos = _safe_div(tree_vdot(g, g_p), local_g_norm * tree_norm(g_p))
            else:
                cos = e_norm = 0.0
            loss_p, cos, e_norm = pmean(tuple(jnp.asarray(x, dtype) for x in (loss_p, cos, e_norm)))
            diag = SAMDiagnostics(clean, loss_p, loss_p - clean, g_norm, cos, rho_t, e_norm)
            return g_p, diag

        if looksam:

            def refresh(ortho):
                g_p, diag = perturbed_pass()
                g_s = pmean(g_p)
                unit = _orthogonal_direction(g_s, g_mean, ortho, keep=rho_t > 0)
                return jax.tree.map(upcast, g_s), unit, diag

            def reuse(unit):
                scale = alpha * tree_norm(g_mean)
                out = jax.tree.map(lambda m, v: upcast(m) + scale * upcast(v), g_mean, unit)
                last = state.diagnostics
                diag = last._replace(
                    loss=clean, perturbed_loss=clean + last.sharpness, grad_norm=g_norm, rho=rho_t
                )
                return out, unit, diag

            out, ortho, diag = lax.cond(count % k == 0, refresh, reuse, state.ortho)
        else:
            g_p, diag = perturbed_pass()
            ortho = state.ortho
            if combination == "gsam":  # big_vision: decompose per device, then average
                g_p = _gsam_direction(g, g_p, alpha)
            out = pmean(g_p)
        out = jax.tree.map(lambda o, u: o.astype(u.dtype), out, updates)
        forwarded = diag.perturbed_loss if inner_value == "perturbed" else diag.loss
        updates, inner_state = inner.update(
            out, state.inner_state, params, value=forwarded, **extra_args
        )
        state = SAMState(optax.safe_increment(count), inner_state, grad_ema, ortho, diag)
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
