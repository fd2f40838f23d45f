"""weighted_mean against NumPy, with masks, weights and devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.losses.reduce import weighted_mean

RNG = np.random.default_rng(0)
LOSS = RNG.uniform(size=16).astype(np.float32)
MASK = RNG.uniform(size=16) > 0.3
W = RNG.uniform(size=16).astype(np.float32)


def test_mask_and_weights_match_numpy_and_slicing():
    got = weighted_mean(jnp.asarray(LOSS), where=jnp.asarray(MASK), weights=jnp.asarray(W))
    np.testing.assert_allclose(got, np.sum((W * LOSS)[MASK]) / np.sum(W[MASK]), rtol=1e-6)
    sliced = weighted_mean(jnp.asarray(LOSS[MASK]))
    np.testing.assert_allclose(weighted_mean(jnp.asarray(LOSS), where=MASK), sliced, rtol=1e-6)


def test_masked_nan_does_not_leak_and_empty_mask_gives_zero():
    loss = jnp.asarray([1.0, jnp.nan, 3.0])
    assert float(weighted_mean(loss, where=jnp.asarray([True, False, True]))) == 2.0
    assert float(weighted_mean(loss, where=jnp.zeros(3, bool))) == 0.0


def test_per_device_reduction_equals_single_device_mean():
    """Unequal valid counts per device: psum(sum)/psum(count), not a mean of means."""
    n = 4
    loss, mask = LOSS.reshape(n, 4), MASK.reshape(n, 4)
    want = LOSS[MASK].mean()
    pmapped = jax.pmap(lambda x, m: weighted_mean(x, where=m, axis_name="i"), axis_name="i")
    np.testing.assert_allclose(pmapped(loss, mask), np.full(n, want), rtol=1e-6)
    mesh = jax.make_mesh((n,), ("i",), devices=jax.devices()[:n])
    shard = NamedSharding(mesh, P("i"))
    sharded = jax.jit(
        jax.shard_map(
            lambda x, m: weighted_mean(x[0], where=m[0], axis_name="i")[None],
            mesh=mesh,
            in_specs=(P("i"), P("i")),
            out_specs=P("i"),
            check_vma=False,
        )
    )
    got = sharded(jax.device_put(loss, shard), jax.device_put(mask, shard))
    np.testing.assert_allclose(got, np.full(n, want), rtol=1e-6)
    mean_of_means = np.mean([x[m].mean() for x, m in zip(loss, mask, strict=True)])
    assert abs(mean_of_means - want) > 1e-3  # the naive reduction would differ


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="where"):
        weighted_mean(jnp.ones(3), where=jnp.ones(4, bool))
    with pytest.raises(ValueError, match="weights"):
        weighted_mean(jnp.ones(3), weights=jnp.ones(2))
