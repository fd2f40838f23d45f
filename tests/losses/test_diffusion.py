"""P2 weighting: NumPy transcription of the official formula, limits, monotonicity, masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.losses import diffusion as df

RNG = np.random.default_rng(0)


def np_alphas_cumprod(n=1000):
    betas = np.linspace(1e-4, 0.02, n)  # DDPM linear schedule
    return np.cumprod(1 - betas)


def test_p2_weight_matches_official_formula():
    a = np_alphas_cumprod()
    snr = a / (1 - a)
    for k, gamma in [(1.0, 1.0), (1.0, 0.5), (0.5, 2.0)]:
        expected = (k + a / (1 - a)) ** -gamma  # official P2-weighting code
        np.testing.assert_allclose(df.p2_weight(snr, k=k, gamma=gamma), expected, rtol=2e-5)


def test_gamma_zero_is_baseline_and_monotone_decreasing():
    snr = np.concatenate([[0.0], np.geomspace(1e-4, 1e6, 50), [np.inf]]).astype(np.float32)
    np.testing.assert_array_equal(df.p2_weight(snr, gamma=0.0), np.ones_like(snr))
    w = np.asarray(df.p2_weight(snr, gamma=1.0))
    assert np.all(np.diff(w) < 0) and w[0] == 1.0 and w[-1] == 0.0


def test_weighted_loss_matches_numpy_and_reduces_to_l_simple():
    pred, eps = RNG.normal(size=(2, 4, 4, 3, 5)).astype(np.float32)
    snr = np.array([0.0, 0.3, 2.0, 50.0], np.float32)
    mse = ((pred.astype(np.float64) - eps) ** 2).reshape(4, -1).mean(-1)
    loss = jax.jit(lambda p: df.weighted_diffusion_loss(p, eps, snr, gamma=0.5))(pred)
    np.testing.assert_allclose(loss, mse / np.sqrt(1 + snr), rtol=1e-5)
    np.testing.assert_allclose(df.weighted_diffusion_loss(pred, eps, snr, gamma=0), mse, rtol=1e-5)


def test_mask_bf16_and_finite_grads():
    pred, eps = RNG.normal(size=(2, 3, 6)).astype(np.float32)
    snr = np.array([0.0, np.inf, 1.0], np.float32)
    mask = np.array([True, True, False])
    bad = pred.copy()
    bad[2] = np.nan
    loss = df.weighted_diffusion_loss(bad, eps, snr, where=mask)
    assert loss.dtype == jnp.float32 and np.all(np.isfinite(loss)) and float(loss[2]) == 0
    assert float(loss[1]) == 0  # SNR = inf: weight 0
    grad = jax.grad(lambda p: jnp.sum(df.weighted_diffusion_loss(p, eps, snr, where=mask)))(bad)
    assert np.all(np.isfinite(grad))
    bf = df.weighted_diffusion_loss(jnp.asarray(pred, jnp.bfloat16), eps, snr)
    assert bf.dtype == jnp.float32


@pytest.mark.parametrize(("kw", "match"), [({"k": 0.0}, "k"), ({"gamma": -1.0}, "gamma")])
def test_bad_hyperparameters_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        df.p2_weight(jnp.ones(3), **kw)
    with pytest.raises(ValueError, match=match):
        df.weighted_diffusion_loss(jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones(3), **kw)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="eps_pred"):
        df.weighted_diffusion_loss(jnp.ones((3, 2)), jnp.ones((3, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match="snr"):
        df.weighted_diffusion_loss(jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones(2))
