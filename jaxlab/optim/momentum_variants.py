"""Momentum variants: Grams (sign of g, size of Adam), Gravity, and DOT's two momentum buffers."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from jaxlab._tree import accumulation_dtype
from jaxlab.optim._checks import (
    _concrete,
    check_non_negative,
    check_positive,
    check_unit_interval,
)
from jaxlab.optim.weight_decay import MaskOrFn, with_weight_decay


def scale_by_grams(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Grams: the direction of the current gradient with the magnitude of the Adam update.

    .. math::

      m_t = β_1 m_{t-1} + (1 − β_1) g_t, \\qquad v_t = β_2 v_{t-1} + (1 − β_2) g_t^2

      u_t = \\frac{m_t/(1 − β_1^t)}{\\sqrt{v_t/(1 − β_2^t) + ε_{root}} + ε}, \\qquad
      \\mathrm{out}_t = \\mathrm{sign}(g_t) ⊙ |u_t|

    Momentum sets only the per-coordinate step size; where sign(m_t) = sign(g_t) the update is
    Adam's, elsewhere Adam's step with its sign flipped to follow g_t (zero where g_t = 0).

    Follows Algorithm 1 of the paper: u_t is exactly ``optax.scale_by_adam`` (ε added to √v̂),
    whose state this transform keeps. The official PyTorch code (Gunale0926/Grams) instead adds
    ε to √v before the bias correction, with ε = 1e-6 by default; the two differ only through ε.

    Args:
      b1: β₁ in [0, 1), decay of the first moment.
      b2: β₂ in [0, 1), decay of the second moment.
      eps: ε ≥ 0 added to √v̂.
      eps_root: ε_root ≥ 0 added to v̂ inside the square root, as in ``optax.scale_by_adam``.
      mu_dtype: dtype of the first moment, as in ``optax.scale_by_adam``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with ``optax.ScaleByAdamState`` as state.

    References:
      Cao, Li & Song, "Grams: Gradient Descent with Adaptive Momentum Scaling", 2024,
      https://arxiv.org/abs/2412.17107.
    """
    check_unit_interval("b1", b1)
    check_unit_interval("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        adam_updates, state = adam.update(updates, state, params)
        updates = jax.tree.map(
            lambda g, u: (jnp.sign(g) * jnp.abs(u)).astype(g.dtype), updates, adam_updates
        )
        return updates, state

    return optax.GradientTransformationExtraArgs(adam.init, update_fn)


def grams(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """Grams optimizer: θ ← θ − η (sign(g) ⊙ |Adam update| + λθ).

    :func:`scale_by_grams` followed by learning-rate-coupled weight decay (``optax.adamw``
    semantics, as in the official code: θ ← θ − ηλθ each step) and the learning rate. See
    :func:`scale_by_grams` for the update and :func:`jaxlab.optim.with_weight_decay` for
    ``mask``.

    References:
      Cao, Li & Song, "Grams: Gradient Descent with Adaptive Momentum Scaling", 2024,
      https://arxiv.org/abs/2412.17107.
    """
    return with_weight_decay(
        scale_by_grams(b1, b2, eps),
        learning_rate,
        weight_decay=weight_decay,
        mode="coupled",
        mask=mask,
    )


class GravityState(NamedTuple):
    """State of :func:`scale_by_gravity`."""

    count: jax.Array  # int32 step counter t, 0 at the first update
    velocity: optax.Updates  # V


def scale_by_gravity(
    beta: float = 0.9, *, velocity_init_std: float = 0.0, key: jax.Array | int = 0
) -> optax.GradientTransformationExtraArgs:
    """Gravity's velocity: a moving average of the gradient squashed per tensor by its max.

    For each parameter tensor with gradient g, at step t = 0, 1, ...:

    .. math::

      M = \\max_i |g_i|, \\qquad ζ = \\frac{g}{1 + (g\\,M)^2}, \\qquad
      \\hat β_t = \\frac{β t + 1}{t + 2}, \\qquad V_{t+1} = \\hat β_t V_t + (1 − \\hat β_t)\\,ζ

    and the output is V_{t+1} (the optimizer steps θ ← θ − η V). ζ is the step of a ball on an
    inclined plane of slope g/m with m = 1/M: |ζ| ≤ 1/(2M), so tensors with large gradients
    (M ≫ 1) take small steps and it is SGD-like once M ≪ 1. β̂ moves from 1/2 towards β,
    averaging over all t + 2 values early on.

    Follows the official Keras implementation (dariush-bahrami/gravity.optimizer,
    ``implementations/gravity_optimizer_keras.py``): t is the 0-based iteration count, M is
    taken per variable, and ``V_0 ~ N(0, (α/η)²)`` with no seed. Here ``V_0`` is drawn from
    ``key`` (one subkey per leaf, in float32, then cast), so runs are reproducible; the same key
    gives the same ``V_0``. The official PyTorch port starts t at 1.

    Args:
      beta: β in [0, 1), the limit of the moving-average decay β̂_t.
      velocity_init_std: standard deviation of the normal ``V_0`` (α/η in the paper); 0 gives
        zeros.
      key: a JAX PRNG key or an integer seed for ``V_0``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; its state is :class:`GravityState`.

    References:
      Bahrami & Zadeh, "Gravity Optimizer: a Kinematic Approach on Optimization in Deep
      Learning", 2021, https://arxiv.org/abs/2101.09192.
    """
    check_unit_interval("beta", beta)
    check_non_negative("velocity_init_std", velocity_init_std)

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        is_seed = jnp.ndim(key) == 0 and jnp.issubdtype(jnp.asarray(key).dtype, jnp.integer)
        root = jax.random.key(key) if is_seed else key
        keys = jax.random.split(root, len(leaves))
        velocity = [
            (velocity_init_std * jax.random.normal(k, p.shape, jnp.float32)).astype(p.dtype)
            for k, p in zip(keys, leaves, strict=True)
        ]
        return GravityState(count=jnp.zeros([], jnp.int32), velocity=treedef.unflatten(velocity))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        t = state.count.astype(jnp.float32)
        beta_hat = (beta * t + 1) / (t + 2)

        def step(g, v):
            dtype = accumulation_dtype(g)
            g = g.astype(dtype)
            zeta = g / (1 + jnp.square(g * jnp.max(jnp.abs(g))))
            return (beta_hat * v.astype(dtype) + (1 - beta_hat) * zeta).astype(v.dtype)

        velocity = jax.tree.map(step, updates, state.velocity)
        updates = optax.tree.cast_like(velocity, updates)
        return updates, GravityState(count=optax.safe_increment(state.count), velocity=velocity)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def gravity(
    learning_rate: ScalarOrSchedule = 0.1,
    alpha: float = 0.01,
    beta: float = 0.9,
    *,
    key: jax.Array | int = 0,
) -> optax.GradientTransformation:
    """Gravity optimizer: θ ← θ − η V with V from :func:`scale_by_gravity` and V_0 ~ N(0, (α/η)²).

    The defaults (η = 0.1, α = 0.01, β = 0.9) are the paper's and the official code's. With a
    schedule, η₀ = ``learning_rate(0)`` sets the spread of V_0, so that η₀ V_0 ~ N(0, α²).

    Args:
      learning_rate: η > 0, a scalar or a schedule of the step count.
      alpha: α ≥ 0, the standard deviation of the first step η V_0.
      beta: β in [0, 1), see :func:`scale_by_gravity`.
      key: a JAX PRNG key or an integer seed for V_0.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    References:
      Bahrami & Zadeh, "Gravity Optimizer: a Kinematic Approach on Optimization in Deep
      Learning", 2021, https://arxiv.org/abs/2101.09192.
    """
    check_positive("learning_rate", learning_rate)
    check_non_negative("alpha", alpha)
    lr0 = float(learning_rate(0)) if callable(learning_rate) else learning_rate
    check_positive("learning_rate(0)", lr0)
    return optax.chain(
        scale_by_gravity(beta, velocity_init_std=alpha / lr0, key=key),
        optax.scale_by_learning_rate(learning_rate),
    )


class DotMomentumState(NamedTuple):
    """State of :func:`dot_momentum`."""

    task_trace: optax.Updates  # momentum buffer of the task-loss gradient
    kd_trace: optax.Updates  # momentum buffer of the distillation-loss gradient


def dot_momentum(
    momentum: float = 0.9, delta: float = 0.075, *, accumulator_dtype: Any | None = None
) -> optax.GradientTransformationExtraArgs:
    """DOT: separate heavy-ball buffers for the task and distillation gradients.

    With g the task-loss gradient (the ``updates``) and k the distillation-loss gradient
    (``kd_grads=``):

    .. math::

      v_t = (μ − Δ)\\,v_{t-1} + g_t, \\qquad w_t = (μ + Δ)\\,w_{t-1} + k_t, \\qquad
      \\mathrm{out}_t = v_t + w_t

    so the distillation loss is optimized with the larger momentum. With Δ = 0 this is
    ``optax.trace(μ)`` on g + k. Apply the learning rate after it, or use :func:`dot_sgd`.

    Follows the official ``DistillationOrientedTrainer`` (megvii-research/mdistiller,
    ``mdistiller/engine/dot.py`` and the DOT trainer): PyTorch SGD buffers without dampening
    (the first buffer is the first gradient, as here from zeros), momenta μ ∓ Δ, Δ = 0.075 in the
    CIFAR-100 configs. The official special case of parameters that get only one of the two
    gradients (their single buffer uses the mean momentum μ) is not reproduced: every leaf has
    both buffers here, a missing gradient being zero.

    Args:
      momentum: μ; both μ − Δ and μ + Δ must lie in [0, 1).
      delta: Δ, the momentum gap between the two buffers.
      accumulator_dtype: dtype of both buffers; ``None`` uses the params' dtypes.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; its state is :class:`DotMomentumState`.

    Extra args:
      kd_grads: the distillation-loss gradient, a pytree shaped like the updates (required).
        Under ``optax.masked`` pass ``mask_compatible_extra_args=True`` so it is masked too.

    References:
      Zhao, Cui, Song & Liang, "DOT: A Distillation-Oriented Trainer", ICCV 2023,
      https://arxiv.org/abs/2307.08436.
    """
    task_momentum, kd_momentum = momentum - delta, momentum + delta
    if any(x is not None and not 0 <= x < 1 for x in map(_concrete, (task_momentum, kd_momentum))):
        raise ValueError(
            "momentum - delta and momentum + delta must lie in [0, 1), got "
            f"momentum={momentum!r}, delta={delta!r}"
        )

    def init_fn(params):
        zeros = optax.tree.zeros_like(params, dtype=accumulator_dtype)
        return DotMomentumState(task_trace=zeros, kd_trace=zeros)

    def update_fn(updates, state, params=None, *, kd_grads, **extra_args):
        del params, extra_args

        def trace(decay, v, g):
            return (decay * v + g).astype(v.dtype)

        task = jax.tree.map(lambda v, g: trace(task_momentum, v, g), state.task_trace, updates)
        kd = jax.tree.map(lambda v, g: trace(kd_momentum, v, g), state.kd_trace, kd_grads)
        updates = jax.tree.map(lambda a, b, g: (a + b).astype(g.dtype), task, kd, updates)
        return updates, DotMomentumState(task_trace=task, kd_trace=kd)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def dot_sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    delta: float = 0.075,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """The Distillation-Oriented Trainer: θ ← θ − η (v + w) with :func:`dot_momentum` buffers.

    Weight decay is an L2 term λθ added to the task gradient, so it goes through the task buffer
    (μ − Δ), as in the official code. Needs ``kd_grads=`` at every update; see
    :func:`dot_momentum` and, for ``mask``, :func:`jaxlab.optim.with_weight_decay`.

    References:
      Zhao, Cui, Song & Liang, "DOT: A Distillation-Oriented Trainer", ICCV 2023,
      https://arxiv.org/abs/2307.08436.
    """
    return with_weight_decay(
        dot_momentum(momentum, delta),
        learning_rate,
        weight_decay=weight_decay,
        mode="l2",
        mask=mask,
    )
