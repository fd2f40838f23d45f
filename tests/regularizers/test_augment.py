"""RandAugment ops against NumPy transcriptions of PIL's definitions, and rand_augment contracts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.regularizers.augment import (
    autocontrast,
    brightness,
    color,
    contrast,
    equalize,
    posterize,
    rand_augment,
    rotate,
    sharpness,
    shear,
    solarize,
    translate,
)

RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
IMG = (U8 / 255).astype(np.float32)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def test_point_ops_match_numpy():
    np.testing.assert_allclose(brightness(IMG, 1.5), np.clip(1.5 * IMG, 0, 1), rtol=1e-6)
    mu = (IMG @ LUMA).mean()
    np.testing.assert_allclose(contrast(IMG, 0.3), np.clip(mu + 0.3 * (IMG - mu), 0, 1), 1e-5)
    gray = (IMG @ LUMA)[..., None]
    np.testing.assert_allclose(color(IMG, 0.0), np.broadcast_to(gray, IMG.shape), rtol=1e-5)
    np.testing.assert_allclose(solarize(IMG, 0.5), np.where(IMG > 0.5, 1 - IMG, IMG))
    np.testing.assert_allclose(
        solarize(np.array([[[0.2], [0.5], [0.9]]]), 0.5)[0, :, 0], [0.2, 0.5, 0.1], rtol=1e-6
    )
    np.testing.assert_allclose(posterize(IMG, 3), (U8 & 0b11100000) / 255, rtol=1e-6)
    lo, hi = IMG.min((0, 1)), IMG.max((0, 1))
    np.testing.assert_allclose(autocontrast(IMG), (IMG - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    for op, one in ((brightness, 1.0), (contrast, 1.0), (color, 1.0), (sharpness, 1.0)):
        np.testing.assert_allclose(op(IMG, one), IMG, atol=1e-6)


def _np_equalize(channel):
    """PIL ImageOps.equalize for one uint8 channel."""
    hist = np.bincount(channel.ravel(), minlength=256)
    nonzero = hist[hist > 0]
    step = (nonzero.sum() - nonzero[-1]) // 255
    if len(nonzero) <= 1 or step == 0:
        return channel
    lut, n = [], step // 2
    for i in range(256):
        lut.append(min(n // step, 255))
        n += hist[i]
    return np.array(lut)[channel]


def test_equalize_and_sharpness_match_numpy():
    big = RNG.integers(0, 200, size=(24, 24, 1), dtype=np.uint8)
    big[:8] = 230  # a heavy top bin, which PIL leaves out of the step
    want = _np_equalize(big[..., 0])[..., None] / 255
    np.testing.assert_allclose(equalize(big / 255), want, rtol=1e-6)
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    smooth = IMG.copy()
    for i in range(1, 5):
        for j in range(1, 5):
            smooth[i, j] = np.einsum("ab,abc->c", kernel, IMG[i - 1 : i + 2, j - 1 : j + 2])
    np.testing.assert_allclose(sharpness(IMG, 0.0), smooth, rtol=1e-5, atol=1e-6)


def test_geometric_ops():
    np.testing.assert_allclose(rotate(IMG, 90.0), np.rot90(IMG, 1, axes=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(rotate(IMG, 0.0), IMG, atol=1e-6)
    shifted = np.full_like(IMG, 0.5)
    shifted[:, 2:] = IMG[:, :-2]
    np.testing.assert_allclose(translate(IMG, 2.0, axis=1), shifted, atol=1e-6)
    shifted = np.full_like(IMG, 0.5)
    shifted[:-1] = IMG[1:]
    np.testing.assert_allclose(translate(IMG, -1.0, axis=0), shifted, atol=1e-6)
    np.testing.assert_allclose(shear(IMG, 0.0, axis=0), IMG, atol=1e-6)
    # shear-x by 1 on rows relative to the centre row 2.5: row r reads column c + (r − 2.5)
    sheared = np.asarray(shear(IMG, 1.0, axis=1, fill=0.0))
    np.testing.assert_allclose(sheared[3, :5], 0.5 * (IMG[3, :5] + IMG[3, 1:]), atol=1e-6)


def test_rand_augment_contracts():
    out = rand_augment(jax.random.key(0), U8, num_ops=0)
    np.testing.assert_array_equal(out, U8)
    aug = jax.jit(jax.vmap(lambda k, x, m: rand_augment(k, x, magnitude=m), in_axes=(0, 0, None)))
    keys = jax.random.split(jax.random.key(1), 8)
    batch = np.repeat(U8[None], 8, 0)
    a, b = aug(keys, batch, 9.0), aug(keys, batch, 9.0)
    assert a.dtype == jnp.uint8 and a.shape == batch.shape
    np.testing.assert_array_equal(a, b)
    assert len({np.asarray(x).tobytes() for x in a}) > 4  # different keys, different ops
    # magnitude 0: only autocontrast / equalize / posterize(8 bits) can change pixels
    zero = aug(keys, batch, 0.0)
    assert any(np.array_equal(z, U8) for z in zero)
    f = aug(keys, np.repeat(IMG[None], 8, 0), 10.0)
    assert f.dtype == jnp.float32 and float(f.min()) >= 0 and float(f.max()) <= 1


def test_augment_bad_input_raises():
    with pytest.raises(ValueError, match=r"image\.shape"):
        rand_augment(jax.random.key(0), IMG[..., :2])
    with pytest.raises(ValueError, match="magnitude=11"):
        rand_augment(jax.random.key(0), IMG, magnitude=11)
    with pytest.raises(ValueError, match="axis=2"):
        shear(IMG, 0.1, axis=2)
    with pytest.raises(ValueError, match="axis=-1"):
        translate(IMG, 1.0, axis=-1)
    with pytest.raises(ValueError, match="num_ops=-1"):
        rand_augment(jax.random.key(0), IMG, num_ops=-1)
