"""Tests for jaxlab.curvature.landscape: per-filter norms, closed-form surfaces of a quadratic,
analytic barriers, PCA against scikit-learn and a planted plane, Hessian-eigenvector directions,
and PNG output of the plotting helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.curvature import landscape as ls
from jaxlab.curvature.eigen import hessian_eigenvalues


def _params():
    k = jax.random.split(jax.random.key(0), 3)
    return {
        "conv": {"kernel": jax.random.normal(k[0], (2, 2, 3, 5))},
        "bn": {"scale": jnp.full((5,), 2.0), "bias": jnp.full((5,), 0.5)},
        "dense": {"kernel": jax.random.normal(k[1], (5, 4)), "bias": jnp.ones((4,))},
    }


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


# ----------------------------------------------------------------------------------------------
# Directions


def test_filter_norms_equal_and_bias_bn_rule():
    params = _params()
    d = ls.filter_normalized_direction(jax.random.key(1), params)
    for name in ("conv", "dense"):
        w, v = params[name]["kernel"], d[name]["kernel"]
        axes = tuple(range(w.ndim - 1))
        norms = [jnp.sqrt(jnp.sum(jnp.square(x), axis=axes)) for x in (v, w)]
        np.testing.assert_allclose(norms[0], norms[1], rtol=1e-5)
        assert not np.allclose(v / jnp.linalg.norm(v), w / jnp.linalg.norm(w))  # still random
    for leaf in (d["bn"]["scale"], d["bn"]["bias"], d["dense"]["bias"]):
        np.testing.assert_array_equal(leaf, 0.0)
    kept = ls.filter_normalized_direction(jax.random.key(1), params, ignore=None)
    np.testing.assert_array_equal(kept["bn"]["scale"], params["bn"]["scale"])
    np.testing.assert_allclose(kept["conv"]["kernel"], d["conv"]["kernel"])
    # PyTorch layout: filters along axis 0.
    w = params["dense"]["kernel"]
    rows = ls.filter_normalize(jnp.ones_like(w), w, filter_axis=0)
    np.testing.assert_allclose(jnp.linalg.norm(rows, axis=1), jnp.linalg.norm(w, axis=1), rtol=1e-6)
    np.testing.assert_allclose(rows / jnp.linalg.norm(rows, axis=1, keepdims=True), 0.5, rtol=1e-6)


def _scale_invariant_loss(params, batch):
    """Depends on each column (filter) only through its direction, like a conv before BN."""
    w = params["w"]
    u = w / jnp.linalg.norm(w, axis=0, keepdims=True)
    return jnp.sum(jnp.square(batch @ u - 1.0))


def test_filter_normalised_surface_is_invariant_to_filter_rescaling():
    """Rescaling filter j by c leaves the function and the filter-normalised 1-D plot unchanged;
    an unnormalised direction changes it (Li et al. §4)."""
    w = jax.random.normal(jax.random.key(2), (3, 4))
    w_scaled = w * jnp.array([1.0, 10.0, 0.1, 3.0])[None, :]
    batch = jax.random.normal(jax.random.key(3), (6, 3))
    alphas = jnp.linspace(-1.0, 1.0, 5)
    key = jax.random.key(4)
    curves = [
        ls.loss_surface_1d(
            _scale_invariant_loss, {"w": p}, batch,
            ls.filter_normalized_direction(key, {"w": p}), alphas,
        )
        for p in (w, w_scaled)
    ]  # fmt: skip
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-4)
    raw = jax.random.normal(key, (3, 4))
    raw_curves = [
        ls.loss_surface_1d(_scale_invariant_loss, {"w": p}, batch, {"w": raw}, alphas)
        for p in (w, w_scaled)
    ]
    assert not np.allclose(raw_curves[0], raw_curves[1], rtol=1e-2)


# ----------------------------------------------------------------------------------------------
# Surfaces on a quadratic: exact parabola and paraboloid


def _quad_loss(params, batch):
    a, b = batch
    w = jnp.concatenate([params["x"].ravel(), params["y"]])
    return 0.5 * w @ (a @ w) + b @ w


def _quad_problem():
    rng = np.random.default_rng(5)
    m = rng.normal(size=(10, 10))
    a, b = m @ m.T / 10, rng.normal(size=10)
    params = {"x": jnp.asarray(rng.normal(size=(2, 3))), "y": jnp.asarray(rng.normal(size=4))}
    dx = {"x": jnp.asarray(rng.normal(size=(2, 3))), "y": jnp.asarray(rng.normal(size=4))}
    dy = {"x": jnp.asarray(rng.normal(size=(2, 3))), "y": jnp.asarray(rng.normal(size=4))}
    return a, b, params, dx, dy


def test_surfaces_of_a_quadratic_equal_the_closed_form():
    with jax.enable_x64(True):
        a, b, params, dx, dy = _quad_problem()
        batch = (jnp.asarray(a), jnp.asarray(b))
        alphas, betas = jnp.linspace(-1.0, 1.0, 7), jnp.linspace(-0.5, 2.0, 5)
        s1 = ls.loss_surface_1d(_quad_loss, params, batch, dx, alphas, chunk_size=3)
        s2 = ls.loss_surface_2d(_quad_loss, params, batch, dx, dy, alphas, betas, chunk_size=4)
        s2_seq = ls.loss_surface_2d(_quad_loss, params, batch, dx, dy, alphas, betas)
        w, u, v = (np.asarray(_flat(t)) for t in (params, dx, dy))
        s1, s2, s2_seq, alphas, betas = map(np.asarray, (s1, s2, s2_seq, alphas, betas))
    g, l0 = a @ w + b, 0.5 * w @ a @ w + b @ w
    np.testing.assert_allclose(
        s1, l0 + alphas * (g @ u) + 0.5 * alphas**2 * (u @ a @ u), rtol=1e-12
    )
    al, be = alphas[:, None], betas[None, :]
    exact = (
        l0 + al * (g @ u) + be * (g @ v)
        + 0.5 * (al**2 * (u @ a @ u) + 2 * al * be * (u @ a @ v) + be**2 * (v @ a @ v))
    )  # fmt: skip
    assert s2.shape == (7, 5)
    np.testing.assert_allclose(s2, exact, rtol=1e-12)
    np.testing.assert_allclose(s2_seq, s2, rtol=1e-12)


def test_surface_along_top_hessian_eigenvector():
    """Along the top eigenvector v: f(α) − L − α gᵀv = ½ λ₁ α² exactly on a quadratic."""
    with jax.enable_x64(True):
        a, b, params, _, _ = _quad_problem()
        batch = (jnp.asarray(a), jnp.asarray(b))
        res = hessian_eigenvalues(_quad_loss, params, batch, k=2, key=jax.random.key(0))
        v1, v2 = ls.eigenvector_directions(res.eigenvectors, (0, 1))
        alphas = jnp.linspace(-2.0, 2.0, 5)
        s = np.asarray(ls.loss_surface_1d(_quad_loss, params, batch, v1, alphas))
        w, u1, u2 = (np.asarray(_flat(t)) for t in (params, v1, v2))
        alphas = np.asarray(alphas)
    lam = np.linalg.eigvalsh(a)
    np.testing.assert_allclose([u1 @ u1, u2 @ u2, u1 @ u2], [1.0, 1.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(u1 @ a @ u1, lam[-1], rtol=1e-8)
    np.testing.assert_allclose(u2 @ a @ u2, lam[-2], rtol=1e-8)
    l0, g = 0.5 * w @ a @ w + b @ w, a @ w + b
    np.testing.assert_allclose(s - l0 - alphas * (g @ u1), 0.5 * lam[-1] * alphas**2, atol=1e-10)


def test_surface_multi_device_equals_single_device():
    rng = np.random.default_rng(6)
    x, y = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32), jnp.ones((16,))
    params, d = jnp.ones(3), jnp.asarray(rng.normal(size=3), jnp.float32)
    alphas = jnp.linspace(-1.0, 1.0, 4)

    def loss(p, batch):
        return jnp.mean(jnp.square(batch[0] @ p - batch[1]))

    ref = ls.loss_surface_1d(loss, params, (x, y), d, alphas)
    got = jax.pmap(
        lambda b: ls.loss_surface_1d(loss, params, b, d, alphas, axis_name="i"), axis_name="i"
    )((x.reshape(8, 2, 3), y.reshape(8, 2)))
    np.testing.assert_allclose(got[0], ref, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Interpolation and barrier


def test_barrier_of_convex_loss_is_zero():
    with jax.enable_x64(True):
        a, b, params, dx, _ = _quad_problem()
        batch = (jnp.asarray(a), jnp.asarray(b))
        other = jax.tree.map(lambda p, d: p + 3.0 * d, params, dx)
        res = ls.loss_barrier(_quad_loss, params, other, batch, num_points=11, chunk_size=4)
        ends = [float(_quad_loss(p, batch)) for p in (params, other)]
        path = ls.linear_interpolation(_quad_loss, params, other, batch, jnp.array([0.0, 1.0]))
        barrier, losses = float(res.barrier), np.asarray(res.losses)
    assert 0.0 <= barrier <= 1e-12
    np.testing.assert_allclose([losses[0], losses[-1]], ends, rtol=1e-14)
    np.testing.assert_allclose(path, ends, rtol=1e-14)


def _double_well(params, batch):
    del batch
    x, y = params
    return jnp.square(x**2 - 1.0) + y**2


def test_barrier_of_double_well_matches_analytic_value():
    """θ_a = (−1, 0), θ_b = (1, ½): the gap (x²−1)² + α²/4 − α/4 peaks at α = ½ with 15/16."""
    res = ls.loss_barrier(
        _double_well, jnp.array([-1.0, 0.0]), jnp.array([1.0, 0.5]), None, num_points=21
    )
    np.testing.assert_allclose(res.barrier, 15.0 / 16.0, rtol=1e-6)
    np.testing.assert_allclose(res.alpha, 0.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.losses)[[0, -1]], [0.0, 0.25], atol=1e-7)


# ----------------------------------------------------------------------------------------------
# PCA of a trajectory


def test_pca_recovers_planted_plane_and_matches_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(7)
    t, n = 12, 14
    basis, _ = np.linalg.qr(rng.normal(size=(n, 2)))
    coeffs = np.stack([np.linspace(0.0, 3.0, t), np.sin(np.linspace(0.0, 3.0, t))], axis=1)
    origin = rng.normal(size=n)
    traj = origin[None, :] + coeffs @ basis.T
    noisy = traj + 1e-3 * rng.normal(size=traj.shape)
    with jax.enable_x64(True):
        stacked = {"a": jnp.asarray(noisy[:, :8].reshape(t, 2, 4)), "b": jnp.asarray(noisy[:, 8:])}
        dirs, ratio = ls.pca_directions(stacked, num_components=2)
        d = np.asarray(jax.vmap(_flat)(dirs))
        ratio = np.asarray(ratio)
        clean = {"a": jnp.asarray(traj[:, :8].reshape(t, 2, 4)), "b": jnp.asarray(traj[:, 8:])}
        last = jax.tree.map(lambda x: x[-1], clean)
        coords = np.asarray(ls.project_trajectory(clean, last, dirs))
    np.testing.assert_allclose(d @ d.T, np.eye(2), atol=1e-10)
    # The plane is recovered: the planted basis lies in the span of the directions.
    np.testing.assert_allclose(np.linalg.norm(d @ basis, axis=0), 1.0, atol=1e-4)
    sk = PCA(n_components=2).fit(noisy)
    np.testing.assert_allclose(ratio, sk.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(d @ sk.components_.T), np.eye(2), atol=1e-6)
    # Projection reconstructs the in-plane trajectory relative to the last point.
    np.testing.assert_allclose(coords @ d, traj - traj[-1], atol=1e-2)


def test_pca_biasbn_zeroes_one_dimensional_leaves():
    rng = np.random.default_rng(8)
    stacked = {
        "w": jnp.asarray(rng.normal(size=(5, 3, 2))),
        "b": jnp.asarray(rng.normal(size=(5, 3))),
    }
    dirs, _ = ls.pca_directions(stacked, num_components=2, ignore="biasbn")
    np.testing.assert_array_equal(dirs["b"], 0.0)
    assert dirs["w"].shape == (2, 3, 2)


# ----------------------------------------------------------------------------------------------
# Plotting


def test_plots_write_png(tmp_path):
    alphas, betas = np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)
    losses = alphas[:, None] ** 2 + 2 * betas[None, :] ** 2 + 0.1
    ax = ls.plot_surface_1d(alphas, losses[:, 0], path=tmp_path / "line.png", label="x", log=True)
    ls.plot_surface_2d(
        alphas, betas, losses, path=tmp_path / "plane.png", trajectory=np.zeros((3, 2)), log=True
    )
    for name in ("line.png", "plane.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ax.get_xlabel() == "α"


# ----------------------------------------------------------------------------------------------
# Bad input


def _loss(p, b):
    return jnp.sum(p["w"])


P = {"w": jnp.ones((2, 2))}


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ls.filter_normalize(P, P, ignore="bias"), ValueError, "ignore='bias'"),
        (lambda: ls.filter_normalize({"v": jnp.ones((2, 2))}, P), ValueError, "direction"),
        (lambda: ls.loss_surface_1d(_loss, P, None, P, jnp.ones((2, 2))), ValueError, "alphas"),
        (lambda: ls.loss_surface_1d(_loss, P, None, P, jnp.ones(2), chunk_size=0), ValueError,
         "chunk_size=0"),
        (lambda: ls.loss_surface_2d(_loss, P, None, P, {"v": 1.0}, jnp.ones(2), jnp.ones(2)),
         ValueError, "direction 1"),
        (lambda: ls.loss_barrier(_loss, P, P, None, num_points=1), ValueError, "num_points=1"),
        (lambda: ls.loss_barrier("f", P, P, None), TypeError, "loss_fn"),
        (lambda: ls.pca_directions({"w": jnp.ones((3, 2))}, num_components=4), ValueError,
         "num_components=4"),
        (lambda: ls.eigenvector_directions({"w": jnp.ones((2, 3))}, (0, 2)), ValueError,
         "indices"),
    ],
)  # fmt: skip
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()
