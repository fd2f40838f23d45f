"""Shared helpers for the model tests: cheap random variables without running ``model.init``.

``model.init`` compiles one threefry sampler per parameter, which takes seconds on the CPU; the
tests only need *some* well-scaled variables of the right structure, so they take the shapes from
``jax.eval_shape`` (no compilation) and fill them with NumPy random numbers.
"""

import jax
import numpy as np


def _fill(path, leaf, rng: np.random.Generator) -> np.ndarray:
    name = str(path[-1].key)
    shape = leaf.shape
    if name == "kernel":
        # Attention kernels are [d, heads, head_dim] (q/k/v) and [heads, head_dim, d] (out).
        in_axes = 1 if len(shape) == 3 and str(path[-2].key) != "out" else len(shape) - 1
        fan_in = int(np.prod(shape[:in_axes]))
        value = rng.normal(size=shape) / np.sqrt(max(fan_in, 1))
    elif name == "scale":
        value = 1.0 + 0.2 * rng.normal(size=shape)
    elif name in ("bias", "mean"):
        value = 0.2 * rng.normal(size=shape)
    elif name == "var":
        value = rng.uniform(0.5, 1.5, size=shape)
    else:  # embeddings
        value = rng.normal(size=shape)
    return value.astype(leaf.dtype)


def random_variables(model, sample_input, seed: int = 0) -> tuple[dict, dict]:
    """``(params, model_state)`` with the structure of ``model.init`` and random float32 values."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), sample_input, train=False))
    rng = np.random.default_rng(seed)
    variables = jax.tree_util.tree_map_with_path(lambda p, leaf: _fill(p, leaf, rng), shapes)
    variables = dict(variables)
    params = variables.pop("params")
    return params, variables


def count_params(model, sample_input) -> int:
    """Number of scalar parameters (the ``"params"`` collection only), via ``jax.eval_shape``."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), sample_input, train=False))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))


def to_numpy64(tree):
    """Every leaf as a float64 NumPy array (for independent NumPy transcriptions)."""
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def conv2d_np(x: np.ndarray, kernel: np.ndarray, stride: int = 1, pad: int = 1) -> np.ndarray:
    """Cross-correlation of NHWC ``x`` with an HWIO ``kernel``, symmetric zero padding ``pad``."""
    kh, kw = kernel.shape[:2]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h = (xp.shape[1] - kh) // stride + 1
    out_w = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            out += patch @ kernel[i, j]
    return out


def rbg_key(seed: int) -> jax.Array:
    """A typed ``"rbg"`` PRNG key: XLA compiles its samplers much faster on the CPU than threefry's,
    which keeps tests that draw dropout masks or initialise parameters quick."""
    return jax.random.key(seed, impl="rbg")
