"""Image-quality metrics and losses: SSIM, MS-SSIM (and the 1 − MS-SSIM loss), PSNR.

Images are ``[B, H, W, C]`` (NHWC) of any real dtype in ``[0, max_val]``; every function returns
one value per image in float32 (float64 for float64 images), averaged over channels, and takes an
optional ``[B]`` ``where`` mask (masked-out images give 0 and pass no NaN to values or
gradients). SSIM statistics use a Gaussian window applied with "valid" padding, as in the
reference implementation of Wang et al. and ``tf.image.ssim``.
"""

import jax
import jax.numpy as jnp

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check(max_val, filter_size, filter_sigma, k1, k2) -> None:
    for name, value in (("max_val", max_val), ("filter_sigma", filter_sigma)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be > 0, got {name}={value!r}")
    if not (isinstance(filter_size, int) and filter_size >= 1 and filter_size % 2 == 1):
        raise ValueError(f"filter_size must be an odd int >= 1, got filter_size={filter_size!r}")
    for name, value in (("k1", k1), ("k2", k2)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be > 0, got {name}={value!r}")


def _prepare(x, y, where, min_size):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must be [B, H, W, C] of equal shape, got {x.shape}, {y.shape}")
    if min(x.shape[1:3]) < min_size:
        raise ValueError(
            f"images of spatial size {x.shape[1:3]} are too small: this setting needs "
            f"H, W >= {min_size}"
        )
    dtype = jnp.promote_types(jnp.result_type(x), jnp.float32)  # uint8/bf16 → float32
    x, y = x.astype(dtype), y.astype(dtype)
    if where is not None:
        where = jnp.asarray(where, bool)
        if where.shape != x.shape[:1]:
            raise ValueError(f"where.shape={where.shape} must be ({x.shape[0]},)")
        x = jnp.where(where[:, None, None, None], x, 0.0)
        y = jnp.where(where[:, None, None, None], y, 0.0)
    return x, y, where


def _masked(value, where):
    return value if where is None else jnp.where(where, value, 0.0)


def _gaussian_filter(x, size, sigma):
    """Separable Gaussian filter with 'valid' padding over H and W of an NHWC array."""
    coords = jnp.arange(size, dtype=x.dtype) - (size - 1) / 2
    g = jnp.exp(-(coords**2) / (2 * sigma**2))
    g = g / jnp.sum(g)
    channels = x.shape[-1]
    dn = ("NHWC", "HWIO", "NHWC")
    for kernel in (g.reshape(size, 1, 1, 1), g.reshape(1, size, 1, 1)):
        x = jax.lax.conv_general_dilated(
            x,
            jnp.tile(kernel, (1, 1, 1, channels)),
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=dn,
            feature_group_count=channels,
            precision=jax.lax.Precision.HIGHEST,
        )
    return x


def _center(x):
    """``x`` minus its (constant, no-gradient) per-image, per-channel mean."""
    return x - jax.lax.stop_gradient(jnp.mean(x, axis=(1, 2), keepdims=True))


def _ssim_cs(x, y, max_val, size, sigma, k1, k2):
    """Per-image, per-channel mean SSIM and mean contrast-structure term, each ``[B, C]``."""
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    mu_x, mu_y = _gaussian_filter(x, size, sigma), _gaussian_filter(y, size, sigma)
    # Second moments of images shifted by their (constant) per-channel means: the same
    # (co)variances with far less cancellation in E[x²] − E[x]² (exact 0 for flat images).
    xs, ys = _center(x), _center(y)
    mu_xs, mu_ys = _gaussian_filter(xs, size, sigma), _gaussian_filter(ys, size, sigma)
    sxx = _gaussian_filter(xs * xs, size, sigma) - mu_xs**2
    syy = _gaussian_filter(ys * ys, size, sigma) - mu_ys**2
    sxy = _gaussian_filter(xs * ys, size, sigma) - mu_xs * mu_ys
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return jnp.mean(luminance * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


def ssim(
    x: jax.Array,
    y: jax.Array,
    *,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Structural similarity (SSIM) per image.

    .. math::
        \mathrm{SSIM}(x, y) = \operatorname{mean}_{p,c}
          \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
               {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},\quad
        C_1 = (k_1 L)^2,\ C_2 = (k_2 L)^2,

    with local means/variances/covariance from a Gaussian window (size 11, σ = 1.5) at every
    valid position ``p`` and channel ``c``. 1 for identical images; symmetric in ``x, y``.

    Args:
      x: ``[B, H, W, C]`` images in ``[0, max_val]``.
      y: same shape.
      max_val: dynamic range ``L``.
      filter_size: odd Gaussian window size (``H, W ≥ filter_size``).
      filter_sigma: Gaussian window σ.
      k1: luminance stabiliser constant.
      k2: contrast stabiliser constant.
      where: optional ``[B]`` mask; masked-out images give 0.

    Returns:
      ``[B]`` SSIM values in ``[-1, 1]``.

    References:
      Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity",
      IEEE TIP 2004, https://doi.org/10.1109/TIP.2003.819861.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 2 * 16 * 16).reshape(2, 16, 16, 1)
      >>> print(ssim(x, x))
      [1. 1.]
    """
    _check(max_val, filter_size, filter_sigma, k1, k2)
    x, y, where = _prepare(x, y, where, filter_size)
    value, _ = _ssim_cs(x, y, max_val, filter_size, filter_sigma, k1, k2)
    return _masked(jnp.mean(value, axis=-1), where)


def _downsample(x):
    """2×2 average pooling; an odd size is first padded symmetrically by one (as tf)."""
    pad = [(0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)]
    x = jnp.pad(x, pad, mode="symmetric")
    b, h, w, c = x.shape
    return jnp.mean(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _min_size(filter_size: int, num_scales: int) -> int:
    """Smallest H with ``ceil(H / 2^(M−1)) ≥ filter_size`` (the window fits the coarsest scale)."""
    return (filter_size - 1) * 2 ** (num_scales - 1) + 1


def _pow(x, w):
    """``max(x, 0) ** w`` with a zero (not NaN/inf) gradient at and below 0."""
    positive = x > 0
    return jnp.where(positive, jnp.where(positive, x, 1.0) ** w, 0.0)


def ms_ssim(
    x: jax.Array,
    y: jax.Array,
    *,
    max_val: float = 1.0,
    weights=MS_SSIM_WEIGHTS,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Multi-scale structural similarity (MS-SSIM) per image.

    .. math::
        \mathrm{MS\text{-}SSIM}(x, y) = \operatorname{mean}_c \Big[
          \mathrm{SSIM}_M(x, y)_+^{\,w_M} \prod_{j=1}^{M-1} \mathrm{cs}_j(x, y)_+^{\,w_j}\Big],

    where ``cs_j`` is the mean contrast-structure term ``(2σ_xy + C_2)/(σ_x² + σ_y² + C_2)`` at
    scale ``j`` (images halved by 2×2 average pooling between scales), ``SSIM_M`` the full SSIM
    (with luminance) at the coarsest scale, and ``(·)_+ = max(·, 0)`` as in ``tf.image``'s
    implementation (a negative term would give a complex power). Defaults are the standard
    5-scale weights of Wang et al. (2003). 1 for identical images; symmetric.

    Args:
      x: ``[B, H, W, C]`` images in ``[0, max_val]``; ``H, W`` must stay ``≥ filter_size`` at the
        coarsest scale (``≥ 161`` for the 5 default scales and window 11).
      y: same shape.
      max_val: dynamic range ``L``.
      weights: per-scale exponents ``w_1..w_M`` (finest first).
      filter_size: odd Gaussian window size.
      filter_sigma: Gaussian window σ.
      k1: luminance stabiliser constant.
      k2: contrast stabiliser constant.
      where: optional ``[B]`` mask; masked-out images give 0.

    Returns:
      ``[B]`` MS-SSIM values in ``[0, 1]``.

    References:
      Wang, Simoncelli and Bovik, "Multiscale structural similarity for image quality
      assessment", Asilomar 2003, https://doi.org/10.1109/ACSSC.2003.1292216; used as a training
      loss by Snell et al., "Learning to Generate Images with Perceptual Similarity Metrics",
      https://arxiv.org/abs/1511.06409.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 32 * 32).reshape(1, 32, 32, 1)
      >>> print(ms_ssim(x, x, weights=(0.5, 0.5), filter_size=7))
      [1.]
    """
    _check(max_val, filter_size, filter_sigma, k1, k2)
    weights = tuple(weights)
    if not weights or not all(isinstance(w, int | float) and w >= 0 for w in weights):
        raise ValueError(f"weights must be a non-empty sequence of numbers >= 0, got {weights}")
    x, y, where = _prepare(x, y, where, _min_size(filter_size, len(weights)))
    total = None
    for j, w in enumerate(weights):
        value, cs = _ssim_cs(x, y, max_val, filter_size, filter_sigma, k1, k2)
        term = _pow(value if j == len(weights) - 1 else cs, w)
        total = term if total is None else total * term
        if j < len(weights) - 1:
            x, y = _downsample(x), _downsample(y)
    return _masked(jnp.mean(total, axis=-1), where)


def ms_ssim_loss(
    x: jax.Array,
    y: jax.Array,
    *,
    max_val: float = 1.0,
    weights=MS_SSIM_WEIGHTS,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""MS-SSIM training loss ``1 − MS-SSIM(x, y)`` per image (Snell et al.).

    .. math:: \ell(x, y) = 1 - \mathrm{MS\text{-}SSIM}(x, y)

    Args:
      x: ``[B, H, W, C]`` reconstructions.
      y: ``[B, H, W, C]`` targets.
      max_val: see :func:`ms_ssim`.
      weights: see :func:`ms_ssim`.
      filter_size: see :func:`ms_ssim`.
      filter_sigma: see :func:`ms_ssim`.
      k1: see :func:`ms_ssim`.
      k2: see :func:`ms_ssim`.
      where: optional ``[B]`` mask; masked-out images give 0.

    Returns:
      ``[B]`` losses in ``[0, 1]``; 0 for identical images.

    References:
      Snell et al., "Learning to Generate Images with Perceptual Similarity Metrics",
      https://arxiv.org/abs/1511.06409.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 32 * 32).reshape(1, 32, 32, 1)
      >>> print(ms_ssim_loss(x, x, weights=(0.5, 0.5), filter_size=7))
      [0.]
    """
    value = ms_ssim(
        x,
        y,
        max_val=max_val,
        weights=weights,
        filter_size=filter_size,
        filter_sigma=filter_sigma,
        k1=k1,
        k2=k2,
        where=where,
    )
    return _masked(1 - value, where)


def psnr(x: jax.Array, y: jax.Array, *, max_val: float = 1.0, where=None) -> jax.Array:
    r"""Peak signal-to-noise ratio per image, in dB.

    .. math:: \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{L^2}{\operatorname{mean}_{h,w,c}(x - y)^2}

    ``+inf`` for identical images (with a zero gradient there).

    Args:
      x: ``[B, H, W, C]`` images.
      y: same shape.
      max_val: dynamic range ``L``.
      where: optional ``[B]`` mask; masked-out images give 0.

    Returns:
      ``[B]`` PSNR values.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(psnr(jnp.full((1, 4, 4, 1), 0.1), jnp.zeros((1, 4, 4, 1))))
      [20.]
    """
    if not (isinstance(max_val, int | float) and max_val > 0):
        raise ValueError(f"max_val must be > 0, got max_val={max_val!r}")
    x, y, where = _prepare(x, y, where, 1)
    mse = jnp.mean(jnp.square(x - y), axis=(1, 2, 3))
    positive = mse > 0
    value = jnp.where(
        positive,
        10 * jnp.log10(max_val**2 / jnp.where(positive, mse, 1.0)),
        jnp.inf,
    )
    return _masked(value, where)
