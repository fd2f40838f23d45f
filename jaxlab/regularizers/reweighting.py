"""Group re-balancing for imbalanced data: temperature sampling and the equivalent loss weights."""

import jax
import jax.numpy as jnp
import numpy as np


def _check_sizes(sizes, temperature) -> jax.Array:
    sizes = jnp.asarray(sizes)
    if sizes.ndim != 1 or sizes.shape[0] == 0:
        raise ValueError(f"sizes must be a non-empty 1-D array, got sizes.shape={sizes.shape}")
    if not isinstance(sizes, jax.core.Tracer) and np.any(np.asarray(sizes) <= 0):
        raise ValueError(f"sizes must be > 0, got sizes={np.asarray(sizes)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (inf allowed), got temperature={temperature}")
    return sizes.astype(jnp.promote_types(sizes.dtype, jnp.float32))


def temperature_sampling_probs(sizes: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    r"""Group sampling probabilities ``p_i ∝ n_i^{1/T}``.

    .. math::
      p_i = \frac{n_i^{1/T}}{\sum_j n_j^{1/T}}

    ``T = 1`` samples proportionally to group size (plain shuffling), ``T → ∞`` (``jnp.inf``)
    uniformly over groups. Computed in log space.

    Args:
      sizes: ``[G]`` positive group sizes ``n_i``.
      temperature: sampling temperature ``T > 0``.

    Returns:
      float32 ``[G]`` probabilities summing to 1.

    References:
      Li et al., "Upsample or Upweight? Balanced Training on Heavily Imbalanced Datasets",
      https://arxiv.org/abs/2410.04579; Arivazhagan et al., "Massively Multilingual Neural
      Machine Translation in the Wild", https://arxiv.org/abs/1907.05019.
    """
    n = _check_sizes(sizes, temperature)
    return jax.nn.softmax(jnp.log(n) / temperature)


def scalarization_weights(sizes: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    r"""Per-example loss weights of each group that make proportional sampling match ``p_i``.

    .. math::
      w_i = \frac{p_i}{q_i} = p_i \frac{N}{n_i},\qquad q_i = \frac{n_i}{N},\
      p = \mathrm{temperature\_sampling\_probs}(n, T)

    With examples drawn uniformly from the whole dataset (group i with probability ``q_i``)
    and example losses weighted by ``w_{g(x)}``, the expected loss and gradient equal those of
    temperature sampling: ``E_q[w ℓ] = Σ_i p_i \bar ℓ_i``. The weights average to 1 over the
    dataset (``Σ_i q_i w_i = 1``). Upweighting has the same full-gradient as upsampling but a
    higher-variance stochastic gradient (the paper's point).

    Args:
      sizes: ``[G]`` positive group sizes.
      temperature: the temperature ``T`` of the sampling distribution to emulate.

    Returns:
      float32 ``[G]`` weights; index them by each example's group.

    References:
      Li et al., "Upsample or Upweight? Balanced Training on Heavily Imbalanced Datasets",
      https://arxiv.org/abs/2410.04579.
    """
    n = _check_sizes(sizes, temperature)
    return temperature_sampling_probs(n, temperature=temperature) * (jnp.sum(n) / n)


def cooldown_temperature(
    step, *, start_temperature: float, end_temperature: float = 1.0, num_steps: int
) -> jax.Array:
    r"""Cooldown schedule: the sampling temperature lowered from ``T_start`` to ``T_end``.

    .. math::
      T(t) = T_\text{start} + \min(t / S, 1)\,(T_\text{end} - T_\text{start})

    (linear over ``S = num_steps`` steps, then held). Start with a high temperature (close to
    uniform group sampling, fast early progress on small groups), end near proportional sampling
    (less over-fitting of the repeated small groups). The paper's schedule lowers the
    temperature during training; its exact shape here is a linear choice.

    Args:
      step: current step (int or traced int).
      start_temperature: ``T_start > 0``.
      end_temperature: ``T_end > 0`` (1 = proportional).
      num_steps: length ``S ≥ 1`` of the cooldown.

    Returns:
      float32 scalar temperature.

    References:
      Li et al., "Upsample or Upweight? Balanced Training on Heavily Imbalanced Datasets",
      https://arxiv.org/abs/2410.04579.
    """
    if not (start_temperature > 0 and end_temperature > 0 and num_steps >= 1):
        raise ValueError(
            "need positive temperatures and num_steps >= 1, got "
            f"start_temperature={start_temperature}, end_temperature={end_temperature}, "
            f"num_steps={num_steps}"
        )
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / num_steps, 0, 1)
    return start_temperature + frac * (end_temperature - start_temperature)
