"""RankMe: the effective rank of an embedding matrix, a label-free representation-quality score."""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float


def rankme(embeddings: jax.Array, *, eps: float = 1e-7) -> jax.Array:
    r"""RankMe effective rank of an ``(N, D)`` embedding matrix.

    .. math::
        p_k = \frac{\sigma_k(Z)}{\|\sigma(Z)\|_1} + \varepsilon, \qquad
        \mathrm{RankMe}(Z) = \exp\Big(-\sum_{k=1}^{\min(N, D)} p_k \log p_k\Big)

    with :math:`\sigma_k(Z)` the singular values of Z (no centring, as in the paper). It lies in
    ``[1, min(N, D)]`` up to the ε term: ``r`` equal non-zero singular values give ``r``.
    Invariant to scaling Z and to orthogonal transforms on either side. A zero matrix gives ≈ 1
    (all p_k = ε), with finite gradients.

    Args:
      embeddings: ``(N, D)`` floating array (computed in float32, or float64 when given).
      eps: the paper's ε > 0 added to each normalised singular value.

    Returns:
      Scalar effective rank.

    References:
      Garrido, Balestriero, Najman, LeCun, "RankMe: Assessing the Downstream Performance of
      Pretrained Self-Supervised Representations by Their Rank", https://arxiv.org/abs/2210.02885.

    Examples:
      >>> import jax.numpy as jnp
      >>> round(float(rankme(jnp.eye(4))), 3)
      4.0
    """
    z = upcast(as_float("embeddings", embeddings, ndim=2))
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got eps={eps!r}")
    return _rankme(z, eps)


@jax.jit
def _rankme(z, eps):
    s = jnp.linalg.svd(z, compute_uv=False)
    total = jnp.sum(s)
    p = s / jnp.where(total > 0, total, 1.0) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))
