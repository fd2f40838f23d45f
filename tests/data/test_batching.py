"""Tests for jaxlab.data.batching: stateless, resumable minibatching and device sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data import batch_indices, get_batch, shard_for_devices


@pytest.mark.parametrize(("n", "b"), [(10, 3), (12, 4), (7, 7), (5, 1)])
def test_each_epoch_is_a_permutation_without_repeats(n, b):
    steps = n // b
    for epoch in range(3):
        idx = np.concatenate([batch_indices(n, b, epoch * steps + s, seed=4) for s in range(steps)])
        assert len(idx) == steps * b
        assert len(np.unique(idx)) == len(idx)  # no repeats within an epoch
        assert idx.min() >= 0 and idx.max() < n
        # Independent reference: the documented permutation of that epoch, remainder dropped.
        ref = np.random.default_rng([4, epoch]).permutation(n)[: steps * b]
        np.testing.assert_array_equal(idx, ref)


def test_epochs_reshuffle_and_cover_dataset():
    n, b = 12, 4
    e0 = np.concatenate([batch_indices(n, b, s, seed=0) for s in range(3)])
    e1 = np.concatenate([batch_indices(n, b, s, seed=0) for s in range(3, 6)])
    np.testing.assert_array_equal(np.sort(e0), np.arange(n))
    np.testing.assert_array_equal(np.sort(e1), np.arange(n))
    assert not np.array_equal(e0, e1)


def test_purity_and_seed_dependence():
    a = batch_indices(1000, 32, 57, seed=3)
    b = batch_indices(1000, 32, 57, seed=3)
    c = batch_indices(1000, 32, 57, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, batch_indices(1000, 32, 58, seed=3))


def test_resumability_independent_of_history(restore_global_rngs):
    n, b, seed = 50, 8, 9
    sequential = [batch_indices(n, b, s, seed=seed) for s in range(20)]
    # A "resumed" run jumps straight to step 13 (and goes backwards) without earlier calls.
    for s in (13, 19, 6, 0):
        np.testing.assert_array_equal(batch_indices(n, b, s, seed=seed), sequential[s])
    # Also unaffected by the global NumPy RNG state.
    np.random.seed(0)  # noqa: NPY002 (the legacy global RNG must not matter)
    np.testing.assert_array_equal(batch_indices(n, b, 13, seed=seed), sequential[13])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 11, 0), "batch_size"),
        ((10, 0, 0), "batch_size"),
        ((10, -2, 0), "batch_size"),
        ((10, 2, -1), "step"),
        ((0, 1, 0), "num_examples"),
        ((10, 2.0, 0), "batch_size"),
    ],
)
def test_batch_indices_bad_args(args, match):
    with pytest.raises(ValueError, match=match):
        batch_indices(*args, seed=0)
    with pytest.raises(ValueError, match="seed"):
        batch_indices(10, 2, 0, seed=-1)


def test_get_batch_gathers_matching_pairs():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20, dtype=np.int32)
    batch = get_batch(x, y, 7, batch_size=6, seed=1)
    idx = batch_indices(20, 6, 7, seed=1)
    np.testing.assert_array_equal(batch["x"], x[idx])
    np.testing.assert_array_equal(batch["y"], idx)
    assert set(batch) == {"x", "y"} and isinstance(batch["x"], np.ndarray)


def test_get_batch_num_devices_reshape():
    x = np.arange(24 * 3, dtype=np.float32).reshape(24, 3)
    y = np.arange(24, dtype=np.int32)
    flat = get_batch(x, y, 2, batch_size=8, seed=0)
    sharded = get_batch(x, y, 2, batch_size=8, seed=0, num_devices=4)
    assert sharded["x"].shape == (4, 2, 3) and sharded["y"].shape == (4, 2)
    # Device d gets examples [2d, 2d + 2) of the flat batch, in order.
    for d in range(4):
        np.testing.assert_array_equal(sharded["x"][d], flat["x"][2 * d : 2 * d + 2])
        np.testing.assert_array_equal(sharded["y"][d], flat["y"][2 * d : 2 * d + 2])
    with pytest.raises(ValueError, match="num_devices"):
        get_batch(x, y, 0, batch_size=6, seed=0, num_devices=4)
    with pytest.raises(ValueError, match="len"):
        get_batch(x, y[:-1], 0, batch_size=6, seed=0)


def test_shard_for_devices_pytree_and_pmap():
    n_dev = jax.local_device_count()
    batch = {"x": np.ones((2 * n_dev, 3), np.float32), "aux": (np.arange(2 * n_dev),)}
    out = shard_for_devices(batch, n_dev)
    assert out["x"].shape == (n_dev, 2, 3) and out["aux"][0].shape == (n_dev, 2)
    assert isinstance(out["x"], np.ndarray)
    np.testing.assert_array_equal(out["aux"][0].ravel(), np.arange(2 * n_dev))
    # The sharded batch feeds jax.pmap directly: per-device sums of aux.
    sums = jax.pmap(lambda b: jnp.sum(b["aux"][0]))(out)
    np.testing.assert_array_equal(np.asarray(sums), out["aux"][0].sum(1))
    # jax.Array leaves keep working.
    assert shard_for_devices({"x": jnp.zeros((4, 2))}, 2)["x"].shape == (2, 2, 2)


def test_shard_for_devices_errors():
    with pytest.raises(ValueError, match=r"\['y'\]"):
        shard_for_devices({"x": np.zeros(4), "y": np.zeros(6)}, 4)
    with pytest.raises(ValueError, match="leading axis"):
        shard_for_devices({"x": np.float32(1.0)}, 1)
    with pytest.raises(ValueError, match="num_devices"):
        shard_for_devices({"x": np.zeros(4)}, 0)
