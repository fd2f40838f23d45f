"""Tests of jaxlab.losses.contrastive: float64 NumPy transcriptions and defining properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec
from jax.test_util import check_grads

from jaxlab.losses import contrastive as cl
from jaxlab.losses import metric_learning as ml

RNG = np.random.default_rng(0)
A = RNG.normal(size=(7, 4))
B = A + 0.7 * RNG.normal(size=(7, 4))


def _n(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(v):
    m = np.max(v)
    return m + np.log(np.sum(np.exp(v - m)))


def np_infonce(a, b, tau, symmetric=True):
    s = _n(a) @ _n(b).T / tau
    n = len(a)
    row = [_lse(s[i]) - s[i, i] for i in range(n)]
    col = [_lse(s[:, i]) - s[i, i] for i in range(n)]
    per = 0.5 * (np.array(row) + np.array(col)) if symmetric else np.array(row)
    return per.mean(), per


def np_siglip(a, b, t, bias):
    s = _n(a) @ _n(b).T
    n = len(a)
    per = [
        sum(np.log1p(np.exp(-(1 if i == j else -1) * (t * s[i, j] + bias))) for j in range(n))
        for i in range(n)
    ]
    return np.mean(per), np.array(per)


# --- InfoNCE family -----------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [True, False])
def test_infonce_matches_numpy(symmetric):
    loss, per = cl.infonce_loss(A, B, temperature=0.3, symmetric=symmetric)
    ref_loss, ref_per = np_infonce(A, B, 0.3, symmetric)
    np.testing.assert_allclose(per, ref_per, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)


def test_infonce_symmetry_scale_invariance_and_where():
    l_ab = cl.infonce_loss(A, B)[0]
    np.testing.assert_allclose(float(cl.infonce_loss(B, A)[0]), float(l_ab), rtol=1e-6)
    np.testing.assert_allclose(float(cl.infonce_loss(3 * A, 0.2 * B)[0]), float(l_ab), rtol=1e-5)
    keep = np.array([1, 1, 0, 1, 0, 1, 1], bool)
    loss, per = cl.infonce_loss(A, B, where=jnp.asarray(keep))
    ref, ref_per = np_infonce(A[keep], B[keep], 0.1)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    np.testing.assert_allclose(per[keep], ref_per, rtol=1e-5)


def test_multiview_matches_numpy_and_ntxent_for_two_views():
    views = np.stack([A, B, A - B])
    keep = np.array([1, 1, 1, 0, 1, 1, 1], bool)
    loss, per = cl.multiview_infonce_loss(views, temperature=0.5, where=jnp.asarray(keep))
    u, idx = _n(views[:, keep]), range(int(keep.sum()))
    ref = []
    for i in idx:
        num = sum(np.exp(u[v, i] @ u[m, i] / 0.5) for v in range(3) for m in range(3) if v != m)
        den = sum(
            np.exp(u[v, i] @ u[m, j] / 0.5)
            for v in range(3)
            for m in range(3)
            for j in idx
            if (m, j) != (v, i)
        )
        ref.append(-np.log(num / den))
    np.testing.assert_allclose(per[keep], ref, rtol=1e-5)
    np.testing.assert_allclose(float(loss), np.mean(ref), rtol=1e-5)
    swapped = cl.multiview_infonce_loss(views[::-1], temperature=0.5, where=jnp.asarray(keep))
    np.testing.assert_allclose(float(swapped[0]), float(loss), rtol=1e-6)
    # V = 2: log-mean-exp of the SimCLR terms of the two views of each example
    _, two = cl.multiview_infonce_loss(np.stack([A, B]), temperature=0.5)
    ids = np.concatenate([np.arange(7), np.arange(7)])
    ntx = ml.ntxent_loss(np.concatenate([A, B]), ids, temperature=0.5)[1]
    np.testing.assert_allclose(two, np.logaddexp(ntx[:7], ntx[7:]) - np.log(2), rtol=1e-5)


@pytest.mark.parametrize(("n", "tile", "symmetric"), [(7, 3, True), (8, 4, False), (5, 8, True)])
def test_tiled_infonce_equals_dense_value_and_grad(n, tile, symmetric):
    rng = np.random.default_rng(n)
    a = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    b = a[::-1] * 0.5 + jnp.asarray(rng.normal(size=a.shape), jnp.float32)
    keep = jnp.arange(n) != 1
    dense = functools.partial(cl.infonce_loss, temperature=0.2, symmetric=symmetric, where=keep)
    tiled = functools.partial(
        cl.tiled_infonce_loss, temperature=0.2, tile_size=tile, symmetric=symmetric, where=keep
    )

    @jax.jit
    def both(x, y):
        grad = functools.partial(jax.value_and_grad, argnums=(0, 1), has_aux=True)
        return grad(dense)(x, y), grad(tiled)(x, y)

    ((ld, pd), gd), ((lt, pt), gt) = both(a, b)
    np.testing.assert_allclose(float(lt), float(ld), rtol=1e-5)
    np.testing.assert_allclose(pt, pd, rtol=1e-5, atol=1e-6)
    for x, y in zip(gt, gd, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


# --- SigLIP -------------------------------------------------------------------------------------


def test_siglip_matches_numpy_and_is_symmetric():
    loss, per = cl.siglip_loss(A, B)
    ref, ref_per = np_siglip(A, B, 10.0, -10.0)
    np.testing.assert_allclose(per, ref_per, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    np.testing.assert_allclose(float(cl.siglip_loss(B, A)[0]), float(loss), rtol=1e-5)
    ref2 = np_siglip(A, B, 3.0, 0.5)[0]
    np.testing.assert_allclose(
        float(cl.siglip_loss(A, B, temperature=3.0, bias=0.5)[0]), ref2, rtol=1e-5
    )


def _sharded_batch():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(16, 4)).astype(np.float32)
    b = (a + 0.5 * rng.normal(size=(16, 4))).astype(np.float32)
    keep = np.ones(16, bool)
    keep[[3, 10]] = False
    return a, b, keep


def test_chunked_siglip_pmap_equals_dense():
    a, b, keep = _sharded_batch()
    f = jax.pmap(
        lambda x, y, w: cl.chunked_siglip_loss(
            x, y, temperature=5.0, bias=-2.0, axis_name="d", where=w
        ),
        axis_name="d",
    )
    loss, per = f(a.reshape(8, 2, 4), b.reshape(8, 2, 4), keep.reshape(8, 2))
    ref_loss, ref_per = cl.siglip_loss(a, b, temperature=5.0, bias=-2.0, where=jnp.asarray(keep))
    np.testing.assert_allclose(loss, np.full(8, float(ref_loss)), rtol=1e-5)
    np.testing.assert_allclose(per.reshape(16), ref_per, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        float(ref_loss), np_siglip(a[keep], b[keep], 5.0, -2.0)[0], rtol=1e-5
    )


def test_chunked_siglip_shard_map_equals_dense_value_and_grad():
    a, b, _ = _sharded_batch()
    mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
    spec = PartitionSpec("d")
    inner = lambda x, y: cl.chunked_siglip_loss(x, y, axis_name="d")  # noqa: E731
    f = jax.shard_map(
        inner, mesh=mesh, in_specs=(spec, spec), out_specs=(PartitionSpec(), spec), check_vma=False
    )
    loss, per = jax.jit(f)(a, b)
    ref_loss, ref_per = cl.siglip_loss(a, b)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    np.testing.assert_allclose(per, ref_per, rtol=1e-5, atol=1e-6)
    g = jax.jit(jax.grad(lambda x, y: f(x, y)[0], argnums=(0, 1)))(a, b)
    g_ref = jax.grad(lambda x, y: cl.siglip_loss(x, y)[0], argnums=(0, 1))(a, b)
    for x, y in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


# --- alignment / uniformity / Barlow Twins ------------------------------------------------------


def test_alignment_and_uniformity_match_numpy():
    a, b = _n(A), _n(B)
    loss, per = cl.alignment_loss(a, b, alpha=3.0)
    ref = np.linalg.norm(a - b, axis=1) ** 3
    np.testing.assert_allclose(per, ref, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ref.mean(), rtol=1e-5)
    loss, per = cl.uniformity_loss(a, t=1.5)
    k = np.array([[np.exp(-1.5 * np.sum((a[i] - a[j]) ** 2)) for j in range(7)] for i in range(7)])
    off = ~np.eye(7, dtype=bool)
    np.testing.assert_allclose(float(loss), np.log(k[off].mean()), rtol=1e-5)
    np.testing.assert_allclose(per, np.log(np.where(off, k, 0).sum(1) / 6), rtol=1e-5)


def test_alignment_uniformity_limits():
    a = _n(A)
    assert float(cl.alignment_loss(a, a)[0]) == 0.0
    collapsed = np.tile(a[:1], (5, 1))
    assert abs(float(cl.uniformity_loss(collapsed)[0])) < 1e-6  # its maximum
    spread = _n(np.random.default_rng(2).normal(size=(7, 4)))
    clustered = _n(np.ones((7, 4)) + 0.1 * np.random.default_rng(3).normal(size=(7, 4)))
    assert float(cl.uniformity_loss(spread)[0]) < float(cl.uniformity_loss(clustered)[0])


def np_barlow(a, b, lam, eps=1e-5):
    za = (a - a.mean(0)) / np.sqrt(a.var(0) + eps)
    zb = (b - b.mean(0)) / np.sqrt(b.var(0) + eps)
    c = za.T @ zb / len(a)
    return sum((1 - c[k, k]) ** 2 for k in range(c.shape[0])) + lam * sum(
        c[k, m] ** 2 for k in range(c.shape[0]) for m in range(c.shape[0]) if k != m
    )


def test_barlow_twins_matches_numpy_and_properties():
    got = cl.barlow_twins_loss(A, B, lambda_offdiag=0.1)
    np.testing.assert_allclose(float(got), np_barlow(A, B, 0.1), rtol=1e-5)
    np.testing.assert_allclose(
        float(cl.barlow_twins_loss(B, A, lambda_offdiag=0.1)), float(got), rtol=1e-5
    )
    affine = cl.barlow_twins_loss(3 * A + 1, B * np.array([0.5, 2, 1, 4]) - 2, lambda_offdiag=0.1)
    np.testing.assert_allclose(float(affine), float(got), rtol=1e-4)
    white = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float)
    assert float(cl.barlow_twins_loss(white, white, eps=0.0)) < 1e-10
    keep = np.array([1, 1, 0, 1, 1, 0, 1], bool)
    masked = cl.barlow_twins_loss(A, B, where=jnp.asarray(keep))
    np.testing.assert_allclose(float(masked), np_barlow(A[keep], B[keep], 5e-3), rtol=1e-5)


# --- I-Con, whitening, per-anchor temperature, SimpleX -----------------------------------------


def test_icon_matches_numpy_and_recovers_ntxent():
    x = np.concatenate([A, B])
    partner = np.roll(np.eye(14), 7, axis=1)
    loss, per = ml.icon_loss(x, partner, temperature=0.2)
    ids = np.concatenate([np.arange(7), np.arange(7)])
    np.testing.assert_allclose(
        float(loss), float(ml.ntxent_loss(x, ids, temperature=0.2)[0]), rtol=1e-5
    )
    p = np.random.default_rng(4).random((14, 14))
    np.fill_diagonal(p, 0)
    p /= p.sum(1, keepdims=True)
    s = _n(x) @ _n(x).T / 0.2
    ref = []
    for i in range(14):
        js = [j for j in range(14) if j != i]
        log_q = s[i, js] - _lse(s[i, js])
        ref.append(np.sum(p[i, js] * (np.log(p[i, js]) - log_q)))
    loss, per = ml.icon_loss(x, p, temperature=0.2)
    np.testing.assert_allclose(per, ref, rtol=1e-4)
    assert np.all(np.asarray(per) >= -1e-6)


def _np_iternorm(x, iters, eps=0.0):
    """Columns of x whitened with the authors' IterNorm (covariance over rows, unbiased)."""
    xc = x - x.mean(0)
    sigma = (1 - eps) * (xc.T @ xc / (len(x) - 1)) + eps * np.eye(x.shape[1])
    tr = np.trace(sigma)
    p = np.eye(x.shape[1])
    for _ in range(iters):
        p = 1.5 * p - 0.5 * np.linalg.matrix_power(p, 3) @ (sigma / tr)
    return xc @ p / np.sqrt(tr)


def _np_intl(a, b, iters, axis, beta):
    def white(z):
        return _np_iternorm(z, iters) if axis == 1 else _np_iternorm(z.T, iters).T

    wa, wb = white(a), white(b)
    per = 2 - 2 * np.sum(_n(wa) * _n(wb), axis=1)

    def tl(w):
        w = w if axis == 1 else w.T
        return np.sum((w.var(0, ddof=1) - 1) ** 2)

    return per.mean() + beta * (tl(wa) + tl(wb)), per


MIX = np.array([[1, 0.3, 0], [0, 1, 0.2], [0, 0, 1.5]])


def test_intl_whitening_matches_numpy_and_converges_to_inverse_sqrt():
    z = np.random.default_rng(5).normal(size=(16, 3)) @ MIX
    np.testing.assert_allclose(
        cl.intl_whitening(z, axis=1), _np_iternorm(z, 4), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        cl.intl_whitening(z.T, axis=0, eps=0.1), _np_iternorm(z, 4, 0.1).T, rtol=1e-4, atol=1e-5
    )
    zc = z - z.mean(0)
    evals, evecs = np.linalg.eigh(zc.T @ zc / 15)
    exact = zc @ (evecs @ np.diag(evals**-0.5) @ evecs.T)
    white = cl.intl_whitening(z, num_iters=12, axis=1)
    np.testing.assert_allclose(white, exact, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.cov(np.asarray(white).T), np.eye(3), atol=1e-3)


@pytest.mark.parametrize("axis", [0, 1])
def test_intl_loss_matches_numpy(axis):
    a = np.random.default_rng(7).normal(size=(8, 5))
    b = a + 0.3 * np.random.default_rng(8).normal(size=(8, 5))
    loss, per = cl.intl_loss(a, b, axis=axis)
    beta = 0.01 * (np.log2(8 if axis == 0 else 5) - 3)
    ref, ref_per = _np_intl(a, b, 4, axis, beta)
    np.testing.assert_allclose(per, ref_per, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4, atol=1e-5)
    # fully whitened, identical views: both terms vanish
    z = np.random.default_rng(9).normal(size=(32, 3)) @ MIX
    assert float(cl.intl_loss(z, z, num_iters=12, axis=1)[0]) < 1e-4


def test_robust_contrastive_matches_numpy_and_reduces_to_infonce():
    tau = np.linspace(0.1, 0.9, 7)
    _, per = cl.robust_contrastive_loss(A, B, tau)
    s = _n(A) @ _n(B).T
    ref = [_lse(s[i] / tau[i]) - s[i, i] / tau[i] for i in range(7)]
    np.testing.assert_allclose(per, ref, rtol=1e-5)
    same = cl.robust_contrastive_loss(A, B, np.full(7, 0.3))[0]
    np.testing.assert_allclose(
        float(same), float(cl.infonce_loss(A, B, temperature=0.3, symmetric=False)[0]), rtol=1e-6
    )
    g = jax.grad(lambda t: cl.robust_contrastive_loss(A, B, t)[0])(jnp.asarray(tau, jnp.float32))
    assert np.all(np.isfinite(g))


def test_cosine_contrastive_matches_numpy():
    neg = RNG.normal(size=(7, 5, 4))
    loss, per = ml.cosine_contrastive_loss(A, B, neg, margin=0.2, negative_weight=3.0)
    ref = [
        1 - _n(A[i]) @ _n(B[i]) + 3.0 / 5 * sum(max(_n(A[i]) @ _n(n) - 0.2, 0) for n in neg[i])
        for i in range(7)
    ]
    np.testing.assert_allclose(per, ref, rtol=1e-5)
    np.testing.assert_allclose(float(loss), np.mean(ref), rtol=1e-5)
    far = -np.tile(A[:, None, :], (1, 5, 1))
    assert abs(float(ml.cosine_contrastive_loss(A, 2 * A, far, negative_weight=1.0)[0])) < 1e-6


# --- generic: gradients, NaN-freedom, jit, bad arguments ---------------------------------------

PAIRED = {
    "infonce": lambda a, b: cl.infonce_loss(a, b)[0],
    "multiview": lambda a, b: cl.multiview_infonce_loss(jnp.stack([a, b]))[0],
    "tiled": lambda a, b: cl.tiled_infonce_loss(a, b, tile_size=3)[0],
    "siglip": lambda a, b: cl.siglip_loss(a, b)[0],
    "alignment": lambda a, b: cl.alignment_loss(a, b, alpha=1.0)[0],
    "uniformity": lambda a, b: cl.uniformity_loss(a)[0],
    "barlow": lambda a, b: cl.barlow_twins_loss(a, b),
    "icon": lambda a, b: ml.icon_loss(a, jnp.roll(jnp.eye(a.shape[0]), 1, axis=1), temperature=0.5)[
        0
    ],
    "intl": lambda a, b: cl.intl_loss(a, b, eps=1e-3)[0],
    "robust": lambda a, b: cl.robust_contrastive_loss(a, b, jnp.full(a.shape[:1], 0.2))[0],
    "ccl": lambda a, b: ml.cosine_contrastive_loss(a, b, b[:, None, :] * -1.0, negative_weight=1.0)[
        0
    ],
}


@pytest.mark.parametrize("name", sorted(PAIRED))
def test_check_grads(name):
    a, b = jnp.asarray(A[:4], jnp.float32), jnp.asarray(B[:4], jnp.float32)
    check_grads(jax.jit(PAIRED[name]), (a, b), order=1, modes=("rev",), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("name", sorted(PAIRED))
def test_nan_free_value_and_grad_and_jit(name):
    f = jax.jit(jax.value_and_grad(PAIRED[name], argnums=(0, 1)))
    for x in (jnp.ones((4, 3)), jnp.zeros((4, 3))):  # identical embeddings, zero vectors
        value, grads = f(x, x)
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(g)) for g in grads)


def test_bf16_inputs_give_float32():
    a, b = jnp.asarray(A, jnp.bfloat16), jnp.asarray(B, jnp.bfloat16)
    assert cl.infonce_loss(a, b)[0].dtype == jnp.float32
    assert cl.siglip_loss(a, b)[1].dtype == jnp.float32


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="temperature"):
        cl.infonce_loss(A, B, temperature=0.0)
    with pytest.raises(ValueError, match="z_a and z_b"):
        cl.siglip_loss(A, B[:3])
    with pytest.raises(ValueError, match="tile_size"):
        cl.tiled_infonce_loss(A, B, tile_size=0)
    with pytest.raises(ValueError, match="views"):
        cl.multiview_infonce_loss(A[None])
    with pytest.raises(ValueError, match="target"):
        ml.icon_loss(A, np.eye(3), temperature=0.1)
    with pytest.raises(ValueError, match="num_iters"):
        cl.intl_whitening(A, num_iters=-1)
    with pytest.raises(ValueError, match="axis"):
        cl.intl_loss(A, B, axis=2)
    with pytest.raises(ValueError, match="temperatures"):
        cl.robust_contrastive_loss(A, B, np.ones(3))
    with pytest.raises(ValueError, match="neg_items"):
        ml.cosine_contrastive_loss(A, B, B, negative_weight=1.0)
    with pytest.raises(ValueError, match="where"):
        cl.alignment_loss(A, B, where=np.ones(2, bool))
    with pytest.raises(ValueError, match="alpha"):
        cl.alignment_loss(A, B, alpha=0.0)


def test_tiled_infonce_never_builds_the_full_matrix():
    a = jnp.asarray(np.random.default_rng(6).normal(size=(16, 3)), jnp.float32)
    f = jax.grad(lambda x, y: cl.tiled_infonce_loss(x, y, tile_size=4)[0], argnums=(0, 1))
    text = str(jax.make_jaxpr(f)(a, a))  # includes the scan bodies
    assert "f32[16,16]" not in text and "f32[16,4]" in text


def test_learnable_temperature_and_bias_are_differentiable():
    a, b = jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)

    def f(t, bias):
        infonce = cl.infonce_loss(a, b, temperature=t)[0]
        return infonce + cl.siglip_loss(a, b, temperature=t, bias=bias)[0]

    grads = jax.jit(jax.grad(f, argnums=(0, 1)))
    gt, gb = grads(jnp.float32(0.5), jnp.float32(-1.0))
    eps = 1e-3
    num_b = (
        float(cl.siglip_loss(A, B, temperature=0.5, bias=-1.0 + eps)[0])
        - float(cl.siglip_loss(A, B, temperature=0.5, bias=-1.0 - eps)[0])
    ) / (2 * eps)
    np.testing.assert_allclose(float(gb), num_b, rtol=1e-2)
    assert np.isfinite(float(gt))
