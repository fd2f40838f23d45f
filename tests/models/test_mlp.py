"""Tests for jaxlab.models.mlp (MLP, CNN) against NumPy float64 transcriptions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import CNN, MLP, has_batch_norm, init_model
from tests.models._util import conv2d_np, random_variables, to_numpy64


def _mlp_np(p, x, act):
    h = x.reshape(x.shape[0], -1)
    i = 0
    while f"dense{i}" in p:
        h = act(h @ p[f"dense{i}"]["kernel"] + p[f"dense{i}"]["bias"])
        i += 1
    return h @ p["head"]["kernel"] + p["head"]["bias"]


def _avg_pool_np(h):
    b, hh, ww, c = h.shape
    h = h[:, : hh // 2 * 2, : ww // 2 * 2]
    return h.reshape(b, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))


def _cnn_np(p, x, n_stages):
    h = x
    for i in range(n_stages):
        c = p[f"conv{i}"]
        h = _avg_pool_np(np.maximum(conv2d_np(h, c["kernel"]) + c["bias"], 0))
    h = h.reshape(h.shape[0], -1)
    h = np.maximum(h @ p["dense"]["kernel"] + p["dense"]["bias"], 0)
    return h @ p["head"]["kernel"] + p["head"]["bias"]


@pytest.mark.parametrize(
    ("activation", "act_np"),
    [(jax.nn.relu, lambda z: np.maximum(z, 0)), (jnp.tanh, np.tanh)],
)
def test_mlp_matches_numpy(activation, act_np):
    model = MLP(features=(5, 4), num_classes=3, activation=activation)
    x = np.random.default_rng(1).normal(size=(3, 2, 3)).astype(np.float32)
    params, state = random_variables(model, x)
    assert state == {}
    out = model.apply({"params": params}, x)
    assert out.shape == (3, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(
        out, _mlp_np(to_numpy64(params), x.astype(np.float64), act_np), rtol=1e-5, atol=1e-5
    )


def test_mlp_without_hidden_layers_is_linear():
    model = MLP(features=(), num_classes=2)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    params, _ = random_variables(model, x)
    p = to_numpy64(params)["head"]
    np.testing.assert_allclose(
        model.apply({"params": params}, x), x @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-5
    )


def test_cnn_matches_numpy_odd_size_and_channels():
    model = CNN(features=(3, 2), dense=5, num_classes=4)
    x = np.random.default_rng(2).normal(size=(2, 9, 9, 2)).astype(np.float32)  # 9 -> 4 -> 2
    params, _ = random_variables(model, x)
    out = model.apply({"params": params}, x, train=True)
    assert out.shape == (2, 4) and out.dtype == jnp.float32
    np.testing.assert_allclose(
        out, _cnn_np(to_numpy64(params), x.astype(np.float64), 2), rtol=1e-5, atol=1e-5
    )


def test_cnn_grayscale_without_channel_axis_equals_one_channel():
    model = CNN(features=(2,), dense=3, num_classes=2)
    x = np.random.default_rng(3).normal(size=(2, 8, 8)).astype(np.float32)
    params, _ = random_variables(model, x[..., None])
    np.testing.assert_array_equal(
        model.apply({"params": params}, x), model.apply({"params": params}, x[..., None])
    )


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3), (2, 8, 8, 5)])
def test_cnn_shapes_default_architecture(shape):
    model = CNN(num_classes=7)
    params, _ = random_variables(model, jnp.zeros(shape))
    out = jax.jit(model.apply)({"params": params}, jnp.ones(shape))
    assert out.shape == (2, 7) and out.dtype == jnp.float32


@pytest.mark.parametrize(
    ("model", "shape"),
    [(MLP(features=(8,), num_classes=3), (2, 4, 4)), (CNN(features=(4,), dense=8), (2, 8, 8, 3))],
)
def test_bfloat16_computation_gives_finite_float32_logits(model, shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    params, _ = random_variables(model, x)
    ref = model.apply({"params": params}, x)
    out = model.clone(dtype=jnp.bfloat16).apply({"params": params}, x)
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=0.1, atol=0.1)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLP(features=(8,), num_classes=3), (2, 5)),
        (CNN(features=(4,), dense=8, num_classes=3), (2, 8, 8, 1)),
    ],
)
def test_jit_gradients_finite_and_nonzero(model, shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    params, _ = random_variables(model, x)

    @jax.jit
    def loss(p):
        logits = model.apply({"params": p}, x, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    grads = jax.grad(loss)(params)
    for g in jax.tree.leaves(grads):
        assert bool(jnp.all(jnp.isfinite(g)))
    assert float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads))) > 0


def test_init_model_without_batch_norm():
    model = MLP(features=(4,), num_classes=2)
    params, state = init_model(model, jax.random.key(0), jnp.ones((3, 5)))
    assert state == {} and not has_batch_norm(state)
    assert params["dense0"]["kernel"].shape == (5, 4) and params["head"]["bias"].shape == (2,)
    np.testing.assert_array_equal(params["head"]["bias"], np.zeros(2))  # Dense biases start at 0
    assert float(jnp.std(params["dense0"]["kernel"])) > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"features": (0,)},
        {"features": (4, -1)},
        {"features": (2.5,)},
        {"features": 8},
        {"num_classes": 0},
        {"num_classes": True},
    ],
)
def test_mlp_bad_hyperparameters_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        MLP(**kwargs)


@pytest.mark.parametrize("kwargs", [{"features": (0,)}, {"dense": 0}, {"num_classes": -3}])
def test_cnn_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CNN(**kwargs)


def test_cnn_bad_input_raises():
    model = CNN(features=(2, 2, 2), dense=4)
    with pytest.raises(ValueError, match=r"x\.shape"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 4, 4, 1))))
    with pytest.raises(ValueError, match=r"x\.shape"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 8))))
