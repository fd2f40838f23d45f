"""Residual networks for CIFAR-sized images: ResNet-18 (CIFAR variant) and Wide ResNets.

References:
  - He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
    https://arxiv.org/abs/1512.03385 (BasicBlock, projection shortcuts).
  - He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016,
    https://arxiv.org/abs/1603.05027 (pre-activation ordering used by the Wide ResNet).
  - Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016, https://arxiv.org/abs/1605.07146.

Conventions: NHWC inputs, ``__call__(x, *, train=False)`` returns float32 logits, convolutions have
no bias (BatchNorm follows or precedes every one), kernels use He-normal fan-out initialisation as
in the reference implementations, 3×3 convolutions pad 1 pixel on each side (PyTorch padding=1).

BatchNorm uses momentum 0.9 and ε = 1e-5; in training mode it normalises with the batch statistics
and updates ``batch_stats`` (call ``apply`` with ``mutable=["batch_stats"]``). With
``bn_axis_name`` set, the batch mean and mean square are averaged over that ``pmap``/``shard_map``
axis (synchronised BatchNorm): a batch split evenly over the devices then gives exactly the
statistics of the whole batch on one device.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.models._checks import check_positive_int, check_rate

_HE_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_PAD1 = ((1, 1), (1, 1))


def _batch_norm(train: bool, dtype: Any, axis_name: str | None, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        axis_name=axis_name,
        dtype=dtype,
        name=name,
    )


def _conv(features: int, size: int, strides: int, dtype: Any, name: str) -> nn.Conv:
    return nn.Conv(
        features,
        (size, size),
        strides=(strides, strides),
        padding=_PAD1 if size == 3 else "VALID",
        use_bias=False,
        kernel_init=_HE_FAN_OUT,
        dtype=dtype,
        name=name,
    )


def _check_images(x: jax.Array, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects NHWC images [batch, H, W, C], got x.shape={x.shape}")


class _BasicBlock(nn.Module):
    """Post-activation BasicBlock: ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))."""

    channels: int
    strides: int
    dtype: Any
    bn_axis_name: str | None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = functools.partial(_batch_norm, train, self.dtype, self.bn_axis_name)
        y = _conv(self.channels, 3, self.strides, self.dtype, "conv1")(x)
        y = nn.relu(bn("bn1")(y))
        y = _conv(self.channels, 3, 1, self.dtype, "conv2")(y)
        y = bn("bn2")(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.channels:
            shortcut = _conv(self.channels, 1, self.strides, self.dtype, "proj_conv")(x)
            shortcut = bn("proj_bn")(shortcut)
        return nn.relu(y + shortcut)


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant (He et al. 2016; the common "kuangliu" CIFAR layout).

    stem: ReLU(BN(conv_3×3(x))) with ``width`` channels, stride 1, no max-pool; then 4 stages of
    2 BasicBlocks with ``width·(1, 2, 4, 8)`` channels and strides (1, 2, 2, 2), a 1×1 conv + BN
    projection shortcut wherever the shape changes; global average pool; dense head. With
    ``width=64, num_classes=10`` it has 11,173,962 parameters.

    Attributes:
      num_classes: number of output logits.
      width: channels of the stem and the first stage.
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters and BN statistics stay float32.
      bn_axis_name: ``pmap``/``shard_map`` axis to synchronise BatchNorm statistics over, or None.

    Returns (``__call__``):
      float32 logits ``[batch, num_classes]`` for NHWC images ``[batch, H, W, C]``.

    Examples:
      Shapes only (``jax.eval_shape`` runs no computation):

      >>> import jax, jax.numpy as jnp
      >>> model = ResNet18(num_classes=10)
      >>> variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
      >>> sorted(variables), sum(p.size for p in jax.tree.leaves(variables["params"]))
      (['batch_stats', 'params'], 11173962)
      >>> train_step = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
      >>> logits, new_state = jax.eval_shape(train_step, variables, jnp.zeros((8, 32, 32, 3)))
      >>> logits.shape, logits.dtype, sorted(new_state)
      ((8, 10), dtype('float32'), ['batch_stats'])
    """

    num_classes: int = 10
    width: int = 64
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def __post_init__(self):
        check_positive_int("num_classes", self.num_classes)
        check_positive_int("width", self.width)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        _check_images(x, "ResNet18")
        h = _conv(self.width, 3, 1, self.dtype, "stem_conv")(x.astype(self.dtype))
        h = nn.relu(_batch_norm(train, self.dtype, self.bn_axis_name, "stem_bn")(h))
        for stage, (mult, strides) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2), strict=True)):
            for block in range(2):
                h = _BasicBlock(
                    channels=self.width * mult,
                    strides=strides if block == 0 else 1,
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"stage{stage + 1}_block{block + 1}",
                )(h, train)
        h = jnp.mean(h, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(h)
        return logits.astype(jnp.float32)


class _WideBlock(nn.Module):
    """Pre-activation wide block: conv(drop(ReLU(BN(conv(ReLU(BN(x))))))) + shortcut."""

    channels: int
    strides: int
    dropout_rate: float
    dtype: Any
    bn_axis_name: str | None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = functools.partial(_batch_norm, train, self.dtype, self.bn_axis_name)
        o = nn.relu(bn("bn1")(x))
        if self.strides != 1 or x.shape[-1] != self.channels:
            # The projection sees the pre-activated input, as in the authors' code.
            shortcut = _conv(self.channels, 1, self.strides, self.dtype, "proj_conv")(o)
        else:
            shortcut = x
        y = _conv(self.channels, 3, self.strides, self.dtype, "conv1")(o)
        y = nn.relu(bn("bn2")(y))
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = _conv(self.channels, 3, 1, self.dtype, "conv2")(y)
        return y + shortcut


class WideResNet(nn.Module):
    """Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016), pre-activation blocks.

    depth = 6n + 4: stem conv_3×3 with 16 channels; 3 groups of n blocks with 16k, 32k, 64k
    channels and strides (1, 2, 2); each block is BN-ReLU-conv_3×3-BN-ReLU-dropout-conv_3×3 plus
    an identity shortcut, or a 1×1 conv of the pre-activated input where the shape changes;
    then BN-ReLU, global average pool and a dense head. WRN-28-10 has 36.5M parameters and
    WRN-16-8 11.0M (CIFAR-10, Table 1 / Sec. 3 of the paper).

    Attributes:
      depth: total depth 6n + 4 (e.g. 16, 22, 28, 40).
      widen_factor: width multiplier k.
      num_classes: number of output logits.
      dropout_rate: dropout between the two convolutions of each block (rng stream ``"dropout"``,
        active only with ``train=True``); the paper uses 0.3 in some runs.
      dtype: computation dtype; parameters and BN statistics stay float32.
      bn_axis_name: ``pmap``/``shard_map`` axis to synchronise BatchNorm statistics over, or None.

    Returns (``__call__``):
      float32 logits ``[batch, num_classes]`` for NHWC images ``[batch, H, W, C]``.

    Raises:
      ValueError: if ``depth`` is not of the form 6n + 4 with n >= 1, or another hyperparameter is
        out of range.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = WideResNet(depth=28, widen_factor=10, num_classes=10)
      >>> variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
      >>> round(sum(p.size for p in jax.tree.leaves(variables["params"])) / 1e6, 1)
      36.5
    """

    depth: int = 16
    widen_factor: int = 8
    num_classes: int = 10
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def __post_init__(self):
        check_positive_int("depth", self.depth)
        if self.depth < 10 or (self.depth - 4) % 6 != 0:
            raise ValueError(
                f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got depth={self.depth}"
            )
        check_positive_int("widen_factor", self.widen_factor)
        check_positive_int("num_classes", self.num_classes)
        check_rate("dropout_rate", self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        _check_images(x, "WideResNet")
        blocks_per_group = (self.depth - 4) // 6
        h = _conv(16, 3, 1, self.dtype, "stem_conv")(x.astype(self.dtype))
        for group, (mult, strides) in enumerate(zip((16, 32, 64), (1, 2, 2), strict=True)):
            for block in range(blocks_per_group):
                h = _WideBlock(
                    channels=mult * self.widen_factor,
                    strides=strides if block == 0 else 1,
                    dropout_rate=self.dropout_rate,
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"group{group + 1}_block{block + 1}",
                )(h, train)
        h = nn.relu(_batch_norm(train, self.dtype, self.bn_axis_name, "final_bn")(h))
        h = jnp.mean(h, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(h)
        return logits.astype(jnp.float32)
