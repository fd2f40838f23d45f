"""Schedules against their closed forms, and the AdamW EMA helpers against direct unrolling."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.optim import (
    adamw_ema_timescale,
    adamw_update_weights,
    warmup_cosine_to_fraction,
    warmup_linear_decay_to_zero,
    warmup_stable_decay,
)

T, TW = 100, 10
STEPS = np.arange(T + 20)


def values(schedule):
    return np.asarray(schedule(jnp.asarray(STEPS)))


def test_d2z_closed_form():
    got = values(warmup_linear_decay_to_zero(0.3, T, TW))
    want = np.where(STEPS < TW, 0.3 * STEPS / TW, 0.3 * np.clip((T - STEPS) / (T - TW), 0, 1))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got[T] == 0.0 and got[-1] == 0.0  # exactly zero at and after T
    assert got[TW] == pytest.approx(0.3)  # peak at the end of warmup
    assert np.all(np.diff(got[TW:]) <= 0)


def test_cosine_to_fraction_closed_form_and_optax():
    got = values(warmup_cosine_to_fraction(0.3, T, TW, final_fraction=0.1))
    p = np.clip((STEPS - TW) / (T - TW), 0, 1)
    want = np.where(STEPS < TW, 0.3 * STEPS / TW, 0.03 + 0.27 * 0.5 * (1 + np.cos(np.pi * p)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    ref = values(optax.warmup_cosine_decay_schedule(0.0, 0.3, TW, T, end_value=0.03))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("shape", "fn"),
    [
        ("linear", lambda p: 1 - p),
        ("cosine", lambda p: 0.5 * (1 + np.cos(np.pi * p))),
        ("sqrt", lambda p: 1 - np.sqrt(p)),
    ],
)
def test_warmup_stable_decay(shape, fn):
    got = values(
        warmup_stable_decay(1.0, T, TW, decay_steps=20, decay_shape=shape, final_value=0.1)
    )
    p = np.clip((STEPS - (T - 20)) / 20, 0, 1)
    want = np.where(STEPS < TW, STEPS / TW, 0.1 + 0.9 * fn(p))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.all(got[TW : T - 20] == 1.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"total_steps": 0}, "total_steps"),
        ({"warmup_steps": 100}, "warmup_steps"),
        ({"decay_steps": 95}, "decay_steps"),
        ({"decay_shape": "exp"}, "decay_shape"),
        ({"peak_value": -1.0}, "peak_value"),
    ],
)
def test_bad_schedule_arguments(kwargs, name):
    args = {"peak_value": 1.0, "total_steps": 100, "warmup_steps": 10, "decay_steps": 20, **kwargs}
    with pytest.raises(ValueError, match=name):
        warmup_stable_decay(**args)


def test_adamw_update_weights_match_unrolled_recursion():
    lrs = np.asarray(warmup_linear_decay_to_zero(1e-2, 50, 5)(jnp.arange(50)), np.float64)
    lam = 0.5
    c = np.asarray(adamw_update_weights(lrs, lam), np.float64)
    # Unroll θ_{t+1} = (1 − a_t)θ_t + a_t y_t with one-hot y: the coefficient of y_t in θ_T.
    for t in (0, 17, 49):
        theta = 0.0
        for s, a in enumerate(lrs * lam):
            theta = (1 - a) * theta + a * (1.0 if s == t else 0.0)
        assert c[t] == pytest.approx(theta, rel=1e-5)
    assert c.sum() == pytest.approx(1 - np.prod(1 - lrs * lam), rel=1e-5)


def test_constant_rate_gives_geometric_weights_with_timescale():
    c = np.asarray(adamw_update_weights(np.full(400, 1e-2), 1.0))
    ratios = c[1:] / c[:-1]
    np.testing.assert_allclose(ratios, 1 / (1 - 1e-2), rtol=1e-4)
    assert adamw_ema_timescale(1e-2, 1.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="weight_decay"):
        adamw_ema_timescale(1e-3, 0.0)
