"""Parameter EMA and LAWA against direct NumPy averages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.optim import ema_params_init, ema_params_update, lawa_average, lawa_init, lawa_push

RNG = np.random.default_rng(0)
SNAPSHOTS = [{"w": RNG.normal(size=(2, 3)), "b": RNG.normal(size=3)} for _ in range(7)]


def as_jnp(tree, dtype=jnp.float32):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def test_ema_matches_recursion_and_jits_once():
    state = ema_params_init(as_jnp(SNAPSHOTS[0]))
    update = jax.jit(lambda s, p, d: ema_params_update(s, p, d))
    want = SNAPSHOTS[0]
    for snap in SNAPSHOTS[1:]:
        state = update(state, as_jnp(snap), 0.9)
        want = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, want, snap)
    for k in want:
        np.testing.assert_allclose(state.ema[k], want[k], rtol=1e-5)
    assert int(state.count) == 6
    assert update._cache_size() == 1


def test_ema_decay_schedule_and_bf16_storage():
    params = as_jnp(SNAPSHOTS[0], jnp.bfloat16)
    state = ema_params_init(params, dtype=jnp.float32)
    state = ema_params_update(state, as_jnp(SNAPSHOTS[1], jnp.bfloat16), lambda t: 0.0 * t)
    assert state.ema["w"].dtype == jnp.float32
    np.testing.assert_allclose(state.ema["w"], as_jnp(SNAPSHOTS[1], jnp.bfloat16)["w"])
    with pytest.raises(ValueError, match="decay"):
        ema_params_update(state, params, 1.5)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_lawa_averages_latest_k(k):
    state = lawa_init(as_jnp(SNAPSHOTS[0]), k)
    push = jax.jit(lambda s, p: lawa_push(s, p))
    for n, snap in enumerate(SNAPSHOTS, start=1):
        state = push(state, as_jnp(snap))
        latest = SNAPSHOTS[max(0, n - k) : n]
        avg = lawa_average(state)
        for key in ("w", "b"):
            want = np.mean([s[key] for s in latest], axis=0)
            np.testing.assert_allclose(avg[key], want, rtol=1e-5, atol=1e-6)
    assert push._cache_size() == 1


def test_lawa_identity_properties():
    params = as_jnp(SNAPSHOTS[0])
    state = lawa_init(params, 4)
    np.testing.assert_allclose(lawa_average(state)["w"], params["w"])  # before any push
    for _ in range(3):
        state = lawa_push(state, params)
    np.testing.assert_allclose(lawa_average(state)["w"], params["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="k"):
        lawa_init(params, 0)
