"""Empirical NTK, kernel alignment, principal angles, spectral drift and zero-sum ratio."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree

from jaxlab.metrics import (
    empirical_ntk,
    kernel_target_alignment,
    principal_angles,
    spectral_drift,
    zero_sum_learning_ratio,
)

RNG = np.random.default_rng(1)


def close(actual, desired, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=rtol, atol=atol)


def test_ntk_linear_model_is_gram_matrix():
    x1 = RNG.normal(size=(5, 3)).astype(np.float32)
    x2 = RNG.normal(size=(4, 3)).astype(np.float32)
    close(empirical_ntk(lambda w, x: x @ w, jnp.zeros(3), x1), x1 @ x1.T, rtol=1e-5)
    # K outputs: Θ_nmkl = <x_n, x'_m> δ_kl; trace mode sums to K <x_n, x'_m>; bias adds 1
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}

    def apply(p, x):
        return x @ p["w"] + p["b"][None, :]

    full = empirical_ntk(apply, params, x1, x2, mode="full")
    gram = x1 @ x2.T + 1.0
    close(full, gram[:, :, None, None] * np.eye(2)[None, None], rtol=1e-5, atol=1e-5)
    close(empirical_ntk(apply, params, x1, x2), 2.0 * gram, rtol=1e-5, atol=1e-5)


def test_ntk_mlp_matches_explicit_jacobian_and_is_psd():
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"w1": jax.random.normal(k1, (3, 8)), "w2": jax.random.normal(k2, (8,))}

    def apply(p, x):
        return jnp.tanh(x @ p["w1"]) @ p["w2"]

    x = jnp.asarray(RNG.normal(size=(6, 3)), jnp.float32)
    flat, unravel = ravel_pytree(params)
    jac = np.asarray(jax.jacfwd(lambda f: apply(unravel(f), x))(flat), np.float64)
    ntk = jax.jit(empirical_ntk, static_argnums=0)(apply, params, x)
    close(ntk, jac @ jac.T, rtol=1e-4, atol=1e-4)
    assert np.linalg.eigvalsh(np.asarray(ntk, np.float64)).min() > -1e-3


def test_ntk_bad_args():
    with pytest.raises(TypeError, match="apply_fn"):
        empirical_ntk(None, jnp.zeros(2), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="mode"):
        empirical_ntk(lambda w, x: x @ w, jnp.zeros(2), jnp.ones((2, 2)), mode="diag")


def np_alignment(k, y, centered):
    k, y = np.asarray(k, np.float64), np.asarray(y, np.float64).reshape(len(k), -1)
    if centered:
        h = np.eye(len(k)) - 1.0 / len(k)
        k, y = h @ k @ h, h @ y
    yy = y @ y.T
    return np.sum(k * yy) / (np.linalg.norm(k) * np.linalg.norm(yy))


def test_kernel_target_alignment_numpy_and_self():
    y = RNG.normal(size=7)
    close(kernel_target_alignment(jnp.asarray(np.outer(y, y)), jnp.asarray(y)), 1.0, rtol=1e-6)
    a = RNG.normal(size=(7, 7))
    k = a @ a.T
    onehot = np.eye(3)[RNG.integers(0, 3, size=7)]
    for centered in (False, True):
        for t in (y, onehot):
            got = kernel_target_alignment(
                jnp.asarray(k, jnp.float32), jnp.asarray(t, jnp.float32), centered=centered
            )
            close(got, np_alignment(k, t, centered), rtol=1e-5)
    zero = jnp.zeros((3, 3))
    assert float(kernel_target_alignment(zero, jnp.ones(3))) == 0.0
    g = jax.grad(kernel_target_alignment)(zero, jnp.ones(3))
    assert np.all(np.isfinite(g))
    with pytest.raises(ValueError, match="kernel"):
        kernel_target_alignment(jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match="targets"):
        kernel_target_alignment(jnp.ones((2, 2)), jnp.ones(3))


def test_principal_angles_match_scipy():
    a = RNG.normal(size=(10, 6))
    b = a + 0.3 * RNG.normal(size=(10, 6))
    for side in ("left", "right"):
        got = principal_angles(
            jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), k=3, side=side
        )
        ua, _, vta = np.linalg.svd(a)
        ub, _, vtb = np.linalg.svd(b)
        qa, qb = (ua[:, :3], ub[:, :3]) if side == "left" else (vta[:3].T, vtb[:3].T)
        close(got, np.sort(scipy.linalg.subspace_angles(qa, qb)), atol=2e-4)
    close(principal_angles(jnp.asarray(a), jnp.asarray(a), k=3), np.zeros(3), atol=5e-4)


def test_principal_angles_planted_rotation():
    theta = 0.3
    w0 = np.diag([5.0, 4.0, 1.0, 0.5, 0.2])
    rot3 = np.eye(5)  # rotates e_1 towards e_3, outside the top-2 span {e_1, e_2}
    rot3[[0, 2], [0, 2]] = np.cos(theta)
    rot3[0, 2], rot3[2, 0] = -np.sin(theta), np.sin(theta)
    w1 = rot3 @ w0
    close(principal_angles(jnp.asarray(w0), jnp.asarray(w1), k=2), [0.0, theta], atol=1e-4)
    close(spectral_drift(jnp.asarray(w0), jnp.asarray(w1), k=2), 0.0, atol=1e-5)


def test_spectral_drift_numpy_and_bad_args():
    a, b = RNG.normal(size=(6, 4)), RNG.normal(size=(6, 4))
    s0, s1 = np.linalg.svd(a, compute_uv=False)[:3], np.linalg.svd(b, compute_uv=False)[:3]
    expected = np.linalg.norm(s1 - s0) / np.linalg.norm(s0)
    close(jax.jit(spectral_drift, static_argnames="k")(a, b, k=3), expected, rtol=1e-5)
    close(spectral_drift(jnp.asarray(a), jnp.asarray(a), k=3), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="k=5"):
        spectral_drift(jnp.asarray(a), jnp.asarray(b), k=5)
    with pytest.raises(ValueError, match="k"):
        principal_angles(jnp.asarray(a), jnp.asarray(b), k=0)
    with pytest.raises(ValueError, match="w1"):
        spectral_drift(jnp.asarray(a), jnp.ones((4, 6)), k=1)
    with pytest.raises(ValueError, match="side"):
        principal_angles(jnp.asarray(a), jnp.asarray(b), k=1, side="up")


def test_zero_sum_ratio_numpy_and_limits():
    d = RNG.normal(size=20)
    close(
        zero_sum_learning_ratio(jnp.asarray(d, jnp.float32)),
        abs(d.sum()) / np.abs(d).sum(),
        rtol=1e-5,
    )
    close(zero_sum_learning_ratio(jnp.asarray([-1.0, -2.0, -0.5])), 1.0)
    close(zero_sum_learning_ratio(jnp.asarray([1.0, -1.0, 2.0, -2.0])), 0.0)
    g = RNG.normal(size=(8, 3, 2))
    flat = g.reshape(8, -1)
    expected = np.linalg.norm(flat.sum(0)) / np.linalg.norm(flat, axis=1).sum()
    close(jax.jit(zero_sum_learning_ratio)(jnp.asarray(g, jnp.float32)), expected, rtol=1e-5)
    mask = np.arange(20) < 12
    close(
        zero_sum_learning_ratio(jnp.asarray(d, jnp.float32), where=jnp.asarray(mask)),
        abs(d[mask].sum()) / np.abs(d[mask]).sum(),
        rtol=1e-5,
    )
    zeros = jnp.zeros((4, 3))
    close(zero_sum_learning_ratio(zeros), 1.0)
    assert np.all(np.isfinite(jax.grad(zero_sum_learning_ratio)(zeros)))
    with pytest.raises(ValueError, match="where"):
        zero_sum_learning_ratio(jnp.ones(3), where=jnp.ones(2, bool))
    with pytest.raises(ValueError, match="deltas"):
        zero_sum_learning_ratio(jnp.asarray(1.0))


def test_ntk_rejects_bad_output_rank():
    with pytest.raises(ValueError, match="apply_fn"):
        empirical_ntk(lambda w, x: jnp.ones((2, 2, 2)) * w, jnp.ones(()), jnp.ones((2, 2)))


def test_subspace_grads_finite():
    a = jnp.asarray(RNG.normal(size=(5, 4)), jnp.float32)
    for b in (a, a + 0.1):
        g = jax.grad(lambda b: spectral_drift(a, b, k=2))(b)
        assert np.all(np.isfinite(g))
    g = jax.grad(lambda b: jnp.sum(principal_angles(a, b, k=2)))(a + 0.1)
    assert np.all(np.isfinite(g))
