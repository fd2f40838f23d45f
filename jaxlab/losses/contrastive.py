"""Self-supervised and paired-view contrastive losses: InfoNCE (dense, tiled, multi-view),
SigLIP (dense and ring-chunked over devices), alignment/uniformity, Barlow Twins, INTL
whitening and per-anchor-temperature InfoNCE.

Paired views ``z_a, z_b`` have shape ``[B, D]``; row ``i`` of each is a positive pair. Losses
return ``(loss, per_anchor)`` with ``per_anchor`` of shape ``[B]`` (except Barlow Twins, whose
cross-correlation objective does not split over examples, and INTL whitening, which returns the
whitened batch), ``loss`` being the mean of ``per_anchor`` over the unmasked anchors unless
stated otherwise. ``where=`` drops examples from the batch entirely. Similarities are computed
in float32 (float64 for float64 inputs).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlab._tree import upcast
from jaxlab.losses.metric_learning import _normalize
from jaxlab.losses.reduce import weighted_mean


def _pair(z_a, z_b, where):
    a, b = upcast(jnp.asarray(z_a)), upcast(jnp.asarray(z_b))
    dtype = jnp.promote_types(a.dtype, b.dtype)
    a, b = a.astype(dtype), b.astype(dtype)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"z_a and z_b must both have shape [batch, dim], got {a.shape} and {b.shape}"
        )
    valid = jnp.ones(a.shape[:1], bool) if where is None else jnp.asarray(where, bool)
    if valid.shape != a.shape[:1]:
        raise ValueError(f"where must have shape {a.shape[:1]}, got where.shape={valid.shape}")
    return a, b, valid


def _check_positive(name, value):
    """Eager check of a static hyperparameter; traced (learned) values are not checked."""
    if isinstance(value, int | float) and not value > 0:
        raise ValueError(f"{name} must be > 0, got {name}={value}")


def _row_ce(logits, col_valid):
    """−log softmax(logits)_ii over the valid columns, per row."""
    masked = jnp.where(col_valid[None, :], logits, -jnp.inf)
    return jax.nn.logsumexp(masked, axis=1) - jnp.diagonal(logits)


def infonce_loss(z_a, z_b, *, temperature=0.1, symmetric=True, where=None):
    """InfoNCE / CLIP loss between two views, with in-batch negatives on cosine similarities.

    .. math::
        ℓ_i^{a→b} = -\\log\\frac{e^{s_{ii}/τ}}{\\sum_j e^{s_{ij}/τ}},\\quad
        s_{ij} = \\frac{⟨a_i, b_j⟩}{‖a_i‖‖b_j‖};\\qquad
        ℓ_i = \\tfrac12(ℓ_i^{a→b} + ℓ_i^{b→a})\\ \\text{if symmetric}.

    Args:
      z_a, z_b: ``[B, D]`` paired embeddings.
      temperature: ``τ``.
      symmetric: average the ``a→b`` and ``b→a`` (CLIP) directions; else ``a→b`` only.
      where: optional ``[B]`` boolean mask; masked pairs are neither anchors nor negatives.

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ℓ`` over the unmasked anchors, ``[B]``.

    References:
      van den Oord, Li & Vinyals, `Representation Learning with Contrastive Predictive Coding
      <https://arxiv.org/abs/1807.03748>`_; Radford et al., `CLIP
      <https://arxiv.org/abs/2103.00020>`_.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, _ = infonce_loss(jnp.eye(2), jnp.eye(2), temperature=1.0)
      >>> round(float(loss), 4)  # log(1 + e^{-1})
      0.3133
    """
    _check_positive("temperature", temperature)
    a, b, valid = _pair(z_a, z_b, where)
    logits = (_normalize(a) @ _normalize(b).T) / temperature
    per = _row_ce(logits, valid)
    if symmetric:
        per = 0.5 * (per + _row_ce(logits.T, valid))
    per = jnp.where(valid, per, 0.0)
    return weighted_mean(per, where=valid), per


def multiview_infonce_loss(views, *, temperature=0.1, where=None):
    """MV-InfoNCE: one term per example aligning all its views against all other embeddings.

    .. math::
        ℓ_i = -\\log\frac{\\sum_{l≠m} e^{s(u_{il}, u_{im})/τ}}
        {\\sum_{l}\\sum_{(j,m)≠(i,l)} e^{s(u_{il}, u_{jm})/τ}},

    with cosine similarities ``s`` over all ``V·B`` embeddings (the denominator includes the
    other views of ``i``), as in the authors' code. For ``V = 2``, ``ℓ_i`` is the log-mean-exp
    of the two NT-Xent (SimCLR) terms of example ``i``'s views.

    Args:
      views: ``[V, B, D]`` with ``V ≥ 2`` views of each of ``B`` examples.
      temperature: ``τ``.
      where: optional ``[B]`` boolean mask of examples (all views of a masked example drop).

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ℓ`` over unmasked examples, ``[B]``.

    References:
      Koromilas et al., `A Principled Framework for Multi-View Contrastive Learning
      <https://arxiv.org/abs/2507.06979>`_, 2025.
    """
    _check_positive("temperature", temperature)
    z = upcast(jnp.asarray(views))
    if z.ndim != 3 or z.shape[0] < 2:
        raise ValueError(f"views must have shape [V ≥ 2, batch, dim], got views.shape={z.shape}")
    _, _, valid = _pair(z[0], z[1], where)
    n_views, n = z.shape[:2]
    zn = _normalize(z)
    logits = jnp.einsum("lid,mjd->limj", zn, zn) / temperature
    same_view = jnp.eye(n_views, dtype=bool)[:, None, :, None]
    same_example = jnp.eye(n, dtype=bool)[None, :, None, :]
    den_mask = valid[None, None, None, :] & ~(same_view & same_example)
    den = jax.nn.logsumexp(jnp.where(den_mask, logits, -jnp.inf), axis=(0, 2, 3))
    pos = jnp.einsum("lmii->lmi", jnp.transpose(logits, (0, 2, 1, 3)))
    num = jax.nn.logsumexp(jnp.where(~same_view[:, 0, :, :], pos, -jnp.inf), axis=(0, 1))
    per = jnp.where(valid, den - num, 0.0)
    return weighted_mean(per, where=valid), per


# --- tiled InfoNCE (Inf-CL) ---------------------------------------------------------------------


def _tiles(k, col_valid, tile_size):
    n = k.shape[0]
    n_tiles = -(-n // tile_size)
    pad = n_tiles * tile_size - n
    k = jnp.pad(k, ((0, pad), (0, 0))).reshape(n_tiles, tile_size, k.shape[1])
    col_valid = jnp.pad(col_valid, (0, pad)).reshape(n_tiles, tile_size)
    return k, col_valid


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _tiled_lse(q, k, col_valid, tile_size):
    """log Σ_j [col_valid_j] exp(q_i · k_j) per row i, one ``[B, tile]`` block at a time."""
    return _tiled_lse_fwd(q, k, col_valid, tile_size)[0]


def _tiled_lse_fwd(q, k, col_valid, tile_size):
    kt, vt = _tiles(k, col_valid, tile_size)
    low = jnp.finfo(q.dtype).min

    def step(carry, tile):
        m, s = carry
        k_blk, v_blk = tile
        logits = jnp.where(v_blk[None, :], q @ k_blk.T, low)
        m_new = jnp.maximum(m, jnp.max(logits, axis=1))
        e = jnp.where(v_blk[None, :], jnp.exp(logits - m_new[:, None]), 0.0)
        return (m_new, s * jnp.exp(m - m_new) + jnp.sum(e, axis=1)), None

    init = (jnp.full(q.shape[:1], low, q.dtype), jnp.zeros(q.shape[:1], q.dtype))
    (m, s), _ = lax.scan(step, init, (kt, vt))
    lse = jnp.where(s > 0, m + jnp.log(jnp.where(s > 0, s, 1.0)), 0.0)
    return lse, (q, k, col_valid, lse)


def _tiled_lse_bwd(tile_size, res, g):
    q, k, col_valid, lse = res
    kt, vt = _tiles(k, col_valid, tile_size)

    def step(dq, tile):
        k_blk, v_blk = tile
        p = jnp.where(v_blk[None, :], jnp.exp(q @ k_blk.T - lse[:, None]), 0.0) * g[:, None]
        return dq + p @ k_blk, p.T @ q

    dq, dk = lax.scan(step, jnp.zeros_like(q), (kt, vt))
    return dq, dk.reshape(-1, k.shape[1])[: k.shape[0]], None


_tiled_lse.defvjp(_tiled_lse_fwd, _tiled_lse_bwd)


def tiled_infonce_loss(z_a, z_b, *, temperature=0.1, tile_size, symmetric=True, where=None):
    """:func:`infonce_loss` without materialising the ``B × B`` similarity matrix (Inf-CL).

    The row log-sum-exp is accumulated online over column tiles of ``tile_size`` with
    ``lax.scan``; a custom VJP recomputes each ``[B, tile]`` block in the backward pass, so
    memory is ``O(B · tile)`` in both passes. ``B`` need not be a multiple of ``tile_size``.
    Same value, gradient and return convention as :func:`infonce_loss`.

    Args:
      z_a, z_b: ``[B, D]`` paired embeddings.
      temperature: ``τ``.
      tile_size: number of columns per block (static, ≥ 1).
      symmetric: average both directions, as in :func:`infonce_loss`.
      where: optional ``[B]`` boolean mask.

    Returns:
      ``(loss, per_anchor)`` as :func:`infonce_loss`.

    References:
      Cheng et al., `Breaking the Memory Barrier: Near Infinite Batch Size Scaling for
      Contrastive Loss <https://arxiv.org/abs/2410.17243>`_, 2024.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, _ = tiled_infonce_loss(jnp.eye(3), jnp.eye(3), temperature=1.0, tile_size=2)
      >>> round(float(loss), 4)  # log(1 + 2 e^{-1})
      0.5514
    """
    _check_positive("temperature", temperature)
    if not (isinstance(tile_size, int) and tile_size >= 1):
        raise ValueError(f"tile_size must be an int ≥ 1, got tile_size={tile_size!r}")
    a, b, valid = _pair(z_a, z_b, where)
    an, bn = _normalize(a), _normalize(b)
    pos = jnp.sum(an * bn, axis=1) / temperature
    per = _tiled_lse(an / temperature, bn, valid, tile_size) - pos
    if symmetric:
        per = 0.5 * (per + _tiled_lse(bn / temperature, an, valid, tile_size) - pos)
    per = jnp.where(valid, per, 0.0)
    return weighted_mean(per, where=valid), per


# --- SigLIP -------------------------------------------------------------------------------------


def _siglip_block(a, b, col_valid, temperature, bias, positive_diagonal):
    logits = temperature * (a @ b.T) + bias
    sign = 2.0 * jnp.eye(a.shape[0], dtype=a.dtype) - 1.0 if positive_diagonal else -1.0
    return jnp.sum(jnp.where(col_valid[None, :], jax.nn.softplus(-sign * logits), 0.0), axis=1)


def siglip_loss(z_a, z_b, *, temperature=10.0, bias=-10.0, where=None):
    """Pairwise sigmoid loss of SigLIP on L2-normalised embeddings.

    .. math::
        ℓ_i = \\sum_j \\log\\big(1 + e^{-z_{ij}(t\\,⟨\\hat a_i, \\hat b_j⟩ + b)}\\big),\\quad
        z_{ij} = 2[i=j] - 1;\\qquad L = \\frac1B \\sum_i ℓ_i.

    ``temperature`` (``t = exp(t')``) and ``bias`` may be traced (learnable) scalars.

    Args:
      z_a, z_b: ``[B, D]`` paired (image, text) embeddings.
      temperature: ``t`` (paper init ``10``).
      bias: ``b`` (paper init ``−10``).
      where: optional ``[B]`` boolean mask; masked pairs are neither anchors nor negatives.

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ℓ`` over unmasked anchors, ``[B]``.

    References:
      Zhai et al., `Sigmoid Loss for Language Image Pre-Training
      <https://arxiv.org/abs/2303.15343>`_, ICCV 2023.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, _ = siglip_loss(jnp.eye(2), jnp.eye(2), temperature=1.0, bias=0.0)
      >>> round(float(loss), 4)  # log(1 + e^{-1}) + log 2
      1.0064
    """
    a, b, valid = _pair(z_a, z_b, where)
    per = _siglip_block(_normalize(a), _normalize(b), valid, temperature, bias, True)
    per = jnp.where(valid, per, 0.0)
    return weighted_mean(per, where=valid), per


def chunked_siglip_loss(z_a, z_b, *, temperature=10.0, bias=-10.0, axis_name, where=None):
    """:func:`siglip_loss` of the global batch sharded over ``axis_name``, never gathering it.

    Each device holds a ``[B/N, D]`` chunk of both modalities. It scores its images against
    its own texts (positives on the diagonal), then passes its text chunk to the next device
    with ``lax.ppermute`` ``N − 1`` times, scoring each visiting chunk as negatives. Call it
    inside ``jax.pmap`` or ``jax.shard_map`` over ``axis_name``.

    Args:
      z_a, z_b: this device's ``[B/N, D]`` chunks.
      temperature: ``t``.
      bias: ``b``.
      axis_name: the device axis.
      where: optional ``[B/N]`` mask of this device's pairs.

    Returns:
      ``(loss, per_anchor)``: the global loss (``psum``-reduced, identical on every device) and
      this device's ``[B/N]`` per-anchor values (rows summed over the whole global batch).

    References:
      Zhai et al., `Sigmoid Loss for Language Image Pre-Training
      <https://arxiv.org/abs/2303.15343>`_, ICCV 2023 (chunked implementation, Sec. 3.3).
    """
    a, b, valid = _pair(z_a, z_b, where)
    an, bn = _normalize(a), _normalize(b)
    n_dev = lax.axis_size(axis_name)
    perm = [(j, (j + 1) % n_dev) for j in range(n_dev)]
    per = _siglip_block(an, bn, valid, temperature, bias, True)

    def step(_, carry):
        chunk, chunk_valid, acc = carry
        chunk, chunk_valid = lax.ppermute((chunk, chunk_valid), axis_name, perm)
        acc = acc + _siglip_block(an, chunk, chunk_valid, temperature, bias, False)
        return chunk, chunk_valid, acc

    _, _, per = lax.fori_loop(0, n_dev - 1, step, (bn, valid, per))
    per = jnp.where(valid, per, 0.0)
    return weighted_mean(per, where=valid, axis_name=axis_name), per


# --- alignment and uniformity -------------------------------------------------------------------


def _safe_pow(x, p):
    """x**p for x ≥ 0 with value and gradient 0 (not NaN) at x = 0."""
    pos = x > 0
    return jnp.where(pos, jnp.where(pos, x, 1.0) ** p, 0.0)


def alignment_loss(z_a, z_b, *, alpha=2.0, where=None):
    """Alignment ``E‖a − b‖₂^α`` over positive pairs (pass L2-normalised features).

    Args:
      z_a, z_b: ``[B, D]`` paired features, used as given (the paper normalises them first).
      alpha: exponent ``α > 0``.
      where: optional ``[B]`` boolean mask.

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ‖a_i − b_i‖^α`` over unmasked pairs.

    References:
      Wang & Isola, `Understanding Contrastive Representation Learning through Alignment and
      Uniformity on the Hypersphere <https://arxiv.org/abs/2005.10242>`_, ICML 2020.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, _ = alignment_loss(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))
      >>> round(float(loss), 4)
      2.0
    """
    _check_positive("alpha", alpha)
    a, b, valid = _pair(z_a, z_b, where)
    per = _safe_pow(jnp.sum((a - b) ** 2, axis=1), alpha / 2)
    per = jnp.where(valid, per, 0.0)
    return weighted_mean(per, where=valid), per


def uniformity_loss(z, *, t=2.0, where=None):
    """Uniformity ``log E_{i≠j} exp(−t‖z_i − z_j‖²)`` (pass L2-normalised features).

    Args:
      z: ``[B, D]`` features, used as given.
      t: kernel scale ``t > 0``.
      where: optional ``[B]`` boolean mask.

    Returns:
      ``(loss, per_anchor)``: ``loss`` is the log of the mean kernel over all ordered pairs
      ``i ≠ j`` (the paper's, not a mean of ``per_anchor``); ``per_anchor[i] =
      log mean_{j≠i} exp(−t‖z_i − z_j‖²)``. Both are 0 with fewer than two examples.

    References:
      Wang & Isola, `Understanding Contrastive Representation Learning through Alignment and
      Uniformity on the Hypersphere <https://arxiv.org/abs/2005.10242>`_, ICML 2020.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, _ = uniformity_loss(jnp.array([[1.0, 0.0], [-1.0, 0.0]]))
      >>> float(loss)  # −t · 2²
      -8.0
    """
    _check_positive("t", t)
    x, _, valid = _pair(z, z, where)
    sq = jnp.sum(x * x, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0.0)
    mask = valid[:, None] & valid[None, :] & ~jnp.eye(x.shape[0], dtype=bool)
    kernel = jnp.where(mask, -t * d2, -jnp.inf)
    count = jnp.sum(mask, axis=1)
    row_lse = jax.nn.logsumexp(jnp.where(count[:, None] > 0, kernel, 0.0), axis=1)
    per = jnp.where(count > 0, row_lse - jnp.log(jnp.maximum(count, 1)), 0.0)
    total = jnp.sum(count)
    flat = jnp.where(total > 0, kernel, 0.0).reshape(-1)
    loss = jnp.where(total > 0, jax.nn.logsumexp(flat) - jnp.log(jnp.maximum(total, 1)), 0.0)
    return loss, per


# --- Barlow Twins -------------------------------------------------------------------------------


def barlow_twins_loss(z_a, z_b, *, lambda_offdiag=5e-3, eps=1e-5, where=None):
    """Barlow Twins redundancy-reduction loss on the batch-standardised cross-correlation.

    .. math::
        C_{kl} = \\frac1N\\sum_b \\hat a_{bk}\\hat b_{bl},\\quad
        L = \\sum_k (1 - C_{kk})^2 + λ\\sum_{k≠l} C_{kl}^2,

    with each feature standardised over the ``N`` unmasked examples (biased variance + ``eps``,
    as ``BatchNorm1d(affine=False)`` in the official code).

    Args:
      z_a, z_b: ``[B, D]`` paired embeddings.
      lambda_offdiag: ``λ``.
      eps: variance floor of the standardisation.
      where: optional ``[B]`` boolean mask.

    Returns:
      The scalar loss (the objective does not split into per-example terms); 0 for an empty
      batch.

    References:
      Zbontar et al., `Barlow Twins: Self-Supervised Learning via Redundancy Reduction
      <https://arxiv.org/abs/2103.03230>`_, ICML 2021.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
      >>> round(float(barlow_twins_loss(z, z, eps=0.0)), 6)
      0.0
    """
    if not eps >= 0:
        raise ValueError(f"eps must be ≥ 0, got eps={eps}")
    a, b, valid = _pair(z_a, z_b, where)
    w = valid.astype(a.dtype)[:, None]
    n = jnp.maximum(jnp.sum(w), 1.0)

    def standardise(x):
        mean = jnp.sum(w * x, axis=0) / n
        var = jnp.sum(w * (x - mean[None, :]) ** 2, axis=0) / n
        return w * (x - mean[None, :]) / jnp.sqrt(var + eps)[None, :]

    c = standardise(a).T @ standardise(b) / n
    diag = jnp.diagonal(c)
    off = jnp.sum(c**2) - jnp.sum(diag**2)
    loss = jnp.sum((1 - diag) ** 2) + lambda_offdiag * off
    return jnp.where(jnp.any(valid), loss, 0.0)


# --- INTL whitening -----------------------------------------------------------------------------


def _check_intl(num_iters, eps, axis):
    if not (isinstance(num_iters, int) and num_iters >= 0):
        raise ValueError(f"num_iters must be an int ≥ 0, got num_iters={num_iters!r}")
    if not 0 <= eps < 1:
        raise ValueError(f"eps must be in [0, 1), got eps={eps}")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got axis={axis!r}")


def _iternorm(x, num_iters, eps):
    """IterNorm-whiten the columns of ``x [n_obs, n_var]`` (covariance over the rows)."""
    xc = x - jnp.mean(x, axis=0, keepdims=True)
    n_var = x.shape[1]
    eye = jnp.eye(n_var, dtype=x.dtype)
    cov = xc.T @ xc / max(x.shape[0] - 1, 1)
    sigma = (1 - eps) * cov + eps * eye
    tr = jnp.trace(sigma)
    safe_tr = jnp.where(tr > 0, tr, 1.0)
    sigma_n = sigma / safe_tr
    p = eye
    for _ in range(num_iters):
        p = 1.5 * p - 0.5 * (p @ p @ p @ sigma_n)
    return xc @ (p / jnp.sqrt(safe_tr))


def intl_whitening(z, *, num_iters=4, eps=0.0, axis=0):
    """IterNorm whitening of INTL: Newton iterations towards ``Σ^{-1/2}`` (spectral power −½).

    .. math::
        Σ_N = Σ / \\operatorname{tr}Σ,\\ P_0 = I,\\ P_{k+1} = \tfrac32 P_k - \tfrac12 P_k^3 Σ_N,
        \\quad \\hat z = (z - μ)\\,P_T / \\sqrt{\\operatorname{tr}Σ},

    with ``Σ = (1 − eps)·cov + eps·I`` (unbiased covariance). ``axis=1`` whitens the ``D``
    features over the batch (``D × D`` covariance); ``axis=0`` (the authors' default,
    "channel whitening") whitens the ``B`` examples over the feature axis (``B × B``
    covariance of the rows centred over their features). As ``T → ∞`` the result is exactly
    white; INTL keeps ``T = 4`` and lets its trace loss equalise the spectrum. The uncoupled
    iteration is unstable in float32 for large ``T`` (``≳ 30``).

    Args:
      z: ``[B, D]`` embeddings.
      num_iters: Newton iterations ``T``.
      eps: shrinkage of the covariance towards ``I`` (the authors' ``w_eps``, default 0).
      axis: ``0`` or ``1`` as above.

    Returns:
      ``[B, D]`` whitened embeddings (float32).

    References:
      Weng et al., `Modulate Your Spectrum in Self-Supervised Learning
      <https://arxiv.org/abs/2305.16789>`_, ICLR 2024; Huang et al., IterNorm, CVPR 2019.
    """
    _check_intl(num_iters, eps, axis)
    x, _, _ = _pair(z, z, None)
    if axis == 1:
        return _iternorm(x, num_iters, eps)
    return _iternorm(x.T, num_iters, eps).T


def intl_loss(z_a, z_b, *, num_iters=4, eps=0.0, axis=0, trade_off=None):
    """INTL: normalised MSE between IterNorm-whitened views plus the trace loss.

    .. math::
        L = \frac1B\\sum_i \\Big(2 - 2\\cos(\\hat a_i, \\hat b_i)\\Big)
        + β\\,\big(\\mathrm{TL}(\\hat a) + \\mathrm{TL}(\\hat b)\big),\\quad
        \\mathrm{TL}(\\hat z) = \\sum_k (\\operatorname{var}_k \\hat z - 1)^2,

    with ``â, b̂ = intl_whitening(·, axis=axis)`` of each view, ``var_k`` the unbiased variance of
    whitened variable ``k`` (features for ``axis=1``, examples for ``axis=0``) and by default
    ``β = 0.01·(log₂ n_var − 3)`` as in the authors' code (``n_var = B`` or ``D``).

    Args:
      z_a, z_b: ``[B, D]`` paired embeddings.
      num_iters: IterNorm iterations ``T``.
      eps: covariance shrinkage.
      axis: whitening axis (see :func:`intl_whitening`).
      trade_off: ``β``; ``None`` for the default above.

    Returns:
      ``(loss, per_anchor)``: ``per_anchor = 2 − 2 cos(â_i, b̂_i)`` ``[B]``; ``loss`` = its mean
      plus the trace-loss term (which is not per-example).

    References:
      Weng et al., `Modulate Your Spectrum in Self-Supervised Learning
      <https://arxiv.org/abs/2305.16789>`_, ICLR 2024.
    """
    _check_intl(num_iters, eps, axis)
    a, b, _ = _pair(z_a, z_b, None)
    n_var = a.shape[0] if axis == 0 else a.shape[1]
    beta = 0.01 * (np.log2(n_var) - 3) if trade_off is None else trade_off
    wa = intl_whitening(a, num_iters=num_iters, eps=eps, axis=axis)
    wb = intl_whitening(b, num_iters=num_iters, eps=eps, axis=axis)

    def trace_loss(w):
        w = w if axis == 1 else w.T
        centred = w - jnp.mean(w, axis=0, keepdims=True)
        var = jnp.sum(centred**2, axis=0) / max(w.shape[0] - 1, 1)
        return jnp.sum((var - 1) ** 2)

    per = 2 - 2 * jnp.sum(_normalize(wa) * _normalize(wb), axis=1)
    return jnp.mean(per) + beta * (trace_loss(wa) + trace_loss(wb)), per


# --- per-anchor temperature ------------------------------------------------------------------


def robust_contrastive_loss(z_a, z_b, temperatures, *, where=None):
    """InfoNCE (``a → b``) with an individual, possibly learnable, temperature per anchor.

    .. math:: ℓ_i = -\\log\\frac{e^{s_{ii}/τ_i}}{\\sum_j e^{s_{ij}/τ_i}}.

    The paper's DRO objective (with its ``τ_i ρ`` penalty and moving-average estimator) was not
    reproduced; this is only the per-anchor-temperature InfoNCE it builds on. With all
    ``τ_i = τ`` it equals ``infonce_loss(..., temperature=τ, symmetric=False)``.

    Args:
      z_a, z_b: ``[B, D]`` paired embeddings.
      temperatures: ``[B]`` positive temperatures (data; may be traced and learned).
      where: optional ``[B]`` boolean mask.

    Returns:
      ``(loss, per_anchor)``: mean of ``per_anchor = ℓ`` over unmasked anchors, ``[B]``.

    References:
      Qiu et al., `Not All Semantics are Created Equal: Contrastive Self-supervised Learning
      with Automatic Temperature Individualization <https://arxiv.org/abs/2305.11965>`_, ICML
      2023.
    """
    a, b, valid = _pair(z_a, z_b, where)
    tau = upcast(jnp.asarray(temperatures)).astype(a.dtype)
    if tau.shape != a.shape[:1]:
        raise ValueError(f"temperatures must have shape {a.shape[:1]}, got {tau.shape}")
    logits = (_normalize(a) @ _normalize(b).T) / tau[:, None]
    per = jnp.where(valid, _row_ce(logits, valid), 0.0)
    return weighted_mean(per, where=valid), per
