"""Overlap losses for segmentation and imbalanced classification: Dice, Tversky, Jaccard, AnyLoss.

``predictions`` are probabilities (apply ``jax.nn.softmax``/``sigmoid`` first) and ``targets``
hard or soft labels of the same shape. The set losses sum over ``axis`` (default: every axis but
the first, so ``[batch, ...]`` gives one value per example; leave the class axis out of ``axis``
for per-class values) and take an elementwise ``where`` mask: masked-out elements count for
nothing, and an example with no element left gets loss 0. Reduce with
:func:`jaxlab.losses.reduce.weighted_mean`.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab._tree import upcast


def _prepare(predictions, targets, where, axis):
    """float32 (or float64) inputs with masked elements zeroed, and the axes to sum over."""
    x, y = upcast(jnp.asarray(predictions)), upcast(jnp.asarray(targets))
    if x.shape != y.shape:
        raise ValueError(f"predictions.shape={x.shape} and targets.shape={y.shape} must be equal")
    if where is not None:
        if where.shape != x.shape:
            raise ValueError(f"where.shape={where.shape} must equal predictions.shape={x.shape}")
        x, y = jnp.where(where, x, 0), jnp.where(where, y, 0)
    axis = tuple(range(1, x.ndim)) if axis is None else axis
    return x, y, axis


def _check_nonneg(**values):
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {name}={value!r}")


def _ratio(num, den):
    """num / den, and 1 where den = 0 (empty prediction and target overlap perfectly)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 1)


def soft_dice_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    smooth: float = 1.0,
    axis: int | tuple[int, ...] | None = None,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Soft Dice loss.

    .. math::
        L = 1 - \frac{2 \sum_i p_i y_i + s}{\sum_i p_i + \sum_i y_i + s}

    Equals :func:`tversky_loss` with :math:`\alpha = \beta = 1/2` and half the smoothing, i.e.
    ``optax.losses.dice_loss(..., apply_softmax=False, smooth=s/2, reduction='none')``.

    Args:
      predictions: probabilities, e.g. ``[batch, ...]``.
      targets: labels in ``[0, 1]`` of the same shape.
      smooth: :math:`s \ge 0`, added to numerator and denominator.
      axis: axes summed over; ``None`` sums all but the first.
      where: optional elementwise boolean mask of the predictions' shape.

    Returns:
      Losses of the predictions' shape without ``axis`` (``[batch]`` by default).

    References:
      Milletari, Navab & Ahmadi, `V-Net <https://arxiv.org/abs/1606.04797>`_, 3DV 2016.
    """
    _check_nonneg(smooth=smooth)
    x, y, axis = _prepare(predictions, targets, where, axis)
    num = 2 * jnp.sum(x * y, axis=axis) + smooth
    return 1 - _ratio(num, jnp.sum(x, axis=axis) + jnp.sum(y, axis=axis) + smooth)


def tversky_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    axis: int | tuple[int, ...] | None = None,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Tversky loss: Dice with separate weights on false positives and false negatives.

    .. math::
        L = 1 - \frac{TP + s}{TP + \alpha\,FP + \beta\,FN + s}, \quad
        TP = \sum_i p_i y_i,\ FP = \sum_i p_i (1 - y_i),\ FN = \sum_i (1 - p_i) y_i

    :math:`\alpha` weighs false positives and :math:`\beta` false negatives, as in the paper and
    in ``optax.losses.dice_loss``, which this equals with ``apply_softmax=False,
    reduction='none'``; :math:`\alpha = \beta = 1/2` is the Dice loss.

    Args:
      predictions: probabilities, e.g. ``[batch, ...]``.
      targets: labels in ``[0, 1]`` of the same shape.
      alpha: false-positive weight (the paper's best 0.3).
      beta: false-negative weight (the paper's best 0.7).
      smooth: :math:`s \ge 0`.
      axis: axes summed over; ``None`` sums all but the first.
      where: optional elementwise boolean mask of the predictions' shape.

    Returns:
      Losses of the predictions' shape without ``axis``.

    References:
      Salehi, Erdogmus & Gholipour, `Tversky loss function for image segmentation using 3D
      fully convolutional deep networks <https://arxiv.org/abs/1706.05721>`_, 2017.
    """
    _check_nonneg(alpha=alpha, beta=beta, smooth=smooth)
    x, y, axis = _prepare(predictions, targets, where, axis)
    tp = jnp.sum(x * y, axis=axis)
    fp, fn = jnp.sum(x, axis=axis) - tp, jnp.sum(y, axis=axis) - tp
    return 1 - _ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)


def _metric_terms(predictions, targets, where, axis):
    x, y, axis = _prepare(predictions, targets, where, axis)
    cardinality = jnp.sum(x + y, axis=axis)
    return cardinality, jnp.sum(jnp.abs(x - y), axis=axis)


def jaccard_metric_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    smooth: float = 1.0,
    axis: int | tuple[int, ...] | None = None,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Jaccard metric loss (JML): soft Jaccard that stays a metric for soft labels.

    .. math::
        L = 1 - \frac{I + s}{U + s}, \quad
        I = \tfrac12(\|x\|_1 + \|y\|_1 - \|x - y\|_1), \quad
        U = \tfrac12(\|x\|_1 + \|y\|_1 + \|x - y\|_1)

    For :math:`y \in \{0, 1\}` this is the soft Jaccard loss
    :math:`1 - (\sum xy + s)/(\sum x + \sum y - \sum xy + s)`; for soft labels (label smoothing,
    distillation) it is 0 iff :math:`x = y` and, with ``smooth=0``, a metric. (The official code
    smooths :math:`2I` and :math:`2U`, i.e. uses ``smooth/2`` of this one.)

    Args:
      predictions: probabilities, e.g. ``[batch, ...]``.
      targets: hard or soft labels of the same shape.
      smooth: :math:`s \ge 0`.
      axis: axes summed over; ``None`` sums all but the first.
      where: optional elementwise boolean mask of the predictions' shape.

    Returns:
      Losses of the predictions' shape without ``axis``.

    References:
      Wang & Blaschko, `Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels
      <https://arxiv.org/abs/2302.05666>`_, NeurIPS 2023 (JML1); code
      github.com/zifuwanggg/JDTLosses.
    """
    _check_nonneg(smooth=smooth)
    cardinality, difference = _metric_terms(predictions, targets, where, axis)
    inter, union = (cardinality - difference) / 2, (cardinality + difference) / 2
    return 1 - _ratio(inter + smooth, union + smooth)


def dice_metric_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    smooth: float = 1.0,
    axis: int | tuple[int, ...] | None = None,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Dice semimetric loss, the Dice counterpart of :func:`jaccard_metric_loss`.

    .. math::
        L = 1 - \frac{\|x\|_1 + \|y\|_1 - \|x - y\|_1 + s}{\|x\|_1 + \|y\|_1 + s}

    Equals :func:`soft_dice_loss` for :math:`y \in \{0, 1\}` and is 0 iff :math:`x = y` for soft
    labels. Arguments and shapes as in :func:`jaccard_metric_loss`.

    References:
      Wang, Popordanoska, Bertels, Lemmens & Blaschko, `Dice Semimetric Losses
      <https://arxiv.org/abs/2303.16296>`_, MICCAI 2023.
    """
    _check_nonneg(smooth=smooth)
    cardinality, difference = _metric_terms(predictions, targets, where, axis)
    return 1 - _ratio(cardinality - difference + smooth, cardinality + smooth)


def self_adjusting_dice_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    alpha: float = 1.0,
    gamma: float = 1.0,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Self-adjusting Dice loss (DSC loss for data-imbalanced NLP), one value per element.

    .. math::
        L_i = 1 - \frac{2 (1 - p_i)^\alpha p_i y_i + \gamma}{(1 - p_i)^\alpha p_i + y_i + \gamma}

    with :math:`p_i` the probability of the positive class for element :math:`i` (e.g. a token).
    The factor :math:`(1 - p)^\alpha` down-weights easy, confident examples; :math:`\alpha = 0`
    with :math:`\gamma \to 0` is the per-element soft Dice :math:`1 - 2py/(p + y)`. The official
    code instead sums numerator and denominator over the batch (then ``smooth = 1e-4`` and
    ``alpha`` defaults to 0): that is ``soft_dice_loss((1 - p)**alpha * p, y, smooth=1e-4,
    axis=...)``. Defaults :math:`\alpha = \gamma = 1` follow the paper's formula (tuned per task).

    Args:
      predictions: probabilities of the positive class, any shape.
      targets: labels in ``[0, 1]`` of the same shape.
      alpha: exponent :math:`\alpha \ge 0` of the self-adjusting factor.
      gamma: smoothing :math:`\gamma \ge 0`.
      where: optional boolean mask of the same shape; masked-out elements give 0.

    Returns:
      Losses of the predictions' shape.

    References:
      Li, Sun, Meng, Liang, Wu & Li, `Dice Loss for Data-imbalanced NLP Tasks
      <https://arxiv.org/abs/1911.02855>`_, ACL 2020 (Eq. 12); code
      github.com/ShannonAI/dice_loss_for_NLP.
    """
    _check_nonneg(alpha=alpha, gamma=gamma)
    p, y, _ = _prepare(predictions, targets, where, ())
    weighted = jnp.maximum(1 - p, 0) ** alpha * p
    return 1 - _ratio(2 * weighted * y + gamma, weighted + y + gamma)  # masked: p = y = 0 -> 0


class Confusion(NamedTuple):
    """Soft confusion-matrix counts."""

    tp: jax.Array
    fn: jax.Array
    fp: jax.Array
    tn: jax.Array


def soft_confusion(
    probs: jax.Array,
    labels: jax.Array,
    *,
    amp: float = 73.0,
    axis: int | tuple[int, ...] | None = None,
    where: jax.Array | None = None,
) -> Confusion:
    r"""AnyLoss's differentiable confusion matrix.

    .. math::
        A(p) = \sigma(L (p - \tfrac12)), \quad
        TP = \sum y A, \ FN = \sum y (1 - A), \ FP = \sum (1 - y) A, \ TN = \sum (1 - y)(1 - A)

    Args:
      probs: predicted probabilities of the positive class, any shape.
      labels: 0/1 labels of the same shape (any dtype).
      amp: amplification :math:`L > 0`; 73 (the inventory's reading of the paper; unsure, the
        authors' later code suggests :math:`L \in [2, 70]`) sends :math:`A(p)` within about
        :math:`10^{-16}` of 0/1 at :math:`p \in \{0, 1\}`.
      axis: axes summed over; ``None`` sums all of them (scalar counts).
      where: optional boolean mask of the same shape; masked-out elements count for nothing.

    Returns:
      A :class:`Confusion` of float32 counts.

    References:
      Han, Moniz & Chawla, `AnyLoss: Transforming Classification Metrics into Loss Functions
      <https://arxiv.org/abs/2405.14745>`_, KDD 2024; code github.com/doheonhan/anyloss_extension.
    """
    if not amp > 0:
        raise ValueError(f"amp must be > 0, got amp={amp!r}")
    p, y = upcast(jnp.asarray(probs)), upcast(jnp.asarray(labels))
    if p.shape != y.shape:
        raise ValueError(f"probs.shape={p.shape} and labels.shape={y.shape} must be equal")
    a = jax.nn.sigmoid(amp * (p - 0.5))
    count = jnp.ones_like(p)
    if where is not None:
        if where.shape != p.shape:
            raise ValueError(f"where.shape={where.shape} must equal probs.shape={p.shape}")
        a, y, count = (jnp.where(where, v, 0) for v in (a, y, count))
    tp, positives = jnp.sum(y * a, axis=axis), jnp.sum(y, axis=axis)
    fp = jnp.sum(a, axis=axis) - tp
    return Confusion(tp, positives - tp, fp, jnp.sum(count, axis=axis) - positives - fp)


def _f_beta(c, beta):
    b2 = beta**2
    return _ratio((1 + b2) * c.tp, (1 + b2) * c.tp + b2 * c.fn + c.fp)


METRICS: dict[str, Callable[[Confusion, float], jax.Array]] = {
    "f_beta": _f_beta,
    "accuracy": lambda c, _: _ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn),
    "balanced_accuracy": lambda c, _: (_ratio(c.tp, c.tp + c.fn) + _ratio(c.tn, c.tn + c.fp)) / 2,
    "geometric_mean": lambda c, _: _ratio(c.tp, c.tp + c.fn) * _ratio(c.tn, c.tn + c.fp),
}


def anyloss(
    probs: jax.Array,
    labels: jax.Array,
    *,
    metric: str | Callable[[Confusion], jax.Array] = "f_beta",
    beta: float = 1.0,
    amp: float = 73.0,
    axis: int | tuple[int, ...] | None = None,
    where: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""AnyLoss: one minus a confusion-matrix metric of the soft confusion matrix.

    .. math::
        L = 1 - M(TP, FN, FP, TN)

    with the counts of :func:`soft_confusion`. ``metric`` is one of ``METRICS`` (``"f_beta"``
    with ``beta``, default F1; ``"accuracy"``; ``"balanced_accuracy"``; ``"geometric_mean"``,
    which as in the authors' code is the surrogate :math:`TPR \cdot TNR` = G-mean², with the
    same maximiser and no infinite gradient at 0) or a function of a :class:`Confusion`.
    Probabilities in :math:`\{0, 1\}` give one minus the exact metric.

    This is a set-level loss, not a mean of per-example terms: the counts are summed over
    ``axis`` (default all, so a scalar) and, when ``axis_name`` is set, ``psum``-ed across devices
    before the metric is taken, so sharded and unsharded batches give the same value.

    Args:
      probs: predicted probabilities of the positive class, e.g. ``[batch]``.
      labels: 0/1 labels of the same shape.
      metric: metric name or function.
      beta: :math:`\beta > 0` of the F-beta metric.
      amp: amplification :math:`L` of the approximation function.
      axis: axes the counts are summed over; ``None`` sums all.
      where: optional boolean mask of the same shape.
      axis_name: a ``pmap``/``shard_map`` axis to sum the counts over.

    Returns:
      The loss, of the probs' shape without ``axis`` (a scalar by default).

    References:
      Han, Moniz & Chawla, `AnyLoss <https://arxiv.org/abs/2405.14745>`_, KDD 2024.
    """
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"metric must be callable or one of {sorted(METRICS)}, got {metric!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got beta={beta!r}")
    counts = soft_confusion(probs, labels, amp=amp, axis=axis, where=where)
    if axis_name is not None:
        counts = Confusion(*lax.psum(tuple(counts), axis_name))
    return 1 - (metric(counts) if callable(metric) else METRICS[metric](counts, beta))
