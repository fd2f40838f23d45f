"""sparsemax, StableMax, sparse-softmax and harmonic losses against hand values, NumPy and optax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxlab.losses import sparse_probability as sp

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 5)).astype(np.float32)
LABELS = RNG.integers(0, 5, size=6).astype(np.int32)
CENTERS = RNG.normal(size=(5, 3)).astype(np.float32)
INPUTS = RNG.normal(size=(6, 3)).astype(np.float32)


def _harmonic(inputs, labels, **kw):
    return sp.harmonic_loss(inputs, CENTERS, labels, **kw)


# (loss(data, labels, **kw), data): every loss goes through the same property tests.
LOSSES = {
    "sparsemax": (sp.sparsemax_loss, LOGITS),
    "stablemax": (sp.stablemax_cross_entropy, LOGITS),
    "sparse_softmax": (lambda z, y, **kw: sp.sparse_softmax_cross_entropy(z, y, k=3, **kw), LOGITS),
    "harmonic": (_harmonic, INPUTS),
}


# ---------------------------------------------------------------- NumPy transcriptions of papers
def np_sparsemax(z):
    """Martins & Astudillo, Algorithm 1."""
    z_sorted = np.sort(z)[::-1]
    k_z = max(k for k in range(1, len(z) + 1) if 1 + k * z_sorted[k - 1] > z_sorted[:k].sum())
    tau = (z_sorted[:k_z].sum() - 1) / k_z
    return np.maximum(z - tau, 0), tau


def np_sparsemax_loss(z, y):
    """Eq. 17: −z_y + ½ Σ_{j∈S} (z_j² − τ²) + ½."""
    p, tau = np_sparsemax(z)
    support = p > 0
    return -z[y] + 0.5 * np.sum(z[support] ** 2 - tau**2) + 0.5


def np_stablemax_ce(x, y):
    """The official code: s(x) = 1/(1−x+1e-30) for x < 0, x+1 else; −log(s_y / Σ s)."""
    s = np.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    return -np.log(s[y] / s.sum())


def np_sparse_softmax_ce(z, y, k):
    keep = set(np.argsort(-z)[:k].tolist()) | {y}
    return np.log(sum(np.exp(z[j]) for j in keep)) - z[y]


def np_harmonic_loss(x, w, y, n):
    d = np.sqrt(((w - x) ** 2).sum(-1))
    p = d ** (-n) / np.sum(d ** (-n))
    return -np.log(p[y])


def _rows(f, data, labels, **kw):
    return np.array([f(np.float64(d), int(y), **kw) for d, y in zip(data, labels, strict=True)])


# ---------------------------------------------------------------- sparsemax
def test_sparsemax_hand_values():
    z = jnp.array([1.0, 0.5, -1.0])
    np.testing.assert_allclose(sp.sparsemax(z), [0.75, 0.25, 0.0], rtol=1e-6)
    # −0.5 + ½(1 + 0.25 − 2·0.25²) + ½ with τ = 0.25
    np.testing.assert_allclose(sp.sparsemax_loss(z, jnp.array(1)), 0.5625, rtol=1e-6)


def test_sparsemax_matches_numpy_and_optax_projection():
    want = np.stack([np_sparsemax(np.float64(z))[0] for z in LOGITS])
    np.testing.assert_allclose(sp.sparsemax(LOGITS), want, atol=1e-6)
    oracle = jax.vmap(optax.projections.projection_simplex)(LOGITS)
    np.testing.assert_allclose(sp.sparsemax(LOGITS), oracle, atol=1e-6)
    np.testing.assert_allclose(sp.sparsemax(LOGITS.T, axis=0), want.T, atol=1e-6)
    got = sp.sparsemax_loss(LOGITS, LABELS)
    np.testing.assert_allclose(got, _rows(np_sparsemax_loss, LOGITS, LABELS), atol=1e-5)


def test_sparsemax_two_classes_match_optax_binary():
    t = jnp.linspace(-2.0, 2.0, 9)
    z = jnp.stack([jnp.zeros_like(t), t], axis=-1)
    np.testing.assert_allclose(sp.sparsemax(z)[:, 1], jax.nn.sparse_sigmoid(t), atol=1e-6)
    for y in (0, 1):
        want = optax.losses.sparsemax_loss(t, jnp.full(t.shape, y))
        got = sp.sparsemax_loss(z, jnp.full(t.shape, y, jnp.int32))
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_sparsemax_simplex_shift_invariance_zero_loss_and_gradient():
    p = sp.sparsemax(LOGITS)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sp.sparsemax(LOGITS + 3.0), p, atol=1e-6)
    loss = sp.sparsemax_loss(LOGITS, LABELS)
    assert np.all(loss > 0)
    assert float(sp.sparsemax_loss(jnp.array([3.0, 0.0, 1.5]), jnp.array(0))) == 0.0
    grad = jax.grad(lambda z: sp.sparsemax_loss(z, LABELS).sum())(jnp.asarray(LOGITS))
    np.testing.assert_allclose(grad, p - jax.nn.one_hot(LABELS, 5), atol=1e-6)


# ---------------------------------------------------------------- StableMax
def test_stablemax_hand_values():
    x = jnp.array([1.0, 0.0, -1.0])  # s = [2, 1, 1/2], Σ = 7/2
    np.testing.assert_allclose(sp.stablemax(x), [4 / 7, 2 / 7, 1 / 7], rtol=1e-6)
    np.testing.assert_allclose(sp.stablemax_cross_entropy(x, jnp.array(2)), math.log(7), rtol=1e-6)


def test_stablemax_matches_official_code_transcription():
    got = sp.stablemax_cross_entropy(LOGITS, LABELS)
    np.testing.assert_allclose(got, _rows(np_stablemax_ce, LOGITS, LABELS), rtol=1e-5)
    got = sp.stablemax_cross_entropy(LOGITS.T, LABELS, axis=0)
    np.testing.assert_allclose(got, _rows(np_stablemax_ce, LOGITS, LABELS), rtol=1e-5)
    p = sp.stablemax(LOGITS)
    p_y = np.take_along_axis(p, LABELS[:, None], 1)[:, 0]
    np.testing.assert_allclose(-np.log(p_y), got, rtol=1e-6)


def test_stablemax_sums_to_one_monotone_and_s_is_c1_at_zero():
    np.testing.assert_allclose(sp.stablemax(LOGITS).sum(-1), 1.0, rtol=1e-6)
    jac = jax.vmap(jax.jacobian(sp.stablemax))(jnp.asarray(LOGITS))
    assert np.all(np.diagonal(jac, axis1=1, axis2=2) > 0)  # p_i increases with x_i
    assert float(sp._stable_s(jnp.float32(0.0))) == 1.0
    h = 1e-3
    left = (sp._stable_s(0.0) - sp._stable_s(-h)) / h
    right = (sp._stable_s(h) - sp._stable_s(0.0)) / h
    np.testing.assert_allclose([left, right], [1.0, 1.0], atol=2e-3)
    assert float(jax.grad(sp._stable_s)(0.0)) == 1.0
    xs = jnp.linspace(-5.0, 5.0, 11)
    np.testing.assert_allclose(jnp.exp(sp._log_stable_s(xs)), sp._stable_s(xs), rtol=1e-6)


def test_stablemax_avoids_softmax_collapse():
    big = jnp.asarray(LOGITS) * 1e4
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(big, LABELS)
    assert np.any(jax.nn.softmax(big) == 0)  # float32 softmax underflows, as the paper shows
    assert np.all(sp.stablemax(big) > 0)
    assert np.all(np.isfinite(ce)) and np.all(np.isfinite(sp.stablemax_cross_entropy(big, LABELS)))


# ---------------------------------------------------------------- sparse-softmax
def test_sparse_softmax_hand_values():
    z, e = jnp.array([2.0, 1.0, 0.0]), math.e
    np.testing.assert_allclose(sp.sparse_softmax(z, k=2), [e / (e + 1), 1 / (e + 1), 0], rtol=1e-6)
    got = sp.sparse_softmax_cross_entropy(z, jnp.array(0), k=2)
    np.testing.assert_allclose(got, math.log1p(1 / e), rtol=1e-6)
    got = sp.sparse_softmax_cross_entropy(z, jnp.array(2), k=2)  # target outside the top k
    np.testing.assert_allclose(got, math.log(e**2 + e + 1), rtol=1e-6)


def test_sparse_softmax_matches_numpy_zeros_and_full_k():
    for k in (1, np.int64(3), 5):
        p = sp.sparse_softmax(LOGITS, k=k)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
        assert np.all(np.sum(p == 0, axis=-1) == 5 - k)
        got = sp.sparse_softmax_cross_entropy(LOGITS, LABELS, k=k)
        want = _rows(np_sparse_softmax_ce, LOGITS, LABELS, k=k)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(sp.sparse_softmax(LOGITS, k=5), jax.nn.softmax(LOGITS), rtol=1e-6)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS)
    np.testing.assert_allclose(sp.sparse_softmax_cross_entropy(LOGITS, LABELS, k=5), ce, rtol=1e-5)
    np.testing.assert_allclose(
        sp.sparse_softmax(LOGITS.T, k=2, axis=0), sp.sparse_softmax(LOGITS, k=2).T
    )


@pytest.mark.parametrize("k", [0, 6, 2.0, True, None])
def test_sparse_softmax_bad_k(k):
    with pytest.raises(ValueError, match="k="):
        sp.sparse_softmax(LOGITS, k=k)
    with pytest.raises(ValueError, match="k="):
        sp.sparse_softmax_cross_entropy(LOGITS, LABELS, k=k)


# ---------------------------------------------------------------- harmonic
def test_harmonic_hand_values():
    x, w = jnp.zeros((1, 2)), jnp.array([[1.0, 0.0], [0.0, 2.0]])  # d = [1, 2]; n = 2: p ∝ [1, 1/4]
    np.testing.assert_allclose(sp.harmonic_probs(x, w, exponent=2.0), [[0.8, 0.2]], rtol=1e-6)
    got = sp.harmonic_loss(x, w, jnp.array([0]), exponent=2.0)
    np.testing.assert_allclose(got, [-math.log(0.8)], rtol=1e-6)
    # default exponent √dim = √2
    np.testing.assert_allclose(
        sp.harmonic_logits(x, w), -math.sqrt(2) * np.log([[1.0, 2.0]]), rtol=1e-6, atol=1e-6
    )


def test_harmonic_matches_numpy():
    for n in (1.0, 3.0):
        got = sp.harmonic_loss(INPUTS, CENTERS, LABELS, exponent=n)
        want = [
            np_harmonic_loss(np.float64(x), CENTERS, int(y), n)
            for x, y in zip(INPUTS, LABELS, strict=True)
        ]
        np.testing.assert_allclose(got, want, rtol=1e-4)


def test_harmonic_limits():
    p = sp.harmonic_probs(INPUTS, CENTERS, exponent=2.0)
    np.testing.assert_allclose(sp.harmonic_probs(7 * INPUTS, 7 * CENTERS, exponent=2.0), p, 1e-5)
    at_centre = sp.harmonic_probs(CENTERS[2:3] + 1e-5, CENTERS, exponent=2.0)
    assert float(at_centre[0, 2]) > 0.999
    assert np.all(np.isfinite(sp.harmonic_loss(CENTERS, CENTERS, jnp.arange(5))))
    nearest = np.argmin(((INPUTS[:, None] - CENTERS[None]) ** 2).sum(-1), axis=1)
    sharp = sp.harmonic_probs(INPUTS, CENTERS, exponent=1e3)
    np.testing.assert_allclose(sharp, jax.nn.one_hot(nearest, 5), atol=1e-4)


def test_harmonic_bad_inputs():
    with pytest.raises(ValueError, match=r"centers\.shape"):
        sp.harmonic_logits(INPUTS, CENTERS[:, :2])
    with pytest.raises(ValueError, match=r"centers\.shape"):
        sp.harmonic_logits(INPUTS, CENTERS[0])
    with pytest.raises(ValueError, match="exponent=0"):
        sp.harmonic_logits(INPUTS, CENTERS, exponent=0.0)


# ---------------------------------------------------------------- shared properties
@pytest.mark.parametrize("name", LOSSES)
def test_where_equals_slicing_and_masked_padding_is_safe(name):
    loss, data = LOSSES[name]
    mask = np.array([True, False, True, True, False, True])
    padded = np.where(mask, LABELS, 99)  # out-of-range padding must not produce NaN
    got = loss(data, padded, where=mask)
    np.testing.assert_allclose(got[mask], loss(data[mask], LABELS[mask]), rtol=1e-6)
    assert np.all(got[~mask] == 0)
    grad = jax.grad(lambda d: loss(d, padded, where=mask).sum())(jnp.asarray(data))
    assert np.all(np.isfinite(grad)) and np.all(grad[~mask] == 0)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_float64(name):
    loss, data = LOSSES[name]
    with jax.enable_x64(True):
        check_grads(lambda d: loss(d, LABELS), (np.float64(data),), order=1, modes=["rev"])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("scale,dtype", [(1e4, jnp.float32), (1.0, jnp.bfloat16)])
def test_large_and_bf16_inputs_are_finite(name, scale, dtype):
    loss, data = LOSSES[name]
    x = (jnp.asarray(data) * scale).astype(dtype)
    value, grad = jax.value_and_grad(lambda d: loss(d, LABELS).sum())(x)
    assert loss(x, LABELS).dtype == jnp.float32
    assert np.isfinite(value) and np.all(np.isfinite(grad.astype(jnp.float32)))


@pytest.mark.parametrize("name", LOSSES)
def test_bad_labels_raise(name):
    loss, data = LOSSES[name]
    with pytest.raises(TypeError, match=r"labels\.dtype"):
        loss(data, LABELS.astype(np.float32))
    with pytest.raises(ValueError, match=r"labels\.shape"):
        loss(data, LABELS[:3])
    with pytest.raises(ValueError, match=r"where\.shape"):
        loss(data, LABELS, where=np.ones(3, bool))
