"""Alternatives to softmax and their losses: sparsemax, StableMax, sparse-softmax, harmonic max.

Every probability map works on ``axis`` (default last) and every loss takes integer ``labels`` of
the logits' shape without that axis, returns per-example float32 values (float64 for float64
inputs) and takes an optional ``where`` mask of the labels' shape (masked-out examples give 0,
whatever their label). Reduce with :func:`jaxlab.losses.reduce.weighted_mean`.
"""

import math
import numbers

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab._tree import upcast


def _check_labels(logits, labels, where):
    """Validates shapes/dtypes; returns labels safe to index with (masked-out ones set to 0)."""
    if logits.ndim < 1:
        raise ValueError(f"logits must have a class axis, got logits.shape={logits.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got labels.dtype={labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels.shape={labels.shape} must equal logits.shape without the class axis, "
            f"{logits.shape[:-1]}"
        )
    if where is None:
        return labels
    if where.shape != labels.shape:
        raise ValueError(f"where.shape={where.shape} must equal labels.shape={labels.shape}")
    return jnp.where(where, labels, 0)


def _take(x, labels):
    return jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _masked(loss, where):
    return loss if where is None else jnp.where(where, loss, 0)


def _sparsemax_last(z):
    z = z - lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))  # sparsemax is shift-invariant
    z_sorted = -jnp.sort(-z, axis=-1)
    cumsum = jnp.cumsum(z_sorted, axis=-1)
    rank = jnp.cumsum(jnp.ones_like(z), axis=-1)
    support_size = jnp.sum(1 + rank * z_sorted > cumsum, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cumsum, support_size - 1, axis=-1) - 1) / support_size
    return jnp.maximum(z - tau, 0)


def sparsemax(logits: jax.Array, *, axis: int = -1) -> jax.Array:
    r"""Sparsemax: the Euclidean projection of the logits onto the probability simplex.

    .. math::
        \mathrm{sparsemax}(z) = \arg\min_{p \in \Delta} \|p - z\|^2 = [z - \tau(z)]_+,
        \quad \tau = \frac{\sum_{j \le k(z)} z_{(j)} - 1}{k(z)},
        \quad k(z) = \max\{k : 1 + k z_{(k)} > \textstyle\sum_{j \le k} z_{(j)}\}

    with :math:`z_{(1)} \ge z_{(2)} \ge \dots` the sorted logits. Equals
    ``optax.projections.projection_simplex`` applied along ``axis``; for two classes it is
    ``jax.nn.sparse_sigmoid(z_1 - z_2)``.

    Args:
      logits: ``[..., num_classes]`` scores (any float dtype; computed in float32).
      axis: the class axis.

    Returns:
      Probabilities of the logits' shape, exactly 0 outside the support.

    References:
      Martins & Astudillo, `From Softmax to Sparsemax
      <https://arxiv.org/abs/1602.02068>`_, ICML 2016 (Algorithm 1).
    """
    z = jnp.moveaxis(upcast(jnp.asarray(logits)), axis, -1)
    return jnp.moveaxis(_sparsemax_last(z), -1, axis)


def sparsemax_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    axis: int = -1,
) -> jax.Array:
    r"""Multi-class sparsemax loss with integer labels (the sparsemax analogue of softmax CE).

    .. math::
        L(z, y) = -z_y + \tfrac12 \sum_{j \in S(z)} (z_j^2 - \tau^2) + \tfrac12
                = \sum_j p_j (z_j - z_y) - \tfrac12 \|p\|^2 + \tfrac12,
        \quad p = \mathrm{sparsemax}(z)

    (the second, shift-invariant form is computed). :math:`L \ge 0`, with equality iff
    :math:`p = e_y`, and :math:`\nabla_z L = p - e_y`. Generalises the binary
    ``optax.losses.sparsemax_loss``: with two classes it equals
    ``optax.losses.sparsemax_loss(z_1 - z_0, y)``.

    Args:
      logits: ``[..., num_classes]`` scores.
      labels: ``[...]`` integer classes.
      where: optional ``[...]`` boolean mask; masked-out examples give 0.
      axis: the class axis of ``logits``.

    Returns:
      ``[...]`` per-example losses.

    References:
      Martins & Astudillo, `From Softmax to Sparsemax
      <https://arxiv.org/abs/1602.02068>`_, ICML 2016 (Eq. 17).
    """
    z = jnp.moveaxis(upcast(jnp.asarray(logits)), axis, -1)
    labels = _check_labels(z, jnp.asarray(labels), where)
    p = _sparsemax_last(z)
    shifted = z - _take(z, labels)[..., None]
    loss = jnp.sum(p * shifted, axis=-1) - 0.5 * jnp.sum(p * p, axis=-1) + 0.5
    return _masked(jnp.maximum(loss, 0), where)


def _stable_s(x):
    """s(x) = x + 1 for x ≥ 0 and 1 / (1 − x) for x < 0 (no inf in the unused branch)."""
    return jnp.where(x >= 0, x + 1, 1 / (1 - jnp.minimum(x, 0)))


def _log_stable_s(x):
    """log s(x) = log1p(x) for x ≥ 0 and −log1p(−x) for x < 0."""
    return jnp.where(x >= 0, jnp.log1p(jnp.maximum(x, 0)), -jnp.log1p(-jnp.minimum(x, 0)))


def stablemax(logits: jax.Array, *, axis: int = -1) -> jax.Array:
    r"""StableMax: softmax with the exponential replaced by a function that grows linearly.

    .. math::
        \mathrm{StableMax}(x)_i = \frac{s(x_i)}{\sum_j s(x_j)}, \quad
        s(x) = \begin{cases} x + 1 & x \ge 0 \\ 1/(1 - x) & x < 0 \end{cases}

    :math:`s` is positive, increasing and :math:`C^1` (:math:`s(0) = 1`, slope 1 on both sides), so
    the probabilities stay representable for large logits, avoiding the Softmax Collapse. Unlike
    softmax, StableMax is not invariant to adding a constant to the logits.

    Args:
      logits: ``[..., num_classes]`` scores (any float dtype; computed in float32).
      axis: the class axis.

    Returns:
      Probabilities of the logits' shape.

    References:
      Prieto, Barsbey, Mediano & Birdal, `Grokking at the Edge of Numerical Stability
      <https://arxiv.org/abs/2501.04697>`_, ICLR 2025 (Eq. 5); official code
      github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability (``utils.py``).
    """
    s = _stable_s(upcast(jnp.asarray(logits)))
    return s / jnp.sum(s, axis=axis, keepdims=True)


def stablemax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    axis: int = -1,
) -> jax.Array:
    r"""Cross-entropy of StableMax probabilities with integer labels.

    .. math::
        L(x, y) = -\log \mathrm{StableMax}(x)_y = \log \sum_j s(x_j) - \log s(x_y)

    with :math:`\log s(x) = \mathrm{sign}(x)\,\log(1 + |x|)` computed by ``log1p`` (the official
    code takes ``log`` of the ratio instead). The StableMax counterpart of
    ``optax.losses.softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: ``[..., num_classes]`` scores.
      labels: ``[...]`` integer classes.
      where: optional ``[...]`` boolean mask; masked-out examples give 0.
      axis: the class axis of ``logits``.

    Returns:
      ``[...]`` per-example losses.

    References:
      Prieto et al., `Grokking at the Edge of Numerical Stability
      <https://arxiv.org/abs/2501.04697>`_, ICLR 2025; official code ``stablemax_cross_entropy``.
    """
    x = jnp.moveaxis(upcast(jnp.asarray(logits)), axis, -1)
    labels = _check_labels(x, jnp.asarray(labels), where)
    loss = jnp.log(jnp.sum(_stable_s(x), axis=-1)) - _log_stable_s(_take(x, labels))
    return _masked(loss, where)


def _top_k_mask(z, k):
    num_classes = z.shape[-1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= num_classes:
        raise ValueError(f"k must be an int in [1, num_classes={num_classes}], got k={k!r}")
    _, idx = lax.top_k(z, int(k))
    return jnp.sum(jax.nn.one_hot(idx, num_classes, dtype=jnp.int32), axis=-2) > 0


def sparse_softmax(logits: jax.Array, *, k: int, axis: int = -1) -> jax.Array:
    r"""Sparse-softmax: softmax over the ``k`` largest logits, exactly 0 elsewhere.

    .. math::
        p_i = \frac{e^{z_i}\,[i \in \Omega_k]}{\sum_{j \in \Omega_k} e^{z_j}},
        \quad \Omega_k = \text{indices of the } k \text{ largest } z_j

    Exactly ``num_classes - k`` entries are 0 (ties at the k-th value are broken by
    ``lax.top_k``); ``k = num_classes`` is ``jax.nn.softmax``.

    Args:
      logits: ``[..., num_classes]`` scores (any float dtype; computed in float32).
      k: number of classes kept, ``1 <= k <= num_classes`` (no default: the paper tunes it).
      axis: the class axis.

    Returns:
      Probabilities of the logits' shape.

    References:
      Sun, Yang, Liu, Zhou & Yang, `Sparse-softmax: A Simpler and Faster Alternative Softmax
      Transformation <https://arxiv.org/abs/2112.12433>`_, 2021.
    """
    z = jnp.moveaxis(upcast(jnp.asarray(logits)), axis, -1)
    mask = _top_k_mask(z, k)
    log_norm = jax.nn.logsumexp(z, axis=-1, where=mask, keepdims=True)
    return jnp.moveaxis(jnp.where(mask, jnp.exp(z - log_norm), 0), -1, axis)


def sparse_softmax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    k: int,
    where: jax.Array | None = None,
    axis: int = -1,
) -> jax.Array:
    r"""Cross-entropy of sparse-softmax with integer labels.

    .. math::
        L(z, y) = \log \sum_{j \in \Omega_k \cup \{y\}} e^{z_j} - z_y

    The target's own logit is always in the normaliser, so the loss is finite and
    :math:`\ge 0` even when ``y`` is outside the top k (then the paper's
    :math:`-\log p_y` would be infinite); for ``y`` in the top k it is the paper's loss, and
    ``k = num_classes`` gives ``optax.losses.softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: ``[..., num_classes]`` scores.
      labels: ``[...]`` integer classes.
      k: number of classes kept, ``1 <= k <= num_classes``.
      where: optional ``[...]`` boolean mask; masked-out examples give 0.
      axis: the class axis of ``logits``.

    Returns:
      ``[...]`` per-example losses.

    References:
      Sun et al., `Sparse-softmax <https://arxiv.org/abs/2112.12433>`_, 2021.
    """
    z = jnp.moveaxis(upcast(jnp.asarray(logits)), axis, -1)
    labels = _check_labels(z, jnp.asarray(labels), where)
    mask = _top_k_mask(z, k) | jax.nn.one_hot(labels, z.shape[-1], dtype=bool)
    loss = jax.nn.logsumexp(z, axis=-1, where=mask) - _take(z, labels)
    return _masked(loss, where)


def harmonic_logits(
    inputs: jax.Array, centers: jax.Array, *, exponent: float | None = None, eps: float = 1e-12
) -> jax.Array:
    r"""Harmonic logits :math:`-n \log d_i`, with :math:`d_i = \|w_i - x\|_2`.

    ``jax.nn.softmax`` of these is the harmonic max :math:`p_i = d_i^{-n} / \sum_j d_j^{-n}`;
    computed as :math:`-\tfrac{n}{2}\log(\|x\|^2 + \|w_i\|^2 - 2 x^\top w_i + \epsilon)` (clipped
    at 0 before adding ε), so no ``[batch, classes, dim]`` array is formed and ``d = 0`` is safe.

    Args:
      inputs: ``[..., dim]`` representations :math:`x`.
      centers: ``[num_classes, dim]`` class centres :math:`w_i` (the unembedding).
      exponent: harmonic exponent :math:`n > 0`; ``None`` uses :math:`\sqrt{dim}`, the scaling
        the paper suggests for high dimensions (pass it explicitly to reproduce a run).
      eps: added to :math:`d^2` inside the log.

    Returns:
      ``[..., num_classes]`` float32 logits.

    References:
      Baek, Liu, Tegmark et al., `Harmonic Loss Trains Interpretable AI Models
      <https://arxiv.org/abs/2502.01628>`_, 2025.
    """
    x, w = upcast(jnp.asarray(inputs)), upcast(jnp.asarray(centers))
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"need inputs [..., dim] and centers [num_classes, dim], got inputs.shape={x.shape}, "
            f"centers.shape={w.shape}"
        )
    n = math.sqrt(x.shape[-1]) if exponent is None else exponent
    if not n > 0:
        raise ValueError(f"exponent must be > 0, got exponent={exponent!r}")
    w_sq = jnp.sum(w * w, axis=-1).reshape((1,) * (x.ndim - 1) + (-1,))
    sq = jnp.sum(x * x, axis=-1, keepdims=True) + w_sq - 2 * jnp.einsum("...d,cd->...c", x, w)
    return -0.5 * n * jnp.log(jnp.maximum(sq, 0) + eps)


def harmonic_probs(
    inputs: jax.Array, centers: jax.Array, *, exponent: float | None = None, eps: float = 1e-12
) -> jax.Array:
    r"""Harmonic max :math:`p_i = d_i^{-n} / \sum_j d_j^{-n}`, :math:`d_i = \|w_i - x\|_2`.

    Invariant to scaling all distances; :math:`p_y \to 1` as :math:`x \to w_y`, and it tends to
    the one-hot of the nearest centre as :math:`n \to \infty`. Arguments as in
    :func:`harmonic_logits`; returns ``[..., num_classes]`` probabilities.
    """
    return jax.nn.softmax(harmonic_logits(inputs, centers, exponent=exponent, eps=eps), axis=-1)


def harmonic_loss(
    inputs: jax.Array,
    centers: jax.Array,
    labels: jax.Array,
    *,
    exponent: float | None = None,
    eps: float = 1e-12,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Harmonic loss: cross-entropy of the harmonic max, :math:`-\log p_y`.

    .. math::
        L(x, y) = n \log d_y + \log \sum_j d_j^{-n}, \quad d_j = \|w_j - x\|_2

    i.e. ``optax.losses.softmax_cross_entropy_with_integer_labels`` applied to
    :func:`harmonic_logits` (which replace the logits :math:`W x`). Its minimiser is
    :math:`x = w_y` (a finite point), not an infinitely scaled logit.

    Args:
      inputs: ``[..., dim]`` representations.
      centers: ``[num_classes, dim]`` class centres.
      labels: ``[...]`` integer classes.
      exponent: harmonic exponent :math:`n`; ``None`` uses :math:`\sqrt{dim}` (see
        :func:`harmonic_logits`).
      eps: added to :math:`d^2` inside the log.
      where: optional ``[...]`` boolean mask; masked-out examples give 0.

    Returns:
      ``[...]`` per-example losses.

    References:
      Baek et al., `Harmonic Loss Trains Interpretable AI Models
      <https://arxiv.org/abs/2502.01628>`_, 2025.
    """
    logits = harmonic_logits(inputs, centers, exponent=exponent, eps=eps)
    labels = _check_labels(logits, jnp.asarray(labels), where)
    loss = jax.nn.logsumexp(logits, axis=-1) - _take(logits, labels)
    return _masked(loss, where)
