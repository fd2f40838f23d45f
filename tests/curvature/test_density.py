"""Stochastic Lanczos quadrature and Gaussian-broadened densities against dense spectra."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec as P

from jaxlab.curvature.density import (
    density_grid,
    hessian_density,
    plot_density,
    slq,
    spectral_density,
    tridiag_quadrature,
)
from jaxlab.curvature.lanczos import lanczos_tridiag
from tests.curvature.test_eigen import dense_pytree_operator, dense_spectrum, diag_problem
from tests.curvature.test_operators import BATCH, make_problem


def smoothed(points, weights, grid, sigma):
    """Reference Gaussian-broadened density of a discrete measure, in NumPy float64."""
    z = (np.asarray(grid)[:, None] - np.asarray(points)[None, :]) / sigma
    return np.exp(-0.5 * z**2) @ np.asarray(weights) / (np.sqrt(2 * np.pi) * sigma)


def test_quadrature_is_exact_for_low_degree_polynomials():
    """m Lanczos nodes/weights integrate θ^p exactly for p < 2m: Σ τ θ^p = vᵀ A^p v / ‖v‖²."""
    m = 8
    with jax.enable_x64(True):
        a, like = diag_problem(np.linspace(-1.0, 2.0, 30))
        v = jax.tree.map(lambda x: jnp.sin(jnp.arange(x.size, dtype=x.dtype) + 2.0), like)
        t = jax.jit(lambda v: lanczos_tridiag(dense_pytree_operator(a, like), v, m))(v)
        nodes, weights = jax.device_get(tridiag_quadrature(t.alphas, t.betas))
        a, v = np.asarray(a), np.asarray(ravel_pytree(v)[0])
    v = v / np.linalg.norm(v)
    for p in range(2 * m):
        exact = v @ np.linalg.matrix_power(a, p) @ v
        assert np.sum(weights * nodes**p) == pytest.approx(exact, rel=1e-9, abs=1e-12), p


def test_host_float64_and_device_eigensolvers_agree_in_float32():
    a, like = diag_problem(np.linspace(-1.0, 2.0, 30))
    a = jnp.asarray(a, jnp.float32)
    op = dense_pytree_operator(a, like)

    @jax.jit
    def run(key):
        out = {}
        for host in (True, False):
            out[host] = slq(op, like, key, num_steps=12, num_runs=3, host_float64=host)
        return out

    out = run(jax.random.key(0))
    assert out[True][0].dtype == jnp.float32
    np.testing.assert_allclose(out[True][0], out[False][0], atol=1e-5)
    np.testing.assert_allclose(out[True][1], out[False][1], atol=1e-5)
    np.testing.assert_allclose(np.sum(out[True][1], 1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("reortho", ["none", "full"])
def test_slq_density_matches_the_dense_smoothed_spectrum(reortho):
    h, evals, _ = dense_spectrum("cnn")
    n = h.shape[0]
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("cnn")
        nodes, weights = jax.device_get(
            hessian_density(
                loss_fn, params, batch, key=jax.random.key(0), num_steps=40, num_runs=16,
                reortho=reortho,
            )
        )  # fmt: skip
    assert nodes.shape == weights.shape == (16, 40)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-10)
    # Outliers: the extreme nodes are the extreme eigenvalues.
    assert nodes.max() == pytest.approx(evals[-1], rel=1e-8)
    assert nodes.min() == pytest.approx(evals[0], rel=1e-8)
    # Smoothed densities at a width of 5 % of the spectrum agree in L1.
    sigma = 0.05 * (evals[-1] - evals[0])
    grid = np.linspace(evals[0] - 4 * sigma, evals[-1] + 4 * sigma, 600)
    dx = grid[1] - grid[0]
    with jax.enable_x64(True):
        est = np.asarray(spectral_density(nodes, weights, grid, sigma=sigma))
    ref = smoothed(evals, np.full(n, 1.0 / n), grid, sigma)
    assert np.sum(ref) * dx == pytest.approx(1.0, abs=1e-3)
    assert np.sum(np.abs(est - ref)) * dx < 0.08
    # The SLQ trace n·E[Σ τ θ] is within 4 standard errors of the exact trace.
    per_run = n * np.sum(weights * nodes, 1)
    assert abs(per_run.mean() - evals.sum()) < 4 * per_run.std(ddof=1) / np.sqrt(16)


def test_slq_under_pmap_and_shard_map_equals_single_device():
    _, _, loss_fn, _, params, batch = make_problem("mlp", jnp.float32)
    key = jax.random.key(1)
    kw = dict(key=key, num_steps=20, num_runs=4, reortho="full")
    single = hessian_density(loss_fn, params, batch, **kw)

    def per_device(p, b):
        return hessian_density(loss_fn, p, b, axis_name="i", **kw)

    sharded = jax.tree.map(lambda x: x.reshape(8, BATCH // 8, *x.shape[1:]), batch)
    pm = jax.pmap(per_device, axis_name="i", in_axes=(None, 0))(params, sharded)
    mesh = jax.make_mesh((8,), ("i",), axis_types=(jax.sharding.AxisType.Auto,))
    sm = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("i")), out_specs=P(), check_vma=False)
    )(params, batch)
    for nodes, weights in [(pm[0][d], pm[1][d]) for d in (0, 7)] + [sm]:
        np.testing.assert_allclose(nodes, single[0], atol=1e-4 * np.abs(single[0]).max())
        np.testing.assert_allclose(weights, single[1], atol=1e-4)


def test_chunked_runs_equal_vmapped_runs_and_no_recompile():
    traces = []
    _, _, loss_fn, _, params, batch = make_problem("mlp", jnp.float32)

    def counting_loss(p, b):
        traces.append(1)
        return loss_fn(p, b)

    kw = dict(num_steps=10, num_runs=4, reortho="blocked")
    a = hessian_density(counting_loss, params, batch, key=jax.random.key(0), **kw)
    n = len(traces)
    b = hessian_density(counting_loss, params, batch, key=jax.random.key(1), **kw)
    assert len(traces) == n and not np.allclose(a[0], b[0])
    c = hessian_density(counting_loss, params, batch, key=jax.random.key(0), batch_size=2, **kw)
    np.testing.assert_allclose(c[0], a[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c[1], a[1], atol=1e-5)


def test_mask_gives_the_sub_block_density():
    h, _, _ = dense_spectrum("mlp")
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("mlp")
        mask = jax.tree.map(lambda x: x.ndim == 2, params)  # kernels only
        sel = np.asarray(
            ravel_pytree(jax.tree.map(lambda m, p: jnp.full(p.shape, m), mask, params))[0]
        )
        sub = h[np.ix_(sel > 0, sel > 0)]
        d = sub.shape[0]
        nodes, weights = jax.device_get(
            hessian_density(loss_fn, params, batch, key=jax.random.key(2), num_steps=d,
                            num_runs=2, reortho="full", mask=mask)
        )  # fmt: skip
    # With as many steps as the block's dimension, the nodes are the block's eigenvalues.
    evals = np.linalg.eigvalsh(sub)
    for r in range(2):
        big = weights[r] > 1e-10
        assert np.all(np.min(np.abs(nodes[r][big][:, None] - evals[None, :]), 1) < 1e-8)
    with pytest.raises(ValueError, match="num_steps"):
        hessian_density(loss_fn, params, batch, key=jax.random.key(2), num_steps=d + 1, mask=mask)


# ---------------------------------------------------------------------------------------------
# Broadening.


def test_pyhessian_and_scale_free_widths():
    nodes = np.array([[-1.0, 0.5, 3.0, 7.0]])
    weights = np.array([[0.1, 0.2, 0.3, 0.4]])
    grid = np.linspace(-3.0, 9.0, 24001)
    dx = grid[1] - grid[0]
    # PyHessian: variance 1e-5 · max(1, range) = 8e-5.
    sigma = np.sqrt(1e-5 * 8.0)
    got = np.asarray(spectral_density(nodes, weights, grid, sigma_rule="pyhessian"))
    np.testing.assert_allclose(got, smoothed(nodes[0], weights[0], grid, sigma), rtol=1e-3,
                               atol=1e-3)  # fmt: skip
    assert np.sum(got) * dx == pytest.approx(1.0, rel=1e-4)
    # Scale-free: support padded by 5 % each side, mapped to [-1, 1], σ = 2/((m-1)√(8 ln κ)).
    half = 0.5 * 1.1 * 8.0
    sigma = half * 2.0 / (3 * np.sqrt(8 * np.log(3.0)))
    got = np.asarray(spectral_density(nodes, weights, grid, sigma_rule="scale_free"))
    np.testing.assert_allclose(got, smoothed(nodes[0], weights[0], grid, sigma), rtol=1e-3,
                               atol=1e-3)  # fmt: skip
    # Zero-weight nodes (breakdown padding) do not stretch the support.
    padded_nodes = np.concatenate([nodes, [[100.0]]], 1)
    padded_weights = np.concatenate([weights, [[0.0]]], 1)
    got2 = spectral_density(padded_nodes, padded_weights, grid, sigma_rule="pyhessian")
    got1 = spectral_density(nodes, weights, grid, sigma_rule="pyhessian")
    np.testing.assert_allclose(got2, got1, rtol=1e-6)


def test_log_view_is_a_density_in_log_abs_lambda():
    nodes = np.array([[1e-4, 1e-2, -1.0, 10.0], [2e-4, 2e-2, -2.0, 20.0]])
    weights = np.full((2, 4), 0.25)
    grid = density_grid(nodes, weights, num_points=4000, margin=0.5, log_abs=True)
    dens = np.asarray(spectral_density(nodes, weights, grid, log_abs=True))
    dx = float(grid[1] - grid[0])
    assert np.sum(dens) * dx == pytest.approx(1.0, rel=1e-3)
    peak = float(grid[np.argmax(dens)])
    assert any(abs(peak - np.log(abs(v) + 1e-5)) < 0.1 for v in nodes.ravel())
    grid = density_grid(nodes, weights, num_points=50)
    assert float(grid[0]) < -2.0 and float(grid[-1]) > 20.0


def test_plot_density_draws_with_matplotlib():
    matplotlib.use("Agg")
    nodes = np.array([[0.0, 1.0, 2.0]])
    weights = np.array([[0.2, 0.3, 0.5]])
    grid = density_grid(nodes, weights)
    ax = plot_density(grid, spectral_density(nodes, weights, grid), label="H")
    assert ax.get_yscale() == "log" and len(ax.lines) == 1
    grid = density_grid(nodes + 1.0, weights, log_abs=True)
    ax = plot_density(grid, spectral_density(nodes + 1.0, weights, grid, log_abs=True),
                      log_abs=True)  # fmt: skip
    assert ax.get_xscale() == "log"
    import matplotlib.pyplot as plt

    plt.close("all")


def test_bad_inputs_raise_naming_the_argument():
    nodes, weights = np.zeros((2, 3)), np.full((2, 3), 1 / 3)
    grid = np.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match="sigma_rule"):
        spectral_density(nodes, weights, grid, sigma_rule="silverman")
    with pytest.raises(ValueError, match="kappa"):
        spectral_density(nodes, weights, grid, sigma_rule="scale_free", kappa=1.0)
    with pytest.raises(ValueError, match="sigma"):
        spectral_density(nodes, weights, grid, sigma=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        spectral_density(nodes, weights[:, :2], grid)
    like = {"a": jnp.zeros(4)}
    op = lambda v: v  # noqa: E731
    for kwargs, match in [
        (dict(num_steps=5), "num_steps"),
        (dict(num_runs=0), "num_runs"),
        (dict(reortho="some"), "reortho"),
        (dict(batch_size=0), "batch_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            slq(op, like, jax.random.key(0), **{"num_steps": 3, **kwargs})
    _, _, loss_fn, _, params, batch = make_problem("mlp", jnp.float32)
    with pytest.raises(ValueError, match="num_steps"):
        hessian_density(loss_fn, params, batch, key=jax.random.key(0), num_steps=58)
