"""NC regularizers and dispersive loss: NumPy transcriptions, simplex-ETF / collapse limits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.regularizers import representation as _rep


class _Jitted:
    """The module's functions, jitted (one compilation per call instead of one per op)."""

    def __getattr__(self, name):
        fn = getattr(_rep, name)
        return lambda *args, **kw: jax.jit(functools.partial(fn, **kw))(*args)


rep = _Jitted()

RNG = np.random.default_rng(0)
K, D, B = 4, 6, 10
FEAT = RNG.normal(size=(B, D)).astype(np.float32)
LAB = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 0])
MEANS = RNG.normal(size=(K, D)).astype(np.float32)


def simplex_etf(k, d, scale=3.0, offset=None):
    q, _ = np.linalg.qr(RNG.normal(size=(d, k)))
    m = np.sqrt(k / (k - 1)) * (np.eye(k) - 1 / k) @ q.T  # rows: unit-norm ETF vertices
    return scale * m + (0 if offset is None else offset)


def np_nc(feat, lab, means):
    f, m = feat.astype(np.float64), means.astype(np.float64)
    within = ((f - m[lab]) ** 2).sum(-1)
    c = m - m.mean(0)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    k = len(m)
    cos = c @ c.T
    etf = np.where(np.eye(k, dtype=bool), 1.0, -1 / (k - 1))
    return within, ((cos - etf) ** 2).sum() / k**2


def test_nc_matches_numpy():
    reg = jax.jit(rep.nc_inducing_regularizers)(FEAT, LAB, MEANS)
    within, between = np_nc(FEAT, LAB, MEANS)
    np.testing.assert_allclose(reg.within, within, rtol=1e-5)
    np.testing.assert_allclose(reg.between, between, rtol=1e-5)


def test_nc_exact_simplex_etf_collapse_gives_zero():
    means = simplex_etf(K, D, scale=2.5, offset=RNG.normal(size=D)).astype(np.float32)
    reg = rep.nc_inducing_regularizers(means[LAB], LAB, means)
    np.testing.assert_allclose(reg.within, 0.0, atol=1e-10)
    np.testing.assert_allclose(reg.between, 0.0, atol=1e-6)
    assert float(rep.nc_inducing_regularizers(FEAT, LAB, MEANS).between) > 1e-2


def test_nc_edge_cases_and_mask():
    zeros = np.zeros((K, D), np.float32)  # all class means equal: zero directions
    value, grads = jax.value_and_grad(
        lambda f, m: (
            jnp.sum(rep.nc_inducing_regularizers(f, LAB, m).within)
            + rep.nc_inducing_regularizers(f, LAB, m).between
        ),
        argnums=(0, 1),
    )(FEAT, zeros)
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g)) for g in grads)
    mask = LAB != 3
    bad = FEAT.copy()
    bad[~mask] = np.nan
    reg = rep.nc_inducing_regularizers(bad, np.where(mask, LAB, 99), MEANS, where=mask)
    np.testing.assert_allclose(reg.within[mask], np_nc(FEAT, LAB, MEANS)[0][mask], rtol=1e-5)
    assert np.all(np.asarray(reg.within)[~mask] == 0)
    bf = rep.nc_inducing_regularizers(jnp.asarray(FEAT, jnp.bfloat16), LAB, MEANS)
    assert bf.within.dtype == jnp.float32 and bf.between.dtype == jnp.float32


def test_nc_bad_arguments():
    with pytest.raises(ValueError, match="class_means"):
        rep.nc_inducing_regularizers(FEAT, LAB, MEANS[:, :3])
    with pytest.raises(ValueError, match="K >= 2"):
        rep.nc_inducing_regularizers(FEAT, LAB * 0, MEANS[:1])
    with pytest.raises(ValueError, match="labels"):
        rep.nc_inducing_regularizers(FEAT, LAB[:3], MEANS)


def np_dispersive(z, tau, variant, margin=1.0, scale=True):
    z = z.reshape(len(z), -1).astype(np.float64)
    n, d = z.shape
    dist = ((z[:, None] - z[None]) ** 2).sum(-1) / (d if scale else 1)
    if variant == "l2":
        return np.log(np.exp(-dist / tau).mean())
    if variant == "cosine":
        u = z / np.linalg.norm(z, axis=1, keepdims=True)
        return np.log(np.exp(u @ u.T / tau).mean())
    off = ~np.eye(n, dtype=bool)
    return (np.maximum(margin - dist[off], 0) ** 2).mean()


@pytest.mark.parametrize("variant", ["l2", "cosine", "hinge"])
def test_dispersive_matches_numpy(variant):
    z = RNG.normal(size=(7, 2, 3)).astype(np.float32)
    fn = jax.jit(lambda z: rep.dispersive_loss(z, tau=0.7, variant=variant, margin=2.0))
    np.testing.assert_allclose(fn(z), np_dispersive(z, 0.7, variant, 2.0), rtol=1e-5, atol=1e-7)


def test_dispersive_is_uniformity_loss_and_collapse_is_max():
    z = RNG.normal(size=(6, 3)).astype(np.float64)
    t, n = 2.0, 6
    dist = ((z[:, None] - z[None]) ** 2).sum(-1)
    off = ~np.eye(n, dtype=bool)
    uniformity = np.log(np.exp(-t * dist[off]).mean())  # Wang–Isola, i ≠ j
    full = np.log((n + (n * n - n) * np.exp(uniformity)) / n**2)  # add the diagonal (e⁰ = 1)
    got = rep.dispersive_loss(z.astype(np.float32), tau=1 / t, scale_by_dim=False)
    np.testing.assert_allclose(got, full, rtol=1e-5)
    collapsed = np.ones((5, 3), np.float32)
    assert float(rep.dispersive_loss(collapsed)) == 0.0
    np.testing.assert_allclose(rep.dispersive_loss(collapsed, variant="cosine", tau=0.5), 2.0)
    np.testing.assert_allclose(rep.dispersive_loss(collapsed, variant="hinge", margin=0.5), 0.25)


def test_dispersive_lower_for_spread_points():
    spread = simplex_etf(4, 4, scale=3.0).astype(np.float32)
    close = spread * 0.1
    for variant in ("l2", "cosine", "hinge"):
        far = float(rep.dispersive_loss(spread, variant=variant, margin=1.0))
        near = float(rep.dispersive_loss(close + np.float32(1.0), variant=variant, margin=1.0))
        assert far < near, variant
    assert float(rep.dispersive_loss(spread, variant="hinge", margin=1.0)) == 0.0


@pytest.mark.parametrize("variant", ["l2", "cosine", "hinge"])
def test_dispersive_finite_grads_edge_cases_and_mask(variant):
    fn = lambda z, w=None: rep.dispersive_loss(z, variant=variant, where=w)  # noqa: E731
    for z in (np.zeros((4, 3), np.float32), np.ones((4, 3), np.float32) * 1e3):
        value, grad = jax.value_and_grad(fn)(z)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    z = RNG.normal(size=(6, 3)).astype(np.float32)
    mask = np.array([True, True, False, True, False, True])
    bad = z.copy()
    bad[~mask] = np.nan
    np.testing.assert_allclose(fn(bad, mask), fn(z[mask]), rtol=1e-6)
    assert np.all(np.isfinite(jax.grad(fn)(bad, mask)))
    single = np.array([True] + [False] * 5)
    assert float(fn(bad, single)) == 0.0 and np.all(np.isfinite(jax.grad(fn)(bad, single)))
    assert fn(jnp.asarray(z, jnp.bfloat16)).dtype == jnp.float32


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"tau": 0.0}, "tau"), ({"variant": "l1"}, "variant"), ({"margin": -1.0}, "margin")],
)
def test_dispersive_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        rep.dispersive_loss(jnp.ones((3, 2)), **kw)
    with pytest.raises(ValueError, match="z must"):
        rep.dispersive_loss(jnp.ones(3))
    with pytest.raises(ValueError, match="where"):
        rep.dispersive_loss(jnp.ones((3, 2)), where=jnp.ones(2, bool))
