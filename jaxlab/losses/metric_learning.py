"""Metric-learning losses on a labelled batch of embeddings: pair, triplet and softmax losses,
I-Con's neighbourhood-distribution loss, and SimpleX's cosine contrastive loss.

The labelled losses take ``(embeddings [B, D], labels [B], *, ..., where=None)`` and return
``(loss, per_anchor)``: the scalar loss with the defaults and the reduction of
pytorch-metric-learning 2.9 (PML), and a ``[B]`` vector of per-anchor values whose relation to
the scalar each docstring states. Positives of anchor ``i`` are the other examples with its
label, negatives those with another label; ``where`` drops examples entirely (they are neither
anchors nor positives nor negatives). Similarities and distances are computed in float32
(float64 for float64 inputs) on L2-normalised embeddings, as PML's default
``LpDistance(normalize_embeddings=True)`` and ``CosineSimilarity`` do.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab._tree import upcast

_NORM_EPS = 1e-12  # as torch.nn.functional.normalize


def _prepare(embeddings, labels, where):
    x = upcast(jnp.asarray(embeddings))
    labels = jnp.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"embeddings must have shape [batch, dim], got embeddings.shape={x.shape}")
    if labels.shape != x.shape[:1]:
        raise ValueError(f"labels must have shape {x.shape[:1]}, got labels.shape={labels.shape}")
    valid = jnp.ones(x.shape[:1], bool) if where is None else jnp.asarray(where, bool)
    if valid.shape != x.shape[:1]:
        raise ValueError(f"where must have shape {x.shape[:1]}, got where.shape={valid.shape}")
    return x, labels, valid


def _normalize(x):
    """x / max(‖x‖, 1e-12) row-wise, with a NaN-free gradient at x = 0."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.where(sq > 0, sq, 1.0))
    return x / jnp.maximum(jnp.where(sq > 0, norm, 0.0), _NORM_EPS)


def _cosine(x):
    xn = _normalize(x)
    return xn @ xn.T


def _distance(x):
    """Euclidean distance matrix of the normalised rows; gradient 0 (not NaN) where d = 0."""
    xn = _normalize(x)
    sq = jnp.sum(xn * xn, axis=-1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (xn @ xn.T), 0.0)
    pos = d2 > 1e-12
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, d2, 1.0)), 0.0)


def _pair_masks(labels, valid):
    same = labels[:, None] == labels[None, :]
    both = valid[:, None] & valid[None, :]
    eye = jnp.eye(labels.shape[0], dtype=bool)
    return same & both & ~eye, ~same & both


def _masked_logsumexp(x, mask, *, add_one=False):
    """log(Σ_{mask} e^x [+ 1]) per row; 0 for rows with an empty mask (as PML's logsumexp)."""
    neg = jnp.finfo(x.dtype).min
    x = jnp.where(mask, x, neg)
    if add_one:
        x = jnp.concatenate([x, jnp.zeros((x.shape[0], 1), x.dtype)], axis=1)
    return jnp.where(jnp.any(mask, axis=1), jax.nn.logsumexp(x, axis=1), 0.0)


def _mean_nonzero(values, mask):
    """Mean of the entries of ``values`` (≥ 0) that are > 0 inside ``mask``; 0 when none are."""
    keep = mask & (values > 0)
    count = jnp.sum(keep)
    return jnp.sum(jnp.where(keep, values, 0.0)) / jnp.maximum(count, 1)


def _check_positive(name, value):
    """Eager check of a static hyperparameter; traced (learned) values are not checked."""
    if isinstance(value, int | float) and not value > 0:
        raise ValueError(f"{name} must be > 0, got {name}={value}")


def contrastive_loss(embeddings, labels, *, pos_margin=0.0, neg_margin=1.0, where=None):
    """Contrastive (pair) loss on Euclidean distances of normalised embeddings (PML defaults).

    .. math::
        ℓ^+_{ij} = [d_{ij} - m_+]_+ \\ (j ∈ P(i)),\\qquad ℓ^-_{ij} = [m_- - d_{ij}]_+ \\ (j ∈ N(i)),

    ``loss`` = mean of the non-zero ``ℓ⁺`` over all ordered positive pairs + mean of the non-zero
    ``ℓ⁻`` over all ordered negative pairs (each term 0 if it has no non-zero pair), as PML's
    ``ContrastiveLoss`` with ``AvgNonZeroReducer``. ``per_anchor[i] = Σ_j ℓ⁺_ij + Σ_j ℓ⁻_ij``.

    Args:
      embeddings: ``[B, D]``.
      labels: ``[B]`` integer class labels.
      pos_margin: ``m₊``, distance below which positives are not penalised.
      neg_margin: ``m₋``, distance above which negatives are not penalised.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector (0 for masked-out examples).

    References:
      Hadsell, Chopra & LeCun, Dimensionality Reduction by Learning an Invariant Mapping,
      CVPR 2006; defaults of pytorch-metric-learning ``ContrastiveLoss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
      >>> loss, per_anchor = contrastive_loss(x, jnp.array([0, 0, 1, 1]))
      >>> float(loss)  # distance √2 between classes exceeds neg_margin = 1
      0.0
    """
    x, labels, valid = _prepare(embeddings, labels, where)
    d = _distance(x)
    pos, neg = _pair_masks(labels, valid)
    lp = jnp.where(pos, jax.nn.relu(d - pos_margin), 0.0)
    ln = jnp.where(neg, jax.nn.relu(neg_margin - d), 0.0)
    loss = _mean_nonzero(lp, pos) + _mean_nonzero(ln, neg)
    return loss, jnp.sum(lp, axis=1) + jnp.sum(ln, axis=1)


def triplet_margin_loss(embeddings, labels, *, margin=0.05, where=None):
    """Triplet margin loss over all valid triplets (PML ``TripletMarginLoss`` defaults).

    .. math:: ℓ_{apn} = [d_{ap} - d_{an} + m]_+,\\quad p ∈ P(a),\\ n ∈ N(a),

    with ``d`` the Euclidean distance of L2-normalised embeddings. ``loss`` = mean of the
    non-zero ``ℓ_apn`` over all triplets (``AvgNonZeroReducer``; 0 if none is non-zero), i.e.
    ``Σ_a per_anchor[a] / #{ℓ_apn > 0}`` with ``per_anchor[a] = Σ_{p,n} ℓ_apn``.

    Args:
      embeddings: ``[B, D]``.
      labels: ``[B]`` integer class labels.
      margin: ``m``.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector.

    References:
      Weinberger & Saul, Distance Metric Learning for Large Margin Nearest Neighbor
      Classification, JMLR 2009; Schroff et al., `FaceNet <https://arxiv.org/abs/1503.03832>`_.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> loss, _ = triplet_margin_loss(x, jnp.array([0, 0, 1]))
      >>> float(loss)
      0.0
    """
    x, labels, valid = _prepare(embeddings, labels, where)
    d = _distance(x)
    pos, neg = _pair_masks(labels, valid)
    mask = pos[:, :, None] & neg[:, None, :]
    trip = jnp.where(mask, jax.nn.relu(d[:, :, None] - d[:, None, :] + margin), 0.0)
    return _mean_nonzero(trip, mask), jnp.sum(trip, axis=(1, 2))


def batch_hard_triplet_loss(embeddings, labels, *, margin=0.05, soft=False, where=None):
    """Batch-hard triplet loss: each anchor's farthest positive against its closest negative.

    .. math::
        ℓ_a = [\\max_{p∈P(a)} d_{ap} - \\min_{n∈N(a)} d_{an} + m]_+
        \\quad\\text{or (soft)}\\quad \\log(1 + e^{\\max_p d_{ap} - \\min_n d_{an}}),

    on Euclidean distances of L2-normalised embeddings; anchors without a positive or a negative
    have ``per_anchor = 0``. ``loss`` = mean of ``per_anchor`` over the anchors where it is
    non-zero (PML's ``TripletMarginLoss(margin)`` with ``BatchHardMiner`` and
    ``AvgNonZeroReducer``; the soft variant equals ``TripletMarginLoss(margin=0,
    smooth_loss=True)`` and ignores ``margin``).

    Args:
      embeddings: ``[B, D]``.
      labels: ``[B]`` integer class labels.
      margin: hinge margin ``m`` (unused when ``soft``).
      soft: use the soft-margin ``softplus`` of Hermans et al.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector.

    References:
      Hermans, Beyer & Leibe, `In Defense of the Triplet Loss for Person Re-Identification
      <https://arxiv.org/abs/1703.07737>`_, 2017.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> loss, _ = batch_hard_triplet_loss(x, jnp.array([0, 0, 1, 1]))
      >>> float(loss)
      0.0
    """
    x, labels, valid = _prepare(embeddings, labels, where)
    d = _distance(x)
    pos, neg = _pair_masks(labels, valid)
    has = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
    d_ap = jnp.max(jnp.where(pos, d, -jnp.inf), axis=1)
    d_an = jnp.min(jnp.where(neg, d, jnp.inf), axis=1)
    gap = jnp.where(has, d_ap - d_an, 0.0)
    per_anchor = jax.nn.softplus(gap) if soft else jax.nn.relu(gap + margin)
    per_anchor = jnp.where(has, per_anchor, 0.0)
    return _mean_nonzero(per_anchor, has), per_anchor


def circle_loss(embeddings, labels, *, m=0.4, gamma=80.0, where=None):
    """Circle loss on cosine similarities with pair-wise labels (PML ``CircleLoss`` defaults).

    .. math::
        ℓ_i = \\operatorname{softplus}\\Big(\\log\\sum_{p∈P(i)} e^{-γ α_p (s_{ip} - Δ_p)}
        + \\log\\sum_{n∈N(i)} e^{γ α_n (s_{in} - Δ_n)}\\Big),

    with ``α_p = [1 + m − s_ip]_+``, ``α_n = [s_in + m]_+`` (no gradient through the α),
    ``Δ_p = 1 − m``, ``Δ_n = m``; ``ℓ_i = 0`` for anchors without a positive or a negative.
    ``loss`` = mean of ``per_anchor = ℓ`` over the anchors where it is non-zero.

    Args:
      embeddings: ``[B, D]``.
      labels: ``[B]`` integer class labels.
      m: relaxation margin.
      gamma: scale ``γ``.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector.

    References:
      Sun et al., `Circle Loss: A Unified Perspective of Pair Similarity Optimization
      <https://arxiv.org/abs/2002.10857>`_, CVPR 2020.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
      >>> loss, per_anchor = circle_loss(x, jnp.array([0, 0, 1, 1]))
      >>> per_anchor.shape
      (4,)
    """
    x, labels, valid = _prepare(embeddings, labels, where)
    s = _cosine(x)
    pos, neg = _pair_masks(labels, valid)
    sg = lax.stop_gradient(s)
    logit_p = -gamma * jax.nn.relu(1 + m - sg) * (s - (1 - m))
    logit_n = gamma * jax.nn.relu(sg + m) * (s - m)
    has = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
    z = _masked_logsumexp(logit_p, pos) + _masked_logsumexp(logit_n, neg)
    per_anchor = jnp.where(has, jax.nn.softplus(z), 0.0)
    return _mean_nonzero(per_anchor, has), per_anchor


def multi_similarity_loss(embeddings, labels, *, alpha=2.0, beta=50.0, base=0.5, where=None):
    """Multi-similarity loss (without its pair miner) on cosine similarities, PML defaults.

    .. math::
        ℓ_i = \\frac1α \\log\\Big(1 + \\sum_{p∈P(i)} e^{-α(s_{ip} - λ)}\\Big)
        + \\frac1β \\log\\Big(1 + \\sum_{n∈N(i)} e^{β(s_{in} - λ)}\\Big),\\quad λ = \\text{base}.

    ``loss`` = mean of ``per_anchor = ℓ`` over all (unmasked) anchors (PML's ``MeanReducer``).

    Args:
      embeddings: ``[B, D]``.
      labels: ``[B]`` integer class labels.
      alpha: positive scale ``α``.
      beta: negative scale ``β``.
      base: similarity offset ``λ``.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector.

    References:
      Wang et al., `Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning
      <https://arxiv.org/abs/1904.06627>`_, CVPR 2019.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
      >>> loss, per_anchor = multi_similarity_loss(x, jnp.array([0, 0, 1]))
      >>> round(float(per_anchor[0]), 4)  # log(1 + e^{-1}) / 2 + log(1 + e^{-75}) / 50
      0.1566
    """
    _check_positive("alpha", alpha)
    _check_positive("beta", beta)
    x, labels, valid = _prepare(embeddings, labels, where)
    s = _cosine(x)
    pos, neg = _pair_masks(labels, valid)
    lp = _masked_logsumexp(alpha * (base - s), pos, add_one=True) / alpha
    ln = _masked_logsumexp(beta * (s - base), neg, add_one=True) / beta
    per_anchor = jnp.where(valid, lp + ln, 0.0)
    return jnp.sum(per_anchor) / jnp.maximum(jnp.sum(valid), 1), per_anchor


def supervised_contrastive_loss(embeddings, labels, *, temperature=0.1, where=None):
    """Supervised contrastive loss (SupCon, ``L_out``) on cosine similarities, PML defaults.

    .. math::
        ℓ_i = -\\frac{1}{|P(i)|}\\sum_{p∈P(i)} \\log
        \\frac{e^{s_{ip}/τ}}{\\sum_{a∈P(i)∪N(i)} e^{s_{ia}/τ}},

    ``ℓ_i = 0`` for anchors without positives, and all ``ℓ = 0`` if the batch has no positive
    pair or no negative pair (as PML). ``loss`` = mean of ``per_anchor = ℓ`` over the anchors
    where it is non-zero (``AvgNonZeroReducer``). Base temperature = temperature (PML).

    Args:
      embeddings: ``[B, D]`` (stack the views of each example as separate rows).
      labels: ``[B]`` integer class labels.
      temperature: ``τ``.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector.

    References:
      Khosla et al., `Supervised Contrastive Learning <https://arxiv.org/abs/2004.11362>`_,
      NeurIPS 2020.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> loss, per_anchor = supervised_contrastive_loss(x, jnp.array([0, 0, 1]))
      >>> round(float(per_anchor[0]), 5)  # log(1 + e^{-10})
      5e-05
    """
    _check_positive("temperature", temperature)
    x, labels, valid = _prepare(embeddings, labels, where)
    logits = _cosine(x) / temperature
    pos, neg = _pair_masks(labels, valid)
    log_prob = logits - _masked_logsumexp(logits, pos | neg)[:, None]
    n_pos = jnp.sum(pos, axis=1)
    per_anchor = -jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(n_pos, 1)
    per_anchor = jnp.where(jnp.any(pos) & jnp.any(neg), per_anchor, 0.0)
    return _mean_nonzero(per_anchor, n_pos > 0), per_anchor


def ntxent_loss(embeddings, labels, *, temperature=0.07, where=None):
    """NT-Xent / InfoNCE over every positive pair of a labelled batch (PML ``NTXentLoss``).

    .. math::
        ℓ_{ip} = -\\log\\frac{e^{s_{ip}/τ}}{e^{s_{ip}/τ} + \\sum_{n∈N(i)} e^{s_{in}/τ}},
        \\quad p ∈ P(i),

    on cosine similarities; other positives of ``i`` are not in the denominator. ``loss`` =
    mean of ``ℓ_ip`` over all ordered positive pairs (0 if the batch has no positive or no
    negative pair), i.e. ``Σ_i per_anchor[i] / Σ_i |P(i)|`` with
    ``per_anchor[i] = Σ_{p∈P(i)} ℓ_ip``. With two views per instance labelled by instance,
    this is SimCLR's loss.

    Args:
      embeddings: ``[B, D]``.
      labels: ``[B]`` integer labels (instance ids for SimCLR).
      temperature: ``τ``.
      where: optional ``[B]`` boolean mask of examples to use.

    Returns:
      ``(loss, per_anchor)``: a scalar and a ``[B]`` vector.

    References:
      Chen et al., `A Simple Framework for Contrastive Learning of Visual Representations
      <https://arxiv.org/abs/2002.05709>`_, ICML 2020.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
      >>> loss, _ = ntxent_loss(x, jnp.array([0, 0, 1, 1]), temperature=1.0)
      >>> round(float(loss), 4)  # log(1 + 2 e^{-1}): two negatives at cosine 0
      0.5514
    """
    _check_positive("temperature", temperature)
    x, labels, valid = _prepare(embeddings, labels, where)
    logits = _cosine(x) / temperature
    pos, neg = _pair_masks(labels, valid)
    neg_lse = _masked_logsumexp(logits, neg)
    has_neg = jnp.any(neg, axis=1)
    # log(e^{s_ip} + Σ_n e^{s_in}) for each pair (i, p); without negatives it is s_ip itself.
    denom = jnp.where(has_neg[:, None], jnp.logaddexp(logits, neg_lse[:, None]), logits)
    pair = jnp.where(pos, denom - logits, 0.0)
    pair = jnp.where(jnp.any(pos) & jnp.any(neg), pair, 0.0)
    per_anchor = jnp.sum(pair, axis=1)
    return jnp.sum(per_anchor) / jnp.maximum(jnp.sum(pos), 1), per_anchor


# --- I-Con: neighbourhood distributions -----------------------------------------------------------


def icon_loss(embeddings, target, *, temperature, where=None):
    """I-Con: KL divergence from a supervisory to the learned neighbourhood distribution.

    .. math::
        ℓ_i = \\mathrm{KL}\\big(p(\\cdot|i)\\,\\|\\,q(\\cdot|i)\\big)
        = \\sum_{j≠i} p_{j|i}\\log\\frac{p_{j|i}}{q_{j|i}},\\quad
        q_{j|i} = \\frac{e^{s_{ij}/τ}}{\\sum_{k≠i} e^{s_{ik}/τ}},

    with cosine similarities ``s`` (the contrastive instantiation of I-Con's learned
    distribution; its Gaussian / Student-t kernels are not provided). ``p`` is taken as given,
    restricted to ``j ≠ i`` and unmasked ``j``, and renormalised per row (rows with no mass
    give 0). With ``p`` one-hot on each example's augmented partner this is SimCLR's NT-Xent.

    Args:
      embeddings: ``[B, D]``.
      target: ``[B, B]`` non-negative supervisory neighbourhood weights ``p(j|i)``.
      temperature: ``τ`` of the learned distribution.
      where: optional ``[B]`` boolean mask.

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ℓ`` over unmasked anchors (average over
      anchors, as in the paper), ``[B]``.

    References:
      Alshammari et al., `I-Con: A Unifying Framework for Representation Learning
      <https://arxiv.org/abs/2504.16929>`_, ICLR 2025.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> p = jnp.array([[0, 1, 0], [1, 0, 0], [0.5, 0.5, 0]])
      >>> loss, per = icon_loss(x, p, temperature=1.0)
      >>> round(float(per[2]), 6)  # q(·|2) is uniform over {0, 1}, as p
      0.0
    """
    _check_positive("temperature", temperature)
    x, _, valid = _prepare(embeddings, jnp.zeros(jnp.shape(embeddings)[:1]), where)
    p = upcast(jnp.asarray(target)).astype(x.dtype)
    if p.shape != (x.shape[0], x.shape[0]):
        raise ValueError(
            f"target must have shape {(x.shape[0], x.shape[0])}, got target.shape={p.shape}"
        )
    xn = _normalize(x)
    mask = valid[:, None] & valid[None, :] & ~jnp.eye(x.shape[0], dtype=bool)
    logits = jnp.where(mask, (xn @ xn.T) / temperature, -jnp.inf)
    has = jnp.any(mask, axis=1)
    log_q = logits - jax.nn.logsumexp(jnp.where(has[:, None], logits, 0.0), axis=1)[:, None]
    p = jnp.where(mask, p, 0.0)
    mass = jnp.sum(p, axis=1)
    p = p / jnp.where(mass > 0, mass, 1.0)[:, None]
    kl = jnp.where(
        p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - jnp.where(mask, log_q, 0.0)), 0.0
    )
    per = jnp.where(valid & (mass > 0), jnp.sum(kl, axis=1), 0.0)
    return jnp.sum(per) / jnp.maximum(jnp.sum(valid), 1), per


# --- SimpleX ---------------------------------------------------------------------------------


def cosine_contrastive_loss(user, pos_items, neg_items, *, margin=0.8, negative_weight, where=None):
    """SimpleX cosine contrastive loss (CCL) of a user against one positive and K negatives.

    .. math:: ℓ_u = 1 - \\cos(u, i^+) + \\frac{w}{K}\\sum_{j=1}^K [\\cos(u, j) - m]_+.

    Args:
      user: ``[B, D]`` user embeddings.
      pos_items: ``[B, D]`` positive item embeddings.
      neg_items: ``[B, K, D]`` sampled negative item embeddings.
      margin: ``m``; negatives with cosine below it are ignored.
      negative_weight: ``w`` (tuned per data set in the paper; no default).
      where: optional ``[B]`` boolean mask.

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ℓ`` over unmasked users, ``[B]``.

    References:
      Mao et al., `SimpleX: A Simple and Strong Baseline for Collaborative Filtering
      <https://arxiv.org/abs/2109.12613>`_, CIKM 2021.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.array([[1.0, 0.0]])
      >>> neg = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
      >>> loss, _ = cosine_contrastive_loss(u, u, neg, margin=0.8, negative_weight=2.0)
      >>> round(float(loss), 4)  # 0 + 2/2 · (1 − 0.8)
      0.2
    """
    u, _, valid = _prepare(user, jnp.zeros(jnp.shape(user)[:1]), where)
    p, neg = upcast(jnp.asarray(pos_items)), upcast(jnp.asarray(neg_items))
    if p.shape != u.shape:
        raise ValueError(f"pos_items must have shape {u.shape}, got pos_items.shape={p.shape}")
    if neg.ndim != 3 or neg.shape[0] != u.shape[0] or neg.shape[2] != u.shape[1]:
        raise ValueError(
            f"neg_items must have shape [{u.shape[0]}, K, {u.shape[1]}], got {neg.shape}"
        )
    un = _normalize(u)
    pos_cos = jnp.sum(un * _normalize(p), axis=1)
    neg_cos = jnp.einsum("bd,bkd->bk", un, _normalize(neg))
    per = 1 - pos_cos + negative_weight * jnp.mean(jax.nn.relu(neg_cos - margin), axis=1)
    per = jnp.where(valid, per, 0.0)
    return jnp.sum(per) / jnp.maximum(jnp.sum(valid), 1), per
