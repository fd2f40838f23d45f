"""Regression losses against hand values, NumPy transcriptions, optax and their limit cases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxlab.losses import regression as R

RNG = np.random.default_rng(0)
P = RNG.normal(size=(3, 5)).astype(np.float32)
T = RNG.normal(size=(3, 5)).astype(np.float32)
MASK = RNG.uniform(size=(3, 5)) > 0.3
HIST = RNG.normal(size=(3, 7)).astype(np.float32)


def _np_references(p, t):
    r = p - t
    return {
        "absolute_error": np.abs(r),
        "squared_error": r**2,
        "huber_loss": np.where(np.abs(r) <= 1, 0.5 * r**2, np.abs(r) - 0.5),
        "log_cosh": np.log(np.cosh(r)),
        "quantile_loss": np.where(t >= p, 0.5 * (t - p), 0.5 * (p - t)),
        "absolute_percentage_error": np.abs(r) / np.abs(t),
        "symmetric_absolute_percentage_error": 2 * np.abs(r) / (np.abs(t) + np.abs(p)),
        "absolute_directional_loss": -np.sign(t * p) * np.abs(t),
    }


ELEMENTWISE = list(_np_references(P, T))


def test_hand_values():
    p, t = jnp.asarray([0.0, 3.0, -1.0]), jnp.asarray([1.0, 1.0, 1.0])
    np.testing.assert_allclose(R.absolute_error(p, t), [1, 2, 2])
    np.testing.assert_allclose(R.squared_error(p, t), [1, 4, 4])
    np.testing.assert_allclose(R.huber_loss(p, t, delta=1.0), [0.5, 1.5, 1.5])
    np.testing.assert_allclose(R.quantile_loss(p, t, quantile=0.9), [0.9, 0.2, 1.8], rtol=1e-6)
    np.testing.assert_allclose(R.absolute_percentage_error(p, t), [1, 2, 2])
    np.testing.assert_allclose(R.symmetric_absolute_percentage_error(p, t), [2, 1, 2], rtol=1e-6)
    np.testing.assert_allclose(R.squared_log_error(jnp.asarray([np.e - 1]), jnp.zeros(1)), [1.0])
    np.testing.assert_allclose(
        R.root_mean_squared_error(jnp.asarray([[0.0, 3.0]]), jnp.asarray([[0.0, -1.0]])),
        [np.sqrt(8.0)],
    )
    # history 0, 2, 0 → naive errors 2, 2 → scale 2; mean abs error 1 → MASE 0.5
    got = R.mean_absolute_scaled_error(
        jnp.asarray([[1.0, 2.0]]), jnp.asarray([[0.0, 3.0]]), jnp.asarray([[0.0, 2.0, 0.0]])
    )
    np.testing.assert_allclose(got, [0.5], rtol=1e-6)
    madl = R.absolute_directional_loss(jnp.asarray([0.1, -2.0, 0.5]), jnp.asarray([1.0, 2.0, -3]))
    np.testing.assert_allclose(madl, [-1.0, 2.0, 3.0])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_match_numpy(name):
    got = getattr(R, name)(P, T)
    np.testing.assert_allclose(got, _np_references(P, T)[name], rtol=1e-5, atol=1e-6)


def test_per_series_match_numpy():
    np.testing.assert_allclose(
        R.root_mean_squared_error(P, T), np.sqrt(np.mean((P - T) ** 2, -1)), rtol=1e-6
    )
    scale = np.mean(np.abs(HIST[..., 2:] - HIST[..., :-2]), -1)
    want = np.mean(np.abs(P - T), -1) / scale
    got = R.mean_absolute_scaled_error(P, T, HIST, season=2)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    msle = np.mean((np.log1p(np.abs(P)) - np.log1p(np.abs(T))) ** 2)
    np.testing.assert_allclose(jnp.mean(R.squared_log_error(np.abs(P), np.abs(T))), msle, rtol=1e-5)


def test_against_optax():
    np.testing.assert_allclose(R.squared_error(P, T), optax.losses.squared_error(P, T), rtol=1e-6)
    for delta in (0.3, 1.0, 2.0):
        np.testing.assert_allclose(
            R.huber_loss(P, T, delta=delta), optax.losses.huber_loss(P, T, delta=delta), rtol=1e-6
        )
    np.testing.assert_allclose(R.log_cosh(P, T), optax.losses.log_cosh(P, T), atol=1e-6)


def test_limit_cases():
    r = np.linspace(-3, 3, 13).astype(np.float32)
    z = np.zeros_like(r)
    for delta in (0.5, 2.0):
        want = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
        np.testing.assert_allclose(R.huber_loss(r, z, delta=delta), want, rtol=1e-6)
    np.testing.assert_allclose(R.quantile_loss(P, T), 0.5 * R.absolute_error(P, T), rtol=1e-6)
    for name in [*ELEMENTWISE, "squared_log_error"]:
        if name == "absolute_directional_loss":
            continue
        vals = getattr(R, name)(np.abs(P), np.abs(T))
        assert np.all(np.asarray(vals) >= 0), name
        np.testing.assert_allclose(getattr(R, name)(np.abs(T), np.abs(T)), 0, atol=1e-6)
    right = R.absolute_directional_loss(T * 3, T)
    np.testing.assert_allclose(np.mean(right), -np.mean(np.abs(T)), rtol=1e-6)
    want = np.mean(np.abs(T))
    np.testing.assert_allclose(np.mean(R.absolute_directional_loss(-T, T)), want, rtol=1e-6)


@pytest.mark.parametrize(
    "name", [n for n in ELEMENTWISE if n != "absolute_directional_loss"] + ["squared_log_error"]
)
def test_where_equals_slicing_and_masked_nan_is_zero(name):
    p, t = np.abs(P), np.abs(T)
    got = getattr(R, name)(p, t, where=MASK)
    np.testing.assert_allclose(got[MASK], getattr(R, name)(p[MASK], t[MASK]), rtol=1e-6)
    np.testing.assert_array_equal(got[~MASK], 0)
    bad = np.where(MASK, p, np.nan)
    grads = jax.grad(lambda x: jnp.sum(getattr(R, name)(x, t, where=MASK)))(bad)
    assert np.all(np.isfinite(grads)), name


def test_per_series_where_equals_slicing():
    mask = MASK.copy()
    mask[0] = False
    rmse = R.root_mean_squared_error(P, T, where=mask)
    mase = R.mean_absolute_scaled_error(P, T, HIST, where=mask)
    for i in range(1, 3):
        m = mask[i]
        np.testing.assert_allclose(rmse[i], R.root_mean_squared_error(P[i, m], T[i, m]), rtol=1e-6)
        want = R.mean_absolute_scaled_error(P[i, m][None], T[i, m][None], HIST[i][None])[0]
        np.testing.assert_allclose(mase[i], want, rtol=1e-6)
    assert rmse[0] == 0 and mase[0] == 0


def test_gradients_float64():
    with jax.enable_x64(True):
        p, t = jnp.asarray(P, jnp.float64), jnp.asarray(T, jnp.float64)
        fns = [
            lambda x: R.squared_error(x, t),
            lambda x: R.huber_loss(x, t, delta=0.5),
            lambda x: R.log_cosh(x, t),
            lambda x: R.root_mean_squared_error(x, t),
            lambda x: R.symmetric_absolute_percentage_error(x, t),
            lambda x: R.squared_log_error(jnp.abs(x), jnp.abs(t)),
            lambda x: R.mean_absolute_scaled_error(x, t, jnp.asarray(HIST, jnp.float64)),
        ]
        for f in fns:
            check_grads(jax.jit(f), (p,), order=1, modes=["rev"])
        g = jax.grad(lambda x: jnp.sum(R.root_mean_squared_error(x, x)))(p)
        np.testing.assert_array_equal(g, 0)  # exact fit: gradient 0, not NaN


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_huge_and_bf16_finite(name):
    for p, t in ((P * 1e15, T * 1e15), (P.astype(jnp.bfloat16), T.astype(jnp.bfloat16))):
        vals, grads = jax.value_and_grad(lambda x, t=t: jnp.sum(getattr(R, name)(x, t)))(p)
        assert np.isfinite(vals) and np.all(np.isfinite(grads.astype(np.float32))), name
        assert getattr(R, name)(p, t).dtype == jnp.float32


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"targets.shape"):
        R.absolute_error(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="delta=0"):
        R.huber_loss(P, T, delta=0)
    with pytest.raises(ValueError, match=r"quantile=1.5"):
        R.quantile_loss(P, T, quantile=1.5)
    with pytest.raises(ValueError, match="where"):
        R.log_cosh(P, T, where=MASK[0])
    with pytest.raises(TypeError, match=r"predictions.dtype"):
        R.squared_error(jnp.ones(3, int), jnp.ones(3))
    with pytest.raises(ValueError, match=r"history.shape"):
        R.mean_absolute_scaled_error(P, T, HIST[:, :1])
    with pytest.raises(ValueError, match="season=0"):
        R.mean_absolute_scaled_error(P, T, HIST, season=0)
