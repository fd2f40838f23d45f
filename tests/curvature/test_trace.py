"""Tests for jaxlab.curvature.trace against exact traces/diagonals of explicit matrices, a dense
float64 Hessian of a tiny MLP, and NumPy leave-one-out transcriptions of XTrace/XDiag."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.curvature import trace as tr

# A pytree of 30 entries: the vectors the operators act on.
N = 30


def _params(dtype=np.float32):
    return {"w": np.zeros((4, 5), dtype), "b": np.zeros((10,), dtype)}


PARAMS = _params()


def _np_ravel(tree):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


def _ravel_fns(params):
    _, _, ravel, unravel = tr._flattener(params)
    return ravel, unravel


def _matvec(a, params=None):
    params = _params(a.dtype) if params is None else params
    ravel, unravel = _ravel_fns(params)
    return lambda v: unravel(a @ ravel(v))


def _random_spd(seed, eigenvalues):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (u * np.asarray(eigenvalues)) @ u.T


def _outlier_matrix(seed=0):
    """A few large eigenvalues over a small bulk: where Hutch++/XTrace should win."""
    rng = np.random.default_rng(seed)
    return _random_spd(seed, np.concatenate([[50.0, 40.0, 30.0], rng.uniform(0.0, 1.0, N - 3)]))


def _estimates(fn, a, seeds, **kwargs):
    """(estimates, stderrs) over seeds, one compiled program with the matrix as an argument."""

    @jax.jit
    def run(a, keys):  # lax.map over seeds compiles much faster than vmap here
        return jax.lax.map(lambda k: fn(_matvec(a), _params(a.dtype), k, **kwargs), keys)

    keys = jax.random.split(jax.random.key(0), seeds)
    est, se = run(jnp.asarray(a, a.dtype), keys)
    return np.asarray(est), np.asarray(se)


@pytest.mark.parametrize(
    ("fn", "probe"),
    [
        (tr.hutchinson_trace, "rademacher"),
        (tr.hutchpp_trace, "rademacher"),
        (tr.xtrace, "normal"),
        (tr.xtrace, "rademacher"),
    ],
)
def test_trace_within_4_stderr_and_stderr_calibrated(fn, probe):
    with jax.enable_x64(True):
        a = _random_spd(1, np.linspace(-1.0, 3.0, N))
        est, se = _estimates(fn, a, 200, num_probes=12, probe=probe)
    exact = np.trace(a)
    assert est.dtype == np.float64
    # The mean of 200 independent estimates is within 4 of its standard errors.
    assert abs(est.mean() - exact) <= 4 * est.std(ddof=1) / np.sqrt(len(est))
    # Each run reports a standard error of the right size: the spread of the estimates.
    assert 0.6 < np.sqrt(np.mean(se**2)) / np.sqrt(np.mean((est - exact) ** 2)) < 1.6
    # One run is within 4 standard errors (fails if the stderr were too small).
    assert np.mean(np.abs(est - exact) <= 4 * se) > 0.9


def test_hutchinson_rademacher_exact_on_diagonal():
    a = np.diag(np.arange(1.0, N + 1.0)).astype(np.float32)
    est, se = _run(tr.hutchinson_trace, a, jax.random.key(0), num_probes=5)
    np.testing.assert_allclose(est, np.trace(a), rtol=1e-6)
    assert float(se) == 0.0


@functools.cache
def _jitted(fn, kwargs_items):
    kwargs = dict(kwargs_items)
    return jax.jit(lambda a, key: fn(_matvec(a), _params(a.dtype), key, **kwargs))


def _run(fn, a, key, **kwargs):
    """One estimator call on the explicit matrix ``a`` (an argument, so calls with the same
    shapes and options share one compiled program)."""
    return _jitted(fn, tuple(sorted(kwargs.items())))(jnp.asarray(a, a.dtype), key)


def test_chunking_does_not_change_the_result():
    """Full chunks plus a remainder chunk see the same probes as one probe at a time."""
    a = _random_spd(2, np.linspace(0.0, 2.0, N)).astype(np.float32)

    @jax.jit
    def run(a, key):
        mv, params = _matvec(a), _params(a.dtype)
        return [
            tr.hutchinson_diagonal(mv, params, key, num_probes=10, batch_size=b) for b in (None, 4)
        ]

    ref, got = run(jnp.asarray(a), jax.random.key(3))
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), got, ref)


def test_variance_reduction_with_outliers():
    """At equal matvecs, Hutch++ and XTrace beat Hutchinson when outliers dominate."""
    a = _outlier_matrix()
    fns = {"hutchinson": tr.hutchinson_trace, "hutchpp": tr.hutchpp_trace, "xtrace": tr.xtrace}

    @jax.jit
    def run(a, keys):
        mv, params = _matvec(a), _params(a.dtype)
        return {
            name: jax.lax.map(lambda k, fn=fn: fn(mv, params, k, num_probes=18)[0], keys)
            for name, fn in fns.items()
        }

    est = run(jnp.asarray(a, jnp.float32), jax.random.split(jax.random.key(0), 64))
    rmse = {name: np.sqrt(np.mean((np.asarray(e) - np.trace(a)) ** 2)) for name, e in est.items()}
    assert rmse["hutchpp"] < 0.5 * rmse["hutchinson"]
    assert rmse["xtrace"] < 0.5 * rmse["hutchinson"]


def _xtrace_loo_numpy(a, omega, resphere):
    """XTrace transcribed from the paper's definition: explicit leave-one-out QR per sample."""
    n, m = omega.shape
    out = []
    for i in range(m):
        q, _ = np.linalg.qr(a @ np.delete(omega, i, axis=1))
        w = omega[:, i] - q @ (q.T @ omega[:, i])
        if resphere:
            w = w * np.sqrt(n - m + 1) / np.linalg.norm(w)
        out.append(np.trace(q.T @ a @ q) + w @ a @ w)
    return np.array(out)


def _xdiag_loo_numpy(a, omega):
    n, m = omega.shape
    out = []
    for i in range(m):
        q, _ = np.linalg.qr(a @ np.delete(omega, i, axis=1))
        p = np.eye(n) - q @ q.T
        out.append(np.diag(q @ q.T @ a) + omega[:, i] * (p @ a @ omega[:, i]))
    return np.array(out)


@pytest.mark.parametrize("resphere", [False, True])
def test_xtrace_matches_leave_one_out_transcription(resphere):
    rng = np.random.default_rng(4)
    a = _random_spd(5, np.linspace(-2.0, 5.0, N))
    omega = rng.normal(size=(N, 6))
    with jax.enable_x64(True):

        def matmat(x):
            return jnp.asarray(a) @ x

        got = tr._xtrace_estimates(matmat, jnp.asarray(omega), resphere=resphere)
        np.testing.assert_allclose(got, _xtrace_loo_numpy(a, omega, resphere), rtol=1e-10)
        got = tr._xdiag_estimates(matmat, jnp.asarray(omega))
        np.testing.assert_allclose(got, _xdiag_loo_numpy(a, omega), rtol=1e-9, atol=1e-12)


def test_xtrace_and_xdiag_exact_for_low_rank():
    """A rank-3 operator: the sketch holds its range, so both are exact with zero stderr."""
    u, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(N, 3)))
    a = (u * np.array([1.0, -2.0, 3.0])) @ u.T
    ravel = _np_ravel
    with jax.enable_x64(True):
        est, se = _run(tr.xtrace, a, jax.random.key(0), num_probes=10)
        d, dse = _run(tr.xdiag, a, jax.random.key(0), num_probes=10)
    np.testing.assert_allclose(est, np.trace(a), atol=1e-10)
    assert float(se) == 0.0
    np.testing.assert_allclose(ravel(d), np.diag(a), atol=1e-10)
    np.testing.assert_allclose(ravel(dse), 0.0, atol=1e-15)


def test_diagonal_estimators():
    ravel = _np_ravel
    with jax.enable_x64(True):
        a = _outlier_matrix(7)
        exact = np.diag(a)
        # Rademacher Hutchinson recovers a diagonal matrix exactly.
        d, se = _run(
            tr.hutchinson_diagonal, np.diag(exact), jax.random.key(1), num_probes=400, batch_size=50
        )
        np.testing.assert_allclose(ravel(d), exact, rtol=1e-12)
        assert np.all(ravel(se) <= 1e-14 * np.abs(exact))
        # General matrix: each entry within 4 standard errors; shapes follow the pytree.
        d, se = _run(tr.hutchinson_diagonal, a, jax.random.key(2), num_probes=400, batch_size=50)
        assert jax.tree.map(jnp.shape, d) == jax.tree.map(jnp.shape, PARAMS)
        assert ravel(d).dtype == jnp.float64
        assert np.all(np.abs(ravel(d) - exact) <= 4 * ravel(se))
        # XDiag with 20 matvecs is far better than Hutchinson with 400 on this spectrum.
        dx, sex = _run(tr.xdiag, a, jax.random.key(3), num_probes=20)
    assert np.mean(np.abs(ravel(dx) - exact)) < 0.5 * np.mean(np.abs(ravel(d) - exact))
    assert np.all(np.isfinite(ravel(sex)))


def test_dtypes_bf16_params_accumulate_in_float32():
    params = {"w": jnp.zeros((4, 5), jnp.bfloat16), "b": jnp.zeros((10,), jnp.bfloat16)}

    @jax.jit
    def run(a, key):
        mv = _matvec(a, params)
        return (
            tr.hutchinson_trace(mv, params, key, num_probes=4),
            tr.hutchpp_trace(mv, params, key, num_probes=12),
        )

    (est, se), (est_pp, _) = run(jnp.diag(jnp.arange(1.0, N + 1.0)), jax.random.key(0))
    assert est.dtype == se.dtype == est_pp.dtype == jnp.float32
    np.testing.assert_allclose(est, N * (N + 1) / 2, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# hessian_trace on a tiny MLP against the dense Hessian


def _mlp_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    out = h @ params["w2"] + params["b2"][None, :]
    return 0.5 * jnp.mean(jnp.square(out[:, 0] - y))


def _mlp(dtype):
    k = jax.random.split(jax.random.key(42), 4)
    params = {
        "w1": jax.random.normal(k[0], (3, 5), dtype),
        "b1": 0.1 * jax.random.normal(k[1], (5,), dtype),
        "w2": jax.random.normal(k[2], (5, 1), dtype),
        "b2": jnp.zeros((1,), dtype),
    }
    x = jax.random.normal(k[3], (16, 3), dtype)
    y = jnp.sin(x[:, 0])
    return params, (x, y)


def _dense_hessian(loss_fn, params, batch):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda f, b: loss_fn(unravel(f), b)))(flat, batch))


@pytest.mark.parametrize("method", ["hutchinson", "xtrace"])
def test_hessian_trace_vs_dense_hessian(method):
    with jax.enable_x64(True):
        params, batch = _mlp(jnp.float64)
        h = _dense_hessian(_mlp_loss, params, batch)
        key = jax.random.key(0)
        est, se = tr.hessian_trace(_mlp_loss, params, batch, key=key, num_probes=24, method=method)
        assert est.dtype == jnp.float64
        assert abs(float(est) - np.trace(h)) <= 4 * float(se) + 1e-9 * abs(np.trace(h))
        if method == "hutchinson":  # the trace of one layer's diagonal block
            mask = {"w1": True, "b1": False, "w2": False, "b2": False}
            sel = jax.flatten_util.ravel_pytree(
                jax.tree.map(lambda m, p: jnp.full(p.shape, m), mask, params)
            )[0]
            block = np.trace(h[np.ix_(np.asarray(sel), np.asarray(sel))])
            est, se = tr.hessian_trace(
                _mlp_loss, params, batch, key=key, num_probes=24, method=method, mask=mask
            )
            assert abs(float(est) - block) <= 4 * float(se)
            assert abs(block - np.trace(h)) > 8 * float(se)  # the mask matters


def test_hessian_trace_compiles_once_and_multi_device_equals_single_device():
    """8 shards of 2 examples: the pmean-averaged Hessian is the full-batch Hessian."""
    params, batch = _mlp(jnp.float32)
    key = jax.random.key(5)
    kw = dict(num_probes=8, method="hutchinson")
    ref = tr.hessian_trace(_mlp_loss, params, batch, key=key, **kw)
    # A second call with the same shapes and static arguments does not compile again.
    cache_size = tr._hessian_trace._cache_size()
    tr.hessian_trace(_mlp_loss, params, batch, key=jax.random.key(6), **kw)
    assert tr._hessian_trace._cache_size() == cache_size
    sharded = jax.tree.map(lambda x: x.reshape(8, 2, *x.shape[1:]), batch)
    via_pmap = jax.pmap(
        lambda b: tr.hessian_trace(_mlp_loss, params, b, key=key, axis_name="d", **kw),
        axis_name="d",
    )(sharded)
    np.testing.assert_allclose(np.asarray(via_pmap[0]), ref[0], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(via_pmap[1]), ref[1], rtol=1e-3, atol=1e-5)

    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    spec = jax.sharding.PartitionSpec
    via_shard_map = jax.jit(
        jax.shard_map(
            lambda b: tr.hessian_trace(_mlp_loss, params, b, key=key, axis_name="d", **kw),
            mesh=mesh,
            in_specs=spec("d"),
            out_specs=spec(),
            check_vma=False,
        )
    )(batch)
    np.testing.assert_allclose(via_shard_map[0], ref[0], rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Bad input


def _identity(v):
    return v


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tr.hutchinson_trace(_identity, PARAMS, jax.random.key(0), num_probes=1),
         ValueError, "num_probes"),
        (lambda: tr.hutchinson_trace(_identity, PARAMS, jax.random.key(0), num_probes=2.0),
         TypeError, "num_probes"),
        (lambda: tr.hutchinson_trace(_identity, PARAMS, jax.random.key(0), num_probes=4,
                                     probe="sphere"), ValueError, "probe='sphere'"),
        (lambda: tr.hutchinson_diagonal(_identity, PARAMS, jax.random.key(0), num_probes=4,
                                        batch_size=0), ValueError, "batch_size=0"),
        (lambda: tr.hutchinson_trace(None, PARAMS, jax.random.key(0), num_probes=4),
         TypeError, "matvec"),
        (lambda: tr.hutchinson_trace(_identity, {}, jax.random.key(0), num_probes=4),
         ValueError, "params_like"),
        (lambda: tr.hutchinson_trace(_identity, {"a": jnp.zeros(3, jnp.int32)},
                                     jax.random.key(0), num_probes=4), TypeError, "params_like"),
        (lambda: tr.hutchpp_trace(_identity, PARAMS, jax.random.key(0), num_probes=3),
         ValueError, "num_probes"),
        (lambda: tr.hutchpp_trace(_identity, PARAMS, jax.random.key(0), num_probes=93),
         ValueError, "num_probes=93"),
        (lambda: tr.xtrace(_identity, PARAMS, jax.random.key(0), num_probes=62),
         ValueError, "num_probes=62"),
        (lambda: tr.xdiag(_identity, PARAMS, jax.random.key(0), num_probes=62),
         ValueError, "num_probes=62"),
        (lambda: tr.hessian_trace(_mlp_loss, PARAMS, None, key=jax.random.key(0),
                                  method="slq"), ValueError, "method='slq'"),
        (lambda: tr.hessian_trace("loss", PARAMS, None, key=jax.random.key(0)),
         TypeError, "loss_fn"),
    ],
)  # fmt: skip
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------------------------
# Rademacher probes from random bits


@pytest.mark.parametrize("shape", [(1,), (31,), (33,), (7, 13)])
def test_rademacher_bits_are_fair_independent_signs(shape):
    """32 signs per random word: ±1 only, fair, and uncorrelated at every bit offset."""
    draws = np.stack(
        [
            np.asarray(tr._rademacher(k, shape, jnp.float32))
            for k in jax.random.split(jax.random.key(0), 400)
        ]
    ).reshape(400, -1)
    assert set(np.unique(draws)) <= {-1.0, 1.0}
    flat = np.asarray(
        jax.jit(lambda k: tr._rademacher(k, (64, 1000), jnp.float32))(jax.random.key(1))
    ).ravel()
    # Fair: the mean of 64,000 signs is within 4 standard errors of 0.
    assert abs(flat.mean()) < 4 / np.sqrt(flat.size)
    # Independent: neighbours within a word, across words and the same bit of the next word.
    for lag in (1, 31, 32, 33):
        assert abs(np.mean(flat[:-lag] * flat[lag:])) < 4 / np.sqrt(flat.size)
    # Different draws differ, the same key repeats.
    assert np.mean(draws[0] == draws[1]) < 1.0 or draws.shape[1] == 1
    np.testing.assert_array_equal(
        np.asarray(tr._rademacher(jax.random.key(3), shape, jnp.float32)),
        np.asarray(tr._rademacher(jax.random.key(3), shape, jnp.float32)),
    )


def test_rademacher_probe_pytree_dtypes_and_identity_covariance():
    """Pytree probes keep each leaf's shape and dtype and have E[v vᵀ] = I (empirically)."""
    params = {"w": jnp.zeros((4, 5), jnp.bfloat16), "b": jnp.zeros((10,), jnp.float32)}
    v = tr._sample_probe(jax.random.key(0), params, "rademacher")
    assert v["w"].dtype == jnp.bfloat16 and v["w"].shape == (4, 5)
    assert v["b"].dtype == jnp.float32 and v["b"].shape == (10,)
    vs = jax.vmap(lambda k: _np_ravel_jax(tr._sample_probe(k, PARAMS, "rademacher")))(
        jax.random.split(jax.random.key(1), 4000)
    )
    cov = np.asarray(vs, np.float64).T @ np.asarray(vs, np.float64) / 4000
    np.testing.assert_allclose(np.diag(cov), 1.0)
    off = cov[~np.eye(N, dtype=bool)]
    assert np.max(np.abs(off)) < 5 / np.sqrt(4000)


def _np_ravel_jax(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])
