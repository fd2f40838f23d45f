"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

The density of ``A ∈ Rⁿˣⁿ`` is ``φ(t) = (1/n) Σ_i δ(t − λ_i)``. For a unit probe ``v`` with
``E[v vᵀ] = I/n``, ``vᵀ f(A) v = Σ_i (u_iᵀ v)² f(λ_i)`` is an unbiased estimate of ``∫ f dφ``,
and ``m`` Lanczos steps from ``v`` turn it into an ``m``-node Gauss quadrature: the nodes are the
eigenvalues ``θ_j`` of the tridiagonal ``T`` and the weights the squared first components
``τ_j = s_{1j}²`` of its eigenvectors (exact for polynomials of degree < 2m). Averaging over
``num_runs`` probes and replacing each δ by a Gaussian gives a smooth density.
"""

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab._tree import tree_norm
from jaxlab.curvature.lanczos import (
    _check_int,
    _check_reortho,
    lanczos_tridiag,
)
from jaxlab.curvature.operators import (
    _apply_mask,
    _mask_size,
    _resolve_mask,
    _stacked_or_single_hessian,
)
from jaxlab.curvature.trace import _sample_probe
from jaxlab.optim._checks import check_positive

SIGMA_RULES = ("pyhessian", "scale_free")


def _dense_tridiagonal(alphas, betas):
    """``[..., m, m]`` symmetric tridiagonal matrices from ``[..., m]`` and ``[..., m-1]``."""
    m = alphas.shape[-1]
    i = jnp.arange(m)
    t = jnp.zeros((*alphas.shape, m), alphas.dtype).at[..., i, i].set(alphas)
    t = t.at[..., i[:-1], i[1:]].set(betas)
    return t.at[..., i[1:], i[:-1]].set(betas)


def _host_eigh64(alphas, betas):
    a, b = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    m = a.shape[-1]
    t = np.zeros((*a.shape, m))
    i = np.arange(m)
    t[..., i, i] = a
    t[..., i[:-1], i[1:]] = b
    t[..., i[1:], i[:-1]] = b
    nodes, vecs = np.linalg.eigh(t)
    return nodes.astype(alphas.dtype), (vecs[..., 0, :] ** 2).astype(alphas.dtype)


def tridiag_quadrature(alphas, betas, *, host_float64: bool = True):
    """Gauss-quadrature nodes and weights of Lanczos tridiagonals (batched over leading axes).

    Args:
      alphas: ``[..., m]`` diagonals.
      betas: ``[..., m - 1]`` off-diagonals.
      host_float64: when the inputs are float32 (x64 off), solve the small eigenproblems in
        float64 with NumPy through one ``jax.pure_callback`` (jittable; a single device-to-host
        copy of ``m²`` numbers per run), and round the result to float32. False keeps everything
        on the device in the inputs' dtype (e.g. where host callbacks are unavailable). With x64
        on, float64 inputs are solved on the device.

    Returns:
      ``(nodes, weights)``, each ``[..., m]``; the weights of each tridiagonal sum to 1.
    """
    if alphas.dtype == jnp.float64 or not host_float64:
        nodes, vecs = jnp.linalg.eigh(_dense_tridiagonal(alphas, betas))
        return nodes, vecs[..., 0, :] ** 2
    out = jax.ShapeDtypeStruct(alphas.shape, alphas.dtype)
    return jax.pure_callback(_host_eigh64, (out, out), alphas, betas, vmap_method="broadcast_all")


def _rademacher_probe(key, params_like, mask):
    v = _sample_probe(key, params_like, "rademacher")
    v = _apply_mask(mask, v)
    inv = 1.0 / tree_norm(v)
    return jax.tree.map(lambda x: (x * inv.astype(x.dtype)).astype(x.dtype), v)


def slq(
    matvec: Callable,
    params_like,
    key: jax.Array,
    *,
    num_steps: int = 100,
    num_runs: int = 10,
    reortho: str = "none",
    block_size: int = 16,
    batch_size: int | None = None,
    mask=None,
    host_float64: bool = True,
):
    r"""Stochastic Lanczos quadrature: ``num_runs`` quadratures of the spectral density.

    .. math::
      \phi(t) \approx \frac{1}{R}\sum_{r=1}^{R}\sum_{j=1}^{m} \tau_{rj}\,\delta(t - \theta_{rj})

    with ``θ_r, τ_r`` the nodes and weights of ``m`` Lanczos steps from the ``r``-th normalised
    Rademacher probe.

    Args:
      matvec: symmetric ``v -> A v`` on pytrees like ``params_like``.
      params_like: pytree giving the shapes and dtypes of vectors (e.g. the params).
      key: PRNG key for the probes (the same key on every device under ``pmap``).
      num_steps: ``m``, Lanczos steps per run (≤ the dimension).
      num_runs: ``R``, independent probes.
      reortho: ``'none'`` (default: ``O(n)`` memory per run; converged outliers come back as
        ghost nodes that share their weight, which leaves the quadrature — hence the density —
        essentially intact; anchors_hessian.md §6), ``'blocked'`` or ``'full'`` (``m·n`` memory per
        run in flight).
      block_size: rows per block for ``reortho='blocked'``.
      batch_size: runs computed together by ``vmap``; None runs all ``R`` at once, an integer
        chunks them with ``lax.map`` (less memory; on CPU often faster).
      mask: pytree of bools: probes restricted to a parameter block, for a masked operator
        (then the density is that of the sub-block).
      host_float64: see :func:`tridiag_quadrature`.

    Returns:
      ``(nodes, weights)``, each ``[num_runs, num_steps]``; each run's weights sum to 1. If a
      probe's Krylov space is invariant before ``m`` steps, the extra nodes carry zero weight.

    Raises:
      ValueError: ``num_steps`` above the dimension (of the mask), non-positive counts, unknown
        ``reortho``.

    References:
      Golub & Meurant, Matrices, Moments and Quadrature, 2010; Ubaru, Chen & Saad, "Fast
      estimation of tr(f(A)) via stochastic Lanczos quadrature", 2017; Ghorbani, Krishnan & Xiao,
      https://arxiv.org/abs/1901.10159; Yao et al., PyHessian, https://arxiv.org/abs/1912.07145.

    .. note::
      Jittable; the Lanczos loops have no host syncs, and the tridiagonal eigenproblems are
      solved once at the end (see ``host_float64``).
    """
    _check_int("num_steps", num_steps)
    _check_int("num_runs", num_runs)
    _check_reortho(reortho)
    if batch_size is not None:
        _check_int("batch_size", batch_size)
    n = _mask_size(mask, params_like)
    if n is not None and num_steps > n:
        raise ValueError(
            f"num_steps must be <= the dimension {n} of the (masked) operator, got "
            f"num_steps={num_steps}"
        )
    mask = _resolve_mask(mask, params_like)

    def run(k):
        v = _rademacher_probe(k, params_like, mask)
        t = lanczos_tridiag(
            matvec, v, num_steps, reortho=reortho, block_size=block_size, return_basis=False
        )
        return t.alphas, t.betas

    keys = jax.random.split(key, num_runs)
    if batch_size is None:
        alphas, betas = jax.vmap(run)(keys)
    else:
        alphas, betas = jax.lax.map(run, keys, batch_size=batch_size)
    return tridiag_quadrature(alphas, betas, host_float64=host_float64)


def _transform(nodes, log_abs: bool, epsilon: float):
    return jnp.log(jnp.abs(nodes) + epsilon) if log_abs else nodes


def _support(x, weights):
    valid = weights > 0
    lo = jnp.min(jnp.where(valid, x, jnp.inf))
    hi = jnp.max(jnp.where(valid, x, -jnp.inf))
    return lo, hi


def spectral_density(
    nodes,
    weights,
    grid,
    *,
    sigma: float | None = None,
    sigma_rule: str = "pyhessian",
    sigma_squared: float = 1e-5,
    kappa: float | None = None,
    margin: float = 0.05,
    log_abs: bool = False,
    epsilon: float = 1e-5,
) -> jax.Array:
    r"""Gaussian-broadened density from SLQ nodes and weights, evaluated on ``grid``.

    .. math::
      \hat\phi(t) = \frac{1}{R}\sum_{r,j} \tau_{rj}\,
      \frac{1}{\sqrt{2\pi}\sigma}\exp\Big(-\frac{(t-\theta_{rj})^2}{2\sigma^2}\Big),

    which integrates to 1. The width ``σ``:

    * ``sigma`` given: used as is (standard deviation, in the units of ``grid``);
    * ``'pyhessian'``: variance ``σ² = sigma_squared · max(1, θ_max − θ_min)``, the convention of
      PyHessian's ``density_generate`` and google/spectral-density (``sigma_squared=1e-5``);
    * ``'scale_free'`` (Papyan 2020, curvlinops): with the support padded by ``margin`` and mapped
      to ``[−1, 1]``, ``σ = 2 / ((m − 1)√(8 ln κ))``, i.e. a bump whose width follows the node
      spacing ``m`` and needs no tuning (``κ = 3``, or ``1.04`` for the log view).

    The support is taken over nodes of positive weight.

    Args:
      nodes: ``[R, m]`` (or ``[m]``) quadrature nodes from :func:`slq`.
      weights: matching weights.
      grid: ``[G]`` points; with ``log_abs``, points in ``x = ln(|λ| + ε)``.
      sigma: explicit width.
      sigma_rule: ``'pyhessian'`` or ``'scale_free'``.
      sigma_squared: PyHessian's relative variance.
      kappa: scale-free width parameter (> 1).
      margin: relative padding of the support for the scale-free rule.
      log_abs: the log-|λ| view: the density of ``x = ln(|λ| + ε)`` (per unit of ``x``), useful
        for Hessian spectra spanning decades; plot against ``exp(grid)`` on a log axis
        (:func:`plot_density` does).
      epsilon: ``ε`` of the log view (Papyan's 1e-5).

    Returns:
      ``[G]`` density values.

    References:
      Ghorbani, Krishnan & Xiao, https://arxiv.org/abs/1901.10159 (Gaussian broadening);
      Papyan, "Traces of class/cross-class structure pervade deep learning spectra", JMLR 2020,
      https://arxiv.org/abs/2008.11865 (scale-free width, log spectrum).
    """
    if sigma_rule not in SIGMA_RULES:
        raise ValueError(f"sigma_rule must be one of {SIGMA_RULES}, got sigma_rule={sigma_rule!r}")
    if sigma is not None:
        check_positive("sigma", sigma)
    check_positive("sigma_squared", sigma_squared)
    check_positive("epsilon", epsilon)
    kappa = (1.04 if log_abs else 3.0) if kappa is None else kappa
    if not kappa > 1:
        raise ValueError(f"kappa must be > 1, got kappa={kappa!r}")
    nodes, weights = jnp.atleast_2d(nodes), jnp.atleast_2d(weights)
    if nodes.shape != weights.shape:
        raise ValueError(
            f"nodes and weights must have the same shape, got {nodes.shape} and {weights.shape}"
        )
    m = nodes.shape[-1]
    if sigma is None and sigma_rule == "scale_free" and m < 2:
        raise ValueError(f"the scale-free rule needs >= 2 nodes per run, got m={m}")
    dt = jnp.promote_types(nodes.dtype, jnp.float32)
    x = _transform(nodes.astype(dt), log_abs, epsilon).reshape(-1)
    w = weights.astype(dt).reshape(-1) / nodes.shape[0]
    grid = jnp.asarray(grid, dt)
    if sigma is not None:
        s = jnp.asarray(sigma, dt)
    elif sigma_rule == "pyhessian":
        lo, hi = _support(x, w)
        s = jnp.sqrt(sigma_squared * jnp.maximum(1.0, hi - lo))
    else:
        lo, hi = _support(x, w)
        half_width = 0.5 * (1.0 + 2.0 * margin) * (hi - lo)
        s = half_width * 2.0 / ((m - 1) * np.sqrt(8.0 * np.log(kappa)))
        s = jnp.where(s > 0, s, 1.0)
    z = (grid[:, None] - x[None, :]) / s
    return jnp.matmul(jnp.exp(-0.5 * z * z), w, precision=jax.lax.Precision.HIGHEST) / (
        np.sqrt(2.0 * np.pi) * s
    )


def density_grid(
    nodes,
    weights,
    *,
    num_points: int = 1024,
    margin: float = 0.05,
    log_abs: bool = False,
    epsilon: float = 1e-5,
) -> jax.Array:
    """``num_points`` evenly spaced points over the support of the nodes, padded by ``margin``.

    With ``log_abs`` the points are in ``x = ln(|λ| + ε)``, as :func:`spectral_density` expects.
    """
    _check_int("num_points", num_points, low=2)
    nodes = jnp.asarray(nodes)
    x = _transform(nodes.astype(jnp.promote_types(nodes.dtype, jnp.float32)), log_abs, epsilon)
    lo, hi = _support(x.reshape(-1), jnp.asarray(weights).reshape(-1))
    width = hi - lo
    pad = jnp.where(width > 0, margin * width, jnp.maximum(jnp.abs(lo), 1.0))
    return jnp.linspace(lo - pad, hi + pad, num_points)


def plot_density(grid, density, *, ax=None, log_abs: bool = False, semilogy: bool = True,
                 **plot_kwargs):  # fmt: skip
    """Plots a density from :func:`spectral_density` with matplotlib (imported lazily).

    Args:
      grid: the grid the density was evaluated on (``ln(|λ| + ε)`` units if ``log_abs``).
      density: the values.
      ax: a matplotlib ``Axes``; a new figure is made when None.
      log_abs: the grid is the log view; the x axis shows ``|λ|`` on a log scale.
      semilogy: log-scale density axis (as PyHessian's plots; the bottom is clipped at 1e-8 of
        the peak).
      **plot_kwargs: passed to ``ax.plot``.

    Returns:
      The ``Axes``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    x, y = np.asarray(grid), np.asarray(density)
    ax.plot(np.exp(x) if log_abs else x, y, **plot_kwargs)
    if log_abs:
        ax.set_xscale("log")
    if semilogy and np.max(y) > 0:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-8 * float(np.max(y)))
    ax.set_xlabel("|λ|" if log_abs else "λ")
    ax.set_ylabel("density")
    return ax


@partial(
    jax.jit,
    static_argnames=(
        "loss_fn",
        "num_steps",
        "num_runs",
        "reortho",
        "axis_name",
        "stacked",
        "batch_size",
        "host_float64",
    ),
)
def _hessian_density(
    loss_fn, params, batch, key, mask, batch_weights,
    *, num_steps, num_runs, reortho, axis_name, stacked, batch_size, host_float64,
):  # fmt: skip
    op = _stacked_or_single_hessian(
        loss_fn, params, batch, stacked, batch_weights, axis_name=axis_name, mask=mask
    )
    return slq(
        op, params, key, num_steps=num_steps, num_runs=num_runs, reortho=reortho,
        batch_size=batch_size, mask=mask, host_float64=host_float64,
    )  # fmt: skip


def hessian_density(
    loss_fn: Callable,
    params,
    batch,
    *,
    key: jax.Array,
    num_steps: int = 100,
    num_runs: int = 10,
    reortho: str = "none",
    axis_name: str | None = None,
    mask=None,
    stacked: bool = False,
    batch_weights=None,
    batch_size: int | None = None,
    host_float64: bool = True,
):
    """SLQ nodes and weights of the Hessian of ``loss_fn(params, batch)``, in one jitted call.

    Builds :func:`~jaxlab.curvature.operators.hessian_operator` (linearised once; or
    :func:`~jaxlab.curvature.operators.dataset_operator` with ``stacked=True``) and runs
    :func:`slq`. Pass the same ``loss_fn`` object every call so that it compiles once per shape.
    Turn the result into a curve with :func:`density_grid` and :func:`spectral_density`.

    Args:
      loss_fn: ``(params, batch) -> scalar`` (BatchNorm mode: see
        :mod:`jaxlab.curvature.operators`).
      params: point θ.
      batch: data (stacked batches with ``stacked=True``).
      key: PRNG key for the probes.
      num_steps: Lanczos steps per run.
      num_runs: probes.
      reortho: ``'none' | 'blocked' | 'full'``.
      axis_name: ``pmap``/``shard_map`` axis; the product is averaged across it.
      mask: restrict to a parameter block (pytree of bools or callable).
      stacked: ``batch`` holds stacked batches.
      batch_weights: their weights (sizes); equal when None.
      batch_size: runs per ``vmap`` chunk (None: all).
      host_float64: see :func:`tridiag_quadrature`.

    Returns:
      ``(nodes, weights)``, each ``[num_runs, num_steps]``.
    """
    _check_int("num_steps", num_steps)
    _check_int("num_runs", num_runs)
    _check_reortho(reortho)
    n = _mask_size(mask, params)
    if n is not None and num_steps > n:
        raise ValueError(
            f"num_steps must be <= the dimension {n} of the (masked) Hessian, got "
            f"num_steps={num_steps}"
        )
    mask = _resolve_mask(mask, params)
    if batch_weights is not None:
        batch_weights = jnp.asarray(batch_weights)
    return _hessian_density(
        loss_fn, params, batch, key, mask, batch_weights,
        num_steps=num_steps, num_runs=num_runs, reortho=reortho, axis_name=axis_name,
        stacked=stacked, batch_size=batch_size, host_float64=host_float64,
    )  # fmt: skip
