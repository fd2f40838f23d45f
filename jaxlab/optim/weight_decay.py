"""Weight decay with named semantics: ``l2``, ``coupled`` and ``independent``.

The three conventions differ in where the decay term λθ enters the update. With ``u`` the output of
the inner transform (momentum, Adam's m̂/(√v̂+ε), ...), η_t the learning rate at step t and
η_max its peak:

=============== ============================================ =====================================
mode            update                                       known as
=============== ============================================ =====================================
``l2``          θ ← θ − η_t · inner(g + λθ)                  L2 penalty; PyTorch ``SGD``/``Adam``
                                                             ``weight_decay``; decay goes through
                                                             momentum and the preconditioner
``coupled``     θ ← θ − η_t (u + λθ)                         PyTorch ``AdamW``, ``optax.adamw``
``independent`` θ ← θ − η_t u − (η_t / η_max) λθ             Loshchilov & Hutter (2019) Alg. 2,
                                                             Wortsman et al. (2023): decay follows
                                                             the schedule, not the peak LR
=============== ============================================ =====================================

In ``coupled`` mode the per-step shrink is η_t λ, so changing the peak learning rate changes the
effective decay; in ``independent`` mode it is (η_t/η_max) λ, so λ is the per-step shrink at the
peak and the AdamW EMA timescale (see :func:`jaxlab.optim.adamw_ema_timescale`) is 1/λ steps.
"""

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from jaxlab._tree import accumulation_dtype
from jaxlab.optim._checks import check_non_negative, check_positive, check_unit_interval

WeightDecayMode = Literal["l2", "coupled", "independent"]
WEIGHT_DECAY_MODES = ("l2", "coupled", "independent")
MaskOrFn = Any | Callable[[optax.Params], Any] | None


def _as_schedule(value: ScalarOrSchedule) -> Callable[[jax.Array], jax.Array]:
    return value if callable(value) else (lambda count: value)


class _DecayState(NamedTuple):
    """Step counter driving a weight-decay schedule."""

    count: jax.Array


def _add_decayed_weights(
    weight_decay: ScalarOrSchedule, mask: MaskOrFn = None
) -> optax.GradientTransformation:
    """Adds ``λ_t · θ`` to the updates, in at least float32, cast back to each update's dtype.

    Unlike ``optax.add_decayed_weights``, a scheduled λ does not promote bfloat16 updates to
    float32. Position in a chain decides the semantics; see :func:`with_weight_decay`.

    Args:
      weight_decay: λ, a scalar or a schedule of the step count.
      mask: a pytree of booleans (or a function of the params returning one) selecting the
        leaves to decay, as in ``optax.masked``.
    """
    scheduled = callable(weight_decay)  # a constant λ needs no counter (and is ~3 % faster)

    def init_fn(params):
        del params
        return _DecayState(count=jnp.zeros([], jnp.int32)) if scheduled else optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("weight decay needs `params`: call update(g, state, params).")
        lam = weight_decay(state.count) if scheduled else weight_decay

        def decay(u, p):
            dtype = accumulation_dtype(u)
            return (u.astype(dtype) + jnp.asarray(lam, dtype) * p.astype(dtype)).astype(u.dtype)

        updates = jax.tree.map(decay, updates, params)
        return updates, _DecayState(optax.safe_increment(state.count)) if scheduled else state

    tx = optax.GradientTransformation(init_fn, update_fn)
    return tx if mask is None else optax.masked(tx, mask)


def with_weight_decay(
    inner: optax.GradientTransformation,
    learning_rate: ScalarOrSchedule,
    *,
    weight_decay: ScalarOrSchedule,
    mode: WeightDecayMode = "coupled",
    mask: MaskOrFn = None,
    peak_learning_rate: float | None = None,
) -> optax.GradientTransformation:
    """Completes ``inner`` into an optimizer with learning rate and weight decay in a named mode.

    .. math::

      \\text{l2:}\\quad          θ_{t+1} = θ_t − η_t\\,\\mathrm{inner}(g_t + λ_t θ_t)

      \\text{coupled:}\\quad     θ_{t+1} = θ_t − η_t\\,(u_t + λ_t θ_t)

      \\text{independent:}\\quad θ_{t+1} = θ_t − η_t u_t − (η_t/η_{\\max})\\,λ_t θ_t

    where ``u_t = inner(g_t)``. The returned updates are the differences θ_{t+1} − θ_t, to be
    added with ``optax.apply_updates``.

    Args:
      inner: a transform that does not apply the learning rate or the sign (``optax.trace``,
        ``optax.scale_by_adam``, ...).
      learning_rate: η, a scalar or a schedule of the step count.
      weight_decay: λ ≥ 0, a scalar or a schedule of the step count.
      mode: ``"l2"``, ``"coupled"`` or ``"independent"`` (see the module docstring).
      mask: a pytree of booleans, or a function of the params returning one, selecting the leaves
        that are decayed (e.g. not biases and norm scales).
      peak_learning_rate: η_max for ``independent`` mode. Defaults to ``learning_rate`` when that
        is a scalar (so the decay is λθ every step); required when ``learning_rate`` is a
        schedule, whose peak cannot be read off a function.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      https://arxiv.org/abs/1711.05101. Wortsman et al., "Small-scale proxies for large-scale
      Transformer training instabilities", ICLR 2024, https://arxiv.org/abs/2309.14322.
    """
    if mode not in WEIGHT_DECAY_MODES:
        raise ValueError(f"mode must be one of {WEIGHT_DECAY_MODES}, got mode={mode!r}")
    check_non_negative("weight_decay", weight_decay)
    check_positive("learning_rate", learning_rate)
    if peak_learning_rate is not None:
        check_positive("peak_learning_rate", peak_learning_rate)
    scale = optax.scale_by_learning_rate(learning_rate)
    if mode == "l2":
        return optax.chain(_add_decayed_weights(weight_decay, mask), inner, scale)
    if mode == "coupled":
        return optax.chain(inner, _add_decayed_weights(weight_decay, mask), scale)

    if peak_learning_rate is None:
        if callable(learning_rate):
            raise ValueError(
                "mode='independent' with a learning-rate schedule needs peak_learning_rate "
                "(η_max in θ ← θ − η_t u − (η_t/η_max)λθ); got peak_learning_rate=None"
            )
        peak_learning_rate = learning_rate
    if callable(learning_rate) or callable(weight_decay):
        lr, wd = _as_schedule(learning_rate), _as_schedule(weight_decay)

        def decay(count):
            return -wd(count) * lr(count) / peak_learning_rate

    else:
        decay = -weight_decay * learning_rate / peak_learning_rate
    return optax.chain(inner, scale, _add_decayed_weights(decay, mask))


def sgdw(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: ScalarOrSchedule = 5e-4,
    *,
    weight_decay_mode: WeightDecayMode = "coupled",
    nesterov: bool = False,
    mask: MaskOrFn = None,
    peak_learning_rate: float | None = None,
) -> optax.GradientTransformation:
    """SGD with heavy-ball momentum and weight decay outside the momentum buffer (SGDW).

    ``m_t = μ m_{t−1} + g_t`` (``optax.trace``), then the decay of ``weight_decay_mode``:
    ``coupled`` gives θ ← θ − η_t(m_t + λθ), Loshchilov & Hutter's SGDW with a constant learning
    rate; ``independent`` gives θ ← θ − η_t m_t − (η_t/η_max)λθ; ``l2`` gives PyTorch's
    ``SGD(weight_decay=λ)``, where λθ goes through the momentum buffer — that is *not* SGDW.
    See :func:`with_weight_decay` for the arguments.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      https://arxiv.org/abs/1711.05101.
    """
    check_unit_interval("momentum", momentum)
    return with_weight_decay(
        optax.trace(decay=momentum, nesterov=nesterov),
        learning_rate,
        weight_decay=weight_decay,
        mode=weight_decay_mode,
        mask=mask,
        peak_learning_rate=peak_learning_rate,
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    *,
    weight_decay_mode: WeightDecayMode = "coupled",
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    nesterov: bool = False,
    mask: MaskOrFn = None,
    peak_learning_rate: float | None = None,
) -> optax.GradientTransformation:
    """Adam with weight decay in a named mode; ``coupled`` equals ``optax.adamw``.

    With ``u_t = m̂_t/(√v̂_t + ε)`` (``optax.scale_by_adam``): ``coupled`` is
    θ ← θ − η_t(u_t + λθ) (PyTorch/optax AdamW), ``independent`` is
    θ ← θ − η_t u_t − (η_t/η_max)λθ (the AdamW paper and Wortsman et al.), ``l2`` is Adam on
    g + λθ (decay through the preconditioner). See :func:`with_weight_decay` for the arguments.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      https://arxiv.org/abs/1711.05101.
    """
    check_unit_interval("b1", b1)
    check_unit_interval("b2", b2)
    check_non_negative("eps", eps)
    return with_weight_decay(
        optax.scale_by_adam(
            b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
        ),
        learning_rate,
        weight_decay=weight_decay,
        mode=weight_decay_mode,
        mask=mask,
        peak_learning_rate=peak_learning_rate,
    )
