"""Diffusion training losses: perception-prioritized (P2) weighting of the ε-prediction loss.

Per-example values in float32 (float64 for float64 inputs), data first, keyword-only
hyperparameters with the paper's defaults; reduce with :func:`jaxlab.losses.reduce.weighted_mean`.
"""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast


def _check_p2(k, gamma) -> None:
    if not (isinstance(k, int | float) and k > 0):
        raise ValueError(f"k must be a number > 0, got k={k!r}")
    if not (isinstance(gamma, int | float) and gamma >= 0):
        raise ValueError(f"gamma must be a number >= 0, got gamma={gamma!r}")


def p2_weight(snr: jax.Array, *, k: float = 1.0, gamma: float = 1.0) -> jax.Array:
    r"""Perception-prioritized (P2) weight of a diffusion step, relative to the baseline weighting.

    .. math::
        \lambda'_t = \frac{\lambda_t}{(k + \mathrm{SNR}(t))^{\gamma}},\qquad
        \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1 - \bar\alpha_t},

    this function returns the factor ``(k + SNR)^{-γ}`` that multiplies the baseline weight
    ``λ_t`` (``λ_t = 1`` for the usual L_simple ε-prediction loss). It decreases in SNR, so the
    low-noise (high-SNR) steps, which only refine imperceptible details, are down-weighted.
    ``γ = 0`` gives 1 (the baseline); ``SNR = inf`` gives 0 (1 when ``γ = 0``).

    Args:
      snr: signal-to-noise ratios ``≥ 0`` of any shape (``inf`` allowed).
      k: offset ``k > 0`` that keeps the weight finite at SNR = 0 (paper: 1).
      gamma: strength ``γ ≥ 0`` (paper: 0.5 or 1).

    Returns:
      Weights of ``snr``'s shape, float32 (float64 for float64 ``snr``).

    References:
      Choi et al., "Perception Prioritized Training of Diffusion Models",
      https://arxiv.org/abs/2204.00227 (weight as in the official code:
      ``(k + ᾱ/(1 − ᾱ)) ** −γ``).

    Examples:
      >>> import jax.numpy as jnp
      >>> print(p2_weight(jnp.array([0.0, 1.0, 3.0])))
      [1.   0.5  0.25]
    """
    _check_p2(k, gamma)
    snr = upcast(jnp.asarray(snr))
    if gamma == 0:
        return jnp.ones_like(snr)
    return jnp.exp(-gamma * jnp.log(k + snr))


def weighted_diffusion_loss(
    eps_pred: jax.Array,
    eps: jax.Array,
    snr: jax.Array,
    *,
    k: float = 1.0,
    gamma: float = 1.0,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""P2-weighted ε-prediction loss, one value per example.

    .. math::
        \ell_i = (k + \mathrm{SNR}(t_i))^{-\gamma}\;
          \frac{1}{D}\,\lVert \epsilon_\theta(x_{t_i}, t_i) - \epsilon_i \rVert_2^2

    (mean over the ``D`` non-batch elements, as in L_simple). ``γ = 0`` is the plain L_simple.

    Args:
      eps_pred: ``[B, ...]`` predicted noise.
      eps: ``[B, ...]`` true noise.
      snr: ``[B]`` SNR of each example's diffusion step.
      k: see :func:`p2_weight`.
      gamma: see :func:`p2_weight`.
      where: optional ``[B]`` mask; masked-out examples give 0.

    Returns:
      ``[B]`` per-example losses, float32 (float64 for float64 inputs).

    References:
      Choi et al., "Perception Prioritized Training of Diffusion Models",
      https://arxiv.org/abs/2204.00227.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss = weighted_diffusion_loss(jnp.ones((2, 3)), jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))
      >>> print(loss)
      [1.  0.5]
    """
    _check_p2(k, gamma)
    eps_pred, eps, snr = jnp.asarray(eps_pred), jnp.asarray(eps), jnp.asarray(snr)
    if eps_pred.shape != eps.shape or eps.ndim < 1:
        raise ValueError(
            f"eps_pred.shape={eps_pred.shape} and eps.shape={eps.shape} must be equal, [B, ...]"
        )
    if snr.shape != eps.shape[:1]:
        raise ValueError(f"snr.shape={snr.shape} must be ({eps.shape[0]},)")
    diff = upcast(eps_pred) - upcast(eps)
    if where is not None:
        where = jnp.asarray(where, bool)
        if where.shape != snr.shape:
            raise ValueError(f"where.shape={where.shape} must be {snr.shape}")
        # Masked-out examples are zeroed before use, so their NaN/inf reach neither value nor grad.
        diff = jnp.where(where.reshape((-1,) + (1,) * (diff.ndim - 1)), diff, 0.0)
        snr = jnp.where(where, snr, 0.0)
    mse = jnp.mean(jnp.square(diff).reshape(diff.shape[0], -1), axis=-1)
    return p2_weight(snr, k=k, gamma=gamma).astype(mse.dtype) * mse
