"""Lanczos, LOBPCG and power iteration against dense float64 eigendecompositions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec as P

from jaxlab.curvature.eigen import (
    hessian_eigenvalues,
    lanczos_eigenvalues,
    lobpcg_eigenvalues,
    power_iteration,
)
from jaxlab.curvature.lanczos import lanczos_tridiag
from jaxlab.curvature.operators import hessian_operator
from tests.curvature.test_operators import BATCH, dense_hessian, make_problem


@functools.cache
def dense_spectrum(kind):
    """(H, ascending eigenvalues, eigenvectors) of the float64 problem's Hessian."""
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem(kind)
        h = np.asarray(dense_hessian(loss_fn, params, batch))
    evals, evecs = np.linalg.eigh(h)
    return h, evals, evecs


def flat_rows(block):
    """Rows of a pytree block (leading axis) as a dense ``[k, n]`` array."""
    leaves = jax.tree.leaves(block)
    return np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in leaves], 1)


def dense_pytree_operator(a, like):
    """``v -> A v`` on pytrees shaped like ``like`` for a dense symmetric ``A``."""
    _, unravel = ravel_pytree(like)
    return lambda v: unravel(a @ ravel_pytree(v)[0])


def diag_problem(values):
    """A pytree operator with a known spectrum: a diagonal on two leaves, rotated."""
    n = len(values)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))
    a = jnp.asarray((q * np.asarray(values)) @ q.T)
    like = {"a": jnp.zeros(n // 2, a.dtype), "b": jnp.zeros((n - n // 2,), a.dtype)}
    return a, like


def check_eigenpairs(result, h, expected, *, tol):
    scale = np.abs(np.linalg.eigvalsh(h)).max()
    np.testing.assert_allclose(result.eigenvalues, expected, rtol=tol, atol=tol * scale)
    y = flat_rows(result.eigenvectors)
    np.testing.assert_allclose(y @ y.T, np.eye(len(expected)), atol=1e-8)
    true_res = np.linalg.norm(y @ h - np.asarray(result.eigenvalues)[:, None] * y, axis=1)
    assert np.all(true_res <= 1e-5 * scale), true_res
    np.testing.assert_allclose(result.residuals, true_res, atol=1e-8 * scale)
    assert bool(result.converged)


# ---------------------------------------------------------------------------------------------
# Dense oracles: top-k and smallest to 1e-5 relative in float64.


@pytest.mark.parametrize(
    "kind, method, which",
    [
        ("mlp", "lanczos", "largest"),
        ("cnn", "lanczos", "smallest"),
        ("mlp", "lobpcg", "smallest"),
        ("cnn", "lobpcg", "largest"),
    ],
)
def test_hessian_eigenvalues_match_dense(kind, method, which):
    h, evals, _ = dense_spectrum(kind)
    expected = evals[::-1][:3] if which == "largest" else evals[:3]
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem(kind)
        res = jax.device_get(
            hessian_eigenvalues(
                loss_fn, params, batch, k=3, key=jax.random.key(1), which=which, method=method,
                max_steps=200,
            )
        )  # fmt: skip
    assert res.num_matvecs < (60 if method == "lanczos" else 450)
    check_eigenpairs(res, h, expected, tol=1e-5)


def test_magnitude_and_power_iteration_find_the_dominant_eigenvalue():
    values = np.r_[-6.0, 3.0, np.linspace(-2.0, 2.0, 38)]  # dominant eigenvalue is negative
    with jax.enable_x64(True):
        a, like = diag_problem(values)
        op = dense_pytree_operator(a, like)
        v0 = jax.tree.map(lambda x: x + 1.0, like)
        mag = jax.jit(lambda v: lanczos_eigenvalues(op, v, k=2, which="magnitude"))(v0)
        top = jax.jit(lambda v: lanczos_eigenvalues(op, v, k=1, which="largest"))(v0)
        power = jax.jit(lambda v: power_iteration(op, v, max_steps=500, tol=1e-10))(v0)
        mag, top, power = jax.device_get((mag, top, power))
    np.testing.assert_allclose(mag.eigenvalues, [-6.0, 3.0], rtol=1e-10)
    np.testing.assert_allclose(top.eigenvalues, [3.0], rtol=1e-10)
    np.testing.assert_allclose(power.eigenvalues, [-6.0], rtol=1e-10)
    assert bool(power.converged) and power.residuals[0] <= 6e-10
    # λ₂/λ₁ = 1/2: power needs ≈ log2(1e10) ≈ 33+ products, Lanczos far fewer.
    assert 30 <= int(power.num_matvecs) < 60
    assert int(mag.num_matvecs) < int(power.num_matvecs)


def test_default_tolerance_is_accurate_in_float32():
    """G4: the default float32 top eigenvalue is within 1e-4 of the float64 reference."""
    _, _, loss_fn, _, params, batch = make_problem("cnn", jnp.float32)
    res = hessian_eigenvalues(loss_fn, params, batch, k=1, key=jax.random.key(0))
    with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(  # noqa: E731
            lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, t
        )
        top = np.linalg.eigvalsh(np.asarray(dense_hessian(loss_fn, to64(params), to64(batch))))[-1]
    assert res.eigenvalues.dtype == jnp.float32
    assert abs(float(res.eigenvalues[0]) - top) <= 1e-4 * top
    assert bool(res.converged) and int(res.num_matvecs) <= 30


# ---------------------------------------------------------------------------------------------
# Lanczos properties.


@pytest.mark.parametrize("reortho", ["full", "blocked", "none"])
def test_lanczos_basis_relation_and_reconstruction(reortho):
    h, evals, _ = dense_spectrum("mlp")
    n = h.shape[0]
    kw = dict(reortho=reortho, block_size=8)
    with jax.enable_x64(True):
        generic, like = diag_problem(np.linspace(-1.0, 3.0, 40) ** 3)  # distinct eigenvalues
        _, _, loss_fn, _, params, batch = make_problem("mlp")
        v0 = jax.tree.map(lambda x: jnp.cos(jnp.arange(x.size).reshape(x.shape) + 1.0), params)

        @jax.jit
        def run(params, batch, v0):
            op = hessian_operator(loss_fn, params, batch)
            return lanczos_tridiag(op, v0, 20, **kw), lanczos_tridiag(op, v0, n, **kw)

        part, full = jax.device_get(run(params, batch, v0))
        g = jax.jit(lambda v: lanczos_tridiag(dense_pytree_operator(generic, like), v, 40, **kw))(
            jax.tree.map(lambda x: x + 1.0, like)
        )
        g, generic = jax.device_get((g, generic))
        v0 = np.asarray(ravel_pytree(v0)[0])

    def parts(t):
        q = flat_rows(t.basis)
        tri = np.diag(t.alphas) + np.diag(t.betas, 1) + np.diag(t.betas, -1)
        return q, tri, flat_rows(jax.tree.map(lambda x: x[None], t.residual))[0]

    for t, m in ((part, 20), (full, n)):
        q, tri, r = parts(t)
        # A Q = Q T + r e_mᵀ holds step by step, with or without re-orthogonalisation.
        np.testing.assert_allclose(h @ q.T, q.T @ tri + np.outer(r, np.eye(m)[-1]), atol=1e-12)
        np.testing.assert_allclose(q[0], v0 / np.linalg.norm(v0))
    if reortho == "none":
        assert np.abs(q @ q.T - np.eye(n)).max() > 1e-3  # orthogonality is lost without it
        return
    q, tri, _ = parts(part)
    np.testing.assert_allclose(q @ q.T, np.eye(20), atol=1e-12)
    # The Hessian has a 7-dimensional null space (softmax shift invariance of the output layer),
    # so its Krylov space has dimension n - 6: Lanczos breaks down there, pads T with zeros and
    # Q T Qᵀ is H on that invariant subspace.
    assert np.sum(np.abs(evals) < 1e-10) == 7
    q, tri, r = parts(full)
    kept = np.linalg.norm(q, axis=1) > 0.5
    assert kept.sum() == n - 6 and np.all(t.betas[n - 7 :] == 0.0)
    np.testing.assert_allclose(q[kept] @ q[kept].T, np.eye(n - 6), atol=1e-12)
    np.testing.assert_allclose(q.T @ tri @ q, h @ q.T @ q, atol=1e-12)
    # Full-rank reconstruction on an operator with distinct eigenvalues.
    q, tri, r = parts(g)
    np.testing.assert_allclose(q @ q.T, np.eye(40), atol=1e-12)
    np.testing.assert_allclose(q.T @ tri @ q, generic, atol=1e-12)
    assert np.linalg.norm(r) < 1e-10


def test_breakdown_restarts_and_never_leaks_nan():
    values = np.r_[5.0, 4.0, 3.0, np.linspace(-1.0, 1.0, 17)]
    with jax.enable_x64(True):
        a, like = diag_problem(values)
        _, evecs = np.linalg.eigh(np.asarray(a))
        _, unravel = ravel_pytree(like)
        op = dense_pytree_operator(a, like)
        v0 = unravel(jnp.asarray(evecs[:, -1]))  # an eigenvector: invariant after one step
        res = jax.device_get(jax.jit(lambda v: lanczos_eigenvalues(op, v, k=3))(v0))
        t = jax.device_get(jax.jit(lambda v: lanczos_tridiag(op, v, 6, reortho="none"))(v0))
    np.testing.assert_allclose(res.eigenvalues, [5.0, 4.0, 3.0], rtol=1e-10)
    assert np.all(np.isfinite(t.alphas)) and np.all(t.betas == 0.0)
    np.testing.assert_allclose(t.alphas, [5.0, 0, 0, 0, 0, 0], atol=1e-12)
    # LOBPCG started from linearly dependent rows fills them with independent directions.
    with jax.enable_x64(True):
        x0 = jax.tree.map(lambda x: jnp.stack([x, x, 2.0 * x]), v0)
        blk = jax.device_get(jax.jit(lambda x: lobpcg_eigenvalues(op, x, tol=1e-10))(x0))
    np.testing.assert_allclose(blk.eigenvalues, [5.0, 4.0, 3.0], rtol=1e-9)
    # A zero start vector is replaced, not normalised into NaN.
    double = lambda v: jax.tree.map(lambda x: 2.0 * x, v)  # noqa: E731
    zero = jax.jit(lambda v: lanczos_eigenvalues(double, v, k=1))({"a": jnp.zeros(4)})
    np.testing.assert_allclose(zero.eigenvalues, [2.0], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Masks, devices, warm start, compilation.


def test_mask_gives_the_sub_block_spectrum():
    h, _, _ = dense_spectrum("mlp")
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("mlp")
        mask = {
            "Dense_0": {"bias": False, "kernel": True},
            "Dense_1": {"bias": True, "kernel": False},
        }
        sel = ravel_pytree(jax.tree.map(lambda m, p: jnp.full(p.shape, m), mask, params))[0] > 0
        sub = h[np.ix_(np.asarray(sel), np.asarray(sel))]
        expected = np.linalg.eigvalsh(sub)
        for which, want in (("largest", expected[::-1][:2]), ("smallest", expected[:2])):
            res = jax.device_get(
                hessian_eigenvalues(
                    loss_fn, params, batch, k=2, key=jax.random.key(0), which=which, mask=mask
                )
            )
            np.testing.assert_allclose(res.eigenvalues, want, rtol=1e-6)
            assert not np.any(flat_rows(res.eigenvectors)[:, ~np.asarray(sel)])


def _mesh():
    return jax.make_mesh((8,), ("i",), axis_types=(jax.sharding.AxisType.Auto,))


def test_top_eigenvalues_equal_single_device_under_pmap_and_shard_map():
    _, _, loss_fn, _, params, batch = make_problem("mlp", jnp.float32)
    key = jax.random.key(3)
    single = hessian_eigenvalues(loss_fn, params, batch, k=2, key=key)

    def per_device(p, b):
        return hessian_eigenvalues(loss_fn, p, b, k=2, key=key, axis_name="i")

    sharded = jax.tree.map(lambda x: x.reshape(8, BATCH // 8, *x.shape[1:]), batch)
    pm = jax.pmap(per_device, axis_name="i", in_axes=(None, 0))(params, sharded)
    sm = jax.jit(
        jax.shard_map(
            per_device, mesh=_mesh(), in_specs=(P(), P("i")), out_specs=P(), check_vma=False
        )
    )(params, batch)
    pm = jax.device_get(pm)  # host copies, not per-device slices (see force_host_devices)
    for got in [jax.tree.map(lambda x, d=d: x[d], pm) for d in (0, 7)] + [sm]:
        np.testing.assert_allclose(got.eigenvalues, single.eigenvalues, rtol=1e-5)
        overlap = np.abs(np.sum(flat_rows(got.eigenvectors) * flat_rows(single.eigenvectors), 1))
        np.testing.assert_allclose(overlap, 1.0, atol=1e-3)


def test_warm_start_reduces_matvecs():
    """Tracking: LOBPCG started from the previous step's eigenvectors needs far fewer products."""
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("cnn")
        flat, unravel = ravel_pytree(params)
        moved = unravel(flat + 1e-4 * jax.random.normal(jax.random.key(9), flat.shape))
        expected = np.linalg.eigvalsh(np.asarray(dense_hessian(loss_fn, moved, batch)))[::-1][:3]
        random = jax.vmap(lambda k: unravel(jax.random.normal(k, flat.shape)))(
            jax.random.split(jax.random.key(0), 3)
        )
        kw = dict(k=3, method="lobpcg", tol=1e-8)  # one compiled program for all three calls
        before = hessian_eigenvalues(loss_fn, params, batch, init=random, **kw)
        cold = hessian_eigenvalues(loss_fn, moved, batch, init=random, **kw)
        warm = hessian_eigenvalues(loss_fn, moved, batch, init=before.eigenvectors, **kw)
        cold, warm = jax.device_get((cold, warm))
    for res in (cold, warm):
        np.testing.assert_allclose(res.eigenvalues, expected, rtol=1e-7)
        assert res.converged
    assert warm.num_matvecs < 0.6 * cold.num_matvecs, (warm.num_matvecs, cold.num_matvecs)


def test_second_call_with_the_same_shapes_does_not_retrace():
    traces = []
    _, _, loss_fn, _, params, batch = make_problem("mlp", jnp.float32)

    def counting_loss(p, b):
        traces.append(1)
        return loss_fn(p, b)

    first = hessian_eigenvalues(counting_loss, params, batch, key=jax.random.key(0))
    n = len(traces)
    moved = jax.tree.map(lambda x: x * 1.01, params)
    second = hessian_eigenvalues(counting_loss, moved, batch, key=jax.random.key(1))
    assert n > 0 and len(traces) == n
    assert float(first.eigenvalues[0]) != float(second.eigenvalues[0])


def test_stacked_batches_equal_the_full_batch():
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("mlp")
        stacked = jax.tree.map(lambda x: x.reshape(2, BATCH // 2, *x.shape[1:]), batch)
        res = hessian_eigenvalues(
            loss_fn, params, stacked, k=2, key=jax.random.key(0), stacked=True,
            batch_weights=jnp.array([3.0, 3.0]),
        )  # fmt: skip
        res = jax.device_get(res)
    np.testing.assert_allclose(res.eigenvalues, dense_spectrum("mlp")[1][::-1][:2], rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# Bad input.


def test_bad_inputs_raise_naming_the_argument():
    _, _, loss_fn, _, params, batch = make_problem("mlp", jnp.float32)
    key = jax.random.key(0)
    cases = [
        (dict(k=0), "k must be"),
        (dict(k=58), "k must be"),
        (dict(k=5, max_steps=3), "k must be <= max_steps"),
        (dict(which="biggest"), "which"),
        (dict(method="lobpcg", which="magnitude"), "which"),
        (dict(method="arnoldi"), "method"),
        (dict(reortho="partial"), "reortho"),
        (dict(tol=-1.0), "tol"),
        (dict(max_steps=0), "max_steps"),
        (dict(key=None), "key"),
        (dict(init={"w": jnp.ones((1, 3))}), "init"),
        (dict(k=2, init=jax.tree.map(lambda x: x[None], params)), "init"),
        (dict(mask={"Dense_0": True}), "mask"),
        (dict(mask=jax.tree.map(lambda _: False, params)), "mask"),
    ]
    for kwargs, match in cases:
        kwargs = {"key": key, **kwargs}
        with pytest.raises(ValueError, match=match):
            hessian_eigenvalues(loss_fn, params, batch, **kwargs)
    op = lambda v: v  # noqa: E731
    v = {"a": jnp.ones(4)}
    with pytest.raises(ValueError, match="num_steps"):
        lanczos_tridiag(op, v, 5)
    with pytest.raises(ValueError, match="num_steps"):
        lanczos_tridiag(op, v, 0)
    with pytest.raises(ValueError, match="k must be"):
        lanczos_eigenvalues(op, v, k=5)
    with pytest.raises(ValueError, match="x0"):
        lobpcg_eigenvalues(op, {"a": jnp.ones((2, 4)), "b": jnp.ones((3, 4))})
    with pytest.raises(ValueError, match="which"):
        lobpcg_eigenvalues(op, {"a": jnp.ones((2, 4))}, which="magnitude")
    with pytest.raises(TypeError, match="matvec must return"):
        lanczos_eigenvalues(lambda x: {"b": x["a"]}, v)


# ---------------------------------------------------------------------------------------------
# The blocked prefix kernels behind "cost follows the steps taken" (lanczos.py).


@pytest.mark.parametrize("inside", [False, True], ids=["generic_w", "w_mostly_in_span"])
@pytest.mark.parametrize("num_rows", [0, 1, 5, 8, 9, 16])
def test_prefix_gram_schmidt_equals_dense_cgs_on_the_filled_rows(num_rows, inside):
    """Blocked CGS over rows < num_rows = a dense NumPy transcription against those rows only:
    one classical Gram-Schmidt pass, and a second one when the first kept < 1/√2 of ‖w‖."""
    from jaxlab.curvature.lanczos import _combine_prefix, _project_out_cgs

    rng = np.random.default_rng(0)
    n, rows, block = 40, 16, 8
    q, _ = np.linalg.qr(rng.standard_normal((n, rows)))
    basis = q.T.copy()
    basis[num_rows:] = rng.standard_normal((rows - num_rows, n))  # garbage beyond: must be skipped
    w = rng.standard_normal(n)
    if inside:  # large cancellation: the DGKS rule asks for the second pass
        w = 1e-3 * w + basis[:num_rows].T @ rng.standard_normal(num_rows)
    qq = basis[:num_rows]
    expect = w - qq.T @ (qq @ w)
    second = np.linalg.norm(expect) < np.linalg.norm(w) / np.sqrt(2.0)
    if second:
        expect = expect - qq.T @ (qq @ expect)
    assert second == (inside and num_rows > 0)
    blocks = -(-num_rows // block) * block  # the loop reads whole blocks
    if blocks > num_rows:  # rows inside the last block are read: make them zero as in Lanczos
        basis[num_rows:blocks] = 0.0
    with jax.enable_x64(True):
        got = jax.jit(_project_out_cgs, static_argnums=3)(
            jnp.asarray(w), jnp.asarray(basis), num_rows, block
        )
        coeffs = rng.standard_normal((rows, 3))
        coeffs[num_rows:] = 0.0
        comb = jax.jit(_combine_prefix, static_argnums=3)(
            jnp.asarray(coeffs), jnp.asarray(basis), num_rows, block
        )
    np.testing.assert_allclose(np.asarray(got), expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(comb), coeffs[:num_rows].T @ basis[:num_rows], rtol=1e-12, atol=1e-12
    )
    if num_rows:
        assert np.max(np.abs(basis[:num_rows] @ np.asarray(got))) < 1e-12 * np.linalg.norm(w)


def test_max_steps_headroom_does_not_change_the_result():
    """Unused preallocated rows are never read: max_steps = 60 or the steps taken agree."""
    with jax.enable_x64(True):
        a = np.diag(np.concatenate([np.linspace(0.0, 1.0, 59), [3.0]]))
        v0 = jnp.asarray(np.random.default_rng(1).standard_normal(60))

        def run(max_steps):
            return jax.jit(
                lambda v: lanczos_eigenvalues(lambda x: jnp.asarray(a) @ x, v, max_steps=max_steps)
            )(v0)

        big = run(60)
        small = run(int(big.num_matvecs))
    assert bool(big.converged) and int(big.num_matvecs) < 60
    np.testing.assert_allclose(big.eigenvalues, 3.0, rtol=1e-9)
    np.testing.assert_allclose(big.eigenvalues, small.eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(
        np.abs(np.asarray(big.eigenvectors)), np.abs(np.asarray(small.eigenvectors)), atol=1e-9
    )


def test_solves_past_the_first_basis_continue_the_same_recurrence():
    """A solve that needs more than the first 32-row basis moves to the max_steps basis and
    carries on: its Ritz values are those of ``lanczos_tridiag`` run for the same steps, and its
    Ritz vectors are true eigenvectors (not the result of a restart)."""
    values = np.r_[np.linspace(0.0, 1.0, 298), 1.02, 1.03]  # small gaps: slow convergence
    with jax.enable_x64(True):
        a = np.diag(values)
        v0 = jnp.asarray(np.random.default_rng(0).standard_normal(300))
        op = lambda x: jnp.asarray(a) @ x  # noqa: E731
        res = jax.device_get(
            jax.jit(lambda v: lanczos_eigenvalues(op, v, k=2, max_steps=200, tol=1e-9))(v0)
        )
        m = int(res.num_matvecs)
        t = jax.device_get(jax.jit(lambda v: lanczos_tridiag(op, v, m, reortho="full"))(v0))
    assert 32 < m < 200 and bool(res.converged)
    tri = np.diag(t.alphas) + np.diag(t.betas, 1) + np.diag(t.betas, -1)
    np.testing.assert_allclose(res.eigenvalues, np.linalg.eigvalsh(tri)[::-1][:2], rtol=1e-12)
    np.testing.assert_allclose(res.eigenvalues, [1.03, 1.02], rtol=1e-8)
    y = np.asarray(res.eigenvectors)
    np.testing.assert_allclose(np.abs(y[:, -2:]), np.eye(2)[::-1], atol=1e-4)
    assert np.max(np.linalg.norm(y @ a - res.eigenvalues[:, None] * y, axis=1)) < 1e-8
