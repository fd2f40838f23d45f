"""Flax linen models for optimisation research, behind one functional boundary.

Every model is called as ``model.apply({"params": params, **model_state}, x, train=...,
mutable=[...])`` and returns float32 logits; ``model_state`` holds the non-parameter collections
(``{"batch_stats": ...}`` for BatchNorm models, ``{}`` otherwise). BatchNorm models take
``bn_axis_name`` to synchronise statistics over a ``pmap``/``shard_map`` axis.

Models and references:
  - ``MLP``, ``CNN``: small feed-forward baselines.
  - ``ResNet18``: He et al., "Deep Residual Learning for Image Recognition", 2016,
    https://arxiv.org/abs/1512.03385 (CIFAR variant).
  - ``WideResNet``: Zagoruyko & Komodakis, "Wide Residual Networks", 2016,
    https://arxiv.org/abs/1605.07146.
  - ``TransformerLM``: Vaswani et al., "Attention Is All You Need", 2017,
    https://arxiv.org/abs/1706.03762 (decoder-only, pre-LN, causal).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from jaxlab.models.mlp import CNN, MLP
from jaxlab.models.resnet import ResNet18, WideResNet
from jaxlab.models.transformer import TransformerLM


def _transformer_lm(*, num_classes: int, **kwargs: Any) -> TransformerLM:
    return TransformerLM(vocab_size=num_classes, **kwargs)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "resnet18": ResNet18,
    "wrn": WideResNet,
    "transformer_lm": _transformer_lm,
}
"""Registry: name → constructor taking ``num_classes=`` (the vocabulary size for a language model)
and the model's other hyperparameters as keywords."""


def create_model(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Args:
      name: one of ``MODELS`` ("mlp", "cnn", "resnet18", "wrn", "transformer_lm").
      num_classes: number of output logits; for "transformer_lm" the vocabulary size.
      **kwargs: further hyperparameters of the model (e.g. ``width=``, ``dtype=``,
        ``bn_axis_name=``); "wrn" defaults to WRN-16-8.

    Returns:
      The (unbound) Flax linen module.

    Raises:
      ValueError: for an unknown ``name`` (the message lists the valid ones) or out-of-range
        hyperparameters. TypeError: for a keyword the model does not have.

    Examples:
      >>> create_model("wrn", num_classes=100).depth
      16
    """
    if name not in MODELS:
        raise ValueError(f"unknown model name={name!r}; valid names: {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def init_model(model: nn.Module, key: jax.Array, sample_input: jax.Array) -> tuple[Any, dict]:
    """Initialise a model (in inference mode, ``train=False``) under ``jax.jit``.

    Args:
      model: a Flax linen module following the jaxlab conventions.
      key: PRNG key for the parameter initialisers.
      sample_input: an example batch (only its shape and dtype matter).

    Returns:
      ``(params, model_state)``: ``variables["params"]`` and a dict of every other collection
      (``{"batch_stats": ...}`` for BatchNorm models, ``{}`` otherwise).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> params, state = init_model(MLP(features=(4,), num_classes=2), jax.random.key(0),
      ...                            jnp.ones((1, 3)))
      >>> sorted(params), state
      (['dense0', 'head'], {})
    """
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(key, sample_input)
    variables = dict(variables)
    params = variables.pop("params")
    return params, variables


def has_batch_norm(model_state: dict) -> bool:
    """True when ``model_state`` carries BatchNorm statistics (a non-empty ``"batch_stats"``).

    Examples:
      >>> has_batch_norm({}), has_batch_norm({"batch_stats": {"bn": {}}})
      (False, True)
    """
    return bool(model_state.get("batch_stats"))


__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "ResNet18",
    "TransformerLM",
    "WideResNet",
    "create_model",
    "has_batch_norm",
    "init_model",
]
