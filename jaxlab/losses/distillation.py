"""Knowledge-distillation losses: progressive self-distillation targets and feature-norm/direction.

Per-example values in float32 (float64 for float64 inputs), data first, keyword-only
hyperparameters with the papers' defaults, optional ``where`` masks (masked-out examples give 0
and pass no NaN to values or gradients); reduce with :func:`jaxlab.losses.reduce.weighted_mean`.
"""

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast


def _check_alpha(alpha_T, total_epochs, epoch) -> None:
    if not (isinstance(alpha_T, int | float) and 0 <= alpha_T <= 1):
        raise ValueError(f"alpha_T must be in [0, 1], got alpha_T={alpha_T!r}")
    if not (isinstance(total_epochs, int) and total_epochs > 0):
        raise ValueError(f"total_epochs must be an int > 0, got total_epochs={total_epochs!r}")
    if isinstance(epoch, int | float) and not 0 <= epoch <= total_epochs:
        raise ValueError(f"epoch must be in [0, total_epochs={total_epochs}], got epoch={epoch}")


def _mask(where, shape):
    if where is None:
        return None
    where = jnp.asarray(where, bool)
    if where.shape != shape:
        raise ValueError(f"where.shape={where.shape} must equal {shape}")
    return where


def ps_kd_targets(
    onehot: jax.Array, past_probs: jax.Array, epoch, total_epochs: int, *, alpha_T: float = 0.8
) -> jax.Array:
    r"""Progressive self-knowledge-distillation (PS-KD) soft targets.

    .. math::
        \alpha_t = \alpha_T\,\frac{t}{T},\qquad
        y^{(t)} = (1 - \alpha_t)\,y + \alpha_t\,p^{(t-1)}(x),

    where ``p^{(t−1)}`` are the model's own predictions for ``x`` saved at the previous epoch.
    Epoch 0 (or ``α_T = 0``) gives the hard targets. Formula as in the paper (Eq. 3–4); the
    official code uses ``α_T (t + 1)/T``, i.e. the same schedule one epoch earlier.

    Args:
      onehot: ``[..., C]`` hard (or any probability) targets.
      past_probs: ``[..., C]`` predicted probabilities from the previous epoch.
      epoch: current epoch ``t`` in ``[0, T]`` (may be traced).
      total_epochs: ``T > 0``.
      alpha_T: final weight ``α_T ∈ [0, 1]`` of the past predictions (paper: 0.8).

    Returns:
      ``[..., C]`` targets (rows sum to 1 when the inputs' rows do), float32 or float64.

    References:
      Kim et al., "Self-Knowledge Distillation with Progressive Refinement of Targets",
      https://arxiv.org/abs/2006.12000.

    Examples:
      >>> import jax.numpy as jnp
      >>> y = ps_kd_targets(jnp.array([[1.0, 0.0]]), jnp.array([[0.5, 0.5]]), 5, 10)
      >>> print(y)
      [[0.8 0.2]]
    """
    _check_alpha(alpha_T, total_epochs, epoch)
    onehot, past_probs = upcast(jnp.asarray(onehot)), upcast(jnp.asarray(past_probs))
    if onehot.shape != past_probs.shape or onehot.ndim < 1:
        raise ValueError(
            f"onehot.shape={onehot.shape} must equal past_probs.shape={past_probs.shape}"
        )
    alpha = alpha_T * jnp.asarray(epoch, onehot.dtype) / total_epochs
    return (1 - alpha) * onehot + alpha * past_probs


def ps_kd_loss(
    logits: jax.Array,
    labels: jax.Array,
    past_probs: jax.Array,
    epoch,
    total_epochs: int,
    *,
    alpha_T: float = 0.8,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""PS-KD loss: cross-entropy of the current logits against :func:`ps_kd_targets`.

    .. math::
        \ell = -\sum_c y^{(t)}_c \log \mathrm{softmax}(z)_c,\qquad
        \nabla_z \ell = \mathrm{softmax}(z) - y^{(t)}.

    Args:
      logits: ``[..., C]`` current logits.
      labels: ``[...]`` integer classes.
      past_probs: ``[..., C]`` predictions of the previous epoch (no gradient flows into them).
      epoch: current epoch (may be traced).
      total_epochs: ``T > 0``.
      alpha_T: see :func:`ps_kd_targets`.
      where: optional ``[...]`` mask; masked-out examples give 0.

    Returns:
      ``[...]`` per-example losses.

    References:
      Kim et al., "Self-Knowledge Distillation with Progressive Refinement of Targets",
      https://arxiv.org/abs/2006.12000.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[2.0, 0.0]])
      >>> print(ps_kd_loss(z, jnp.array([0]), jnp.array([[0.5, 0.5]]), 0, 10))  # epoch 0: CE
      [0.12692805]
    """
    _check_alpha(alpha_T, total_epochs, epoch)
    logits, labels = upcast(jnp.asarray(logits)), jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must be integers of shape logits.shape[:-1]={logits.shape[:-1]}, "
            f"got {labels.dtype} {labels.shape}"
        )
    past_probs = jax.lax.stop_gradient(upcast(jnp.asarray(past_probs)))
    where = _mask(where, labels.shape)
    if where is not None:
        logits = jnp.where(where[..., None], logits, 0.0)
        past_probs = jnp.where(where[..., None], past_probs, 0.0)
        labels = jnp.where(where, labels, 0)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    targets = ps_kd_targets(onehot, past_probs, epoch, total_epochs, alpha_T=alpha_T)
    loss = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return loss if where is None else jnp.where(where, loss, 0.0)


def _safe_norm(x):
    sq = jnp.sum(jnp.square(x), axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _feature_inputs(student_feat, class_means, labels, where, extra=()):
    student_feat, class_means = upcast(jnp.asarray(student_feat)), jnp.asarray(class_means)
    labels = jnp.asarray(labels)
    if student_feat.ndim != 2 or class_means.ndim != 2:
        raise ValueError(
            f"student_feat [B, D] and class_means [C, D] must be 2-D, got "
            f"{student_feat.shape} and {class_means.shape}"
        )
    if class_means.shape[1] != student_feat.shape[1]:
        raise ValueError(
            f"class_means.shape={class_means.shape} must have D={student_feat.shape[1]} columns"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != student_feat.shape[:1]:
        raise ValueError(f"labels must be [B] integers, got {labels.dtype} {labels.shape}")
    for name, x in extra:
        if jnp.shape(x) != student_feat.shape:
            raise ValueError(f"{name}.shape={jnp.shape(x)} must equal {student_feat.shape}")
    where = _mask(where, labels.shape)
    extra = [upcast(jnp.asarray(x)) for _, x in extra]
    if where is not None:
        student_feat = jnp.where(where[:, None], student_feat, 0.0)
        extra = [jnp.where(where[:, None], x, 0.0) for x in extra]
        labels = jnp.where(where, labels, 0)
    c = upcast(jax.lax.stop_gradient(class_means))[labels]
    norm_c = _safe_norm(c)
    direction = c / jnp.where(norm_c > 0, norm_c, 1.0)[:, None]
    return student_feat, direction, where, extra


def nd_loss(
    student_feat: jax.Array,
    teacher_feat: jax.Array,
    class_means: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""ND (norm-and-direction) distillation loss, one value per example.

    .. math::
        \ell_i = 1 - \frac{\langle f^s_i,\; c_{y_i}/\lVert c_{y_i}\rVert\rangle}
          {\max(\lVert f^s_i\rVert,\ \lVert f^t_i\rVert)}

    with ``c_y`` the teacher's class-mean embedding. While the student feature is shorter than the
    teacher's, the loss is ``1 − proj/‖f^t‖`` and its gradient ``−ĉ_y/‖f^t‖`` points along the
    class mean: it grows the projection (hence the norm) along the class-mean direction; once the
    student is longer, it becomes ``1 − cos(f^s, c_y)``. Formula as in the official code
    (``DirectNormLoss.project_center``, which needs the teacher feature for the max). Add it
    (times a weight, ``nd_loss_factor`` in the official code) to a standard KD loss.

    Args:
      student_feat: ``[B, D]`` student embeddings (penultimate layer, projected to the teacher's
        width).
      teacher_feat: ``[B, D]`` teacher embeddings of the same examples (no gradient).
      class_means: ``[C, D]`` teacher class-mean embeddings (no gradient; a zero mean gives a
        zero direction).
      labels: ``[B]`` integer classes.
      where: optional ``[B]`` mask; masked-out examples give 0.

    Returns:
      ``[B]`` per-example losses.

    References:
      Wang et al., "Improving Knowledge Distillation via Regularizing Feature Norm and Direction",
      https://arxiv.org/abs/2305.17007.

    Examples:
      >>> import jax.numpy as jnp
      >>> s, t, c = jnp.array([[1.0, 0.0]]), jnp.array([[2.0, 0.0]]), jnp.array([[3.0, 0.0]])
      >>> print(nd_loss(s, t, c, jnp.array([0])))
      [0.5]
    """
    student_feat, direction, where, (teacher_feat,) = _feature_inputs(
        student_feat, class_means, labels, where, extra=[("teacher_feat", teacher_feat)]
    )
    teacher_norm = _safe_norm(jax.lax.stop_gradient(teacher_feat))
    denom = jnp.maximum(_safe_norm(student_feat), teacher_norm)
    proj = jnp.sum(student_feat * direction, axis=-1)
    loss = 1 - jnp.where(denom > 0, proj / jnp.where(denom > 0, denom, 1.0), 0.0)
    return loss if where is None else jnp.where(where, loss, 0.0)


def cosine_to_class_mean_loss(
    student_feat: jax.Array,
    class_means: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Cosine distance between student features and the teacher's class mean of their label.

    .. math:: \ell_i = 1 - \cos(f^s_i, c_{y_i})

    (the paper's baseline before the ND loss; a zero feature or class mean gives 1).

    Args:
      student_feat: ``[B, D]`` student embeddings.
      class_means: ``[C, D]`` teacher class-mean embeddings (no gradient).
      labels: ``[B]`` integer classes.
      where: optional ``[B]`` mask; masked-out examples give 0.

    Returns:
      ``[B]`` per-example losses in ``[0, 2]``.

    References:
      Wang et al., "Improving Knowledge Distillation via Regularizing Feature Norm and Direction",
      https://arxiv.org/abs/2305.17007.

    Examples:
      >>> import jax.numpy as jnp
      >>> s, c = jnp.array([[1.0, 1.0]]), jnp.array([[3.0, 0.0]])
      >>> print(cosine_to_class_mean_loss(s, c, jnp.array([0])))
      [0.29289323]
    """
    student_feat, direction, where, _ = _feature_inputs(student_feat, class_means, labels, where)
    norm = _safe_norm(student_feat)
    proj = jnp.sum(student_feat * direction, axis=-1)
    loss = 1 - jnp.where(norm > 0, proj / jnp.where(norm > 0, norm, 1.0), 0.0)
    return loss if where is None else jnp.where(where, loss, 0.0)
