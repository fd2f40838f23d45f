"""mixup, CutMix and the decoupled mixup loss against NumPy transcriptions and limit cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxlab.regularizers.mixing import cutmix, decoupled_mixup_loss, mixup

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 6, 5, 2)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]


def test_mixup_matches_numpy_and_lam_one_is_identity():
    out = mixup(KEY, X, Y, lam=0.3)
    perm = np.asarray(out.perm)
    assert sorted(perm) == [0, 1, 2, 3]
    np.testing.assert_allclose(out.inputs, 0.3 * X + 0.7 * X[perm], rtol=1e-6)
    np.testing.assert_allclose(out.labels, 0.3 * Y + 0.7 * Y[perm], rtol=1e-6)
    np.testing.assert_allclose(out.labels.sum(-1), 1, rtol=1e-6)
    ident = mixup(KEY, X, Y, lam=1.0)
    np.testing.assert_array_equal(ident.inputs, X)
    np.testing.assert_array_equal(ident.labels, Y)


def test_mixup_beta_mean_and_determinism():
    draw = jax.jit(jax.vmap(lambda k: mixup(k, Y, Y, alpha=0.5).lam))
    lams = draw(jax.random.split(KEY, 2000))
    assert abs(float(lams.mean()) - 0.5) < 0.03
    assert 0 <= float(lams.min()) and float(lams.max()) <= 1
    a, b = mixup(KEY, X, Y), mixup(KEY, X, Y)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, mixup(jax.random.key(1), X, Y).inputs)


def test_cutmix_label_weight_is_exact_pasted_fraction():
    x = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5, 1) * np.ones((1, 1, 1, 2))
    mix = jax.jit(lambda k: cutmix(k, x, Y))
    for seed in range(6):
        out = mix(jax.random.key(seed))
        pasted = np.asarray(out.inputs != x)[..., 0]  # every pixel value is unique
        perm = np.asarray(out.perm)
        moved = perm != np.arange(4)
        frac = pasted[moved].mean() if moved.any() else 1 - float(out.lam)
        np.testing.assert_allclose(1 - float(out.lam), frac, atol=1e-6)
        np.testing.assert_array_equal(out.inputs[pasted], x[perm][pasted])
        lam = float(out.lam)
        np.testing.assert_allclose(out.labels, lam * Y + (1 - lam) * Y[perm], rtol=1e-6)


def test_cutmix_box_matches_numpy_rand_bbox():
    """The box is the official rand_bbox: half-sizes floor(H√(1−λ))//2 around the centre."""
    x = np.arange(4 * 16 * 12, dtype=np.float32).reshape(4, 16, 12)[..., None]
    out = cutmix(KEY, x, Y, lam=0.6)
    pasted = np.asarray(out.inputs[..., 0] != x[..., 0])
    rows, cols = np.nonzero(pasted.any(0))[0], np.nonzero(pasted.any(0))[1]
    hh, hw = int(16 * np.sqrt(0.4)) // 2, int(12 * np.sqrt(0.4)) // 2
    # a centre (cy, cx) exists for which the clipped box equals the pasted one
    found = [
        (cy, cx)
        for cy in range(16)
        for cx in range(12)
        if rows.min() == max(cy - hh, 0)
        and rows.max() + 1 == min(cy + hh, 16)
        and cols.min() == max(cx - hw, 0)
        and cols.max() + 1 == min(cx + hw, 12)
    ]
    assert found
    area = (rows.max() + 1 - rows.min()) * (cols.max() + 1 - cols.min())
    np.testing.assert_allclose(float(out.lam), 1 - area / (16 * 12), rtol=1e-6)


def test_cutmix_lam_one_is_identity():
    out = cutmix(KEY, X, Y, lam=1.0)
    np.testing.assert_array_equal(out.inputs, X)
    assert float(out.lam) == 1.0


@pytest.mark.parametrize(
    ("fn", "kwargs", "x", "y", "match"),
    [
        (mixup, {"alpha": 0.0}, X, Y, "alpha=0.0"),
        (mixup, {"lam": 1.5}, X, Y, "lam=1.5"),
        (mixup, {}, X, Y[:3], "y.shape"),
        (cutmix, {}, X[:, 0, 0], Y, "x.shape"),
        (cutmix, {"alpha": -1.0}, X, Y, "alpha=-1.0"),
    ],
)
def test_mixing_bad_input_raises(fn, kwargs, x, y, match):
    with pytest.raises(ValueError, match=match):
        fn(KEY, x, y, **kwargs)


def _np_decoupled(z, a, b, lam, eta):
    out = []
    for zi, ai, bi, li in zip(z, a, b, lam, strict=True):
        logp = zi - np.log(np.exp(zi).sum())
        loss = -li * logp[ai] - (1 - li) * logp[bi]
        if ai != bi:
            not_b = np.delete(np.arange(len(zi)), bi)
            not_a = np.delete(np.arange(len(zi)), ai)
            loss -= eta * (zi[ai] - np.log(np.exp(zi[not_b]).sum()))
            loss -= eta * (zi[bi] - np.log(np.exp(zi[not_a]).sum()))
        out.append(loss)
    return np.array(out)


Z = RNG.normal(size=(5, 4)).astype(np.float32)
LA, LB = np.array([0, 1, 2, 3, 1]), np.array([1, 1, 0, 2, 3])
LAM = np.array([0.3, 0.5, 0.9, 0.1, 0.6], np.float32)


def test_decoupled_mixup_hand_value_and_numpy():
    z = np.array([[1.0, 2.0, 0.0]], np.float32)
    want = -0.3 * (1 - np.log(np.exp(1) + np.exp(2) + 1)) - 0.7 * (
        2 - np.log(np.exp(1) + np.exp(2) + 1)
    )
    want -= 0.1 * ((1 - np.log(np.exp(1) + 1)) + (2 - np.log(np.exp(2) + 1)))
    got = decoupled_mixup_loss(z, jnp.array([0]), jnp.array([1]), 0.3)
    np.testing.assert_allclose(got, [want], rtol=1e-6)
    got = decoupled_mixup_loss(Z, LA, LB, LAM, eta=0.4)
    np.testing.assert_allclose(got, _np_decoupled(Z, LA, LB, LAM, 0.4), rtol=1e-5)


def test_decoupled_mixup_limits():
    logp = jax.nn.log_softmax(Z)
    same = decoupled_mixup_loss(Z, LA, LA, LAM, eta=0.7)
    np.testing.assert_allclose(same, -logp[np.arange(5), LA], rtol=1e-6)
    no_eta = decoupled_mixup_loss(Z, LA, LB, LAM, eta=0.0)
    want = -LAM * logp[np.arange(5), LA] - (1 - LAM) * logp[np.arange(5), LB]
    np.testing.assert_allclose(no_eta, want, rtol=1e-6)
    # the decoupled score of class a does not depend on z_b
    z2 = Z.copy()
    z2[0, LB[0]] += 5.0
    d1 = decoupled_mixup_loss(Z, LA, LB, LAM, eta=1.0) - decoupled_mixup_loss(Z, LA, LB, LAM, eta=0)
    d2 = decoupled_mixup_loss(z2, LA, LB, LAM, eta=1.0) - decoupled_mixup_loss(
        z2, LA, LB, LAM, eta=0
    )
    dec_b = lambda z: -(z[0, 1] - np.log(np.exp(np.delete(z[0], 0)).sum()))  # noqa: E731
    np.testing.assert_allclose(d2[0] - d1[0], dec_b(z2) - dec_b(Z), rtol=1e-5)


def test_decoupled_mixup_grads_and_large_logits():
    with jax.enable_x64(True):
        z = jnp.asarray(Z, jnp.float64)
        check_grads(lambda z: decoupled_mixup_loss(z, LA, LB, LAM), (z,), order=1, modes=["rev"])
    big = jnp.asarray(Z) * 1e4
    val, grad = jax.value_and_grad(lambda z: decoupled_mixup_loss(z, LA, LB, LAM).sum())(big)
    assert np.isfinite(val) and np.isfinite(grad).all()
    bf = decoupled_mixup_loss(jnp.asarray(Z, jnp.bfloat16), LA, LB, LAM)
    assert bf.dtype == jnp.float32 and np.isfinite(bf).all()


def test_decoupled_mixup_bad_input_raises():
    with pytest.raises(ValueError, match="labels_b"):
        decoupled_mixup_loss(Z, LA, LB[:3], 0.5)
    with pytest.raises(ValueError, match="eta"):
        decoupled_mixup_loss(Z, LA, LB, 0.5, eta=-1.0)
    with pytest.raises(ValueError, match="lam"):
        decoupled_mixup_loss(Z, LA, LB, jnp.ones(3))
