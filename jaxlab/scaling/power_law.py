"""Fitting a power law ``y = A x^(-α)`` (log-log least squares) or ``y = E + A x^(-α)``."""

from typing import NamedTuple

import numpy as np

from jaxlab.scaling._checks import paired
from jaxlab.scaling._fit import varpro


class PowerLaw(NamedTuple):
    """Parameters of ``y = e + a · x^(-alpha)`` (``e = 0`` without offset)."""

    a: float
    alpha: float
    e: float


def fit_power_law(x, y, *, offset: bool = False) -> PowerLaw:
    r"""Least-squares fit of :math:`y = E + A x^{-\alpha}` to data points.

    * ``offset=False`` (E = 0): closed-form linear least squares in log-log space,
      :math:`\log y = \log A - \alpha \log x` (needs y > 0).
    * ``offset=True``: least squares in y. For fixed α the model is linear in (E, A), so α is
      found by variable projection (grid over α ∈ [1e-3, 10], then
      ``scipy.optimize.least_squares`` within α ∈ (0, 20]; SciPy is imported lazily). The
      offset-free fit has no sign constraint (α < 0 for data growing with x).

    Host-side NumPy float64 (not jittable). Exact on noise-free data.

    Args:
      x: 1-D positive abscissae (e.g. N, D or compute), ≥ 2 points (≥ 3 with offset).
      y: 1-D values (e.g. losses).
      offset: fit the irreducible term E too.

    Returns:
      :class:`PowerLaw` of Python floats.

    References:
      Kaplan et al., "Scaling Laws for Neural Language Models", https://arxiv.org/abs/2001.08361;
      Hoffmann et al., "Training Compute-Optimal Large Language Models",
      https://arxiv.org/abs/2203.15556 (the E + A N^-α form).

    Examples:
      >>> import numpy as np
      >>> x = np.array([1e6, 1e7, 1e8, 1e9])
      >>> fit = fit_power_law(x, 5.0 * x**-0.1)
      >>> round(fit.a, 6), round(fit.alpha, 6)
      (5.0, 0.1)
    """
    x, y = paired(("x", "y"), x, y, 3 if offset else 2)
    if not np.all(x > 0):
        raise ValueError(f"x must be > 0, got x={x!r}")
    if not offset:
        if not np.all(y > 0):
            raise ValueError(f"y must be > 0 for the log-log fit (offset=False), got y={y!r}")
        design = np.stack([np.ones_like(x), -np.log(x)], axis=1)
        (log_a, alpha), *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
        return PowerLaw(float(np.exp(log_a)), float(alpha), 0.0)
    x0 = float(np.exp(np.mean(np.log(x))))  # conditioning: fit in x / x0
    xs = x / x0

    def basis(theta):
        return np.stack([np.ones_like(xs), xs ** (-theta[0])], axis=1)

    grid = [np.array([a]) for a in np.logspace(-3, 1, 81)]
    (alpha,), (e, a_scaled) = varpro(basis, y, grid, [1e-6], [20.0])
    return PowerLaw(float(a_scaled * x0**alpha), float(alpha), float(e))
