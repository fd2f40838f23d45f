"""Maximal Update Parametrization (μP): per-tensor init, learning-rate and output multipliers.

Each leaf of a model is compared with the same leaf of a small *base* model: dimensions whose
sizes differ are "infinite" (they grow with width), the others finite. With the last two axes of
a ≥2-D leaf read as ``(fan_in, fan_out)`` (Flax/JAX kernel layout, also for conv kernels
``(..., in, out)``) and width multipliers ``m_in = fan_in / base_fan_in``,
``m_out = fan_out / base_fan_out``, a leaf is

* ``"hidden"``: both fans infinite (matrix-like);
* ``"input"``: only ``fan_out`` infinite (input embedding / first layer);
* ``"output"``: only ``fan_in`` infinite (readout / unembedding);
* ``"vector"``: a 1-D leaf with an infinite dimension (biases, norm gains);
* ``"fixed"``: nothing infinite (unchanged from the base model).

The multipliers follow the μP table of Tensor Programs V (Table 3) in the form used by the
``mup`` package (readout multiplier formulation, Table 8): multiply the *base model's* init std
by ``init_std``, multiply the output of each ``"output"`` layer by ``output`` (= 1/m_in) in the
forward pass, and scale each leaf's learning rate by ``lr``:

============  =============  ============================  ==============  ========
kind          init std       Adam LR                       SGD LR          output
============  =============  ============================  ==============  ========
hidden        1/√m_in        1/m_in                        m_out/m_in      1
input         1              1                             m_out           1
output        1              1                             m_in            1/m_in
vector        1              1                             m               1
fixed         1              1                             1               1
============  =============  ============================  ==============  ========

(m for a vector is its infinite dimension's multiplier.) For hidden weights a fan-in initialiser
(e.g. ``lecun_normal``) already does what the init std column says; the readout keeps the base
model's std (as ``mup``'s ``MuReadout`` after rescaling), so with the 1/m_in output multiplier its
effective weights have std ∝ 1/fan_in, as in Table 3 (zero readout init is also fine).
Attention logits need 1/d instead of 1/√d scaling under μP; that is a change to the model, not
done here.

References:
  Yang, Hu, "Feature Learning in Infinite-Width Neural Networks" (Tensor Programs IV),
  https://arxiv.org/abs/2011.14522; Yang et al., "Tensor Programs V: Tuning Large Neural Networks
  via Zero-Shot Hyperparameter Transfer", https://arxiv.org/abs/2203.03466.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

_OPTIMIZERS = ("adam", "sgd")


class MupScales(NamedTuple):
    """Per-leaf μP multipliers, each a pytree with the structure of ``params``.

    Attributes:
      kind: ``"hidden"``, ``"input"``, ``"output"``, ``"vector"`` or ``"fixed"``.
      init_std: multiplier of the base model's init std.
      lr: learning-rate multiplier for the chosen optimizer.
      output: forward multiplier of the layer's output (1/m_in for ``"output"``, else 1).
    """

    kind: Any
    init_std: Any
    lr: Any
    output: Any


def _shape(x):
    if isinstance(x, tuple | list):
        return tuple(int(i) for i in x)
    return tuple(jnp.shape(x))


def _leaf_scales(path, shape, base, optimizer):
    name = jax.tree_util.keystr(path)
    if len(shape) != len(base):
        raise ValueError(f"params{name} has shape {shape} but base_shapes{name} has {base}")
    if any(b <= 0 for b in base):
        raise ValueError(f"base_shapes{name}={base} must have positive dimensions")
    if len(shape) <= 1:
        if shape == base:
            return "fixed", 1.0, 1.0, 1.0
        m = shape[0] / base[0]
        return "vector", 1.0, (1.0 if optimizer == "adam" else m), 1.0
    if shape[:-2] != base[:-2]:
        raise ValueError(
            f"params{name} shape {shape} vs base {base}: only the last two axes (fan_in, fan_out) "
            "may differ from the base model"
        )
    m_in, m_out = shape[-2] / base[-2], shape[-1] / base[-1]
    inf_in, inf_out = shape[-2] != base[-2], shape[-1] != base[-1]
    if inf_in and inf_out:
        return (
            "hidden",
            1 / math.sqrt(m_in),
            (1 / m_in if optimizer == "adam" else m_out / m_in),
            1.0,
        )
    if inf_out:
        return "input", 1.0, (1.0 if optimizer == "adam" else m_out), 1.0
    if inf_in:
        return "output", 1.0, (1.0 if optimizer == "adam" else m_in), 1 / m_in
    return "fixed", 1.0, 1.0, 1.0


def mup_scales(params, base_shapes, *, optimizer: str = "adam") -> MupScales:
    """μP multipliers of every leaf of ``params`` relative to a base model (see module table).

    Args:
      params: pytree of arrays (or ``jax.ShapeDtypeStruct``) of the target-width model.
      base_shapes: pytree with the same structure whose leaves are arrays, ``ShapeDtypeStruct`` or
        shape tuples of the base (tuning-width) model, e.g. ``jax.eval_shape(init, base_model)``.
      optimizer: ``"adam"`` (also Adam-like: AdamW, Lion, …) or ``"sgd"``.

    Returns:
      :class:`MupScales` of Python floats (and kind strings), static for ``jit``.

    References:
      Yang et al., "Tensor Programs V", https://arxiv.org/abs/2203.03466, Table 3.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"w_in": jnp.zeros((3, 256)), "w_h": jnp.zeros((256, 256)),
      ...           "w_out": jnp.zeros((256, 10))}
      >>> base = {"w_in": (3, 64), "w_h": (64, 64), "w_out": (64, 10)}
      >>> s = mup_scales(params, base)
      >>> s.kind["w_h"], s.lr["w_h"], s.init_std["w_h"], s.output["w_out"]
      ('hidden', 0.25, 0.5, 0.25)
    """
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got optimizer={optimizer!r}")
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    try:
        base_leaves = treedef.flatten_up_to(base_shapes)
    except (ValueError, TypeError) as e:
        raise ValueError(f"base_shapes must have the structure of params: {e}") from None
    rows = [
        _leaf_scales(path, _shape(x), _shape(b), optimizer)
        for (path, x), b in zip(path_leaves, base_leaves, strict=True)
    ]
    columns = list(zip(*rows, strict=True)) or [()] * 4
    return MupScales(*(treedef.unflatten(list(col)) for col in columns))


def mup_learning_rate_scaling(
    params, base_shapes, *, optimizer: str = "adam"
) -> optax.GradientTransformation:
    """Stateless optax transform multiplying each leaf's update by its μP LR multiplier.

    ``optax.chain(optax.adam(lr), mup_learning_rate_scaling(params, base, optimizer="adam"))`` is
    μP-Adam and ``optax.chain(optax.sgd(lr), mup_learning_rate_scaling(..., optimizer="sgd"))``
    μP-SGD (with the init and output multipliers of :func:`mup_scales` in the model). Anything
    chained *before* it (e.g. ``add_decayed_weights``) is scaled too; add weight decay after it
    to keep the decay width-independent.

    Args:
      params: the target-width parameters (only their shapes are used).
      base_shapes: base-model shapes, as in :func:`mup_scales`.
      optimizer: ``"adam"`` or ``"sgd"``.

    Returns:
      An ``optax.GradientTransformation``.

    References:
      Yang et al., "Tensor Programs V", https://arxiv.org/abs/2203.03466.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.ones((128, 128))}
      >>> tx = mup_learning_rate_scaling(params, {"w": (64, 64)})
      >>> updates, _ = tx.update({"w": jnp.ones((128, 128))}, tx.init(params))
      >>> float(updates["w"][0, 0])
      0.5
    """
    lr = mup_scales(params, base_shapes, optimizer=optimizer).lr

    def update_fn(updates, state, params=None):
        del params
        scaled = jax.tree.map(lambda u, s: (u * s).astype(u.dtype), updates, lr)
        return scaled, state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)
