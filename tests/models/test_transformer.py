"""Tests for jaxlab.models.transformer.TransformerLM against a NumPy float64 transcription."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import TransformerLM, init_model
from tests.models._util import random_variables, rbg_key, to_numpy64

# Dropout is on: every eval-mode comparison below also checks that train=False disables it.
SMALL = {
    "vocab_size": 11,
    "d_model": 8,
    "num_heads": 2,
    "num_layers": 2,
    "max_len": 7,
    "dropout_rate": 0.2,
}


def _layer_norm(h, p, eps=1e-5):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def _transformer_np(params, tokens, num_layers):
    """Pre-LN causal Transformer (Vaswani et al. 2017 attention, GPT-2 block ordering)."""
    p = to_numpy64(params)
    t = tokens.shape[1]
    h = p["wte"]["embedding"][tokens] + p["wpe"][:t][None]
    causal = np.tril(np.ones((t, t), bool))
    for layer in range(1, num_layers + 1):
        b = p[f"block{layer}"]
        a = b["attn"]
        z = _layer_norm(h, b["ln1"])
        q, k, v = (
            np.einsum("btd,dhk->bthk", z, a[n]["kernel"]) + a[n]["bias"]
            for n in ("query", "key", "value")
        )
        scores = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
        scores = np.where(causal, scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        o = np.einsum("bhqs,bshk->bqhk", w, v)
        h = h + np.einsum("bqhk,hkd->bqd", o, a["out"]["kernel"]) + a["out"]["bias"]
        z = _layer_norm(h, b["ln2"])
        z = _gelu_tanh(z @ b["mlp_in"]["kernel"] + b["mlp_in"]["bias"])
        h = h + z @ b["mlp_out"]["kernel"] + b["mlp_out"]["bias"]
    h = _layer_norm(h, p["ln_f"])
    return h @ p["head"]["kernel"] + p["head"]["bias"]


def _tokens(shape=(3, 6), vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int32)


@pytest.fixture(scope="module")
def small():
    model = TransformerLM(**SMALL)
    params, state = random_variables(model, _tokens())
    assert state == {}
    return model, params, jax.jit(lambda p, x: model.apply({"params": p}, x))


def test_forward_matches_numpy(small):
    _, params, apply = small
    x = _tokens()
    out = apply(params, x)
    assert out.shape == (3, 6, 11) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, _transformer_np(params, x, 2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("position", [0, 2, 5])
def test_causality(small, position):
    _, params, apply = small
    x = _tokens()
    x2 = x.copy()
    x2[:, position] = (x2[:, position] + 1) % 11
    a, b = np.asarray(apply(params, x)), np.asarray(apply(params, x2))
    np.testing.assert_array_equal(a[:, :position], b[:, :position])
    assert np.all(np.abs(a[:, position:] - b[:, position:]).max(-1) > 1e-6)


def test_shorter_sequence_is_a_prefix(small):
    _, params, apply = small
    x = _tokens()
    np.testing.assert_allclose(apply(params, x[:, :4]), apply(params, x)[:, :4], atol=1e-5)


def test_bfloat16_gives_finite_float32_logits(small):
    model, params, apply = small
    x = _tokens()
    out = jax.jit(model.clone(dtype=jnp.bfloat16).apply)({"params": params}, x)
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_allclose(out, apply(params, x), atol=0.15)


def test_training_dropout_is_random_and_gradients_finite(small):
    model, params, _ = small
    x = _tokens()

    def loss(p, key):
        logits = model.apply({"params": p}, x[:, :-1], train=True, rngs={"dropout": key})
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, x[:, 1:, None], axis=-1))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    (l1, grads), (l2, _) = (value_and_grad(params, rbg_key(i)) for i in (1, 2))
    assert float(l1) != float(l2)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(jnp.sum(jnp.abs(grads["block1"]["attn"]["query"]["kernel"]))) > 0


def test_init_model_and_default_shapes():
    model = TransformerLM(vocab_size=13, d_model=8, num_heads=2, num_layers=1, max_len=5)
    params, state = init_model(model, rbg_key(0), jnp.zeros((1, 5), jnp.int32))
    assert state == {}
    assert params["wte"]["embedding"].shape == (13, 8) and params["wpe"].shape == (5, 8)
    assert abs(float(jnp.std(params["wte"]["embedding"])) - 0.02) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 10, "num_heads": 4}, "divisible"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"max_len": -1}, "max_len"),
        ({"num_heads": 0}, "num_heads"),
        ({"dropout_rate": 1.5}, "dropout_rate"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    assert TransformerLM(**SMALL).dropout_rate == 0.2  # the baseline is valid
    with pytest.raises(ValueError, match=match):
        TransformerLM(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "x", [jnp.zeros((2, 8), jnp.int32), jnp.zeros((2, 4)), jnp.zeros((2, 4, 1), jnp.int32)]
)
def test_bad_input_raises(x):
    model = TransformerLM(**SMALL)
    with pytest.raises(ValueError, match=r"max_len|tokens"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), x))
