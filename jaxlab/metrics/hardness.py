"""Angular Visual Hardness: a sample's angle to its class weight relative to all class weights."""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float, as_labels


def _unit(x):
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x / jnp.sqrt(jnp.where(sq > 0, sq, 1.0))


def _norm(x):
    sq = jnp.sum(x * x, axis=-1)
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)


def angular_visual_hardness(
    features: jax.Array, labels: jax.Array, class_weights: jax.Array
) -> jax.Array:
    r"""Per-example Angular Visual Hardness (AVH).

    .. math::
        \mathrm{AVH}(x) = \frac{\mathcal A(x, w_y)}{\sum_{k=1}^{C} \mathcal A(x, w_k)}, \qquad
        \mathcal A(u, v) = \arccos\frac{\langle u, v\rangle}{\|u\|\|v\|}

    with x the feature (embedding) of the sample, y its label and :math:`w_k` the classifier
    weight of class k. Values lie in ``[0, 1]``; invariant to scaling x and each :math:`w_k`;
    lower when x aligns with :math:`w_y`. The angle is computed as
    :math:`2\,\mathrm{atan2}(\|\hat u - \hat v\|, \|\hat u + \hat v\|)` (accurate near 0 and π,
    finite gradients); a zero vector is at angle π/2 to everything.

    Args:
      features: ``(N, D)`` features.
      labels: ``(N,)`` integer labels in ``[0, C)``.
      class_weights: ``(C, D)`` classifier weights, one row per class.

    Returns:
      ``(N,)`` float32 AVH values.

    References:
      Chen, Liu, Xu, Yang, Ghodsi, Ruan, Anandkumar, Song, "Angular Visual Hardness",
      https://arxiv.org/abs/1912.02279.

    Examples:
      >>> import jax.numpy as jnp
      >>> w = jnp.eye(2)
      >>> angular_visual_hardness(jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([0, 0]), w)
      Array([0. , 0.5], dtype=float32)
    """
    x = upcast(as_float("features", features, ndim=2))
    labels = as_labels("labels", labels, x.shape[0])
    w = upcast(as_float("class_weights", class_weights, ndim=2))
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"class_weights.shape={w.shape} must be (C, {x.shape[1]})")
    return _avh(x, labels, w)


@jax.jit
def _avh(x, labels, w):
    u = _unit(x)[:, None, :]
    v = _unit(w)[None, :, :]
    angles = 2.0 * jnp.arctan2(_norm(u - v), _norm(u + v))  # (N, C)
    own = jnp.take_along_axis(angles, labels[:, None], axis=-1)[:, 0]
    total = jnp.sum(angles, axis=-1)
    return own / jnp.where(total > 0, total, 1.0)
