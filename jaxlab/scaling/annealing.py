"""Scaling law with learning-rate annealing: the whole loss curve from the LR schedule."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab._tree import upcast
from jaxlab.scaling._checks import paired, positive_scalar
from jaxlab.scaling._fit import varpro


class AnnealingLaw(NamedTuple):
    """Parameters of ``L(s) = l0 + a · S1(s)^(-alpha) − c · S2(s)``."""

    l0: float
    a: float
    alpha: float
    c: float


def _check_decay(decay):
    if not 0 <= decay < 1:
        raise ValueError(f"decay must be in [0, 1), got decay={decay!r}")


def _check_lrs(lrs):
    lrs = jnp.asarray(lrs)
    if lrs.ndim != 1 or lrs.shape[0] < 1 or not jnp.issubdtype(lrs.dtype, jnp.floating):
        raise ValueError(f"lrs must be a non-empty 1-D floating array, got lrs.shape={lrs.shape}")
    return upcast(lrs)


def lr_annealing_areas(lrs: jax.Array, *, decay: float = 0.999) -> tuple[jax.Array, jax.Array]:
    r"""Forward area S1 and annealing area S2 of an LR schedule at every step.

    .. math::
        S_1(s) = \sum_{i=1}^{s} \eta_i, \qquad
        m_i = \lambda m_{i-1} + (\eta_{i-1} - \eta_i), \qquad S_2(s) = \sum_{i=1}^{s} m_i

    i.e. :math:`S_2(s) = \sum_{i\le s}\sum_{k\le i} (\eta_{k-1} - \eta_k)\lambda^{i-k}`, with
    :math:`m_0 = 0` and :math:`\eta_0 = \eta_1` (the first LR given). Pass the LRs after warmup:
    a constant LR gives S2 = 0, and LR increases make S2 negative.

    Args:
      lrs: ``(T,)`` learning rate of steps 1..T.
      decay: momentum-like decay λ of the annealing area, in ``[0, 1)``.

    Returns:
      ``(S1, S2)``, each ``(T,)`` float32.

    References:
      Tissue, Wang, Wang, Tang, Zhang, "Scaling Law with Learning Rate Annealing",
      https://arxiv.org/abs/2408.11029.

    Examples:
      >>> import jax.numpy as jnp
      >>> s1, s2 = lr_annealing_areas(jnp.array([1.0, 1.0, 0.5, 0.5]), decay=0.5)
      >>> s1.tolist(), s2.tolist()
      ([1.0, 2.0, 2.5, 3.0], [0.0, 0.0, 0.5, 0.75])
    """
    lrs = _check_lrs(lrs)
    _check_decay(decay)
    drops = jnp.concatenate([jnp.zeros((1,), lrs.dtype), lrs[:-1] - lrs[1:]])

    def step(m, drop):
        m = decay * m + drop
        return m, m

    _, m = jax.lax.scan(step, jnp.zeros((), lrs.dtype), drops)
    return jnp.cumsum(lrs), jnp.cumsum(m)


def lr_annealing_loss(
    lrs: jax.Array, *, l0: float, a: float, alpha: float, c: float, decay: float = 0.999
) -> jax.Array:
    r"""Predicted loss curve :math:`L(s) = L_0 + A\,S_1(s)^{-\alpha} - C\,S_2(s)`.

    S1, S2 from :func:`lr_annealing_areas`. A constant LR gives a pure power law in S1; more
    annealing area lowers the loss.

    Args:
      lrs: ``(T,)`` post-warmup learning rates (> 0 at step 1, so S1 > 0).
      l0: irreducible loss L0.
      a: A.
      alpha: α.
      c: C, the annealing coefficient.
      decay: λ.

    Returns:
      ``(T,)`` float32 predicted losses.

    References:
      Tissue et al., "Scaling Law with Learning Rate Annealing", https://arxiv.org/abs/2408.11029.

    Examples:
      >>> import jax.numpy as jnp
      >>> lr_annealing_loss(jnp.array([1.0, 1.0]), l0=2.0, a=1.0, alpha=1.0, c=1.0).tolist()
      [3.0, 2.5]
    """
    s1, s2 = lr_annealing_areas(lrs, decay=decay)
    return l0 + a * jnp.exp(-alpha * jnp.log(s1)) - c * s2


def fit_lr_annealing_law(lrs_list, losses_list, *, decay: float = 0.999) -> AnnealingLaw:
    r"""Least-squares fit of (L0, A, α, C) to one or more (schedule, loss curve) pairs.

    The model is linear in (L0, A, C) for fixed α, so α is found by variable projection (grid
    over α ∈ [1e-3, 5], then ``scipy.optimize.least_squares``, SciPy imported lazily); λ is fixed
    (the paper fixes it too). Fitting one constant-LR and one annealed curve identifies all four
    parameters; a single constant-LR curve cannot identify C. Host-side NumPy float64.

    Args:
      lrs_list: sequence of ``(T_j,)`` post-warmup LR schedules.
      losses_list: sequence of matching ``(T_j,)`` loss curves.
      decay: λ.

    Returns:
      :class:`AnnealingLaw` of Python floats.

    References:
      Tissue et al., "Scaling Law with Learning Rate Annealing", https://arxiv.org/abs/2408.11029.
    """
    _check_decay(decay)
    if len(lrs_list) != len(losses_list) or not lrs_list:
        raise ValueError(
            f"lrs_list and losses_list must be non-empty and equally long, got "
            f"{len(lrs_list)} and {len(losses_list)}"
        )
    s1s, s2s, ys = [], [], []
    for j, (lrs, losses) in enumerate(zip(lrs_list, losses_list, strict=True)):
        lrs, losses = paired((f"lrs_list[{j}]", f"losses_list[{j}]"), lrs, losses, 1)
        positive_scalar(f"lrs_list[{j}][0]", lrs[0])
        s1, s2 = lr_annealing_areas(jnp.asarray(lrs, jnp.float32), decay=decay)
        s1s.append(np.asarray(s1, np.float64))
        s2s.append(np.asarray(s2, np.float64))
        ys.append(losses)
    s1, s2, y = np.concatenate(s1s), np.concatenate(s2s), np.concatenate(ys)
    if y.size < 4:
        raise ValueError(f"need at least 4 loss values in total, got {y.size}")

    def basis(theta):
        return np.stack([np.ones_like(s1), s1 ** (-theta[0]), -s2], axis=1)

    grid = [np.array([a]) for a in np.logspace(-3, np.log10(5.0), 61)]
    (alpha,), (l0, a, c) = varpro(basis, y, grid, [1e-6], [10.0])
    return AnnealingLaw(float(l0), float(a), float(alpha), float(c))
