"""RandAugment on jittable JAX image ops.

The ops take one float image ``[H, W, C]`` with values in ``[0, 1]`` (``C`` = 1 or 3) and return
a float32 image in ``[0, 1]``; geometric ops resample bilinearly with
``jax.scipy.ndimage.map_coordinates`` and fill uncovered pixels with ``fill`` (grey 0.5, as
the TF reference fills 128). Enhancement factors follow PIL's ``ImageEnhance`` (factor 1 is
the identity, 0 the degenerate image). :func:`rand_augment` handles uint8 and float images.
"""

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L")


def _check_image(image) -> jax.Array:
    image = jnp.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must be [H, W, C] with C in (1, 3), got image.shape={image.shape}")
    return image.astype(jnp.promote_types(image.dtype, jnp.float32))


def _gray(image) -> jax.Array:
    """``[H, W, 1]`` luma of an RGB image (the image itself if it has one channel)."""
    if image.shape[-1] == 1:
        return image
    return jnp.sum(image * jnp.asarray(_GRAY, image.dtype)[None, None, :], -1, keepdims=True)


def _blend(degenerate, image, factor) -> jax.Array:
    """PIL ``ImageEnhance``: ``degenerate + factor · (image − degenerate)``, clipped to [0, 1]."""
    return jnp.clip(degenerate + factor * (image - degenerate), 0, 1)


def brightness(image, factor) -> jax.Array:
    """Scales intensities: ``clip(factor · x)`` (blend with black)."""
    image = _check_image(image)
    return _blend(jnp.zeros_like(image), image, factor)


def contrast(image, factor) -> jax.Array:
    """Blends with the mean grey level: ``clip(μ + factor · (x − μ))``, μ = mean luma."""
    image = _check_image(image)
    return _blend(jnp.mean(_gray(image)), image, factor)


def color(image, factor) -> jax.Array:
    """Saturation: blends with the grey (luma) image; factor 0 gives greyscale."""
    image = _check_image(image)
    return _blend(jnp.broadcast_to(_gray(image), image.shape), image, factor)


def sharpness(image, factor) -> jax.Array:
    """Blends with PIL's smoothed image (3×3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13, borders kept)."""
    image = _check_image(image)
    kernel = jnp.array([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], image.dtype) / 13
    smooth = jax.vmap(
        lambda ch: jax.scipy.signal.convolve2d(ch, kernel, mode="same"), in_axes=-1, out_axes=-1
    )(image)
    h, w = image.shape[:2]
    inner = jnp.zeros((h, w), bool).at[1:-1, 1:-1].set(True)[:, :, None]
    return _blend(jnp.where(inner, smooth, image), image, factor)


def solarize(image, threshold) -> jax.Array:
    """Inverts the pixels above ``threshold``: ``x > t ? 1 − x : x``."""
    image = _check_image(image)
    return jnp.where(image > threshold, 1 - image, image)


def posterize(image, bits) -> jax.Array:
    """Keeps the ``bits`` most significant bits of the 8-bit value of each pixel."""
    image = _check_image(image)
    q = jnp.round(image * 255).astype(jnp.uint8)
    shift = (8 - jnp.asarray(bits, jnp.int32)).astype(jnp.uint8)
    return ((q >> shift) << shift).astype(image.dtype) / 255


def autocontrast(image) -> jax.Array:
    """Stretches each channel's [min, max] to [0, 1] (constant channels are left unchanged)."""
    image = _check_image(image)
    lo, hi = jnp.min(image, axis=(0, 1)), jnp.max(image, axis=(0, 1))
    span = hi - lo
    stretched = (image - lo[None, None, :]) / jnp.where(span > 0, span, 1)[None, None, :]
    return jnp.where((span > 0)[None, None, :], stretched, image)


def equalize(image) -> jax.Array:
    """Histogram equalization of each channel's 8-bit values (PIL ``ImageOps.equalize``)."""
    image = _check_image(image)
    q = jnp.round(image * 255).astype(jnp.int32)

    def channel(c):
        hist = jnp.bincount(c.ravel(), length=256)
        last = hist[jnp.max(c)]  # PIL leaves out the count of the top occupied bin
        step = (jnp.sum(hist) - last) // 255
        lut = (jnp.cumsum(hist) - hist + step // 2) // jnp.maximum(step, 1)
        return jnp.where(step > 0, jnp.clip(lut, 0, 255)[c], c)

    out = jax.vmap(channel, in_axes=-1, out_axes=-1)(q)
    return out.astype(image.dtype) / 255


def affine(image, matrix, *, fill: float = 0.5) -> jax.Array:
    """Resamples ``out(p) = image(M (p − c) + c)`` bilinearly; ``M`` is 2×2 on (row, col)."""
    image = _check_image(image)
    h, w = image.shape[:2]
    rows, cols = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    center = jnp.array([(h - 1) / 2, (w - 1) / 2], image.dtype)
    pts = jnp.stack([rows.ravel(), cols.ravel()]).astype(image.dtype) - center[:, None]
    src = jnp.asarray(matrix, image.dtype) @ pts + center[:, None]

    def channel(ch):
        return map_coordinates(ch, [src[0], src[1]], order=1, mode="constant", cval=fill)

    return jax.vmap(channel, in_axes=-1, out_axes=-1)(image).reshape(image.shape)


def rotate(image, degrees, *, fill: float = 0.5) -> jax.Array:
    """Rotates counter-clockwise by ``degrees`` about the centre (90° on a square = ``rot90``)."""
    t = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    c, s = jnp.cos(t), jnp.sin(t)
    return affine(image, jnp.array([[c, s], [-s, c]]), fill=fill)


def shear(image, amount, *, axis: int, fill: float = 0.5) -> jax.Array:
    """Shears along columns (``axis=1``: x ← x + a·y) or rows (``axis=0``: y ← y + a·x)."""
    _check_axis(axis)
    a = jnp.asarray(amount, jnp.float32)
    one, zero = jnp.ones_like(a), jnp.zeros_like(a)
    matrix = jnp.array([[one, zero], [a, one]]) if axis == 1 else jnp.array([[one, a], [zero, one]])
    return affine(image, matrix, fill=fill)


def translate(image, pixels, *, axis: int, fill: float = 0.5) -> jax.Array:
    """Shifts the content by ``pixels`` along ``axis`` (0 = down, 1 = right)."""
    _check_axis(axis)
    image = _check_image(image)
    h, w = image.shape[:2]
    rows, cols = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    shift = jnp.asarray(pixels, image.dtype)
    src = [rows - shift, cols] if axis == 0 else [rows, cols - shift]
    src = [s.astype(image.dtype) for s in src]
    return jax.vmap(
        lambda ch: map_coordinates(ch, src, order=1, mode="constant", cval=fill),
        in_axes=-1,
        out_axes=-1,
    )(image)


_MAX_LEVEL = 10.0


def _check_axis(axis) -> None:
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (rows) or 1 (columns), got axis={axis}")


def _ops(image, level, sign):
    """The 14 RandAugment ops at ``level`` ∈ [0, 1] (``magnitude / 10``) and a random sign."""
    h, w = image.shape[:2]
    enhance = 1 + sign * 0.9 * level  # PIL factors in [0.1, 1.9]
    return [
        lambda x: x,
        autocontrast,
        equalize,
        lambda x: rotate(x, sign * 30 * level),
        lambda x: solarize(x, 1 - level),
        lambda x: color(x, enhance),
        lambda x: posterize(x, 8 - jnp.round(4 * level).astype(jnp.int32)),
        lambda x: contrast(x, enhance),
        lambda x: brightness(x, enhance),
        lambda x: sharpness(x, enhance),
        lambda x: shear(x, sign * 0.3 * level, axis=1),
        lambda x: shear(x, sign * 0.3 * level, axis=0),
        lambda x: translate(x, sign * 0.45 * level * w, axis=1),
        lambda x: translate(x, sign * 0.45 * level * h, axis=0),
    ]


NUM_OPS = 14


def rand_augment(key: jax.Array, image: jax.Array, *, num_ops: int = 2, magnitude=9) -> jax.Array:
    r"""RandAugment: ``N`` ops drawn uniformly (with replacement) at one shared magnitude ``M``.

    Each of the ``num_ops`` steps draws one of the 14 ops — identity, autocontrast, equalize,
    rotate (±30°·M/10), solarize (threshold 1 − M/10), color, posterize (8 − round(4·M/10) bits),
    contrast, brightness, sharpness (PIL factors 1 ± 0.9·M/10), shear-x/y (±0.3·M/10),
    translate-x/y (±0.45·M/10 of the side) — and a random sign for the signed ones. Magnitudes
    are on the 0–10 scale of the official TF implementation (``_MAX_LEVEL = 10``); only (N, M)
    are tuned, no policy search. ``num_ops = 0`` is the identity. Jittable; ``vmap`` over keys
    and images for a batch.

    Args:
      key: ``jax.random`` key.
      image: ``[H, W, C]`` image, ``C`` ∈ {1, 3}; uint8 in [0, 255] or float in [0, 1].
      num_ops: N, the number of ops applied in sequence (paper's ImageNet ResNet-50: 2).
      magnitude: M in [0, 10] (paper's ImageNet ResNet-50: 9); may be traced.

    Returns:
      The augmented image with the dtype of ``image`` (uint8 rounded, floats in [0, 1]).

    References:
      Cubuk et al., "RandAugment: Practical automated data augmentation with a reduced search
      space", https://arxiv.org/abs/1909.13719.
    """
    if num_ops < 0:
        raise ValueError(f"num_ops must be >= 0, got num_ops={num_ops}")
    if isinstance(magnitude, int | float) and not 0 <= magnitude <= _MAX_LEVEL:
        raise ValueError(f"magnitude must lie in [0, 10], got magnitude={magnitude}")
    image = jnp.asarray(image)
    dtype = image.dtype
    x = _check_image(image)
    if dtype == jnp.uint8:
        x = x / 255
    level = jnp.asarray(magnitude, jnp.float32) / _MAX_LEVEL

    def step(x, k):
        k_op, k_sign = jax.random.split(k)
        index = jax.random.randint(k_op, (), 0, NUM_OPS)
        sign = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0)
        branches = [lambda x, f=f: f(x).astype(x.dtype) for f in _ops(x, level, sign)]
        return jax.lax.switch(index, branches, x), None

    x, _ = jax.lax.scan(step, x, jax.random.split(key, num_ops))
    if dtype == jnp.uint8:
        return jnp.round(jnp.clip(x, 0, 1) * 255).astype(jnp.uint8)
    return jnp.clip(x, 0, 1).astype(dtype)
