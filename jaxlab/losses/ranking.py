"""Order-based losses: spectral-risk aggregation, AUC, NeuralNDCG and multi-label retrieval.

All computations are in float32 (float64 under x64) whatever the input dtype.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab._tree import upcast


def _check_mask(name, where, shape):
    if where is not None and jnp.shape(where) != shape:
        raise ValueError(f"where must have the shape of {name} {shape}, got {jnp.shape(where)}")


# --- spectral risk -----------------------------------------------------------------------------


def _superquantile_cdf(alpha):
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got alpha={alpha}")
    return lambda t: jnp.maximum(t - (1 - alpha), 0.0) / alpha


def _extremile_cdf(n_draws):
    if not n_draws >= 1:
        raise ValueError(f"n_draws must be ≥ 1, got n_draws={n_draws}")
    return lambda t: t**n_draws


def _esrm_cdf(risk_aversion):
    if not risk_aversion > 0:
        raise ValueError(f"risk_aversion must be > 0, got risk_aversion={risk_aversion}")
    rho = risk_aversion
    return lambda t: jnp.expm1(rho * t) / jnp.expm1(rho)


def _spectral_risk_from_cdf(losses, cdf, where):
    """Σ_j (F(j/m) − F((j−1)/m))·ℓ_(j) over the m valid losses sorted ascending, on axis −1."""
    losses = upcast(jnp.asarray(losses))
    if losses.ndim < 1:
        raise ValueError(f"losses must have at least one axis, got losses.shape={losses.shape}")
    _check_mask("losses", where, losses.shape)
    valid = jnp.ones(losses.shape, bool) if where is None else jnp.asarray(where)
    order = jnp.argsort(jnp.where(valid, losses, -jnp.inf), axis=-1)
    ranked = jnp.take_along_axis(jnp.where(valid, losses, 0.0), order, axis=-1)
    m = jnp.sum(valid, axis=-1, keepdims=True).astype(losses.dtype)
    n = losses.shape[-1]
    positions = jnp.arange(1, n + 1, dtype=losses.dtype).reshape((1,) * (losses.ndim - 1) + (n,))
    j = positions - (n - m)  # rank among the valid losses
    safe_m = jnp.maximum(m, 1)
    weights = cdf(jnp.clip(j / safe_m, 0, 1)) - cdf(jnp.clip((j - 1) / safe_m, 0, 1))
    return jnp.sum(jnp.where(j >= 1, weights, 0.0) * ranked, axis=-1)


def spectral_risk(losses, spectrum) -> jax.Array:
    """Spectral risk ``Σ_i σ_i ℓ_(i)`` of losses sorted ascending, for a given spectrum.

    .. math:: R_σ(ℓ) = \\sum_{i=1}^n σ_i ℓ_{(i)},\\quad 0 ≤ σ_1 ≤ … ≤ σ_n,\\ \\sum_i σ_i = 1.

    Shapes: ``losses [..., n]``, ``spectrum [n]`` (e.g. :func:`superquantile_spectrum`); returns
    ``[...]``. The gradient is σ scattered back to the sorted positions, so only the losses
    with large weights move. Use :func:`superquantile`, :func:`extremile` or :func:`esrm` for a
    ``where`` mask. This is the ``shift_cost = 0`` objective of Prospect; the f-divergence
    shift penalty is not implemented.

    References:
      Mehta, Roulet, Pillutla & Harchaoui, `Distributionally Robust Optimization with Bias and
      Variance Reduction <https://arxiv.org/abs/2310.13863>`_, ICLR 2024 (spectra follow the
      authors' ``deshift`` package).
    """
    losses, spectrum = upcast(jnp.asarray(losses)), upcast(jnp.asarray(spectrum))
    if losses.ndim < 1 or spectrum.shape != losses.shape[-1:]:
        raise ValueError(
            f"spectrum must have shape {losses.shape[-1:]}, got spectrum.shape={spectrum.shape}"
        )
    spectrum = spectrum.astype(losses.dtype).reshape((1,) * (losses.ndim - 1) + spectrum.shape)
    return jnp.sum(jnp.sort(losses, axis=-1) * spectrum, axis=-1)


def _spectrum(n, cdf):
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an int ≥ 1, got n={n!r}")
    t = np.arange(n + 1) / n
    return jnp.diff(cdf(jnp.asarray(t, jnp.float32)))


def superquantile_spectrum(n: int, *, alpha: float) -> jax.Array:
    """CVaR spectrum ``σ_i = F(i/n) − F((i−1)/n)``, ``F(t) = max(t − (1 − α), 0)/α``; ``[n]``.

    Uniform weight 1/(αn) on the top αn losses, a fractional weight on the boundary one; α = 1 is
    the mean and α = 1/n the maximum.
    """
    return _spectrum(n, _superquantile_cdf(alpha))


def extremile_spectrum(n: int, *, n_draws: float) -> jax.Array:
    """Extremile spectrum ``σ_i = (i/n)^r − ((i−1)/n)^r`` (expected max of r draws); ``[n]``."""
    return _spectrum(n, _extremile_cdf(n_draws))


def esrm_spectrum(n: int, *, risk_aversion: float) -> jax.Array:
    """Exponential spectral risk spectrum ``σ_i = (e^{ρi/n} − e^{ρ(i−1)/n}) / (e^ρ − 1)``, ``[n]``.

    Cotter & Dowd, `Extreme spectral risk measures`, 2006; ρ > 0 is the risk aversion.
    """
    return _spectrum(n, _esrm_cdf(risk_aversion))


def superquantile(losses, *, alpha: float, where=None) -> jax.Array:
    """Superquantile (CVaR_α): the mean of the largest fraction α of the losses, on axis −1.

    ``losses [..., n] → [...]``; with ``where`` the spectrum is built for the valid losses only
    (masking equals slicing) and a row with none gives 0. See :func:`spectral_risk`.
    """
    return _spectral_risk_from_cdf(losses, _superquantile_cdf(alpha), where)


def extremile(losses, *, n_draws: float, where=None) -> jax.Array:
    """Extremile: the expected maximum of ``n_draws`` draws of the losses (Daouia et al. 2019).

    ``losses [..., n] → [...]``, masked as in :func:`superquantile`; see :func:`spectral_risk`.
    """
    return _spectral_risk_from_cdf(losses, _extremile_cdf(n_draws), where)


def esrm(losses, *, risk_aversion: float, where=None) -> jax.Array:
    """Exponential spectral risk measure of the losses; see :func:`esrm_spectrum`."""
    return _spectral_risk_from_cdf(losses, _esrm_cdf(risk_aversion), where)


# --- AUC ---------------------------------------------------------------------------------------


def _pairs(scores, labels, where):
    """Upcast scores, the [..., n, n] positive-row × negative-column pair mask and its count."""
    scores = upcast(jnp.asarray(scores))
    labels = jnp.asarray(labels)
    if labels.shape != scores.shape or scores.ndim < 1:
        raise ValueError(
            f"labels must have the shape of scores {scores.shape}, got labels.shape={labels.shape}"
        )
    _check_mask("scores", where, scores.shape)
    valid = jnp.ones(scores.shape, bool) if where is None else jnp.asarray(where)
    pos, neg = valid & (labels > 0), valid & (labels <= 0)
    pair = pos[..., :, None] & neg[..., None, :]
    diff = scores[..., :, None] - scores[..., None, :]  # s_p − s_n
    return jnp.where(pair, diff, 0.0), pair, jnp.sum(pair, axis=(-2, -1))


def mann_whitney_loss(scores, labels, *, where=None) -> jax.Array:
    """Mann–Whitney (MW) loss: the mean over positive–negative pairs of ``softplus(s_n − s_p)``.

    .. math:: L_{MW} = \\frac{1}{n_+ n_-}\\sum_{p ∈ +}\\sum_{n ∈ −} \\log(1 + e^{-(s_p − s_n)}),

    binary cross-entropy on score differences; it upper-bounds the area over the ROC curve:
    ``(1 − AUC)·log 2 ≤ L_MW``. Shapes: ``scores, labels, where [..., n]`` (label > 0 is
    positive) → ``[...]``, pairs formed along the last axis; for the paper's in-batch form pass
    the flattened query × passage similarity matrix as one row. A row without a positive or a
    negative gives 0. Generalises ``optax.losses.sigmoid_binary_cross_entropy`` to pairs.

    References:
      Sheikholeslami et al., `Optimizing What Matters: AUC-Driven Learning for Robust Neural
      Retrieval <https://arxiv.org/abs/2510.00137>`_, 2025.
    """
    diff, pair, count = _pairs(scores, labels, where)
    total = jnp.sum(jnp.where(pair, jax.nn.softplus(-diff), 0.0), axis=(-2, -1))
    return total / jnp.maximum(count, 1)


def auc(scores, labels, *, where=None) -> jax.Array:
    """ROC AUC as the Mann–Whitney statistic ``U / (n₊ n₋)``, ties counting ½.

    The fraction of positive–negative pairs ranked correctly. Shapes as
    :func:`mann_whitney_loss`; a row without a positive or a negative gives ½. A metric, with
    zero gradient.
    """
    diff, pair, count = _pairs(scores, labels, where)
    wins = jnp.where(pair, (diff > 0) + 0.5 * (diff == 0), 0.0)
    return jnp.where(count > 0, jnp.sum(wins, axis=(-2, -1)) / jnp.maximum(count, 1), 0.5)


# --- NeuralNDCG --------------------------------------------------------------------------------


def _valid_mask(scores, where):
    _check_mask("scores", where, scores.shape)
    return jnp.ones(scores.shape, bool) if where is None else jnp.asarray(where)


def neural_sort(scores, *, temperature: float = 1.0, where=None) -> jax.Array:
    r"""NeuralSort relaxed permutation matrix (row i ≈ one-hot of the i-th largest score).

    .. math:: \hat P_{i,:} = \mathrm{softmax}\big(((m + 1 − 2i)\,s − A_s 1)/τ\big),
       \quad (A_s)_{jk} = |s_j − s_k|,

    over the m valid items. Shapes: ``scores, where [..., n] → [..., n, n]``; rows are sorted
    positions, columns items; rows i > m and masked columns are 0. τ → 0 gives the exact
    sorting permutation. Grover et al., `Stochastic Optimization of Sorting Networks via
    Continuous Relaxations <https://arxiv.org/abs/1903.08850>`_, 2019.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got temperature={temperature}")
    s = upcast(jnp.asarray(scores))
    valid = _valid_mask(s, where)
    s = jnp.where(valid, s, 0.0)
    pair = valid[..., :, None] & valid[..., None, :]
    row_sums = jnp.sum(jnp.where(pair, jnp.abs(s[..., :, None] - s[..., None, :]), 0.0), -1)
    m = jnp.sum(valid, axis=-1, keepdims=True).astype(s.dtype)
    i = jnp.arange(1, s.shape[-1] + 1, dtype=s.dtype).reshape((1,) * (s.ndim - 1) + (-1,))
    scale = (m + 1 - 2 * i)[..., :, None]  # [..., n positions, 1]
    logits = (scale * s[..., None, :] - row_sums[..., None, :]) / temperature
    # a finite fill keeps an all-padding list NaN-free (its rows are zeroed below)
    p = jax.nn.softmax(jnp.where(valid[..., None, :], logits, jnp.finfo(s.dtype).min), axis=-1)
    return jnp.where((i <= m)[..., :, None] & valid[..., None, :], p, 0.0)


def sinkhorn_normalize(p, *, n_iter: int = 50, eps: float = 1e-12) -> jax.Array:
    """Sinkhorn scaling: alternately normalise columns then rows ``n_iter`` times, ``[..., n, n]``.

    Makes a positive matrix (approximately) doubly stochastic, ending with rows that sum to 1;
    all-zero rows/columns (padding) stay zero. allRank's ``sinkhorn_scaling`` stops at a
    tolerance of 1e-6 or 50 iterations; here the count is fixed (jittable, differentiable).
    """
    if not (isinstance(n_iter, int) and n_iter >= 0):
        raise ValueError(f"n_iter must be an int ≥ 0, got n_iter={n_iter!r}")
    p = upcast(jnp.asarray(p))
    if p.ndim < 2 or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"p must be [..., n, n], got p.shape={p.shape}")

    def step(_, q):
        q = q / jnp.maximum(jnp.sum(q, axis=-2, keepdims=True), eps)
        return q / jnp.maximum(jnp.sum(q, axis=-1, keepdims=True), eps)

    return jax.lax.fori_loop(0, n_iter, step, p)


def _discounts(n, k, dtype):
    d = 1 / np.log2(np.arange(n) + 2.0)
    d[k:] = 0
    return jnp.asarray(d, dtype)


def neural_ndcg_loss(
    scores,
    relevance,
    *,
    temperature: float = 1.0,
    k: int | None = None,
    n_iter: int = 50,
    powered_relevance: bool = True,
    where=None,
) -> jax.Array:
    r"""NeuralNDCG loss ``−NeuralNDCG@k``: NDCG with the sort relaxed by Sinkhorn-scaled NeuralSort.

    .. math:: \mathrm{NeuralNDCG@k} = \frac{1}{\mathrm{maxDCG@k}} \sum_{i ≤ k}
       d_i\,(\hat P g)_i,\quad g = 2^{rel} − 1,\ d_i = 1/\log_2(i + 1),

    with P̂ = :func:`sinkhorn_normalize` (:func:`neural_sort` (scores)). Shapes: ``scores,
    relevance, where [..., n] → [...]`` (values in [−1, 0]); masked items are padding, and a
    list with maxDCG = 0 gives 0. Defaults as the authors' allRank ``neuralNDCG``: τ = 1, k =
    n, 50 Sinkhorn iterations, gains ``2^rel − 1`` (``powered_relevance=False``: ``rel``). As
    τ → 0 it tends to −NDCG@k. Generalises ``optax.losses.ranking_softmax_loss`` (ListNet) to a
    metric-shaped listwise loss.

    References:
      Pobrotyn & Białobrzeski, `NeuralNDCG: Direct Optimisation of a Ranking Metric via
      Differentiable Relaxation of Sorting <https://arxiv.org/abs/2102.07831>`_, 2021.
    """
    s = upcast(jnp.asarray(scores))
    rel = upcast(jnp.asarray(relevance))
    if rel.shape != s.shape or s.ndim < 1:
        raise ValueError(
            f"relevance must have the shape of scores {s.shape}, got relevance.shape={rel.shape}"
        )
    n = s.shape[-1]
    k = n if k is None else k
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k must be an int ≥ 1, got k={k!r}")
    valid = _valid_mask(s, where)
    rel = jnp.where(valid, rel, 0.0)
    gains = jnp.expm1(rel * np.log(2.0)) if powered_relevance else rel
    p = sinkhorn_normalize(neural_sort(s, temperature=temperature, where=valid), n_iter=n_iter)
    d = _discounts(n, k, s.dtype).reshape((1,) * (s.ndim - 1) + (n,))
    dcg = jnp.sum(d * jnp.sum(p * gains[..., None, :], axis=-1), axis=-1)
    ideal = jnp.sum(d * -jnp.sort(-gains, axis=-1), axis=-1)
    return -jnp.where(ideal > 0, dcg / jnp.where(ideal > 0, ideal, 1.0), 0.0)


# --- multi-label retrieval ---------------------------------------------------------------------


def _multilabel(scores, labels, where):
    scores = upcast(jnp.asarray(scores))
    labels = jnp.asarray(labels)
    if labels.shape != scores.shape or scores.ndim < 1:
        raise ValueError(
            f"labels must have the shape of scores {scores.shape}, got labels.shape={labels.shape}"
        )
    valid = _valid_mask(scores, where)
    pos = valid & (labels > 0)
    return jnp.where(valid, scores, 0.0), valid, pos, jnp.sum(pos, axis=-1)


def decoupled_softmax_loss(scores, labels, *, where=None) -> jax.Array:
    r"""DecoupledSoftmax: cross-entropy per positive, other positives out of the denominator.

    .. math:: ℓ_i = \frac{1}{|P_i|} \sum_{l ∈ P_i} -\log \frac{e^{s_{il}}}{e^{s_{il}} +
       \sum_{j ∉ P_i} e^{s_{ij}}}

    Shapes: ``scores, labels, where [..., L]`` (label > 0 is a positive; ``where=False`` removes a
    candidate) → ``[...]``; a row without positives gives 0. With one positive per row it is
    ``optax.losses.softmax_cross_entropy_with_integer_labels``, which it generalises to
    multi-label rows without positives competing with each other (the InfoNCE fix).

    References:
      Gupta et al., `Dual-Encoders for Extreme Multi-Label Classification
      <https://arxiv.org/abs/2310.10636>`_, ICLR 2024 (``decoupled-softmax`` in the authors'
      DEXML ``losses.py``).
    """
    s, valid, pos, n_pos = _multilabel(scores, labels, where)
    neg = valid & ~pos
    log_neg = jax.nn.logsumexp(jnp.where(neg, s, jnp.finfo(s.dtype).min), axis=-1, keepdims=True)
    per_pos = jnp.where(pos, jnp.logaddexp(log_neg, s) - s, 0.0)
    return jnp.sum(per_pos, axis=-1) / jnp.maximum(n_pos, 1)


def _soft_topk_logits(s, valid, k, alpha, n_iter):
    """α(s + t) with Σ_valid σ(α(s + t)) = k: bisection for t, then one Newton step whose
    gradient is the implicit-function gradient ``∂t/∂s_j = −σ'_j / Σ σ'``."""

    def excess(t):
        return (
            jnp.sum(jnp.where(valid, jax.nn.sigmoid(alpha * (s + t)), 0.0), -1, keepdims=True) - k
        )

    s_const = jax.lax.stop_gradient(s)
    lo = -jnp.max(jnp.where(valid, s_const, -jnp.inf), -1, keepdims=True) - 10 / alpha
    hi = -jnp.min(jnp.where(valid, s_const, jnp.inf), -1, keepdims=True) + 10 / alpha

    def bisect(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        below = jax.lax.stop_gradient(excess(mid)) < 0
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, n_iter, bisect, (lo, hi))
    t0 = (lo + hi) / 2
    x0 = alpha * (s + t0)
    slope = jnp.sum(jnp.where(valid, alpha * jax.nn.sigmoid(x0) * jax.nn.sigmoid(-x0), 0.0), -1)
    ok = slope[..., None] > 0  # all sigmoids saturated (huge scores): no Newton correction
    t = t0 - jnp.where(ok, excess(t0) / jnp.where(ok, slope[..., None], 1.0), 0.0)
    return alpha * (s + t)


def soft_topk_loss(
    scores, labels, *, k: int = 5, alpha: float = 1.0, n_iter: int = 64, where=None
) -> jax.Array:
    r"""Soft top-k loss: −mean log-probability that each positive is in the soft top-k.

    .. math:: p_j = σ(α(s_j + t)),\ \sum_j p_j = k,\qquad ℓ_i = -\frac{1}{|P_i|}
       \sum_{l ∈ P_i} \log p_l,

    with t found by ``n_iter`` bisection steps and differentiated implicitly. Shapes as
    :func:`decoupled_softmax_loss`; ``k < L``. Defaults k = 5 (the paper's P@5 setting) and
    α = 1 (scale ``scores`` by 1/temperature beforehand). DEXML additionally samples at most k
    positives per row and hides the others; here every positive counts.

    References:
      Gupta et al., `Dual-Encoders for Extreme Multi-Label Classification
      <https://arxiv.org/abs/2310.10636>`_, ICLR 2024 (``topk`` in the authors' DEXML code).
    """
    s, valid, pos, n_pos = _multilabel(scores, labels, where)
    if not (isinstance(k, int) and 1 <= k < s.shape[-1]):
        raise ValueError(f"k must be an int in [1, {s.shape[-1]}), got k={k!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got alpha={alpha}")
    x = _soft_topk_logits(s, valid, k, alpha, n_iter)
    per_pos = jnp.where(pos, jax.nn.softplus(-x), 0.0)  # −log σ(x)
    return jnp.sum(per_pos, axis=-1) / jnp.maximum(n_pos, 1)
