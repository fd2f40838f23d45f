"""Tests for the jaxlab.models registry: MODELS, create_model, has_batch_norm."""

import jax
import jax.numpy as jnp
import pytest

from jaxlab.models import (
    CNN,
    MLP,
    MODELS,
    ResNet18,
    TransformerLM,
    WideResNet,
    create_model,
    has_batch_norm,
)

EXPECTED = {
    "mlp": MLP,
    "cnn": CNN,
    "resnet18": ResNet18,
    "wrn": WideResNet,
    "transformer_lm": TransformerLM,
}


def test_registry_names():
    assert set(MODELS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_create_model_builds_the_registered_class(name):
    model = create_model(name, num_classes=7)
    assert type(model) is EXPECTED[name]
    size = model.vocab_size if name == "transformer_lm" else model.num_classes
    assert size == 7


def test_create_model_defaults_and_kwargs():
    wrn = create_model("wrn", num_classes=100)
    assert (wrn.depth, wrn.widen_factor, wrn.num_classes) == (16, 8, 100)
    resnet = create_model(
        "resnet18", num_classes=10, width=4, dtype=jnp.bfloat16, bn_axis_name="batch"
    )
    assert (resnet.width, resnet.dtype, resnet.bn_axis_name) == (4, jnp.bfloat16, "batch")
    lm = create_model("transformer_lm", num_classes=50, d_model=16, num_heads=2)
    assert (lm.vocab_size, lm.d_model, lm.num_heads) == (50, 16, 2)


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        ("mlp", (2, 3, 4), (2, 5)),
        ("cnn", (2, 8, 8, 3), (2, 5)),
        ("resnet18", (2, 8, 8, 3), (2, 5)),
        ("wrn", (2, 8, 8, 3), (2, 5)),
    ],
)
def test_created_models_output_shapes(name, shape, expected):
    model = create_model(name, num_classes=5)
    out = jax.eval_shape(
        lambda: model.apply(model.init(jax.random.key(0), jnp.zeros(shape)), jnp.zeros(shape))
    )
    assert out.shape == expected and out.dtype == jnp.float32


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet50") as info:
        create_model("resnet50", num_classes=10)
    for name in EXPECTED:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("wrn", {"depth": 20}, "depth"),
        ("resnet18", {"width": 0}, "width"),
        ("mlp", {"features": (128, 0)}, "features"),
        ("cnn", {"dense": -1}, "dense"),
        ("transformer_lm", {"d_model": 30, "num_heads": 4}, "divisible"),
        ("mlp", {"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(name, kwargs, match):
    kwargs = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


def test_unknown_keyword_raises_type_error():
    with pytest.raises(TypeError):
        create_model("mlp", num_classes=10, widht=3)


def test_has_batch_norm():
    assert not has_batch_norm({})
    assert not has_batch_norm({"batch_stats": {}})
    assert has_batch_norm({"batch_stats": {"bn": {"mean": jnp.zeros(2)}}})
