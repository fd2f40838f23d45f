"""Loss-to-loss prediction: a shifted power law between two losses of the same models."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.optim._checks import check_positive
from jaxlab.scaling._checks import paired
from jaxlab.scaling._fit import varpro


class LossToLoss(NamedTuple):
    """Parameters of ``L_y = k · (L_x − e_x)^kappa + e_y``."""

    k: float
    kappa: float
    e_x: float
    e_y: float


def loss_to_loss(l_x: jax.Array, *, k: float, kappa: float, e_x: float, e_y: float) -> jax.Array:
    r"""Shifted power law :math:`L_y = K\,(L_x - E_x)^{\kappa} + E_y`.

    Relates e.g. the train losses of models trained on two datasets (paired by compute), or a
    train loss to a downstream test loss; :math:`E_x, E_y` are the irreducible losses. K = κ = 1,
    E_x = E_y = 0 is the identity. Values with :math:`L_x \le E_x` are outside the law's domain
    (``L_x = E_x`` gives :math:`E_y`; below it NaN).

    Args:
      l_x: losses on the source distribution.
      k: K > 0.
      kappa: κ > 0.
      e_x: E_x (irreducible source loss).
      e_y: E_y (irreducible target loss).

    Returns:
      float32 predicted target losses, shape of ``l_x``.

    References:
      Brandfonbrener, Anand, Vyas, Malach, Kakade, "Loss-to-Loss Prediction: Scaling Laws for All
      Datasets", https://arxiv.org/abs/2411.12925; Mayilvahanan et al., "LLMs on the Line: Data
      Determines Loss-to-Loss Scaling Laws", https://arxiv.org/abs/2502.12120.

    Examples:
      >>> import jax.numpy as jnp
      >>> out = loss_to_loss(jnp.array([3.0, 5.0]), k=2.0, kappa=0.5, e_x=1.0, e_y=0.5)
      >>> [round(v, 4) for v in out.tolist()]  # 2·√2 + 0.5, 2·√4 + 0.5
      [3.3284, 4.5]
    """
    check_positive("k", k)  # concrete values only: the law stays differentiable in its parameters
    check_positive("kappa", kappa)
    x = jnp.asarray(l_x, jnp.float32)
    shifted = x - e_x
    positive = shifted > 0
    powered = jnp.exp(kappa * jnp.log(jnp.where(positive, shifted, 1.0)))
    value = jnp.where(positive, powered, jnp.where(shifted == 0, 0.0, jnp.nan))
    return k * value + e_y


def fit_loss_to_loss(l_x, l_y) -> LossToLoss:
    r"""Least-squares fit of :math:`L_y = K (L_x - E_x)^\kappa + E_y` to paired losses.

    Variable projection: (K, E_y) are linear given (E_x, κ), which are searched on a grid
    (E_x ∈ [0, min L_x), κ ∈ [0.1, 10]) and refined with ``scipy.optimize.least_squares`` (SciPy
    imported lazily) under the bounds 0 ≤ E_x ≤ min L_x, κ > 0. Host-side NumPy float64; needs at
    least 5 points spread over a range of L_x for E_x and κ to be identifiable.

    Args:
      l_x: 1-D source losses.
      l_y: 1-D target losses of the same models.

    Returns:
      :class:`LossToLoss` of Python floats.

    References:
      Brandfonbrener et al., "Loss-to-Loss Prediction: Scaling Laws for All Datasets",
      https://arxiv.org/abs/2411.12925.
    """
    x, y = paired(("l_x", "l_y"), l_x, l_y, 5)
    if not np.all(x > 0):
        raise ValueError(f"l_x must be > 0, got l_x={l_x!r}")
    top = float(np.min(x))

    def basis(theta):
        shifted = np.maximum(x - theta[0], 0.0)
        return np.stack([shifted ** theta[1], np.ones_like(x)], axis=1)

    grid = [
        np.array([e, kap])
        for e in np.linspace(0.0, top * (1 - 1e-3), 25)
        for kap in np.logspace(-1, 1, 25)
    ]
    (e_x, kappa), (k, e_y) = varpro(basis, y, grid, [0.0, 1e-6], [top, 50.0])
    return LossToLoss(float(k), float(kappa), float(e_x), float(e_y))
