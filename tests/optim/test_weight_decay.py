"""Weight-decay modes against NumPy loops of their formulas, and against optax where it agrees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.optim import adamw, sgdw, with_weight_decay

RNG = np.random.default_rng(0)
A = RNG.normal(size=(4, 4))
A = A @ A.T / 4 + 0.1 * np.eye(4)
B = RNG.normal(size=4)
X0 = RNG.normal(size=4)
STEPS = 12


def grad(x):
    return A @ x - B


def run(tx, steps=STEPS, x0=X0):
    """Runs ``tx`` in float64 on the quadratic and returns the iterates θ_1..θ_T."""
    out = []
    with jax.enable_x64(True):
        x = jnp.asarray(x0, jnp.float64)
        state = tx.init(x)
        for _ in range(steps):
            u, state = tx.update(jnp.asarray(grad(np.asarray(x))), state, x)
            x = optax.apply_updates(x, u)
            out.append(np.asarray(x))
    return np.stack(out)


def numpy_adam(lr, wd, mode, b1=0.9, b2=0.999, eps=1e-8, peak=None, steps=STEPS):
    """AdamW in the three modes, transcribed from the formulas of with_weight_decay's docstring."""
    x, m, v, out = X0.copy(), np.zeros(4), np.zeros(4), []
    for t in range(steps):
        eta = lr(t)
        g = grad(x) + (wd * x if mode == "l2" else 0.0)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
        if mode == "coupled":
            x = x - eta * (u + wd * x)
        elif mode == "independent":
            x = x - eta * u - (eta / peak) * wd * x
        else:
            x = x - eta * u
        out.append(x.copy())
    return np.stack(out)


def numpy_sgd(lr, wd, mode, momentum=0.9, steps=STEPS):
    x, m, out = X0.copy(), np.zeros(4), []
    for _ in range(steps):
        g = grad(x) + (wd * x if mode == "l2" else 0.0)
        m = momentum * m + g
        decay = {"l2": 0.0, "coupled": lr * wd, "independent": wd}[mode]  # η_max = lr
        x = x - lr * m - decay * x
        out.append(x.copy())
    return np.stack(out)


SCHEDULE = optax.cosine_decay_schedule(0.05, STEPS)


@pytest.mark.parametrize("mode", ["l2", "coupled", "independent"])
@pytest.mark.parametrize("scheduled", [False, True])
def test_adamw_modes_match_numpy_formula(mode, scheduled):
    lr = SCHEDULE if scheduled else 0.05
    wd = 0.3
    got = run(adamw(lr, weight_decay=wd, weight_decay_mode=mode, peak_learning_rate=0.05))
    want = numpy_adam(
        lambda t: 0.025 * (1 + np.cos(np.pi * t / STEPS)) if scheduled else 0.05,
        wd,
        mode,
        peak=0.05,
    )
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["l2", "coupled", "independent"])
def test_sgdw_modes_match_numpy_formula(mode):
    got = run(sgdw(0.05, momentum=0.9, weight_decay=0.3, weight_decay_mode=mode))
    np.testing.assert_allclose(got, numpy_sgd(0.05, 0.3, mode), rtol=1e-10, atol=1e-12)


def test_coupled_equals_optax_adamw_with_schedule_and_mask():
    params = {"w": jnp.asarray(X0, jnp.float32), "b": jnp.ones(3)}
    mask = {"w": True, "b": False}
    ours = adamw(SCHEDULE, b1=0.8, b2=0.99, weight_decay=0.2, mask=mask)
    ref = optax.adamw(SCHEDULE, b1=0.8, b2=0.99, weight_decay=0.2, mask=mask)
    s1, s2 = ours.init(params), ref.init(params)
    for i in range(STEPS):
        g = jax.tree.map(lambda p, i=i: jnp.sin(p + i), params)
        u1, s1 = ours.update(g, s1, params)
        u2, s2 = ref.update(g, s2, params)
        np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(u1["b"], u2["b"], rtol=1e-6, atol=1e-8)
        params = optax.apply_updates(params, u1)


def test_sgdw_is_not_l2_through_momentum():
    """With zero gradients SGDW shrinks by a constant ηλθ; L2 through momentum accumulates."""
    zero = jnp.zeros(1)
    shrinks = {}
    for mode in ("coupled", "l2"):
        tx = sgdw(0.1, momentum=0.9, weight_decay=1e-3, weight_decay_mode=mode)
        x, state = jnp.ones(1), tx.init(jnp.ones(1))
        shrinks[mode] = []
        for _ in range(3):
            u, state = tx.update(zero, state, jnp.ones(1))
            shrinks[mode].append(-float(u[0]))
        del x
    np.testing.assert_allclose(shrinks["coupled"], [1e-4] * 3, rtol=1e-5)
    np.testing.assert_allclose(shrinks["l2"], [1e-4, 1.9e-4, 2.71e-4], rtol=1e-5)


def test_independent_decay_follows_schedule_not_peak():
    """Doubling the peak LR leaves independent decay unchanged and doubles coupled decay."""
    zero, one = jnp.zeros(1), jnp.ones(1)

    def decay_per_step(peak, mode):
        sched = optax.cosine_decay_schedule(peak, 10)
        tx = adamw(sched, weight_decay=1e-2, weight_decay_mode=mode, peak_learning_rate=peak)
        state = tx.init(one)
        out = []
        for _ in range(5):
            u, state = tx.update(zero, state, one)
            out.append(-float(u[0]))
        return np.array(out)

    multiplier = np.array([float(optax.cosine_decay_schedule(1.0, 10)(t)) for t in range(5)])
    np.testing.assert_allclose(decay_per_step(1e-3, "independent"), 1e-2 * multiplier, rtol=1e-5)
    np.testing.assert_allclose(decay_per_step(2e-3, "independent"), 1e-2 * multiplier, rtol=1e-5)
    np.testing.assert_allclose(
        decay_per_step(2e-3, "coupled"), 2 * decay_per_step(1e-3, "coupled"), rtol=1e-5
    )


def test_weight_decay_schedule_and_mask():
    wd = optax.linear_schedule(0.0, 1.0, 4)
    tx = with_weight_decay(
        optax.identity(), 0.5, weight_decay=wd, mode="coupled", mask={"a": True, "b": False}
    )
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    for t in range(4):
        u, state = tx.update(zeros, state, params)
        np.testing.assert_allclose(u["a"], -0.5 * t / 4 * np.ones(2), rtol=1e-6)
        np.testing.assert_array_equal(u["b"], np.zeros(2))


@pytest.mark.parametrize("mode", ["l2", "coupled", "independent"])
def test_bf16_with_scheduled_decay_stays_bf16(mode):
    params = jnp.ones(3, jnp.bfloat16)
    tx = adamw(SCHEDULE, weight_decay=SCHEDULE, weight_decay_mode=mode, peak_learning_rate=0.05)
    u, _ = tx.update(params, tx.init(params), params)
    assert u.dtype == jnp.bfloat16
    assert bool(jnp.all(jnp.isfinite(u)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"weight_decay_mode": "decoupled"}, "mode"),
        ({"b1": 1.0}, "b1"),
        ({"b2": -0.1}, "b2"),
        ({"eps": -1.0}, "eps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": SCHEDULE, "weight_decay_mode": "independent"}, "peak_learning_rate"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(kwargs, name):
    kwargs = {"learning_rate": 1e-3, **kwargs}
    with pytest.raises(ValueError, match=name):
        adamw(**kwargs)
