"""Tests for jaxlab.curvature.sharpness: closed forms on quadratics (trust-region solutions,
box vertices), simulated heavy-ball stability, a dense float64 Hessian, NumPy transcriptions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.curvature import sharpness as sh
from jaxlab.curvature import stability as st


def _spd(seed, eigenvalues):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (u * np.asarray(eigenvalues)) @ u.T


def _quadratic(p, a):
    """L(w) = ½ wᵀAw with the matrix passed as the batch (so nothing is closed over)."""
    return 0.5 * p @ (a @ p)


def _trust_region_max(a, g, rho):
    """max_{‖e‖≤ρ} gᵀe + ½eᵀAe for PSD A: e = (λI − A)⁻¹g with ‖e‖ = ρ, λ > λ_max (bisection)."""
    lam_max = np.linalg.eigvalsh(a)[-1]
    lo, hi = lam_max, lam_max + np.linalg.norm(g) / rho + 1.0
    eye = np.eye(len(g))
    for _ in range(200):
        lam = 0.5 * (lo + hi)
        lo, hi = (lam, hi) if np.linalg.norm(np.linalg.solve(lam * eye - a, g)) > rho else (lo, lam)
    e = np.linalg.solve(hi * eye - a, g)
    return g @ e + 0.5 * e @ a @ e


def _box_max(a, g, rho):
    """max over the L∞ ball of a convex quadratic = max over its 2^d vertices."""
    return max(
        rho * g @ s + 0.5 * rho**2 * s @ a @ s
        for s in map(np.array, itertools.product([-1.0, 1.0], repeat=len(g)))
    )


A = _spd(0, [3.0, 1.0, 0.5, 0.1])
W0 = np.random.default_rng(1).normal(size=4)


# ----------------------------------------------------------------------------------------------
# Thresholds


def test_stability_thresholds():
    assert st.stability_threshold(0.1) == pytest.approx(20.0)
    assert st.stability_threshold(0.1, optimizer="momentum", momentum=0.9) == pytest.approx(38.0)
    assert st.stability_threshold(0.01, optimizer="adam", b1=0.9) == pytest.approx(3800.0)
    assert st.sharpness_ratio(10.0, 0.1) == pytest.approx(0.5)
    assert st.trace_stability_ratio(30.0, 0.1) == pytest.approx(1.5)


@pytest.mark.parametrize("optimizer", ["gd", "momentum"])
def test_threshold_separates_stable_from_unstable_heavy_ball(optimizer):
    """Heavy ball (optax.sgd with momentum) on ½λw²: bounded just below, divergent just above."""
    lr, beta = 0.1, (0.9 if optimizer == "momentum" else 0.0)
    threshold = st.stability_threshold(lr, optimizer=optimizer, momentum=beta)
    for factor, stable in [(0.98, True), (1.02, False)]:
        lam, w, v = factor * threshold, 1.0, 0.0
        for _ in range(3000):
            v = beta * v + lam * w
            w = w - lr * v
        assert (abs(w) < 1.0) == stable


# ----------------------------------------------------------------------------------------------
# Worst-case sharpness


@pytest.mark.parametrize("rho", [0.01, 0.5, 3.0])
def test_worst_case_l2_equals_trust_region_solution(rho):
    with jax.enable_x64(True):
        res = sh.worst_case_sharpness(_quadratic, jnp.asarray(W0), jnp.asarray(A), rho=rho)
    exact = _trust_region_max(A, A @ W0, rho)
    np.testing.assert_allclose(res.sharpness, exact, rtol=1e-8)
    assert np.linalg.norm(res.perturbation) <= rho * (1 + 1e-12)
    np.testing.assert_allclose(
        _quadratic(W0 + np.asarray(res.perturbation), A) - _quadratic(W0, A), exact, rtol=1e-8
    )


def test_worst_case_linf_and_adaptive_closed_forms():
    rho = 0.3
    t = np.abs(W0)  # adaptive ball: ε = T δ, ‖δ‖ ≤ ρ, T = diag(|w|)
    with jax.enable_x64(True):
        w, a = jnp.asarray(W0), jnp.asarray(A)
        linf = sh.worst_case_sharpness(_quadratic, w, a, rho=rho, norm="linf")
        ad_l2 = sh.worst_case_sharpness(_quadratic, w, a, rho=rho, adaptive=True)
        ad_linf = sh.worst_case_sharpness(_quadratic, w, a, rho=rho, adaptive=True, norm="linf")
    np.testing.assert_allclose(linf.sharpness, _box_max(A, A @ W0, rho), rtol=1e-10)
    ta = t[:, None] * A * t[None, :]
    np.testing.assert_allclose(ad_l2.sharpness, _trust_region_max(ta, t * (A @ W0), rho), rtol=1e-8)
    np.testing.assert_allclose(ad_linf.sharpness, _box_max(ta, t * (A @ W0), rho), rtol=1e-10)
    assert np.all(np.abs(np.asarray(ad_linf.perturbation)) <= rho * t * (1 + 1e-12))


def test_worst_case_at_minimum_needs_a_random_start():
    """At w = 0 the gradient vanishes: ε = 0 stays put; a random start finds ½ρ²λ_max."""
    with jax.enable_x64(True):
        w, a = jnp.zeros(4), jnp.asarray(A)
        zero = sh.worst_case_sharpness(_quadratic, w, a, rho=0.5)
        rand = sh.worst_case_sharpness(_quadratic, w, a, rho=0.5, key=jax.random.key(0))
    assert float(zero.sharpness) == 0.0
    np.testing.assert_allclose(rand.sharpness, 0.5 * 0.25 * 3.0, rtol=1e-6)


def _least_squares(p, batch):
    x, y = batch
    return 0.5 * jnp.mean(jnp.square(x @ p - y))


def _regression_data(n=8, d=3, seed=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=d), (rng.normal(size=(n, d)), rng.normal(size=n))


def test_m_sharpness_per_example_closed_form_and_full_batch():
    """m = 1: ℓᵢ = ½(xᵢᵀw − yᵢ)² gives ρ|rᵢ|‖xᵢ‖ + ½ρ²‖xᵢ‖²; m = B: plain worst case."""
    w, (x, y) = _regression_data()
    rho = 0.2
    with jax.enable_x64(True):
        batch = (jnp.asarray(x), jnp.asarray(y))
        mean1, per1 = sh.m_sharpness(_least_squares, jnp.asarray(w), batch, m=1, rho=rho)
        mean8, _ = sh.m_sharpness(_least_squares, jnp.asarray(w), batch, m=8, rho=rho)
        full = sh.worst_case_sharpness(_least_squares, jnp.asarray(w), batch, rho=rho)
        mean1, per1, mean8, full = map(np.asarray, (mean1, per1, mean8, full.sharpness))
    r, xn = x @ w - y, np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(per1, rho * np.abs(r) * xn + 0.5 * rho**2 * xn**2, rtol=1e-8)
    np.testing.assert_allclose(mean1, np.mean(per1), rtol=1e-12)
    np.testing.assert_allclose(mean8, full, rtol=1e-10)
    np.testing.assert_allclose(full, _trust_region_max(x.T @ x / 8, x.T @ r / 8, rho), rtol=1e-8)
    assert float(mean1) > float(mean8)  # smaller groups are sharper (Foret et al. §4.1)


def test_worst_case_multi_device_equals_single_device():
    w, (x, y) = _regression_data(n=16)
    batch = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    w = jnp.asarray(w, jnp.float32)
    ref = sh.worst_case_sharpness(_least_squares, w, batch, rho=0.3, num_steps=10)
    sharded = jax.tree.map(lambda a: a.reshape(8, 2, *a.shape[1:]), batch)
    got = jax.pmap(
        lambda b: (
            sh.worst_case_sharpness(
                _least_squares, w, b, rho=0.3, num_steps=10, axis_name="d"
            ).sharpness
        ),
        axis_name="d",
    )(sharded)
    np.testing.assert_allclose(np.asarray(got), float(ref.sharpness), rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Average-case sharpness and coherence


def test_average_sharpness_matches_half_sigma_squared_trace():
    sigma, w = 0.1, 0.05 * W0
    with jax.enable_x64(True):
        est, se = sh.average_sharpness(
            _quadratic, jnp.asarray(w), jnp.asarray(A), sigma=sigma, key=jax.random.key(0),
            num_samples=400, batch_size=64,
        )  # fmt: skip
        est_ad, se_ad = sh.average_sharpness(
            _quadratic, jnp.asarray(W0), jnp.asarray(A), sigma=sigma, key=jax.random.key(1),
            num_samples=400, adaptive=True,
        )  # fmt: skip
    assert abs(float(est) - 0.5 * sigma**2 * np.trace(A)) <= 4 * float(se)
    exact_ad = 0.5 * sigma**2 * np.sum(np.diag(A) * W0**2)  # E over δ = σ|w|z
    assert abs(float(est_ad) - exact_ad) <= 4 * float(se_ad)
    assert 0 < float(se) < 0.2 * 0.5 * sigma**2 * np.trace(A)


def _linear_loss(p, batch):
    return jnp.mean(batch @ p)


def test_gradient_coherence_identical_orthogonal_and_numpy():
    d = 6
    same = np.tile(np.arange(1.0, d + 1.0), (5, 1))
    ortho = 3.0 * np.eye(d)[:4]
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(10, d)), rng.normal(size=10)
    w = rng.normal(size=d)
    with jax.enable_x64(True):
        c_same = sh.gradient_coherence(_linear_loss, jnp.zeros(d), jnp.asarray(same))
        c_ortho = sh.gradient_coherence(_linear_loss, jnp.zeros(d), jnp.asarray(ortho))
        c_ls = sh.gradient_coherence(
            _least_squares, jnp.asarray(w), (jnp.asarray(x), jnp.asarray(y)), batch_size=4
        )
    np.testing.assert_allclose(c_same, 1.0, rtol=1e-12)
    np.testing.assert_allclose(c_ortho, 1.0 / 4, rtol=1e-12)
    grads = [(xi @ w - yi) * xi for xi, yi in zip(x, y, strict=True)]  # per-example, a loop
    expected = np.sum(np.mean(grads, axis=0) ** 2) / np.mean([g @ g for g in grads])
    np.testing.assert_allclose(c_ls, expected, rtol=1e-10)


def test_gradient_coherence_shard_map_equals_single_device():
    w, (x, y) = _regression_data(n=16, seed=4)
    batch = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    w = jnp.asarray(w, jnp.float32)
    ref = sh.gradient_coherence(_least_squares, w, batch)
    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    spec = jax.sharding.PartitionSpec
    got = jax.jit(
        jax.shard_map(
            lambda b: sh.gradient_coherence(_least_squares, w, b, axis_name="d"),
            mesh=mesh,
            in_specs=(spec("d"),),
            out_specs=spec(),
            check_vma=False,
        )
    )(batch)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# λ_max, the preconditioned operator and the trace bound against a dense Hessian


def _mlp_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return 0.5 * jnp.mean(jnp.square(h @ params["w2"] - y[:, None]))


def _mlp():
    k = jax.random.split(jax.random.key(0), 3)
    params = {
        "w1": jax.random.normal(k[0], (3, 4), jnp.float64),
        "b1": jnp.full((4,), 0.1, jnp.float64),
        "w2": jax.random.normal(k[1], (4, 1), jnp.float64),
    }
    x = jax.random.normal(k[2], (12, 3), jnp.float64)
    return params, (x, jnp.cos(x[:, 1]))


def _dense_hessian(params, batch):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hessian = jax.jit(jax.hessian(lambda f, b: _mlp_loss(unravel(f), b)))
    return np.asarray(hessian(flat, batch)), unravel


def test_hessian_sharpness_vs_dense_eigvalsh():
    with jax.enable_x64(True):
        params, batch = _mlp()
        h, _ = _dense_hessian(params, batch)
        out = st.hessian_sharpness(
            _mlp_loss, params, batch, key=jax.random.key(0), learning_rate=0.5,
            num_trace_probes=40,
        )  # fmt: skip
        out = {k: np.asarray(v) for k, v in out.items()}
    lam = np.linalg.eigvalsh(h)[-1]
    np.testing.assert_allclose(out["lambda_max"], lam, rtol=1e-8)
    np.testing.assert_allclose(out["ratio"], lam * 0.5 / 2.0, rtol=1e-8)
    assert float(out["threshold"]) == pytest.approx(4.0)
    assert abs(float(out["trace"]) - np.trace(h)) <= 4 * float(out["trace_stderr"])
    np.testing.assert_allclose(out["trace_ratio"], out["trace"] * 0.25, rtol=1e-12)


def test_adam_preconditioned_sharpness_vs_dense():
    """Preconditioner from a real optax.adam state; λ_max(P^{-1/2}HP^{-1/2}) = λ_max(P⁻¹H)."""
    with jax.enable_x64(True):
        params, batch = _mlp()
        tx = optax.adam(1e-2)
        state = tx.init(params)
        for _ in range(3):
            grads = jax.grad(_mlp_loss)(params, batch)
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        adam_state = state[0]
        p = st.adam_preconditioner(adam_state.nu, count=adam_state.count, eps=1e-8)
        out = st.hessian_sharpness(
            _mlp_loss, params, batch, key=jax.random.key(1), learning_rate=1e-2,
            optimizer="adam", preconditioner=p,
        )  # fmt: skip
        h, unravel = _dense_hessian(params, batch)
        flat_p = np.asarray(jax.flatten_util.ravel_pytree(p)[0])
        nu = np.asarray(jax.flatten_util.ravel_pytree(adam_state.nu)[0])
        mv = st.preconditioned_operator(lambda v: unravel(jnp.asarray(h) @ _flat(v)), p)
        dense_op = np.asarray(jax.jit(jax.vmap(lambda e: _flat(mv(unravel(e)))))(jnp.eye(len(h)))).T
        out = {k: np.asarray(v) for k, v in out.items()}
    np.testing.assert_allclose(flat_p, np.sqrt(nu / (1 - 0.999**3)) + 1e-8, rtol=1e-12)
    sym = h / np.sqrt(np.outer(flat_p, flat_p))
    np.testing.assert_allclose(dense_op, sym, rtol=1e-10, atol=1e-12)
    lam = np.linalg.eigvalsh(sym)[-1]
    np.testing.assert_allclose(np.max(np.linalg.eigvals(h / flat_p[:, None]).real), lam, rtol=1e-8)
    np.testing.assert_allclose(out["lambda_max"], lam, rtol=1e-7)
    np.testing.assert_allclose(out["ratio"], lam / (3.8 / (0.1 * 1e-2)), rtol=1e-7)


def _flat(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: st.stability_threshold(0.0), "learning_rate=0.0"),
        (lambda: st.stability_threshold(0.1, optimizer="sgd"), "optimizer='sgd'"),
        (lambda: st.stability_threshold(0.1, optimizer="momentum", momentum=1.0), "momentum=1.0"),
        (lambda: st.stability_threshold(0.1, optimizer="adam", b1=-0.1), "b1=-0.1"),
        (lambda: sh.worst_case_sharpness(_quadratic, jnp.ones(4), A, rho=-1.0), "rho=-1.0"),
        (lambda: sh.worst_case_sharpness(_quadratic, jnp.ones(4), A, rho=1.0, norm="l1"),
         "norm='l1'"),
        (lambda: sh.worst_case_sharpness(_quadratic, jnp.ones(4), A, rho=1.0, num_steps=0),
         "num_steps=0"),
        (lambda: sh.worst_case_sharpness(_quadratic, jnp.ones(4), A, rho=1.0, momentum=0.0),
         "momentum=0.0"),
        (lambda: sh.m_sharpness(_least_squares, jnp.ones(3), (np.ones((8, 3)), np.ones(8)),
                                m=3, rho=0.1), "m=3"),
        (lambda: sh.average_sharpness(_quadratic, jnp.ones(4), A, sigma=0.0,
                                      key=jax.random.key(0)), "sigma=0.0"),
        (lambda: sh.average_sharpness(_quadratic, jnp.ones(4), A, sigma=0.1,
                                      key=jax.random.key(0), num_samples=1), "num_samples=1"),
        (lambda: sh.gradient_coherence(_linear_loss, jnp.ones(3), np.ones((1, 3))), "batch"),
        (lambda: st.hessian_sharpness(_quadratic, jnp.ones(4), A, key=jax.random.key(0),
                                      learning_rate=0.1, optimizer="adam"), "preconditioner"),
        (lambda: st.adam_preconditioner({"a": jnp.ones(2)}, eps=-1.0), "eps=-1.0"),
    ],
)  # fmt: skip
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_loss_fn_raises_type_error():
    with pytest.raises(TypeError, match="loss_fn"):
        sh.worst_case_sharpness(None, jnp.ones(4), A, rho=0.1)
