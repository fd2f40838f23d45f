"""Multi-class (and multi-label) classification losses from logits, one value per example.

Every multi-class loss takes ``logits`` of shape ``[..., C]`` (classes on the last axis) and integer
``labels`` of shape ``[...]``, returns per-example values of shape ``[...]`` in float32 (float64
for float64 logits) whatever the logits' dtype, and takes an optional ``where`` mask of the labels'
shape: masked-out examples give 0, with no NaN in values or gradients whatever their logits or
label. Hyperparameters are keyword-only. Reduce with :func:`jaxlab.losses.reduce.weighted_mean`,
whose ``weights=`` also carries class weights (``weights=class_weights[labels]``).
"""

import math

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast


def _prepare(logits, labels, where):
    """Checks shapes/dtypes; upcasts; neutralises masked-out examples (logits 0, label 0)."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim < 1 or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(
            f"logits must be floating with a class axis, got {logits.dtype} {logits.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class indices, got labels.dtype={labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels.shape={labels.shape} must equal logits.shape={logits.shape} without its "
            "last (class) axis"
        )
    logits = upcast(logits)
    if where is not None:
        where = _example_mask(where, labels.shape)
        logits = jnp.where(where[..., None], logits, 0.0)
        labels = jnp.where(where, labels, 0)
    return logits, labels, where


def _example_mask(where, shape):
    where = jnp.asarray(where)
    if where.shape != shape:
        raise ValueError(f"where.shape={where.shape} must equal labels.shape={shape}")
    return where.astype(bool)


def _masked(loss, where):
    return loss if where is None else jnp.where(where, loss, 0.0)


def _take(x, labels):
    return jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _one_hot(labels, num_classes):
    return jax.nn.one_hot(labels, num_classes, dtype=bool)


def _target_log_prob(logits, labels):
    """log p_y and 1 − p_y, the latter as Σ_{j≠y} p_j (exact even where p_y rounds to 1)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    rest = jnp.where(_one_hot(labels, logits.shape[-1]), 0.0, jnp.exp(log_probs))
    return _take(log_probs, labels), jnp.sum(rest, axis=-1)


def _pow(x, gamma):
    """``x ** gamma`` for x ≥ 0 with 0**0 = 1 and a zero (not NaN) gradient at x = 0."""
    positive = x > 0
    return jnp.where(
        positive, jnp.where(positive, x, 1.0) ** gamma, jnp.where(gamma == 0, 1.0, 0.0)
    )


def _check(name, value, ok, what):
    if isinstance(value, int | float) and not ok(value):
        raise ValueError(f"{name} must be {what}, got {name}={value}")


def _is_zero(value):
    return isinstance(value, int | float) and value == 0


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, where=None) -> jax.Array:
    r"""Softmax cross-entropy with integer labels and optional label smoothing.

    .. math::
        \ell = (1-\alpha)\,(\mathrm{lse}(z) - z_y) + \alpha\,(\mathrm{lse}(z) - \bar z),
        \qquad \bar z = \tfrac1C \textstyle\sum_j z_j,

    i.e. cross-entropy against ``(1 − α)·onehot(y) + α/C``. Equals
    ``optax.losses.softmax_cross_entropy_with_integer_labels`` (α = 0) and
    ``optax.losses.softmax_cross_entropy(logits, optax.losses.smooth_labels(onehot, α))``.

    Args:
      logits: ``[..., C]`` unnormalised log-probabilities.
      labels: ``[...]`` integer classes in ``[0, C)``.
      label_smoothing: α ∈ [0, 1] (Szegedy et al., https://arxiv.org/abs/1512.00567).
      where: ``[...]`` per-example mask, or ``[..., C]`` class mask as in optax (masked-out
        classes take no probability and no smoothing mass; examples with no class give 0).

    Returns:
      ``[...]`` per-example losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
      >>> loss = softmax_cross_entropy(logits, jnp.array([0, 1]), label_smoothing=0.1)
      >>> print([round(float(x), 4) for x in loss])
      [0.3995, 2.8051]
    """
    _check("label_smoothing", label_smoothing, lambda a: 0 <= a <= 1, "in [0, 1]")
    class_mask = None
    if where is not None and jnp.shape(where) == jnp.shape(logits):
        class_mask, where = jnp.asarray(where, bool), jnp.any(where, axis=-1)
    logits, labels, where = _prepare(logits, labels, where)
    if class_mask is not None:  # an example with no valid class uses all (then gives 0)
        class_mask = class_mask | ~where[..., None]
    lse = jax.nn.logsumexp(logits, axis=-1, where=class_mask)
    loss = lse - _take(logits, labels)
    if not _is_zero(label_smoothing):
        uniform = lse - jnp.mean(logits, axis=-1, where=class_mask)
        loss = (1 - label_smoothing) * loss + label_smoothing * uniform
    return _masked(loss, where)


def z_loss(logits, *, coefficient=1e-4, where=None) -> jax.Array:
    r"""Auxiliary z-loss ``coefficient · logsumexp(logits)²`` (PaLM; Wortsman et al. 2023).

    .. math:: \ell = c\,\big(\log \textstyle\sum_j e^{z_j}\big)^2,
        \qquad \nabla_z \ell = 2c\,\log Z\;\mathrm{softmax}(z)

    Its gradient lowers (raises) the logits in proportion to their probabilities until
    log Z = 0, keeping the logits close to normalised log-probabilities; add it to
    :func:`softmax_cross_entropy`. Default c = 1e-4 (both papers).

    Args:
      logits: ``[..., C]``.
      coefficient: c ≥ 0.
      where: ``[...]`` per-example mask or ``[..., C]`` class mask (as in
        :func:`softmax_cross_entropy`).

    Returns:
      ``[...]`` per-example values.

    References:
      Chowdhery et al., `PaLM <https://arxiv.org/abs/2204.02311>`_, 2022; Wortsman et al.,
      `Small-scale proxies for large-scale Transformer training instabilities
      <https://arxiv.org/abs/2309.14322>`_, 2023.
    """
    _check("coefficient", coefficient, lambda c: c >= 0, ">= 0")
    logits = jnp.asarray(logits)
    labels = jnp.zeros(logits.shape[:-1], jnp.int32)
    class_mask = None
    if where is not None and jnp.shape(where) == logits.shape:
        class_mask, where = jnp.asarray(where, bool), jnp.any(where, axis=-1)
    logits, _, where = _prepare(logits, labels, where)
    if class_mask is not None:
        class_mask = class_mask | ~where[..., None]
    lse = jax.nn.logsumexp(logits, axis=-1, where=class_mask)
    return _masked(coefficient * lse**2, where)


def softmax_focal_loss(logits, labels, *, gamma=2.0, where=None) -> jax.Array:
    r"""Multi-class focal loss ``−(1 − p_y)^γ log p_y`` (softmax probabilities).

    γ = 0 is cross-entropy; the default γ = 2 is the paper's. The α-balancing of the paper is a
    per-class weight: pass ``weights=alpha[labels]`` to ``weighted_mean``. The sigmoid
    (detection) form is ``optax.losses.sigmoid_focal_loss``.

    Lin et al., `Focal Loss for Dense Object Detection <https://arxiv.org/abs/1708.02002>`_, 2017.
    """
    _check("gamma", gamma, lambda g: g >= 0, ">= 0")
    logits, labels, where = _prepare(logits, labels, where)
    log_p, one_minus_p = _target_log_prob(logits, labels)
    return _masked(-_pow(one_minus_p, gamma) * log_p, where)


def dual_focal_loss(logits, labels, *, gamma=2.0, where=None) -> jax.Array:
    r"""Dual focal loss ``−(1 − p_y + p_j)^γ log p_y`` for calibration.

    ``p_j`` is the largest probability strictly below ``p_y`` (the runner-up after the target;
    0 when none is below), as in the official code (github.com/Linwei94/DualFocalLoss), so the
    factor lies between the focal factor ``1 − p_y`` and 1: focal ≤ dual focal ≤ CE. γ = 0 is
    cross-entropy; the paper tunes γ per dataset (no single default), 2.0 here.

    Tao, Dong & Xu, `Dual Focal Loss for Calibration <https://arxiv.org/abs/2305.13665>`_, 2023.
    """
    _check("gamma", gamma, lambda g: g >= 0, ">= 0")
    logits, labels, where = _prepare(logits, labels, where)
    log_p, one_minus_p = _target_log_prob(logits, labels)
    probs = jax.nn.softmax(logits, axis=-1)
    p_y = _take(probs, labels)
    runner_up = jnp.max(jnp.where(probs < p_y[..., None], probs, 0.0), axis=-1)
    return _masked(-_pow(one_minus_p + runner_up, gamma) * log_p, where)


def poly1_cross_entropy(logits, labels, *, epsilon=1.0, where=None) -> jax.Array:
    r"""Poly-1 loss ``−log p_y + ε (1 − p_y)``: cross-entropy with its first Taylor term moved.

    ε = 0 is cross-entropy; ε = −1 cancels the leading term ``(1 − p_y)`` of
    ``−log p_y = Σ_j (1 − p_y)^j / j``. Equals ``optax.losses.poly_loss_cross_entropy`` on one-hot
    labels (whose default is ε = 2; the paper's default for classification is ε = 1).

    Leng et al., `PolyLoss <https://arxiv.org/abs/2204.12511>`_, 2022.
    """
    return poly_cross_entropy(logits, labels, epsilons=(epsilon,), where=where)


def poly_cross_entropy(logits, labels, *, epsilons, where=None) -> jax.Array:
    r"""Poly-N loss ``−log p_y + Σ_{j=1}^N ε_j (1 − p_y)^j`` (PolyLoss, Leng et al. 2022).

    ``epsilons`` = (ε_1, …, ε_N) perturb the first N coefficients ``1/j`` of the expansion
    ``−log p_y = Σ_j (1 − p_y)^j / j``; ε_j = −1/j for all j ≤ N drops them (leaving the tail).
    """
    if len(epsilons) < 1:
        raise ValueError(f"epsilons must be a non-empty sequence, got epsilons={epsilons}")
    logits, labels, where = _prepare(logits, labels, where)
    log_p, x = _target_log_prob(logits, labels)
    poly = 0.0
    for eps in reversed(tuple(epsilons)):  # Horner: Σ ε_j x^j
        poly = (poly + eps) * x
    return _masked(-log_p + poly, where)


def squentropy(logits, labels, *, where=None) -> jax.Array:
    r"""Squentropy: cross-entropy plus the mean square of the wrong-class logits.

    .. math:: \ell = -\log p_y + \tfrac{1}{C-1} \textstyle\sum_{j \ne y} z_j^2

    No hyperparameters. Hui, Belkin & Wright, `Cut your Losses with Squentropy
    <https://arxiv.org/abs/2302.03952>`_, 2023.
    """
    num_classes = jnp.shape(logits)[-1]
    if num_classes < 2:
        raise ValueError(f"squentropy needs at least 2 classes, got logits.shape={logits.shape}")
    logits, labels, where = _prepare(logits, labels, where)
    log_p, _ = _target_log_prob(logits, labels)
    wrong = jnp.where(_one_hot(labels, num_classes), 0.0, logits**2)
    return _masked(-log_p + jnp.sum(wrong, axis=-1) / (num_classes - 1), where)


def ldam_margins(class_counts, *, max_margin=0.5) -> jax.Array:
    """LDAM margins ``Δ_j ∝ n_j^{−1/4}`` scaled so that the largest (rarest class) is max_margin."""
    _check("max_margin", max_margin, lambda m: m >= 0, ">= 0")
    margins = upcast(jnp.asarray(class_counts, jnp.float32)) ** -0.25
    return margins * (max_margin / jnp.max(margins))


def ldam_loss(logits, labels, *, class_counts, max_margin=0.5, scale=30.0, where=None) -> jax.Array:
    r"""Label-distribution-aware margin loss: cross-entropy on ``s·(z − Δ_y e_y)``.

    .. math:: \ell = -\log \frac{e^{s(z_y - \Delta_y)}}{e^{s(z_y - \Delta_y)}
        + \sum_{j \ne y} e^{s z_j}}, \qquad \Delta_j = \frac{C_{\max}}{n_j^{1/4}}

    as in the official code (github.com/kaidic/LDAM-DRW): defaults max margin 0.5 and s = 30,
    meant for cosine logits (normalised features and weights); Δ = 0, s = 1 is cross-entropy.
    For deferred re-weighting (DRW) pass ``weights=drw_weights(class_counts, epoch)[labels]`` to
    ``weighted_mean`` (the official ``F.cross_entropy(weight=...)`` is that weighted mean).

    Args:
      logits: ``[..., C]``; labels: ``[...]``.
      class_counts: ``[C]`` positive training-set counts n_j.
      max_margin: the margin of the rarest class.
      scale: s > 0.
      where: ``[...]`` per-example mask.

    Cao et al., `Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss
    <https://arxiv.org/abs/1906.07413>`_, 2019.
    """
    _check("scale", scale, lambda s: s > 0, "> 0")
    num_classes = jnp.shape(logits)[-1]
    if jnp.shape(class_counts) != (num_classes,):
        raise ValueError(
            f"class_counts must have shape ({num_classes},), got {jnp.shape(class_counts)}"
        )
    logits, labels, where = _prepare(logits, labels, where)
    margins = ldam_margins(class_counts, max_margin=max_margin)[labels]
    shifted = logits - jnp.where(_one_hot(labels, num_classes), margins[..., None], 0.0)
    return softmax_cross_entropy(scale * shifted, labels, where=where)


def class_balanced_weights(class_counts, *, beta=0.9999) -> jax.Array:
    r"""Class-balanced weights ``(1 − β)/(1 − β^{n_j})`` normalised to sum to C (Cui et al. 2019).

    The inverse effective number of samples (https://arxiv.org/abs/1901.05555); β = 0 gives all
    ones, β → 1 approaches inverse frequency.
    """
    _check("beta", beta, lambda b: 0 <= b < 1, "in [0, 1)")
    counts = upcast(jnp.asarray(class_counts, jnp.float32))
    weights = (1 - beta) / -jnp.expm1(counts * jnp.log(beta))  # β = 0: log = −inf → weight 1
    return weights * (counts.shape[0] / jnp.sum(weights))


def drw_weights(class_counts, epoch, *, defer_until=160, beta=0.9999) -> jax.Array:
    """Deferred re-weighting (LDAM-DRW): ones before ``defer_until``, class-balanced from then.

    The official schedule (200 epochs, switch at 160, β = 0.9999); ``epoch`` may be traced.
    """
    balanced = class_balanced_weights(class_counts, beta=beta)
    return jnp.where(jnp.asarray(epoch) >= defer_until, balanced, jnp.ones_like(balanced))


def comp_sum_loss(logits, labels, *, tau, where=None) -> jax.Array:
    r"""Comp-sum loss ``Φ^τ(u)`` of ``u = Σ_{j≠y} e^{z_j − z_y} = 1/p_y − 1``.

    .. math:: \Phi^\tau(u) = \begin{cases} \log(1+u) & \tau = 1 \\
        \frac{(1+u)^{1-\tau} - 1}{1-\tau} & \tau \ne 1 \end{cases}

    τ = 0 is the sum-exponential loss u, τ = 1 cross-entropy, τ ∈ (1, 2) generalised
    cross-entropy with q = τ − 1, τ = 2 the mean absolute error ``1 − p_y``. Computed as
    ``−log p_y · exprel((τ − 1) log p_y)``, continuous in τ (also traced τ). For τ < 1 the loss
    grows like ``p_y^{τ−1}`` and overflows to inf once log p_y ≲ −88/(1 − τ) in float32.

    Mao, Mohri & Zhong, `Cross-Entropy Loss Functions: Theoretical Analysis and Applications
    <https://arxiv.org/abs/2304.07288>`_, 2023.
    """
    _check("tau", tau, lambda t: t >= 0, ">= 0")
    logits, labels, where = _prepare(logits, labels, where)
    log_p, _ = _target_log_prob(logits, labels)
    a = (tau - 1) * log_p
    small = a == 0
    safe = jnp.where(small, 1.0, a)
    exprel = jnp.where(small, 1.0, jnp.expm1(safe) / safe)  # (e^a − 1)/a
    return _masked(-log_p * exprel, where)


def ldr_kl_loss(
    logits, labels, *, lam=1.0, margin=1.0, normalize_scores=False, where=None
) -> jax.Array:
    r"""Label-distributionally robust loss with a KL penalty (LDR-KL).

    .. math:: \ell = \max_{p \in \Delta} \sum_k p_k (\delta_{ky} + f_k - f_y)
        - \lambda\,\mathrm{KL}(p \,\|\, \tfrac1C)
        = \lambda \log \tfrac1C \sum_k e^{(\delta_{ky} + f_k - f_y)/\lambda},
        \qquad \delta_{ky} = c\,[k \ne y]

    c = 0, λ = 1 gives cross-entropy − log C; λ → 0 the Crammer–Singer hinge
    ``max_k(δ_ky + f_k − f_y)``; ℓ ≥ −λ log C for c ≥ 0. ``normalize_scores=True`` first maps the
    logits to ``f = softplus(z)/mean(softplus(z))`` as the official ``LDRLoss_V1`` does
    (github.com/Optimization-AI/ICML2023_LDR, whose margin default varies, 0.1–2.0, by script).

    Zhu, Ying & Yang, `Label Distributionally Robust Losses for Multi-class Classification
    <https://arxiv.org/abs/2112.14869>`_, 2023.
    """
    _check("lam", lam, lambda x: x > 0, "> 0")
    logits, labels, where = _prepare(logits, labels, where)
    num_classes = logits.shape[-1]
    if normalize_scores:
        logits = jax.nn.softplus(logits)
        logits = logits / jnp.mean(logits, axis=-1, keepdims=True)
    delta = jnp.where(_one_hot(labels, num_classes), 0.0, margin)
    scores = (delta + logits - _take(logits, labels)[..., None]) / lam
    return _masked(lam * (jax.nn.logsumexp(scores, axis=-1) - math.log(num_classes)), where)


def asymmetric_loss(
    logits, targets, *, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, where=None
) -> jax.Array:
    r"""Asymmetric loss (ASL) for multi-label classification with sigmoid logits.

    .. math:: \ell = -\sum_k \big[y_k (1-p_k)^{\gamma_+} \log p_k
        + (1-y_k)\, p_{m,k}^{\gamma_-} \log(1 - p_{m,k})\big],
        \qquad p = \sigma(z),\; p_m = \max(p - m, 0)

    Negatives with p ≤ m contribute exactly 0 (and no gradient). γ+ = γ− = m = 0 is binary
    cross-entropy summed over labels (``optax.losses.sigmoid_binary_cross_entropy``). Defaults
    are the paper's (γ+ = 0, γ− = 4, m = 0.05); the official code
    (github.com/Alibaba-MIIL/ASL) clamps ``log`` at 1e-8, this uses ``log_sigmoid`` instead.

    Args:
      logits: ``[..., K]`` one logit per label.
      targets: ``[..., K]`` in {0, 1} (soft targets interpolate).
      gamma_pos, gamma_neg: focusing exponents ≥ 0; clip: the probability margin m ∈ [0, 1).
      where: ``[...]`` per-example mask.

    Returns:
      ``[...]``: the sum over the K labels.

    Ridnik et al., `Asymmetric Loss For Multi-Label Classification
    <https://arxiv.org/abs/2009.14119>`_, 2021.
    """
    for name, value in (("gamma_pos", gamma_pos), ("gamma_neg", gamma_neg)):
        _check(name, value, lambda g: g >= 0, ">= 0")
    _check("clip", clip, lambda m: 0 <= m < 1, "in [0, 1)")
    logits, targets = jnp.asarray(logits), jnp.asarray(targets)
    if targets.shape != logits.shape:
        raise ValueError(f"targets.shape={targets.shape} must equal logits.shape={logits.shape}")
    logits, _, where = _prepare(logits, jnp.zeros(logits.shape[:-1], jnp.int32), where)
    targets = upcast(targets.astype(jnp.promote_types(targets.dtype, jnp.float32)))
    if _is_zero(clip):
        log_q, p_m = jax.nn.log_sigmoid(-logits), jax.nn.sigmoid(logits)
    else:
        q = jnp.minimum(jax.nn.sigmoid(-logits) + clip, 1.0)  # 1 − p_m ≥ m > 0
        log_q, p_m = jnp.log(q), 1.0 - q
    pos = _pow(jax.nn.sigmoid(-logits), gamma_pos) * jax.nn.log_sigmoid(logits)
    neg = _pow(p_m, gamma_neg) * log_q
    return _masked(-jnp.sum(targets * pos + (1 - targets) * neg, axis=-1), where)


def spherical_z_loss(logits, labels, *, a, b, where=None) -> jax.Array:
    r"""The Z-loss of the spherical family: a softplus of the target's z-score.

    .. math:: \ell = \tfrac1a \log\big(1 + e^{a (b - \zeta_y)}\big), \qquad
        \zeta = \frac{z - \mu(z)}{\sigma(z)}

    with μ, σ the mean and population standard deviation over the C logits; invariant to adding a
    constant to, or positively rescaling, all logits (σ = 0 gives ζ = 0). ``a > 0`` and ``b`` are
    tuned per task (no default). Not to be confused with :func:`z_loss`.

    de Brébisson & Vincent, `The Z-loss: a shift and scale invariant classification loss belonging
    to the Spherical Family <https://arxiv.org/abs/1604.08859>`_, 2016.
    """
    _check("a", a, lambda x: x > 0, "> 0")
    logits, labels, where = _prepare(logits, labels, where)
    centered = logits - jnp.mean(logits, axis=-1, keepdims=True)
    var = jnp.mean(centered**2, axis=-1)
    positive = var > 0
    inv_std = jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, var, 1.0)), 0.0)
    zeta = _take(centered, labels) * inv_std
    return _masked(jax.nn.softplus(a * (b - zeta)) / a, where)
