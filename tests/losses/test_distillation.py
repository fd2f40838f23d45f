"""PS-KD and ND losses: NumPy transcriptions (official code), closed-form gradients, limits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.losses import distillation as kd

RNG = np.random.default_rng(0)
B, C, D = 6, 4, 5
Z = (2 * RNG.normal(size=(B, C))).astype(np.float32)
Y = np.array([0, 1, 2, 3, 0, 2])
PAST = RNG.dirichlet(np.ones(C), size=B).astype(np.float32)
S = RNG.normal(size=(B, D)).astype(np.float32)
T = RNG.normal(size=(B, D)).astype(np.float32)
M = RNG.normal(size=(C, D)).astype(np.float32)


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_ps_kd(z, y, past, epoch, total, alpha_T):
    a = alpha_T * epoch / total
    target = (1 - a) * np.eye(z.shape[-1])[y] + a * past
    return -(target * np_log_softmax(z)).sum(-1)


def np_nd(s, t, means, y):  # DirectNormLoss.project_center, one example at a time
    out = []
    for si, ti, yi in zip(s.astype(np.float64), t.astype(np.float64), y, strict=True):
        e = means[yi] / np.linalg.norm(means[yi])
        out.append(1 - si @ e / max(np.linalg.norm(si), np.linalg.norm(ti)))
    return np.array(out)


def test_targets_sum_to_one_and_limits():
    onehot = np.eye(C, dtype=np.float32)[Y]
    for epoch in (0, 3, 10):
        tgt = kd.ps_kd_targets(onehot, PAST, epoch, 10)
        np.testing.assert_allclose(np.sum(tgt, -1), 1, rtol=1e-6)
    np.testing.assert_array_equal(kd.ps_kd_targets(onehot, PAST, 0, 10), onehot)
    np.testing.assert_array_equal(kd.ps_kd_targets(onehot, PAST, 7, 10, alpha_T=0.0), onehot)
    np.testing.assert_allclose(kd.ps_kd_targets(onehot, PAST, 10, 10, alpha_T=1.0), PAST, rtol=1e-6)


def test_ps_kd_loss_matches_numpy_optax_and_ce_limit():
    for epoch in (0, 4, 9):
        loss = jax.jit(lambda z, e: kd.ps_kd_loss(z, Y, PAST, e, 10))(Z, epoch)
        np.testing.assert_allclose(loss, np_ps_kd(Z, Y, PAST, epoch, 10, 0.8), rtol=1e-5)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(Z, Y)
    np.testing.assert_allclose(kd.ps_kd_loss(Z, Y, PAST, 0, 10), ce, rtol=1e-6)
    np.testing.assert_allclose(kd.ps_kd_loss(Z, Y, PAST, 5, 10, alpha_T=0.0), ce, rtol=1e-6)


def test_ps_kd_gradient_is_softmax_minus_target():
    grad = jax.grad(lambda z: jnp.sum(kd.ps_kd_loss(z, Y, PAST, 6, 10)))(Z)
    a = 0.8 * 6 / 10
    target = (1 - a) * np.eye(C)[Y] + a * PAST
    np.testing.assert_allclose(grad, np.exp(np_log_softmax(Z)) - target, atol=1e-6)
    # Against CE the true-class pull shrinks by α(1 − p̂_y): examples the model already got
    # right in the past (p̂_y ≈ 1) keep the full CE gradient, past-hard ones are softened.
    ce_grad = jax.grad(lambda z: jnp.sum(kd.ps_kd_loss(z, Y, PAST, 0, 10)))(Z)
    shrink = np.take_along_axis(np.asarray(grad - ce_grad), Y[:, None], -1)[:, 0]
    np.testing.assert_allclose(shrink, a * (1 - PAST[np.arange(B), Y]), atol=1e-6)


def test_ps_kd_mask_large_logits_bf16():
    mask = np.array([True, False, True, True, False, True])
    bad = Z.copy()
    bad[~mask] = np.nan
    fn = lambda z: kd.ps_kd_loss(z, np.where(mask, Y, 99), PAST, 3, 10, where=mask)  # noqa: E731
    np.testing.assert_allclose(fn(bad)[mask], kd.ps_kd_loss(Z[mask], Y[mask], PAST[mask], 3, 10))
    assert np.all(np.asarray(fn(bad))[~mask] == 0)
    assert np.all(np.isfinite(jax.grad(lambda z: jnp.sum(fn(z)))(bad)))
    for z in (Z * 1e4, jnp.asarray(Z, jnp.bfloat16)):
        value, grad = jax.value_and_grad(lambda z: jnp.sum(kd.ps_kd_loss(z, Y, PAST, 3, 10)))(z)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad, np.float32)))
        assert kd.ps_kd_loss(z, Y, PAST, 3, 10).dtype == jnp.float32


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"alpha_T": 1.5}, "alpha_T"),
        ({"total_epochs": 0}, "total_epochs"),
        ({"epoch": 11}, "epoch"),
        ({"epoch": -1}, "epoch"),
    ],
)
def test_ps_kd_bad_arguments(kw, match):
    args = {"epoch": 1, "total_epochs": 10, **kw}
    with pytest.raises(ValueError, match=match):
        kd.ps_kd_loss(Z, Y, PAST, args.pop("epoch"), args.pop("total_epochs"), **args)
    with pytest.raises(ValueError, match="labels"):
        kd.ps_kd_loss(Z, Y[:3], PAST, 1, 10)


def test_nd_loss_matches_official_code_and_cosine_baseline():
    for t in (T, 3 * T, 0.1 * T):  # either branch of the max
        np.testing.assert_allclose(
            jax.jit(kd.nd_loss)(S, t, M, Y), np_nd(S, t, M, Y), rtol=1e-5, atol=1e-6
        )
    cos = (S.astype(np.float64) * M[Y]).sum(-1) / np.linalg.norm(S, axis=-1)
    cos /= np.linalg.norm(M[Y], axis=-1)
    np.testing.assert_allclose(kd.cosine_to_class_mean_loss(S, M, Y), 1 - cos, rtol=1e-5)
    np.testing.assert_allclose(kd.nd_loss(S, 0 * T, M, Y), 1 - cos, rtol=1e-5)  # ‖f_s‖ wins


def test_nd_gradient_parallel_to_class_mean_and_monotone():
    t = 100 * T  # teacher longer: loss = 1 − ⟨f_s, ĉ⟩/‖f_t‖
    grad = jax.grad(lambda s: jnp.sum(kd.nd_loss(s, t, M, Y)))(S)
    expected = -(M[Y] / np.linalg.norm(M[Y], axis=-1, keepdims=True))
    expected /= np.linalg.norm(t, axis=-1, keepdims=True)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    e = M[0] / np.linalg.norm(M[0])
    values = [float(kd.nd_loss((a * e)[None], t[:1], M, Y[:1])[0]) for a in (0.1, 1, 5, 20)]
    assert np.all(np.diff(values) < 0)


def test_nd_zero_vectors_mask_and_bad_shapes():
    zeros = np.zeros_like(S)
    for fn in (
        lambda s, m: kd.nd_loss(s, zeros, m, Y),
        lambda s, m: kd.cosine_to_class_mean_loss(s, m, Y),
    ):
        value, grad = jax.value_and_grad(lambda s, m=0 * M, f=fn: jnp.sum(f(s, m)))(zeros)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
        np.testing.assert_allclose(fn(zeros, M), 1.0)
    mask = np.array([True, False] * 3)
    bad = S.copy()
    bad[~mask] = np.nan
    out = kd.nd_loss(bad, T, M, np.where(mask, Y, 99), where=mask)
    np.testing.assert_allclose(out[mask], kd.nd_loss(S[mask], T[mask], M, Y[mask]), rtol=1e-6)
    assert np.all(np.asarray(out)[~mask] == 0)
    g = jax.grad(lambda s: jnp.sum(kd.nd_loss(s, T, M, np.where(mask, Y, 0), where=mask)))(bad)
    assert np.all(np.isfinite(g))
    assert kd.nd_loss(jnp.asarray(S, jnp.bfloat16), T, M, Y).dtype == jnp.float32
    with pytest.raises(ValueError, match="teacher_feat"):
        kd.nd_loss(S, T[:, :2], M, Y)
    with pytest.raises(ValueError, match="class_means"):
        kd.cosine_to_class_mean_loss(S, M[:, :2], Y)
    with pytest.raises(ValueError, match="labels"):
        kd.cosine_to_class_mean_loss(S, M, Y[:2])
