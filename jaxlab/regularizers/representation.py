"""Representation regularizers: neural-collapse-inducing terms and the dispersive loss.

Batch-level regularizers of hidden features (not of outputs). Per-example terms are returned per
example; terms that are a function of the whole batch (pairwise or class-mean geometry) return a
float32 scalar of this device's batch (they are not sums over examples, so they are not
``psum``-able; gather the features first if the batch is sharded).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast


def _safe_norm(x, axis=-1, keepdims=False):
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _unit(x):
    norm = _safe_norm(x, keepdims=True)
    return x / jnp.where(norm > 0, norm, 1.0)


class NCRegularizers(NamedTuple):
    """The two neural-collapse-inducing terms of :func:`nc_inducing_regularizers`."""

    within: jax.Array  # [B] per-example squared distance to the class mean (NC1)
    between: jax.Array  # scalar: distance of the class-mean geometry to a simplex ETF (NC2)


def nc_inducing_regularizers(
    features: jax.Array,
    labels: jax.Array,
    class_means: jax.Array,
    *,
    where: jax.Array | None = None,
) -> NCRegularizers:
    r"""Feature regularizers that induce neural collapse under class imbalance.

    .. math::
        R_W(i) = \lVert h_i - \mu_{y_i} \rVert_2^2,\qquad
        R_B = \frac{1}{K^2}\Big\lVert \hat M \hat M^\top
          - \Big(\tfrac{K}{K-1} I_K - \tfrac{1}{K-1}\mathbf 1\mathbf 1^\top\Big)\Big\rVert_F^2,

    with ``M̂`` the class means centred by their (unweighted) average and normalised to unit
    length, row by row. ``R_W`` pulls features to their class mean (variability collapse, NC1);
    ``R_B`` is 0 exactly when the centred class means form a simplex equiangular tight frame
    (equal norms after normalisation, pairwise cosines ``−1/(K−1)``, NC2), so it pushes them apart
    by equal, maximal angles whatever the class frequencies. Forms chosen here (the abstract does
    not give them): ``R_W`` is the center-loss form and ``R_B`` the Frobenius ETF-Gram distance of
    Papyan et al.'s NC2 metric; the paper's terms may differ by normalisation (e.g. dividing
    ``R_W`` by ``‖μ_y‖²``) or use a pairwise-cosine form of ``R_B`` with the same minimisers.

    Args:
      features: ``[B, D]`` penultimate-layer features.
      labels: ``[B]`` integer classes in ``[0, K)``.
      class_means: ``[K, D]`` class means (batch means or a running average; gradients flow into
        them as given — wrap in ``stop_gradient`` for fixed targets). ``K ≥ 2``.
      where: optional ``[B]`` mask; masked-out examples give ``within = 0``.

    Returns:
      ``NCRegularizers(within=[B], between=scalar)``, float32 (float64 for float64 inputs).

    References:
      Liu et al., "Inducing Neural Collapse in Deep Long-tailed Learning",
      https://arxiv.org/abs/2302.12453; Papyan, Han and Donoho, "Prevalence of neural collapse
      during the terminal phase of deep learning training", https://arxiv.org/abs/2008.08186.

    Examples:
      >>> import jax.numpy as jnp
      >>> means = jnp.array([[1.0, 0.0], [-1.0, 0.0]])  # K = 2: antipodal = simplex ETF
      >>> reg = nc_inducing_regularizers(means, jnp.array([0, 1]), means)
      >>> print(reg.within, reg.between)
      [0. 0.] 0.0
    """
    features, class_means = upcast(jnp.asarray(features)), upcast(jnp.asarray(class_means))
    labels = jnp.asarray(labels)
    if features.ndim != 2 or class_means.ndim != 2 or features.shape[1] != class_means.shape[1]:
        raise ValueError(
            f"features [B, D] and class_means [K, D] must be 2-D with equal D, got "
            f"features.shape={features.shape}, class_means.shape={class_means.shape}"
        )
    k = class_means.shape[0]
    if k < 2:
        raise ValueError(f"class_means must hold K >= 2 classes, got class_means.shape={k}")
    if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != features.shape[:1]:
        raise ValueError(f"labels must be [B] integers, got {labels.dtype} {labels.shape}")
    if where is not None:
        where = jnp.asarray(where, bool)
        if where.shape != labels.shape:
            raise ValueError(f"where.shape={where.shape} must equal labels.shape={labels.shape}")
        features = jnp.where(where[:, None], features, 0.0)
        labels = jnp.where(where, labels, 0)
    within = jnp.sum(jnp.square(features - class_means[labels]), axis=-1)
    if where is not None:
        within = jnp.where(where, within, 0.0)
    unit = _unit(class_means - jnp.mean(class_means, axis=0, keepdims=True))
    etf = (k * jnp.eye(k, dtype=unit.dtype) - jnp.ones((k, k), unit.dtype)) / (k - 1)
    between = jnp.sum(jnp.square(unit @ unit.T - etf)) / k**2
    return NCRegularizers(within=within, between=between)


_VARIANTS = ("l2", "cosine", "hinge")


def dispersive_loss(
    z: jax.Array,
    *,
    tau: float = 0.5,
    variant: str = "l2",
    margin: float = 1.0,
    scale_by_dim: bool = True,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Dispersive loss: a contrastive repulsion term without positive pairs (a scalar).

    .. math::
        \text{l2:}\quad \mathcal L = \log \frac{1}{N^2}\sum_{i,j} e^{-D_{ij}/\tau},\quad
          D_{ij} = \lVert z_i - z_j\rVert_2^2 / d;\qquad
        \text{cosine:}\quad \mathcal L = \log \frac{1}{N^2}\sum_{i,j}
          e^{\cos(z_i, z_j)/\tau};\qquad
        \text{hinge:}\quad \mathcal L = \frac{1}{N(N-1)}\sum_{i\ne j} \max(0, \epsilon - D_{ij})^2.

    Added (weight λ, paper 0.25–0.5) to the diffusion/flow regression loss on an intermediate
    block's features. Collapsed features give the maximum (0 for ``l2``; ``1/τ`` for cosine;
    ``ε²`` for hinge); spread-out features lower it. As in the official code, the l2 variant
    averages over the full ``N × N`` matrix (diagonal included) and divides the squared
    distance by the feature dimension ``d`` (``scale_by_dim=False`` drops that; then it is the
    Wang–Isola uniformity loss with ``t = 1/τ`` up to the diagonal convention). The hinge variant
    excludes the diagonal so that its minimum 0 is reachable.

    Args:
      z: ``[N, ...]`` features (flattened per example to ``d`` elements).
      tau: temperature ``τ > 0`` (l2 and cosine).
      variant: ``"l2"``, ``"cosine"`` or ``"hinge"``.
      margin: hinge margin ``ε > 0`` on ``D_ij``.
      scale_by_dim: divide squared distances by ``d`` (l2 and hinge).
      where: optional ``[N]`` mask of examples that take part.

    Returns:
      A float32 scalar (float64 for float64 ``z``); 0 with fewer than two valid examples.

    References:
      Wang and He, "Diffuse and Disperse: Image Generation with Representation Regularization",
      https://arxiv.org/abs/2506.09027; Wang and Isola, "Understanding Contrastive Representation
      Learning through Alignment and Uniformity on the Hypersphere",
      https://arxiv.org/abs/2005.10242.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(dispersive_loss(jnp.ones((4, 3))))  # collapsed: the maximum, 0
      0.0
    """
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got variant={variant!r}")
    if not (isinstance(tau, int | float) and tau > 0):
        raise ValueError(f"tau must be > 0, got tau={tau!r}")
    if not (isinstance(margin, int | float) and margin > 0):
        raise ValueError(f"margin must be > 0, got margin={margin!r}")
    z = jnp.asarray(z)
    if z.ndim < 2:
        raise ValueError(f"z must be [N, ...] with a feature axis, got z.shape={z.shape}")
    z = upcast(z).reshape(z.shape[0], -1)
    n, d = z.shape
    valid = jnp.ones((n,), bool) if where is None else jnp.asarray(where, bool)
    if valid.shape != (n,):
        raise ValueError(f"where.shape={valid.shape} must be ({n},)")
    z = jnp.where(valid[:, None], z, 0.0)
    count = jnp.sum(valid)
    eye = jnp.eye(n, dtype=bool)
    # With < 2 valid examples the result is 0; the diagonal keeps the log-sum-exp (and its
    # gradient) finite in that branch.
    pair = jnp.where(count >= 2, valid[:, None] & valid[None, :], eye)
    off_diag = pair & ~eye
    if variant == "cosine":
        u = _unit(z)
        sim = jnp.where(pair, u @ u.T / tau, -jnp.inf)
        loss = jax.nn.logsumexp(sim) - 2 * jnp.log(jnp.maximum(count, 1))
    else:
        sq = jnp.sum(jnp.square(z), axis=-1)
        dist = jnp.maximum(sq[:, None] + sq[None, :] - 2 * (z @ z.T), 0.0)
        dist = jnp.where(off_diag, dist, 0.0)  # exact zeros on the diagonal
        if scale_by_dim:
            dist = dist / d
        if variant == "l2":
            logits = jnp.where(pair, -dist / tau, -jnp.inf)
            loss = jax.nn.logsumexp(logits) - 2 * jnp.log(jnp.maximum(count, 1))
        else:
            hinge = jnp.where(off_diag, jnp.square(jnp.maximum(margin - dist, 0.0)), 0.0)
            loss = jnp.sum(hinge) / jnp.maximum(count * (count - 1), 1)
    return jnp.where(count >= 2, loss, 0.0)
