"""Zero-sum learning: how much per-example loss changes (or gradients) cancel each other."""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float


def zero_sum_learning_ratio(deltas: jax.Array, *, where: jax.Array | None = None) -> jax.Array:
    r"""Net-to-gross ratio of per-example changes: 1 = all agree, 0 = they cancel exactly.

    .. math::
        R = \frac{\|\sum_i \delta_i\|_2}{\sum_i \|\delta_i\|_2}, \qquad
        D = 1 - R \ \text{(destructive interference)}

    For per-example loss changes :math:`\delta_i = \ell_i(\theta_{t+1}) - \ell_i(\theta_t)`
    (``deltas`` of shape ``(N,)``) this is :math:`|\sum_i \delta_i| / \sum_i |\delta_i|`; for
    per-example gradients (rows of an ``(N, P)`` array) it is
    :math:`\|\sum_i g_i\| / \sum_i \|g_i\|`. Zero-sum learning (ZSL) is :math:`R \to 0`:
    improvements on some examples are paid for by degradation on others, so the total loss
    barely moves even though individual losses change a lot. The paper measures the destructive
    interference :math:`D = 1 - R` of per-token loss changes (our reading of the definition);
    return ``1 - R`` for that. All-zero changes give ``R = 1`` (no interference).

    Args:
      deltas: ``(N,)`` per-example loss changes or ``(N, ...)`` per-example vectors (the trailing
        axes are flattened).
      where: optional ``(N,)`` boolean mask of the examples to include.

    Returns:
      float32 scalar in ``[0, 1]``.

    References:
      Mircea, Chakraborty, Chitsazan, Naphade, Sahu, Rish, Lobacheva, "Training Dynamics
      Underlying Language Model Scaling Laws: Loss Deceleration and Zero-Sum Learning",
      https://arxiv.org/abs/2506.05447.

    Examples:
      >>> import jax.numpy as jnp
      >>> zero_sum_learning_ratio(jnp.array([-1.0, -2.0, 1.0]))
      Array(0.5, dtype=float32)
    """
    d = upcast(as_float("deltas", deltas, min_ndim=1))
    d = d.reshape(d.shape[0], -1)
    if where is not None:
        where = jnp.asarray(where)
        if where.shape != (d.shape[0],):
            raise ValueError(f"where.shape={where.shape} must be ({d.shape[0]},)")
        where = where.astype(bool)
    return _ratio(d, where)


@jax.jit
def _ratio(d, where):
    if where is not None:
        d = jnp.where(where[:, None], d, 0.0)
    net_sq = jnp.sum(jnp.square(jnp.sum(d, axis=0)))
    row_sq = jnp.sum(d * d, axis=1)
    gross = jnp.sum(jnp.where(row_sq > 0, jnp.sqrt(jnp.where(row_sq > 0, row_sq, 1.0)), 0.0))
    net = jnp.where(net_sq > 0, jnp.sqrt(jnp.where(net_sq > 0, net_sq, 1.0)), 0.0)
    return jnp.where(gross > 0, net / jnp.where(gross > 0, gross, 1.0), 1.0)
