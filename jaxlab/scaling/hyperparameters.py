"""Step Law: the optimal peak learning rate and batch size as power laws of model and data size."""

import jax
import jax.numpy as jnp

from jaxlab.scaling._checks import positive_data


def step_law(num_params, num_tokens) -> tuple[jax.Array, jax.Array]:
    r"""Step Law optimal hyperparameters for LLM pre-training.

    .. math::
        \eta_{\mathrm{opt}}(N, D) = 1.79\, N^{-0.713} D^{0.307}, \qquad
        B_{\mathrm{opt}}(D) = 0.58\, D^{0.571}

    with N the non-embedding parameter count, D the number of training tokens and
    :math:`B_{\mathrm{opt}}` the batch size in *tokens* (fitted on 3,700 dense and MoE models
    trained with AdamW, warmup then cosine decay to a floor, in the paper's setup). E.g.
    N = 1e9, D = 1e11 gives η ≈ 1.63e-3 and B ≈ 1.11e6 tokens.

    Args:
      num_params: N > 0, non-embedding parameters (scalar or array).
      num_tokens: D > 0, training tokens (broadcast against ``num_params``).

    Returns:
      ``(learning_rate, batch_size_tokens)`` float32 arrays.

    References:
      Li et al., "Predictable Scale: Part I -- Optimal Hyperparameter Scaling Law in Large
      Language Model Pretraining", https://arxiv.org/abs/2503.04715.

    Examples:
      >>> lr, bs = step_law(1e9, 1e11)
      >>> f"{float(lr):.3g}", f"{float(bs):.3g}"
      ('0.00163', '1.11e+06')
    """
    positive_data("num_params", num_params)
    positive_data("num_tokens", num_tokens)
    n = jnp.asarray(num_params, jnp.float32)
    d = jnp.asarray(num_tokens, jnp.float32)
    lr = 1.79 * jnp.exp(-0.713 * jnp.log(n) + 0.307 * jnp.log(d))
    return lr, 0.58 * jnp.exp(0.571 * jnp.log(d))
