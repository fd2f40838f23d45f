"""Loss deceleration: a two-segment (broken) power-law fit of a loss curve in log-log space."""

from typing import NamedTuple

import numpy as np

from jaxlab.scaling._checks import paired
from jaxlab.scaling._fit import varpro


class LossDeceleration(NamedTuple):
    """A continuous two-segment line in log-log space.

    Attributes:
      step: t_d, the step where the log-log slope changes (deceleration onset).
      loss: L_d, the fitted loss at t_d.
      rate_before: r_1, minus the log-log slope before t_d.
      rate_after: r_d, minus the log-log slope after t_d (the post-deceleration rate).
    """

    step: float
    loss: float
    rate_before: float
    rate_after: float


def fit_loss_deceleration(steps, losses) -> LossDeceleration:
    r"""Least-squares fit of a broken power law :math:`L(t)` with one breakpoint :math:`t_d`.

    .. math::
        \log L(t) = \log L_d - r_1 \min(\log t - \log t_d, 0) - r_d \max(\log t - \log t_d, 0)

    (piecewise linear and continuous in log-log space). For fixed :math:`\log t_d` the model is
    linear in :math:`(\log L_d, r_1, r_d)`; the breakpoint is found by variable projection over
    the interior of the observed step range (grid, then ``scipy.optimize.least_squares``, SciPy
    imported lazily). Host-side NumPy float64; exact on noise-free broken power laws.

    Args:
      steps: 1-D training steps > 0 (≥ 5 points).
      losses: 1-D losses > 0.

    Returns:
      :class:`LossDeceleration` of Python floats.

    References:
      Mircea et al., "Training Dynamics Underlying Language Model Scaling Laws: Loss Deceleration
      and Zero-Sum Learning", https://arxiv.org/abs/2506.05447.

    Examples:
      >>> import numpy as np
      >>> t = np.logspace(1, 4, 30)
      >>> loss = np.where(t < 300, 6.0 * (t / 300) ** -0.5, 6.0 * (t / 300) ** -0.1)
      >>> fit = fit_loss_deceleration(t, loss)
      >>> [round(v, 3) for v in fit]  # step, loss, rate_before, rate_after
      [300.0, 6.0, 0.5, 0.1]
    """
    t, y = paired(("steps", "losses"), steps, losses, 5)
    if not (np.all(t > 0) and np.all(y > 0)):
        raise ValueError("steps and losses must be > 0 for a log-log fit")
    x, logy = np.log(t), np.log(y)
    lo, hi = float(np.min(x)), float(np.max(x))
    if not hi > lo:
        raise ValueError("steps must span more than one value")

    def basis(theta):
        u = x - theta[0]
        return np.stack([np.ones_like(x), -np.minimum(u, 0.0), -np.maximum(u, 0.0)], axis=1)

    grid = [np.array([v]) for v in np.linspace(lo, hi, 64)[1:-1]]
    (tau,), (log_ld, r1, rd) = varpro(basis, logy, grid, [lo], [hi])
    return LossDeceleration(float(np.exp(tau)), float(np.exp(log_ld)), float(r1), float(rd))
