"""Hessian, GGN and empirical-Fisher operators against dense float64 oracles on tiny models."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec as P

from jaxlab.curvature.operators import (
    dataset_operator,
    empirical_fisher_operator,
    ggn_operator,
    hessian_operator,
)

# ---------------------------------------------------------------------------------------------
# Tiny problems (also imported by test_eigen.py and test_density.py).

BATCH, CLASSES = 16, 3


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(CLASSES)(jnp.tanh(nn.Dense(6)(x)))


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.avg_pool(jnp.tanh(nn.Conv(4, (3, 3))(x)), (2, 2), strides=(2, 2))
        return nn.Dense(CLASSES)(x.reshape(x.shape[0], -1))


class BatchNormMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(4)(x))
        return nn.Dense(CLASSES)(jnp.tanh(x))


@functools.cache
def make_problem(kind: str, dtype=jnp.float64, seed: int = 0):
    """(apply_fn, output_loss_fn, loss_fn, per_example_loss_fn, params, batch), cached.

    ``kind`` is 'mlp' (57 parameters) or 'cnn' (151). Parameters are perturbed away from the
    initialisation so the Hessian is not the initialisation Hessian. Cached so that the same
    function objects (static arguments) are reused and compiled once across tests; float64
    problems must be used under ``jax.enable_x64(True)``.
    """
    model = MLP() if kind == "mlp" else CNN()
    shape = (BATCH, 5) if kind == "mlp" else (BATCH, 6, 6, 1)

    @jax.jit
    def init(key):
        kx, ky, kp, kn = jax.random.split(key, 4)
        x = jax.random.normal(kx, shape, dtype)
        y = jax.random.randint(ky, (BATCH,), 0, CLASSES)
        params = jax.tree.map(lambda p: p.astype(dtype), model.init(kp, x)["params"])
        flat, unravel = ravel_pytree(params)
        return unravel(flat + 0.5 * jax.random.normal(kn, flat.shape, dtype)), x, y

    params, x, y = init(jax.random.key(seed))

    def apply_fn(p, batch):
        return model.apply({"params": p}, batch["x"])

    def output_loss_fn(logits, batch):
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    def per_example_loss_fn(p, batch):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, batch), batch["y"])

    def loss_fn(p, batch):
        return per_example_loss_fn(p, batch).mean()

    return apply_fn, output_loss_fn, loss_fn, per_example_loss_fn, params, {"x": x, "y": y}


@jax.jit(static_argnums=0)
def dense_hessian(loss_fn, params, batch):
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda f: loss_fn(unravel(f), batch))(flat)


@jax.jit(static_argnums=0)
def operator_matrix(build, params, batch):
    """The dense matrix of the operator ``build(params, batch)``, one column per basis vector."""
    flat, unravel = ravel_pytree(params)
    matvec = build(params, batch)
    eye = jnp.eye(flat.size, dtype=flat.dtype)
    return jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(eye).T


def random_like(key, params):
    flat, unravel = ravel_pytree(params)
    return unravel(jax.random.normal(key, flat.shape, flat.dtype))


# ---------------------------------------------------------------------------------------------
# Dense oracles.


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hvp_matches_dense_hessian(kind):
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem(kind)
        h = np.asarray(dense_hessian(loss_fn, params, batch))
        build = lambda p, b: hessian_operator(loss_fn, p, b)  # noqa: E731
        got = operator_matrix(build, params, batch)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, h, rtol=0, atol=1e-12)
        assert np.linalg.eigvalsh(h).min() < 0  # a genuinely indefinite Hessian


@jax.jit(static_argnums=(0, 1, 2))
def dense_ggn_and_fisher(apply_fn, output_loss_fn, per_example_loss_fn, params, batch):
    """Dense ``Jᵀ H_out J`` and ``(1/B) Σ g_i g_iᵀ`` from full Jacobians."""
    flat, unravel = ravel_pytree(params)
    jac = jax.jacobian(lambda f: apply_fn(unravel(f), batch).reshape(-1))(flat)
    z = apply_fn(params, batch)
    h_out = jax.hessian(lambda zf: output_loss_fn(zf.reshape(z.shape), batch))(z.reshape(-1))
    grads = jax.jacobian(lambda f: per_example_loss_fn(unravel(f), batch))(flat)
    return jac.T @ h_out @ jac, grads.T @ grads / BATCH


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_ggn_and_empirical_fisher_match_dense(kind):
    with jax.enable_x64(True):
        apply_fn, output_loss_fn, _, per_example_loss_fn, params, batch = make_problem(kind)
        ggn, fisher = dense_ggn_and_fisher(
            apply_fn, output_loss_fn, per_example_loss_fn, params, batch
        )
        assert np.linalg.eigvalsh(ggn).min() > -1e-12  # PSD for cross-entropy
        build = lambda p, b: ggn_operator(apply_fn, output_loss_fn, p, b)  # noqa: E731
        np.testing.assert_allclose(operator_matrix(build, params, batch), ggn, rtol=0, atol=1e-12)
        build = lambda p, b: empirical_fisher_operator(per_example_loss_fn, p, b)  # noqa: E731
        got = operator_matrix(build, params, batch)
        np.testing.assert_allclose(got, fisher, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Properties.


def test_hvp_symmetric_and_linear_float32():
    _, _, loss_fn, _, params, batch = make_problem("cnn", jnp.float32)
    keys = jax.random.split(jax.random.key(10), 6)
    us = jax.vmap(lambda k: random_like(k, params))(keys[:3])
    vs = jax.vmap(lambda k: random_like(k, params))(keys[3:])

    @jax.jit
    def products(params, batch, u, v):
        op = jax.vmap(hessian_operator(loss_fn, params, batch))
        return op(u), op(v), op(jax.tree.map(lambda a, b: 2.0 * a - 3.0 * b, u, v))

    hu, hv, hw = products(params, batch, us, vs)

    def flat(tree):
        return np.concatenate([np.asarray(x).reshape(3, -1) for x in jax.tree.leaves(tree)], 1)

    u, v, hu, hv, hw = map(flat, (us, vs, hu, hv, hw))
    np.testing.assert_allclose(np.sum(u * hv, 1), np.sum(v * hu, 1), rtol=1e-5)
    np.testing.assert_allclose(hw, 2.0 * hu - 3.0 * hv, atol=1e-5 * np.abs(hw).max())


def test_mask_acts_on_the_sub_block():
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("mlp")
        h = np.asarray(dense_hessian(loss_fn, params, batch))
        # Leaf-level mask (the hidden layer, "Dense_1") and an element-wise mask on the output
        # kernel ("Dense_0", created first by the compact module).
        mask = jax.tree.map(lambda _: False, params)
        mask["Dense_1"] = {"bias": True, "kernel": True}
        mask["Dense_0"]["kernel"] = np.arange(18).reshape(6, 3) % 2 == 0
        full = jax.tree.map(lambda m, p: np.broadcast_to(m, p.shape) * 1.0, mask, params)
        sel = np.asarray(ravel_pytree(full)[0]) > 0
        expected = np.where(sel[:, None] & sel[None, :], h, 0.0)
        build = lambda p, b: hessian_operator(loss_fn, p, b, mask=mask)  # noqa: E731
        got = operator_matrix(build, params, batch)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        # A callable mask, as in optax.masked.
        biases = lambda p: jax.tree.map(lambda x: x.ndim == 1, p)  # noqa: E731
        build = lambda p, b: hessian_operator(loss_fn, p, b, mask=biases)  # noqa: E731
        sel = np.asarray(ravel_pytree(jax.tree.map(lambda x: x * 0 + (x.ndim == 1), params))[0])
        expected = np.where((sel[:, None] > 0) & (sel[None, :] > 0), h, 0.0)
        got = operator_matrix(build, params, batch)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_dataset_operator_equals_full_batch():
    with jax.enable_x64(True):
        _, _, loss_fn, _, params, batch = make_problem("mlp")
        v = random_like(jax.random.key(3), params)
        full = ravel_pytree(hessian_operator(loss_fn, params, batch)(v))[0]
        stacked = jax.tree.map(lambda x: x.reshape(4, BATCH // 4, *x.shape[1:]), batch)
        build = lambda p, b: hessian_operator(loss_fn, p, b)  # noqa: E731
        out = jax.jit(lambda p, bs, v: dataset_operator(build, p, bs)(v))(params, stacked, v)
        np.testing.assert_allclose(ravel_pytree(out)[0], full, rtol=0, atol=1e-12)

        # Unequal batches, padded to 5 with a validity mask and weighted by their sizes.
        sizes = np.array([5, 3, 4, 4])
        valid = np.arange(5)[None, :] < sizes[:, None]
        idx = np.minimum(np.cumsum(np.r_[0, sizes[:-1]])[:, None] + np.arange(5), BATCH - 1)
        padded = {"x": batch["x"][idx], "y": batch["y"][idx], "valid": jnp.asarray(valid)}

        def masked_loss(p, b):
            per = optax.softmax_cross_entropy_with_integer_labels(
                MLP().apply({"params": p}, b["x"]), b["y"]
            )
            return jnp.sum(jnp.where(b["valid"], per, 0.0)) / jnp.sum(b["valid"])

        build = lambda p, b: hessian_operator(masked_loss, p, b)  # noqa: E731
        out = dataset_operator(build, params, padded, weights=sizes)(v)
        np.testing.assert_allclose(ravel_pytree(out)[0], full, rtol=0, atol=1e-12)
        unweighted = dataset_operator(build, params, padded)(v)
        assert np.abs(ravel_pytree(unweighted)[0] - full).max() > 1e-6


def _mesh():
    return jax.make_mesh((8,), ("i",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize("name", ["hessian", "ggn", "fisher"])
def test_products_under_pmap_and_shard_map_equal_single_device(name):
    apply_fn, output_loss_fn, loss_fn, per_example_loss_fn, params, batch = make_problem(
        "cnn", jnp.float32
    )
    v = random_like(jax.random.key(4), params)

    def product(p, b, v, axis_name=None):
        if name == "hessian":
            op = hessian_operator(loss_fn, p, b, axis_name=axis_name)
        elif name == "ggn":
            op = ggn_operator(apply_fn, output_loss_fn, p, b, axis_name=axis_name)
        else:
            op = empirical_fisher_operator(per_example_loss_fn, p, b, axis_name=axis_name)
        return op(v)

    sharded = jax.tree.map(lambda x: x.reshape(8, BATCH // 8, *x.shape[1:]), batch)
    single = ravel_pytree(jax.jit(product)(params, batch, v))[0]
    pm = jax.pmap(lambda p, b, v: product(p, b, v, "i"), axis_name="i", in_axes=(None, 0, None))(
        params, sharded, v
    )
    sm = jax.jit(
        jax.shard_map(
            lambda p, b, v: product(p, b, v, "i"),
            mesh=_mesh(),
            in_specs=(P(), P("i"), P()),
            out_specs=P(),
            check_vma=False,
        )
    )(params, batch, v)
    scale = np.abs(single).max()
    for got in device_rows(pm):
        np.testing.assert_allclose(got, single, atol=1e-5 * scale)
    np.testing.assert_allclose(ravel_pytree(sm)[0], single, atol=1e-5 * scale)
    # Without the mean, each device's product is that of its own shard, not the full batch.
    local = jax.pmap(product, in_axes=(None, 0, None))(params, sharded, v)
    assert np.abs(device_rows(local)[0] - single).max() > 1e-3 * scale


def device_rows(tree):
    """A pmap output's per-device values as flat host rows ``[devices, n]``.

    Host copies, not ``x[d]`` slices: each slice is a computation, and on XLA:CPU enough of
    them queued while a collective launches can deadlock it (see force_host_devices).
    """
    return np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)], 1)


def test_batchnorm_mode_is_what_the_loss_closes_over():
    with jax.enable_x64(True):
        model = BatchNormMLP()
        kx, ky, kp = jax.random.split(jax.random.key(5), 3)
        batch = {
            "x": jax.random.normal(kx, (8, 3), jnp.float64),
            "y": jax.random.randint(ky, (8,), 0, CLASSES),
        }
        variables = jax.tree.map(lambda v: v.astype(jnp.float64), model.init(kp, batch["x"]))
        params = variables["params"]
        stats = jax.tree.map(lambda s: s + 0.3, variables["batch_stats"])  # "running" statistics

        def train_loss(p, b):  # batch statistics, differentiated through; new stats discarded
            logits, _ = model.apply(
                {"params": p, "batch_stats": stats}, b["x"], train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean()

        def eval_loss(p, b):  # running statistics as constants (PyHessian's model.eval())
            logits = model.apply({"params": p, "batch_stats": stats}, b["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean()

        mats = {}
        for name, loss_fn in (("train", train_loss), ("eval", eval_loss)):
            build = lambda p, b, f=loss_fn: hessian_operator(f, p, b)  # noqa: E731
            mats[name] = np.asarray(operator_matrix(build, params, batch))
            h = dense_hessian(loss_fn, params, batch)
            np.testing.assert_allclose(mats[name], h, rtol=0, atol=1e-12)
            np.testing.assert_allclose(mats[name], mats[name].T, atol=1e-12)
        assert np.abs(mats["train"] - mats["eval"]).max() > 1e-3


def test_bad_inputs_raise_naming_the_argument():
    params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    batch = jnp.arange(4.0)

    def loss_fn(p, b):
        return jnp.sum(p["a"] ** 2) * b[0] + jnp.sum(p["b"] ** 3) * b[1]

    with pytest.raises(ValueError, match="mask"):
        hessian_operator(loss_fn, params, batch, mask={"a": True})
    with pytest.raises(ValueError, match="mask"):
        hessian_operator(loss_fn, params, batch, mask={"a": True, "b": jnp.ones((2, 2))})
    with pytest.raises(ValueError, match="mask"):
        hessian_operator(loss_fn, params, batch, mask={"a": True, "b": jnp.ones(2, bool)})
    op = hessian_operator(loss_fn, params, batch)
    with pytest.raises(ValueError, match="v must be a pytree shaped like params"):
        op({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="per_example_loss_fn"):
        empirical_fisher_operator(loss_fn, params, batch)
    build = lambda p, b: hessian_operator(loss_fn, p, b)  # noqa: E731
    stacked = jnp.ones((3, 4))
    with pytest.raises(ValueError, match="weights"):
        dataset_operator(build, params, stacked, weights=jnp.ones(4))
    with pytest.raises(ValueError, match="batches"):
        dataset_operator(build, params, {"x": jnp.ones((4, 2)), "y": jnp.ones((3,))})
