"""Training-data selection and re-sampling: CoLoR-Filter scores and USEFUL upsampling.

``color_filter_scores`` and ``select_top_fraction`` are jittable JAX functions;
``useful_upsample_indices`` is a host-side (NumPy) data-pipeline step that returns a
variable-length index array, run once between two training runs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab._tree import upcast


def color_filter_scores(nll_prior: jax.Array, nll_conditional: jax.Array) -> jax.Array:
    r"""CoLoR-Filter score: the conditional loss reduction of each candidate sequence.

    .. math::
        s(x) = -\log p(x \mid \theta_{\text{prior}}) + \log p(x \mid \theta_{\text{prior+down}})
             = \mathrm{NLL}_{\text{prior}}(x) - \mathrm{NLL}_{\text{cond}}(x),

    where ``θ_prior`` is a small LM trained on the candidate pool and ``θ_prior+down`` the same
    model fine-tuned on downstream data. Keep the candidates with the largest scores
    (:func:`select_top_fraction`). Identical auxiliary models give constant (zero) scores.

    Args:
      nll_prior: per-sequence negative log-likelihoods (summed over tokens) under the prior model,
        any shape.
      nll_conditional: same shape, under the conditional (fine-tuned) model.

    Returns:
      Scores of the inputs' shape, float32 (float64 for float64 inputs).

    References:
      Brandfonbrener et al., "CoLoR-Filter: Conditional Loss Reduction Filtering for Targeted
      Language Model Pre-training", https://arxiv.org/abs/2406.10670.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(color_filter_scores(jnp.array([3.0, 2.0]), jnp.array([1.0, 2.5])))
      [ 2.  -0.5]
    """
    nll_prior, nll_conditional = jnp.asarray(nll_prior), jnp.asarray(nll_conditional)
    if nll_prior.shape != nll_conditional.shape:
        raise ValueError(
            f"nll_prior.shape={nll_prior.shape} must equal "
            f"nll_conditional.shape={nll_conditional.shape}"
        )
    return upcast(nll_prior) - upcast(nll_conditional)


def _num_selected(n: int, fraction: float) -> int:
    if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got fraction={fraction!r}")
    return min(n, math.ceil(round(fraction * n, 9)))  # round: 0.3·10 must give 3, not 4


def select_top_fraction(scores: jax.Array, *, fraction: float) -> jax.Array:
    r"""Indices of the ``⌈τ N⌉`` highest scores, best first (ties: lower index first).

    Args:
      scores: ``[N]`` scores (e.g. :func:`color_filter_scores`); NaN scores are never selected
        before finite ones.
      fraction: selection rate ``τ ∈ (0, 1]`` (static).

    Returns:
      ``[⌈τN⌉]`` int32 indices into ``scores``.

    References:
      Brandfonbrener et al., "CoLoR-Filter: Conditional Loss Reduction Filtering for Targeted
      Language Model Pre-training", https://arxiv.org/abs/2406.10670.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(select_top_fraction(jnp.array([0.1, 2.0, -1.0, 0.5]), fraction=0.5))
      [1 3]
    """
    scores = jnp.asarray(scores)
    if scores.ndim != 1 or scores.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got scores.shape={scores.shape}")
    k = _num_selected(scores.shape[0], fraction)
    scores = upcast(scores)
    return jax.lax.top_k(jnp.where(jnp.isnan(scores), -jnp.inf, scores), k)[1]


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int, max_iter: int):
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` runs (lowest inertia)."""
    best_assign, best_inertia = None, np.inf
    for _ in range(n_init):
        centers = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
            total = d2.sum()
            if total == 0:  # fewer distinct points than clusters
                centers.append(centers[0])
                continue
            centers.append(x[rng.choice(len(x), p=d2 / total)])
        centers = np.asarray(centers)
        assign = None
        for _ in range(max_iter):
            d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
            new = np.argmin(d2, axis=1)
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                if np.any(assign == j):
                    centers[j] = x[assign == j].mean(0)
        inertia = ((x - centers[assign]) ** 2).sum()
        if inertia < best_inertia:
            best_assign, best_inertia = assign, inertia
    return best_assign


def useful_upsample_indices(
    early_logits,
    labels,
    *,
    num_clusters: int = 2,
    seed: int = 0,
    n_init: int = 10,
    max_iter: int = 100,
) -> np.ndarray:
    r"""USEFUL: indices of the examples to upsample (once) to reduce simplicity bias.

    For each class ``c``, the examples' early-training outputs are clustered by k-means
    (``k = 2``). The cluster with the lowest mean cross-entropy ``−log softmax(z)_y`` is the
    fast-learnable ("easy") cluster; the examples of every other cluster are slow-learnable and
    are returned, so the new training set is ``concat(arange(N), indices)`` (it grows by
    ``len(indices)``). A class with fewer than ``num_clusters`` distinct outputs is left as is.

    Args:
      early_logits: ``[N, C]`` network outputs (logits) after a few training epochs.
      labels: ``[N]`` integer classes in ``[0, C)``.
      num_clusters: k of the per-class k-means (paper: 2).
      seed: seed of the k-means++ initialisation (deterministic).
      n_init: k-means restarts; the lowest-inertia clustering is kept.
      max_iter: Lloyd iterations per restart.

    Returns:
      Sorted int64 indices of the slow-learnable examples.

    References:
      Nguyen et al., "Changing the Training Data Distribution to Reduce Simplicity Bias Improves
      In-distribution Generalization", https://arxiv.org/abs/2404.17768.

    Examples:
      >>> import numpy as np
      >>> z = np.array([[5.0, 0.0], [5.1, 0.0], [0.2, 0.0], [0.0, 0.3], [0.0, 6.0], [0.0, 6.2]])
      >>> print(useful_upsample_indices(z, np.array([0, 0, 0, 1, 1, 1])))
      [2 3]
    """
    for name, value, low in (("num_clusters", num_clusters, 2), ("n_init", n_init, 1)):
        if not (isinstance(value, int) and value >= low):
            raise ValueError(f"{name} must be an int >= {low}, got {name}={value!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an int >= 1, got max_iter={max_iter!r}")
    z = np.asarray(early_logits, np.float64)
    labels = np.asarray(labels)
    if z.ndim != 2 or not np.all(np.isfinite(z)):
        raise ValueError(f"early_logits must be a finite [N, C] array, got shape {z.shape}")
    if labels.shape != z.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be [N] integers, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= z.shape[1]):
        raise ValueError(
            f"labels must be in [0, {z.shape[1]}), got min {labels.min()}, max {labels.max()}"
        )
    shifted = z - z.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels]
    rng = np.random.default_rng(seed)
    selected = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(np.unique(z[idx], axis=0)) < num_clusters:
            continue
        assign = _kmeans(z[idx], num_clusters, rng, n_init, max_iter)
        means = [
            loss[idx][assign == j].mean() if np.any(assign == j) else np.inf
            for j in range(num_clusters)
        ]
        selected.append(idx[assign != int(np.argmin(means))])
    return np.sort(np.concatenate(selected)) if selected else np.zeros(0, np.int64)
