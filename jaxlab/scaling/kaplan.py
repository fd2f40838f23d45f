"""Kaplan et al. scaling laws of language-model loss, critical batch size and minimum steps/data.

All losses are in nats per token (WebText2, the paper's setup); the constants are the paper's
fits and re-fitting them for another setup is expected (Su et al. find the functional forms hold
to 33B parameters with setup-dependent constants).

References:
  Kaplan et al., "Scaling Laws for Neural Language Models", https://arxiv.org/abs/2001.08361
  (Table 5, eqs. 1.1–1.6, 5.4–5.5); Su et al., "Unraveling the Mystery of Scaling Laws: Part I",
  https://arxiv.org/abs/2403.06563.
"""

import jax
import jax.numpy as jnp

from jaxlab.optim._checks import check_positive
from jaxlab.scaling._checks import positive_data


def _log_ratio(c, x):
    return jnp.log(jnp.float32(c)) - jnp.log(jnp.asarray(x, jnp.float32))


def kaplan_loss(
    n=None,
    d=None,
    *,
    alpha_n: float = 0.076,
    n_c: float = 8.8e13,
    alpha_d: float = 0.095,
    d_c: float = 5.4e13,
) -> jax.Array:
    r"""Kaplan et al.'s loss as a function of model size N and/or dataset size D.

    .. math::
        L(N) = (N_c/N)^{\alpha_N}, \quad L(D) = (D_c/D)^{\alpha_D}, \quad
        L(N, D) = \Big[(N_c/N)^{\alpha_N/\alpha_D} + D_c/D\Big]^{\alpha_D}

    (eqs. 1.1, 1.2, 1.5; N non-embedding parameters, D tokens). ``L(N, D)`` reduces to ``L(N)``
    as D → ∞ and to ``L(D)`` as N → ∞. E.g. ``L(N=1e9) ≈ 2.38`` nats.

    Args:
      n: N > 0 (scalar or array), or None.
      d: D > 0 (scalar or array, same shape as ``n`` when both are given), or None.
      alpha_n: α_N.
      n_c: N_c.
      alpha_d: α_D.
      d_c: D_c.

    Returns:
      float32 loss.

    Examples:
      >>> round(float(kaplan_loss(1e9)), 3)
      2.376
    """
    if n is None and d is None:
        raise ValueError("kaplan_loss needs n, d or both, got n=None and d=None")
    for name, value in (("alpha_n", alpha_n), ("n_c", n_c), ("alpha_d", alpha_d), ("d_c", d_c)):
        check_positive(name, value)
    if n is not None:
        positive_data("n", n)
    if d is not None:
        positive_data("d", d)
    if d is None:
        return jnp.exp(alpha_n * _log_ratio(n_c, n))
    if n is None:
        return jnp.exp(alpha_d * _log_ratio(d_c, d))
    term_n = jnp.exp((alpha_n / alpha_d) * _log_ratio(n_c, n))
    term_d = jnp.exp(_log_ratio(d_c, d))
    return jnp.exp(alpha_d * jnp.log(term_n + term_d))


def critical_batch_size(loss, *, b_star: float = 2e8, alpha_b: float = 0.21) -> jax.Array:
    r"""Critical batch size :math:`B_{\mathrm{crit}}(L) = B_* / L^{1/\alpha_B}` in tokens (eq. 1.4).

    Args:
      loss: L > 0 in nats.
      b_star: B_* (tokens).
      alpha_b: α_B.

    Returns:
      float32 critical batch size in tokens.

    Examples:
      >>> f"{float(critical_batch_size(3.0)):.3g}"
      '1.07e+06'
    """
    check_positive("b_star", b_star)
    check_positive("alpha_b", alpha_b)
    positive_data("loss", loss)
    return b_star * jnp.exp(-jnp.log(jnp.asarray(loss, jnp.float32)) / alpha_b)


def minimum_steps(steps, batch_size, critical_batch) -> jax.Array:
    r"""Fewest steps to the same loss: :math:`S_{\min} = S/(1 + B_{\mathrm{crit}}/B)`.

    Kaplan et al. eq. 5.4 (from McCandlish et al.'s critical-batch analysis); ``B = B_crit`` gives
    ``S/2``.

    Args:
      steps: S, steps taken at batch size B.
      batch_size: B (same units as ``critical_batch``).
      critical_batch: B_crit, e.g. from :func:`critical_batch_size`.

    Returns:
      float32 S_min.

    Examples:
      >>> float(minimum_steps(1000.0, 2e5, 2e5))
      500.0
    """
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("critical_batch", critical_batch),
    ):
        positive_data(name, value)
    s, b, bc = (jnp.asarray(v, jnp.float32) for v in (steps, batch_size, critical_batch))
    return s / (1.0 + bc / b)


def minimum_tokens(tokens, batch_size, critical_batch) -> jax.Array:
    r"""Fewest tokens to the same loss: :math:`E_{\min} = E/(1 + B/B_{\mathrm{crit}})`.

    Kaplan et al. eq. 5.4; ``B = B_crit`` gives ``E/2``.

    Args:
      tokens: E, tokens (or examples) processed at batch size B.
      batch_size: B (same units as ``critical_batch``).
      critical_batch: B_crit.

    Returns:
      float32 E_min.

    Examples:
      >>> float(minimum_tokens(1e9, 2e5, 2e5))
      500000000.0
    """
    for name, value in (
        ("tokens", tokens),
        ("batch_size", batch_size),
        ("critical_batch", critical_batch),
    ):
        positive_data(name, value)
    e, b, bc = (jnp.asarray(v, jnp.float32) for v in (tokens, batch_size, critical_batch))
    return e / (1.0 + b / bc)
