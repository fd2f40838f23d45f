"""Temperature sampling, scalarization weights and the cooldown schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.regularizers.reweighting import (
    cooldown_temperature,
    scalarization_weights,
    temperature_sampling_probs,
)

SIZES = np.array([1000.0, 100.0, 10.0, 1.0])


def test_temperature_sampling_hand_value_and_limits():
    np.testing.assert_allclose(
        temperature_sampling_probs(jnp.array([1.0, 4.0]), temperature=2.0), [1 / 3, 2 / 3], 1e-6
    )
    np.testing.assert_allclose(temperature_sampling_probs(SIZES), SIZES / SIZES.sum(), rtol=1e-6)
    np.testing.assert_allclose(temperature_sampling_probs(SIZES, temperature=jnp.inf), 0.25)
    p5 = SIZES ** (1 / 5)
    got = temperature_sampling_probs(SIZES, temperature=5.0)
    np.testing.assert_allclose(got, p5 / p5.sum(), rtol=1e-6)
    assert np.all(np.diff(got) < 0)  # still ordered by size, flatter than proportional


def test_upweighting_matches_upsampling_in_expectation():
    """Full-batch gradient of Σ_i p_i mean_i ℓ equals E over uniform examples of w_g ℓ."""
    sizes = np.array([6, 3, 1])
    groups = np.repeat(np.arange(3), sizes)
    x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)

    def losses(theta):
        return jnp.square(x @ theta - 1.0)

    theta = jnp.array([0.3, -0.2])
    p = temperature_sampling_probs(sizes, temperature=3.0)
    w = scalarization_weights(sizes, temperature=3.0)

    def sampled(theta):  # temperature sampling: pick group i w.p. p_i, then a uniform example
        per_group = jnp.stack([jnp.mean(losses(theta)[groups == g]) for g in range(3)])
        return jnp.sum(p * per_group)

    def weighted(theta):  # proportional sampling with per-example weights
        return jnp.mean(w[groups] * losses(theta))

    np.testing.assert_allclose(jax.grad(weighted)(theta), jax.grad(sampled)(theta), rtol=1e-5)
    np.testing.assert_allclose(np.sum(sizes / sizes.sum() * w), 1.0, rtol=1e-6)
    np.testing.assert_allclose(scalarization_weights(sizes), 1.0, rtol=1e-6)  # T=1: no reweight


def test_cooldown_schedule_and_bad_input():
    temps = [float(cooldown_temperature(s, start_temperature=5.0, num_steps=4)) for s in range(6)]
    np.testing.assert_allclose(temps, [5.0, 4.0, 3.0, 2.0, 1.0, 1.0], rtol=1e-6)
    jitted = jax.jit(lambda s: cooldown_temperature(s, start_temperature=5.0, num_steps=4))
    assert float(jitted(2)) == 3.0
    with pytest.raises(ValueError, match="sizes"):
        temperature_sampling_probs(np.array([3.0, 0.0]))
    with pytest.raises(ValueError, match="temperature=0"):
        scalarization_weights(SIZES, temperature=0.0)
    with pytest.raises(ValueError, match="num_steps=0"):
        cooldown_temperature(1, start_temperature=2.0, num_steps=0)
