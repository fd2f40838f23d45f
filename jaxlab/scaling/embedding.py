"""Spike No More: small sub-layer initialisation with scaled embeddings against loss spikes."""

import math

import jax
import jax.numpy as jnp


def _check_d_model(d_model):
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"d_model must be an int >= 1, got d_model={d_model!r}")


def small_init_std(d_model: int) -> float:
    r"""The "small init" standard deviation :math:`\sqrt{2/(5d)}` of sub-layer weights.

    Used by Spike No More for all (non-embedding) weights together with
    :func:`scale_embeddings`; e.g. d = 512 gives ≈ 0.0280.

    Args:
      d_model: hidden size d ≥ 1.

    Returns:
      The std as a Python float.

    References:
      Nguyen, Salazar, "Transformers without Tears", https://arxiv.org/abs/1910.05895; Takase,
      Kiyono, Kobayashi, Suzuki, "Spike No More: Stabilizing the Pre-training of Large Language
      Models", https://arxiv.org/abs/2312.16903.

    Examples:
      >>> round(small_init_std(512), 4)
      0.028
    """
    _check_d_model(d_model)
    return math.sqrt(2.0 / (5.0 * d_model))


def scale_embeddings(embeddings: jax.Array, *, d_model: int) -> jax.Array:
    r"""Scaled embeddings :math:`\sqrt{d}\,e` (Spike No More's "Scaled Embed").

    Spike No More requires embeddings whose elements have standard deviation close to 1 to keep
    the gradients of a pre-LN Transformer from exploding; with small-init embedding weights
    (std :math:`\sqrt{2/(5d)}`) the scaled embeddings have std :math:`\sqrt{2/5} \approx 0.63`.
    Apply to the embedding lookup output in the forward pass (not to the stored weights).

    Args:
      embeddings: ``(..., d)`` embedding vectors.
      d_model: d, which must equal the last axis.

    Returns:
      The scaled embeddings, same dtype.

    References:
      Takase et al., "Spike No More: Stabilizing the Pre-training of Large Language Models",
      https://arxiv.org/abs/2312.16903.

    Examples:
      >>> import jax.numpy as jnp
      >>> scale_embeddings(jnp.ones((2, 4)), d_model=4)[0]
      Array([2., 2., 2., 2.], dtype=float32)
    """
    _check_d_model(d_model)
    embeddings = jnp.asarray(embeddings)
    if embeddings.ndim < 1 or embeddings.shape[-1] != d_model:
        raise ValueError(f"embeddings.shape={embeddings.shape} must end with d_model={d_model}")
    return (embeddings * math.sqrt(d_model)).astype(embeddings.dtype)
