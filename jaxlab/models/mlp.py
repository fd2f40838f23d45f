"""Small feed-forward classifiers: a multilayer perceptron and a plain convolutional network.

Both are Flax linen modules with the jaxlab model conventions: ``__call__(x, *, train=False)``
returns float32 logits whatever the computation ``dtype``; parameters are stored in float32.
Neither has BatchNorm or dropout, so ``train`` does not change the output and the only variable
collection is ``"params"``.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.models._checks import check_positive_int, check_positive_ints


class MLP(nn.Module):
    """Multilayer perceptron on flattened inputs.

    h_0 = flatten(x),  h_l = σ(h_{l-1} W_l + b_l) for l = 1..L,  logits = h_L W_out + b_out.

    Attributes:
      features: hidden widths ``(d_1, ..., d_L)``; empty gives a linear (logistic-regression) model.
      num_classes: number of output logits.
      activation: the nonlinearity σ (default ReLU).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay float32.

    Returns (``__call__``):
      float32 logits ``[batch, num_classes]`` for an input ``[batch, ...]`` (all axes but the first
      are flattened).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP(features=(8,), num_classes=3)
      >>> variables = model.init(jax.random.key(0), jnp.ones((2, 4, 4)))
      >>> model.apply(variables, jnp.ones((2, 4, 4))).shape
      (2, 3)
    """

    features: Sequence[int] = (256, 256)
    num_classes: int = 10
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = jnp.float32

    def __post_init__(self):
        check_positive_ints("features", self.features)
        check_positive_int("num_classes", self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no BatchNorm / dropout
        h = jnp.reshape(x, (x.shape[0], -1)).astype(self.dtype)
        for i, width in enumerate(self.features):
            h = self.activation(nn.Dense(width, dtype=self.dtype, name=f"dense{i}")(h))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(h)
        return logits.astype(jnp.float32)


class CNN(nn.Module):
    """Plain conv net: [3×3 conv → ReLU → 2×2 average pool] per stage, then a 2-layer MLP head.

    h_s = avgpool_2×2(ReLU(conv_3×3(h_{s-1}) + b_s)) for each stage s (``SAME`` padding, stride
    1; the pool has stride 2 and floors odd sizes), then
    logits = ReLU(flatten(h_S) W_1 + b_1) W_2 + b_2.
    Average rather than max pooling keeps the network smooth (no argmax switching), which matters
    for curvature / loss-landscape measurements.

    Attributes:
      features: output channels of the conv stages (each stage halves height and width).
      dense: width of the hidden dense layer.
      num_classes: number of output logits.
      dtype: computation dtype; parameters stay float32.

    Returns (``__call__``):
      float32 logits ``[batch, num_classes]`` for NHWC images ``[batch, H, W, C]`` (any channel
      count; a ``[batch, H, W]`` input is treated as one channel).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = CNN(num_classes=10)  # MNIST-sized input
      >>> x = jnp.zeros((2, 28, 28, 1))
      >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)
      >>> jax.tree.map(lambda p: p.shape, variables["params"]["dense"])
      {'bias': (256,), 'kernel': (3136, 256)}
      >>> jax.eval_shape(model.apply, variables, x).shape
      (2, 10)
    """

    features: Sequence[int] = (32, 64)
    dense: int = 256
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        check_positive_ints("features", self.features)
        check_positive_int("dense", self.dense)
        check_positive_int("num_classes", self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no BatchNorm / dropout
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(
                f"CNN expects [batch, H, W] or [batch, H, W, C], got x.shape={x.shape}"
            )
        if min(x.shape[1:3]) < 2 ** len(self.features):
            raise ValueError(
                f"{len(self.features)} pooling stages need H, W >= {2 ** len(self.features)}, "
                f"got x.shape={x.shape}"
            )
        h = x.astype(self.dtype)
        for i, channels in enumerate(self.features):
            h = nn.Conv(channels, (3, 3), padding="SAME", dtype=self.dtype, name=f"conv{i}")(h)
            h = nn.avg_pool(nn.relu(h), (2, 2), strides=(2, 2))
        h = jnp.reshape(h, (h.shape[0], -1))
        h = nn.relu(nn.Dense(self.dense, dtype=self.dtype, name="dense")(h))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(h)
        return logits.astype(jnp.float32)
