"""RankMe, neural collapse and AVH against closed forms and NumPy float64 transcriptions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.metrics import angular_visual_hardness, neural_collapse, rankme

RNG = np.random.default_rng(0)


def close(actual, desired, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=rtol, atol=atol)


def np_rankme(z, eps=1e-7):
    s = np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)
    p = s / s.sum() + eps
    return np.exp(-np.sum(p * np.log(p)))


def test_rankme_closed_forms_and_numpy():
    close(rankme(jnp.eye(6)), 6.0, rtol=1e-4)
    q, _ = np.linalg.qr(RNG.normal(size=(20, 20)))
    q2, _ = np.linalg.qr(RNG.normal(size=(8, 8)))
    low = 3.0 * q[:, :4] @ q2[:, :4].T  # rank 4, four equal singular values
    close(rankme(jnp.asarray(low, jnp.float32)), 4.0, rtol=1e-4)
    z = RNG.normal(size=(30, 7))
    close(rankme(jnp.asarray(z, jnp.float32)), np_rankme(z), rtol=1e-5)
    # isotropic Gaussian with N >> D is close to full rank
    assert rankme(jnp.asarray(RNG.normal(size=(4000, 8)), jnp.float32)) > 7.9


def test_rankme_invariances_bf16_jit_and_grads():
    z = jnp.asarray(RNG.normal(size=(12, 5)), jnp.float32)
    q, _ = np.linalg.qr(RNG.normal(size=(5, 5)))
    close(rankme(7.0 * z @ jnp.asarray(q, jnp.float32)), float(rankme(z)), rtol=1e-5)
    assert rankme(z.astype(jnp.bfloat16)).dtype == jnp.float32
    close(jax.jit(rankme)(z), float(rankme(z)))
    for x in (jnp.zeros((3, 4)), jnp.eye(4), z):
        assert np.isfinite(float(rankme(x)))
        assert np.all(np.isfinite(jax.grad(rankme)(x)))


def test_rankme_bad_args():
    with pytest.raises(ValueError, match="embeddings"):
        rankme(jnp.ones(3))
    with pytest.raises(ValueError, match="eps"):
        rankme(jnp.eye(2), eps=0.0)
    with pytest.raises(TypeError, match="embeddings"):
        rankme(jnp.eye(2, dtype=jnp.int32))


def np_neural_collapse(h, y, w, c):
    h, w = np.asarray(h, np.float64), np.asarray(w, np.float64)
    mu_g = h.mean(0)
    means = np.stack([h[y == k].mean(0) for k in range(c)])
    sw = sum(np.outer(x - means[k], x - means[k]) for x, k in zip(h, y, strict=True)) / len(h)
    m = means - mu_g
    sb = m.T @ m / c
    vals, vecs = np.linalg.eigh(sb)
    top = vals > 1e-9 * vals.max()  # Σ_B has rank C - 1
    sb_pinv = (vecs[:, top] / vals[top]) @ vecs[:, top].T
    nc1 = np.trace(sw @ sb_pinv) / c
    g = m @ m.T
    etf = (np.eye(c) - 1.0 / c) / np.sqrt(c - 1)
    nc2 = np.linalg.norm(g / np.linalg.norm(g) - etf)
    norms = np.linalg.norm(m, axis=1)
    cos = [m[i] @ m[j] / (norms[i] * norms[j]) for i in range(c) for j in range(c) if i != j]
    nc3 = np.linalg.norm(w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2
    pred = np.argmax(h @ w.T, 1)
    ncc = np.array([np.argmin([np.linalg.norm(x - mu) for mu in means]) for x in h])
    return {
        "nc1": nc1,
        "nc2": nc2,
        "nc2_equinorm": norms.std() / norms.mean(),
        "nc2_equiangular": np.mean(np.abs(np.array(cos) + 1.0 / (c - 1))),
        "nc3": nc3,
        "nc4": np.mean(pred != ncc),
    }


def _etf_features(c=4, d=6, per_class=3):
    q, _ = np.linalg.qr(RNG.normal(size=(d, c)))
    etf = (np.eye(c) - 1.0 / c) @ q.T * 2.5  # (C, D) rows form a simplex ETF
    return np.repeat(etf, per_class, 0), np.repeat(np.arange(c), per_class), etf


def test_neural_collapse_exact_collapse_is_zero():
    h, y, etf = _etf_features()
    out = neural_collapse(
        jnp.asarray(h, jnp.float32), jnp.asarray(y), jnp.asarray(etf, jnp.float32)
    )
    for key in ("nc1", "nc2", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4"):
        close(out[key], 0.0, atol=1e-5)
    # W = 3 M also self-dual; permuting class order keeps every metric
    perm = np.array([2, 0, 3, 1])
    out2 = neural_collapse(
        jnp.asarray(h), jnp.asarray(perm[y]), jnp.asarray(3.0 * etf[np.argsort(perm)])
    )
    close(out2["nc3"], 0.0, atol=1e-5)


def test_neural_collapse_matches_numpy_on_random_data():
    c, d = 3, 5
    y = np.repeat(np.arange(c), 6)
    h = RNG.normal(size=(len(y), d)) + 2.0 * RNG.normal(size=(c, d))[y]
    w = RNG.normal(size=(c, d))
    out = jax.jit(neural_collapse)(
        jnp.asarray(h, jnp.float32), jnp.asarray(y), jnp.asarray(w, jnp.float32)
    )
    ref = np_neural_collapse(h, y, w, c)
    for key, value in ref.items():
        close(out[key], value, rtol=1e-4, atol=1e-5)
    assert float(out["nc1"]) > 0.01  # noisy features are far from collapse
    no_w = neural_collapse(jnp.asarray(h, jnp.float32), jnp.asarray(y), num_classes=c)
    assert set(no_w) == {"nc1", "nc2", "nc2_equinorm", "nc2_equiangular"}
    close(no_w["nc1"], ref["nc1"], rtol=1e-4)


def test_neural_collapse_bad_args():
    h, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="num_classes"):
        neural_collapse(h, y)
    with pytest.raises(ValueError, match="classifier_weights"):
        neural_collapse(h, y, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="num_classes"):
        neural_collapse(h, y, jnp.ones((2, 3)), num_classes=3)
    with pytest.raises(ValueError, match="labels"):
        neural_collapse(h, y[:3], num_classes=2)
    with pytest.raises(TypeError, match="labels"):
        neural_collapse(h, y.astype(jnp.float32), num_classes=2)
    with pytest.raises(ValueError, match="bias"):
        neural_collapse(h, y, jnp.ones((2, 3)), bias=jnp.ones(3))


def np_avh(x, y, w):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    cos = (x @ w.T) / np.linalg.norm(x, axis=1)[:, None] / np.linalg.norm(w, axis=1)[None, :]
    ang = np.arccos(np.clip(cos, -1, 1))
    return ang[np.arange(len(y)), y] / ang.sum(1)


def test_avh_numpy_range_and_invariance():
    x, w = RNG.normal(size=(10, 4)), RNG.normal(size=(5, 4))
    y = RNG.integers(0, 5, size=10)
    out = angular_visual_hardness(
        jnp.asarray(x, jnp.float32), jnp.asarray(y), jnp.asarray(w, jnp.float32)
    )
    close(out, np_avh(x, y, w), rtol=1e-5)
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1))
    scaled = angular_visual_hardness(
        jnp.asarray(3.0 * x, jnp.float32),
        jnp.asarray(y),
        jnp.asarray(w * np.arange(1, 6)[:, None], jnp.float32),
    )
    close(scaled, np.asarray(out), rtol=1e-5)


def test_avh_edge_cases_are_finite():
    w = jnp.eye(3)
    x = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    y = jnp.array([0, 1, 0])
    out = angular_visual_hardness(x, y, w)
    close(out, [0.0, 1.0 / 3.0, np.pi / (np.pi + np.pi / 2 + np.pi / 2)], atol=1e-6)
    g = jax.grad(lambda x: jnp.sum(angular_visual_hardness(x, y, w)))(x)
    assert np.all(np.isfinite(g))
    with pytest.raises(ValueError, match="class_weights"):
        angular_visual_hardness(x, y, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="features"):
        angular_visual_hardness(jnp.ones(3), y, w)


def test_neural_collapse_grads_finite_at_collapse_and_degenerate_means():
    etf = jnp.eye(3) - 1.0 / 3.0
    y = jnp.repeat(jnp.arange(3), 2)

    def total(h, w):
        out = neural_collapse(h, y, w)
        return sum(v for k, v in out.items() if k != "nc4")

    grads = jax.jit(jax.grad(total, argnums=(0, 1)))
    for h in (jnp.repeat(etf, 2, axis=0), jnp.zeros((6, 3))):
        for w in (etf, jnp.zeros((3, 3))):
            assert np.isfinite(float(total(h, w)))
            assert all(np.all(np.isfinite(g)) for g in grads(h, w))
