"""Expected calibration error with equal-width confidence bins, and the reliability diagram."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float, as_labels, check_int


class Calibration(NamedTuple):
    """Result of :func:`expected_calibration_error`.

    Attributes:
      ece: the expected calibration error (scalar).
      accuracy: ``(num_bins,)`` accuracy of the examples in each bin (0 for empty bins).
      confidence: ``(num_bins,)`` mean confidence in each bin (0 for empty bins).
      counts: ``(num_bins,)`` number (total ``where`` weight) of examples in each bin.
      edges: ``(num_bins + 1,)`` bin edges ``0, 1/M, …, 1``.
    """

    ece: jax.Array
    accuracy: jax.Array
    confidence: jax.Array
    counts: jax.Array
    edges: jax.Array


def expected_calibration_error(
    probs_or_logits: jax.Array,
    labels: jax.Array,
    *,
    num_bins: int = 15,
    from_logits: bool = False,
    where: jax.Array | None = None,
) -> Calibration:
    r"""Top-label expected calibration error (ECE) with equal-width bins.

    .. math::
        \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{n}\,\big|\mathrm{acc}(B_m) -
        \mathrm{conf}(B_m)\big|, \qquad B_m = \{i : \hat p_i \in ((m-1)/M, m/M]\}

    with confidence :math:`\hat p_i = \max_k p_{ik}` and accuracy the fraction of
    :math:`\arg\max_k p_{ik} = y_i` in the bin (Guo et al., eq. 3; M = 15 as there).

    Args:
      probs_or_logits: ``(N, K)`` class probabilities, or logits with ``from_logits=True``.
      labels: ``(N,)`` integer labels.
      num_bins: M ≥ 1.
      from_logits: apply a softmax first.
      where: optional ``(N,)`` boolean mask of the examples to include.

    Returns:
      :class:`Calibration` (ECE, per-bin accuracy, confidence, counts, edges), float32.

    References:
      Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks",
      https://arxiv.org/abs/1706.04599; Naeini, Cooper, Hauskrecht (2015) for ECE.

    Examples:
      >>> import jax.numpy as jnp
      >>> p = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
      >>> out = expected_calibration_error(p, jnp.array([0, 1, 1]), num_bins=10)
      >>> round(float(out.ece), 4)  # (|1 - .9| + |0 - .8| + |1 - .7|) / 3
      0.4
    """
    p = upcast(as_float("probs_or_logits", probs_or_logits, ndim=2))
    labels = as_labels("labels", labels, p.shape[0])
    check_int("num_bins", num_bins, 1)
    if where is not None:
        where = jnp.asarray(where)
        if where.shape != (p.shape[0],):
            raise ValueError(f"where.shape={where.shape} must be ({p.shape[0]},)")
    return _ece(p, labels, where, num_bins=num_bins, from_logits=from_logits)


@functools.partial(jax.jit, static_argnames=("num_bins", "from_logits"))
def _ece(p, labels, where, *, num_bins, from_logits):
    if from_logits:
        p = jax.nn.softmax(p, axis=-1)
    w = jnp.ones(p.shape[0], p.dtype) if where is None else where.astype(p.dtype)
    conf = jnp.max(p, axis=-1)
    correct = (jnp.argmax(p, axis=-1) == labels).astype(p.dtype)
    edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=p.dtype)
    idx = jnp.searchsorted(edges[1:-1], conf, side="left")  # bin m holds (e_m, e_{m+1}]
    onehot = jax.nn.one_hot(idx, num_bins, dtype=p.dtype) * w[:, None]
    counts = jnp.sum(onehot, axis=0)
    safe = jnp.where(counts > 0, counts, 1.0)
    acc = onehot.T @ correct / safe
    mean_conf = onehot.T @ conf / safe
    total = jnp.sum(counts)
    ece = jnp.sum(counts * jnp.abs(acc - mean_conf)) / jnp.where(total > 0, total, 1.0)
    return Calibration(ece, acc, mean_conf, counts, edges)


def plot_reliability_diagram(bins: Calibration, *, ax=None, path=None):
    """Reliability diagram (per-bin accuracy vs confidence) with matplotlib (imported lazily).

    Bars show each non-empty bin's accuracy at the bin's position; the dashed diagonal is perfect
    calibration and the red gap bars show ``confidence − accuracy``. The title shows the ECE.

    Args:
      bins: a :class:`Calibration` from :func:`expected_calibration_error`.
      ax: a matplotlib ``Axes``; a new figure is made when None.
      path: if given, the figure is saved there (e.g. ``"reliability.png"``).

    Returns:
      The ``Axes``.
    """
    if not isinstance(bins, Calibration):
        raise TypeError(f"bins must be a Calibration, got {type(bins).__name__}")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    edges = np.asarray(bins.edges, np.float64)
    acc, conf = np.asarray(bins.accuracy), np.asarray(bins.confidence)
    filled = np.asarray(bins.counts) > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    ax.bar(left, acc[filled], width=width, align="edge", edgecolor="black", label="accuracy")
    ax.bar(
        left, conf[filled] - acc[filled], bottom=acc[filled], width=width, align="edge",
        color="red", alpha=0.3, label="gap",
    )  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE = {float(bins.ece):.4f}")
    ax.legend(loc="upper left")
    if path is not None:
        ax.figure.savefig(path)
    return ax
