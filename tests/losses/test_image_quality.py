"""SSIM / MS-SSIM / PSNR against a float64 NumPy transcription of Wang et al. and closed forms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jaxlab.losses import image_quality as _iq

RNG = np.random.default_rng(0)


class _Jitted:
    """The module's functions, jitted (one compilation per call site instead of per op)."""

    def __getattr__(self, name):
        fn = getattr(_iq, name)
        if not callable(fn):
            return fn
        return lambda *args, **kw: jax.jit(functools.partial(fn, **kw))(*args)


iq = _Jitted()


def np_window(size, sigma):
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    return np.outer(g, g) / g.sum() ** 2


def np_local_mean(img, w):  # img [H, W]; 'valid' 2-D correlation with the full 2-D window
    return np.einsum("ijkl,kl->ij", sliding_window_view(img, w.shape), w)


def np_ssim_cs(x, y, size=11, sigma=1.5, k1=0.01, k2=0.03, L=1.0):
    """Per-channel mean SSIM and cs of one [H, W, C] image pair, float64."""
    w = np_window(size, sigma)
    c1, c2 = (k1 * L) ** 2, (k2 * L) ** 2
    ssims, css = [], []
    for c in range(x.shape[-1]):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        ma, mb = np_local_mean(a, w), np_local_mean(b, w)
        va = np_local_mean(a * a, w) - ma**2
        vb = np_local_mean(b * b, w) - mb**2
        cov = np_local_mean(a * b, w) - ma * mb
        cs = (2 * cov + c2) / (va + vb + c2)
        lum = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
        ssims.append((lum * cs).mean())
        css.append(cs.mean())
    return np.array(ssims), np.array(css)


def np_down(img):  # [H, W, C], symmetric pad of odd sizes then 2×2 mean
    img = np.pad(img, [(0, img.shape[0] % 2), (0, img.shape[1] % 2), (0, 0)], mode="symmetric")
    h, w, c = img.shape
    return img.reshape(h // 2, 2, w // 2, 2, c).mean((1, 3))


def np_ms_ssim(x, y, weights, **kw):
    out = []
    for a, b in zip(x, y, strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)
        total = np.ones(a.shape[-1])
        for j, w in enumerate(weights):
            s, cs = np_ssim_cs(a, b, **kw)
            total *= np.maximum(s if j == len(weights) - 1 else cs, 0) ** w
            a, b = np_down(a), np_down(b)
        out.append(total.mean())
    return np.array(out)


def pair(shape, noise=0.1):
    x = RNG.uniform(size=shape).astype(np.float32)
    x = (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3  # some structure
    y = np.clip(x + noise * RNG.normal(size=shape), 0, 1).astype(np.float32)
    return x, y


def test_ssim_matches_numpy():
    x, y = pair((2, 20, 17, 3))
    got = iq.ssim(x, y)
    expected = [np_ssim_cs(a, b)[0].mean() for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    got = iq.ssim(255 * x, 255 * y, max_val=255.0, filter_size=7, filter_sigma=1.0, k1=0.02)
    expected = [
        np_ssim_cs(255 * a, 255 * b, size=7, sigma=1.0, k1=0.02, L=255.0)[0].mean()
        for a, b in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ms_ssim_default_five_scales_matches_numpy():
    x, y = pair((1, 161, 165, 1), noise=0.2)  # smallest size for 5 scales; odd sizes
    np.testing.assert_allclose(iq.ms_ssim(x, y), np_ms_ssim(x, y, iq.MS_SSIM_WEIGHTS), rtol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        _iq.ms_ssim(x[:, :160], y[:, :160])


def test_ms_ssim_small_custom_scales_matches_numpy_and_loss():
    x, y = pair((3, 29, 32, 2), noise=0.3)
    kw = {"weights": (0.2, 0.3, 0.5), "filter_size": 7}
    expected = np_ms_ssim(x, y, kw["weights"], size=7)
    np.testing.assert_allclose(iq.ms_ssim(x, y, **kw), expected, rtol=1e-5)
    np.testing.assert_allclose(iq.ms_ssim_loss(x, y, **kw), 1 - expected, rtol=1e-5, atol=1e-6)
    # one scale is SSIM itself
    np.testing.assert_allclose(iq.ms_ssim(x, y, weights=(1.0,)), iq.ssim(x, y), rtol=1e-6)


def test_identity_symmetry_and_constant_image_closed_form():
    x, y = pair((2, 24, 24, 1))
    np.testing.assert_allclose(iq.ssim(x, x), 1.0, rtol=1e-6)
    np.testing.assert_allclose(iq.ms_ssim_loss(x, x, weights=(0.5, 0.5)), 0.0, atol=1e-6)
    np.testing.assert_allclose(iq.ssim(x, y), iq.ssim(y, x), rtol=1e-6)
    np.testing.assert_allclose(
        iq.ms_ssim(x, y, weights=(0.5, 0.5)), iq.ms_ssim(y, x, weights=(0.5, 0.5)), rtol=1e-6
    )
    a, b, c1 = 0.3, 0.7, 0.01**2
    luminance = (2 * a * b + c1) / (a * a + b * b + c1)  # zero variances: cs = 1
    const = lambda v: np.full((1, 24, 24, 1), v, np.float32)  # noqa: E731
    np.testing.assert_allclose(iq.ssim(const(a), const(b)), luminance, rtol=1e-5)
    np.testing.assert_allclose(
        iq.ms_ssim(const(a), const(b), weights=(0.4, 0.6)), luminance**0.6, rtol=1e-5
    )


def test_psnr_closed_form_and_identity():
    x, _ = pair((2, 8, 8, 3))
    y = x + np.float32(0.05)  # constant error 0.05: PSNR = 10 log10(1 / 0.0025)
    np.testing.assert_allclose(iq.psnr(x, y), 10 * np.log10(1 / 0.05**2), rtol=1e-4)
    np.testing.assert_allclose(iq.psnr(255 * x, 255 * y, max_val=255.0), 26.0206, rtol=1e-4)
    assert np.all(np.isinf(iq.psnr(x, x)))
    assert np.all(np.asarray(jax.grad(lambda a: jnp.sum(iq.psnr(a, x)))(x)) == 0)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y, w=None: iq.ssim(x, y, where=w),
        lambda x, y, w=None: iq.ms_ssim_loss(x, y, weights=(0.5, 0.5), filter_size=7, where=w),
        lambda x, y, w=None: iq.psnr(x, y + 0.1, where=w),
    ],
    ids=["ssim", "ms_ssim_loss", "psnr"],
)
def test_finite_grads_edge_cases_mask_bf16(fn):
    x, y = pair((3, 16, 16, 2), noise=0.5)
    value_and_grad = jax.jit(jax.value_and_grad(lambda a, b, w: jnp.sum(fn(a, b, w))))
    mask = np.array([True, False, True])
    bad = x.copy()
    bad[~mask] = np.nan
    for a, b, w in (
        (x, x, None),
        (np.zeros_like(x), np.zeros_like(x), None),
        (x, 1 - x, None),
        (bad, y, mask),
    ):
        value, grad = value_and_grad(a, b, w)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    out = fn(bad, y, mask)
    np.testing.assert_allclose(out[mask], fn(x, y)[mask], rtol=1e-6)
    assert np.all(np.asarray(out)[~mask] == 0)
    out = fn(jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_bad_arguments_raise():
    x, y = pair((1, 16, 16, 1))
    with pytest.raises(ValueError, match="x and y"):
        iq.ssim(x, y[:, :8])
    with pytest.raises(ValueError, match="x and y"):
        iq.psnr(x[0], y[0])
    with pytest.raises(ValueError, match="too small"):
        iq.ssim(x[:, :8], y[:, :8])
    for kw, match in [
        ({"filter_size": 4}, "filter_size"),
        ({"max_val": 0.0}, "max_val"),
        ({"filter_sigma": -1.0}, "filter_sigma"),
        ({"k2": 0.0}, "k2"),
    ]:
        with pytest.raises(ValueError, match=match):
            iq.ssim(x, y, **kw)
    with pytest.raises(ValueError, match="weights"):
        iq.ms_ssim(x, y, weights=())
    with pytest.raises(ValueError, match="weights"):
        iq.ms_ssim(x, y, weights=(-0.5, 1.0), filter_size=5)
    with pytest.raises(ValueError, match="where"):
        iq.ssim(x, y, where=np.ones(2, bool))
    with pytest.raises(ValueError, match="max_val"):
        iq.psnr(x, y, max_val=-1.0)
