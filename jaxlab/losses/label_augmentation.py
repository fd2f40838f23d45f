"""Self-supervised label augmentation (SLA): one joint (class, transformation) classification task.

Instead of a separate self-supervised head, the classifier predicts the pair (class ``y``,
transformation ``t``) among ``N·M`` joint classes, with joint label ``y·M + t`` (the official
code's layout). At test time the joint logits of all ``M`` transformed copies are aggregated.
"""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast


def _check_num_transforms(num_transforms) -> None:
    if not (isinstance(num_transforms, int) and num_transforms >= 1):
        raise ValueError(
            f"num_transforms must be an int >= 1, got num_transforms={num_transforms!r}"
        )


def sla_joint_labels(labels: jax.Array, transforms: jax.Array, *, num_transforms: int = 4):
    r"""Joint labels ``y·M + t`` of the (class, transformation) task.

    Args:
      labels: ``[...]`` integer classes ``y ∈ [0, N)``.
      transforms: integer transformation indices ``t ∈ [0, M)`` broadcastable to ``labels``
        (e.g. 0/1/2/3 for rotations by 0/90/180/270 degrees).
      num_transforms: ``M`` (paper: 4 rotations).

    Returns:
      ``[...]`` integer joint labels in ``[0, N·M)``.

    References:
      Lee et al., "Self-supervised Label Augmentation via Input Transformations",
      https://arxiv.org/abs/1910.05872.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(sla_joint_labels(jnp.array([0, 2, 2]), jnp.array([1, 0, 3])))
      [ 1  8 11]
    """
    _check_num_transforms(num_transforms)
    labels, transforms = jnp.asarray(labels), jnp.asarray(transforms)
    for name, x in (("labels", labels), ("transforms", transforms)):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"{name} must be integers, got {name}.dtype={x.dtype}")
    return labels * num_transforms + jnp.broadcast_to(transforms, labels.shape)


def sla_loss(
    joint_logits: jax.Array,
    labels: jax.Array,
    transforms: jax.Array,
    *,
    num_transforms: int = 4,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""SLA joint cross-entropy, one value per (transformed) example.

    .. math::
        \ell = -\log \mathrm{softmax}(z)_{y M + t},\qquad z \in \mathbb{R}^{N M}

    With ``M = 1`` it is the plain softmax cross-entropy.

    Args:
      joint_logits: ``[..., N·M]`` logits of the transformed input ``t(x)``.
      labels: ``[...]`` integer classes in ``[0, N)``.
      transforms: integer transformation indices in ``[0, M)``, broadcastable to ``labels``.
      num_transforms: ``M`` (paper: 4 rotations).
      where: optional ``[...]`` mask; masked-out examples give 0.

    Returns:
      ``[...]`` per-example losses, float32 (float64 for float64 logits).

    References:
      Lee et al., "Self-supervised Label Augmentation via Input Transformations",
      https://arxiv.org/abs/1910.05872.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.zeros((1, 8))  # N = 2 classes, M = 4 rotations
      >>> print(sla_loss(z, jnp.array([1]), jnp.array([2])))
      [2.0794415]
    """
    joint_logits = _check_joint(joint_logits, num_transforms)
    joint = sla_joint_labels(labels, transforms, num_transforms=num_transforms)
    if joint.shape != joint_logits.shape[:-1]:
        raise ValueError(
            f"labels.shape={joint.shape} must equal joint_logits.shape[:-1]="
            f"{joint_logits.shape[:-1]}"
        )
    if where is not None:
        where = jnp.asarray(where, bool)
        if where.shape != joint.shape:
            raise ValueError(f"where.shape={where.shape} must equal labels.shape={joint.shape}")
        joint_logits = jnp.where(where[..., None], joint_logits, 0.0)
        joint = jnp.where(where, joint, 0)
    log_probs = jax.nn.log_softmax(joint_logits, axis=-1)
    loss = -jnp.take_along_axis(log_probs, joint[..., None], axis=-1)[..., 0]
    return loss if where is None else jnp.where(where, loss, 0.0)


def _check_joint(joint_logits, num_transforms):
    _check_num_transforms(num_transforms)
    joint_logits = upcast(jnp.asarray(joint_logits))
    if joint_logits.ndim < 1 or joint_logits.shape[-1] % num_transforms:
        raise ValueError(
            f"joint_logits.shape={joint_logits.shape} must end in N·M with "
            f"num_transforms=M={num_transforms}"
        )
    return joint_logits


def sla_aggregate(joint_logits_per_transform: jax.Array) -> jax.Array:
    r"""Aggregated SLA class logits from the joint logits of all ``M`` transformed copies.

    .. math::
        \bar z_y(x) = \frac1M \sum_{t=0}^{M-1} z_{(y, t)}\big(t(x)\big),\qquad
        p(y\mid x) = \mathrm{softmax}(\bar z)_y,

    i.e. from copy ``t`` take the logits of the joint classes ``(·, t)`` (columns ``y·M + t``) and
    average over copies. ``M = 1`` returns the logits unchanged.

    Args:
      joint_logits_per_transform: ``[M, ..., N·M]``; entry ``t`` holds the joint logits of the
        input transformed by ``t``.

    Returns:
      ``[..., N]`` aggregated class logits (float32, or float64 for float64 input).

    References:
      Lee et al., "Self-supervised Label Augmentation via Input Transformations",
      https://arxiv.org/abs/1910.05872.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.arange(8.0).reshape(2, 1, 4)  # M = 2 copies, N = 2 classes
      >>> print(sla_aggregate(z))  # copy 0: columns 0, 2; copy 1: columns 5, 7
      [[2.5 4.5]]
    """
    z = jnp.asarray(joint_logits_per_transform)
    if z.ndim < 2:
        raise ValueError(f"joint_logits_per_transform must be [M, ..., N·M], got shape {z.shape}")
    m = z.shape[0]
    z = _check_joint(z, m)
    z = z.reshape((*z.shape[:-1], z.shape[-1] // m, m))  # [M, ..., N, M]: column y·M + t
    return jnp.mean(jnp.stack([z[t, ..., t] for t in range(m)]), axis=0)
