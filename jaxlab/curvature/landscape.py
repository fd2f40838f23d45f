"""Loss landscapes: filter-normalised directions, 1-D/2-D surfaces, interpolation and barriers.

Directions are pytrees shaped like ``params``. Surfaces evaluate ``loss_fn(params, batch)`` at
many points with ``lax.map``: ``chunk_size`` points are vmapped at a time (``None``: one point
per scan step, the least memory). The ``loss_fn``-taking functions are jitted with ``loss_fn``
static (pass the same function object to compile once per shape); with ``axis_name`` (under
``pmap``/``shard_map``) each loss is ``pmean``-averaged over the axis.

Plotting helpers import matplotlib inside the function and draw on a fresh
``matplotlib.figure.Figure`` (no pyplot state) unless given an ``ax``.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.curvature.trace import (
    _check_callable,
    _check_choice,
    _check_int,
    _check_optional_int,
    _check_tree,
    _flattener,
    _sample_probe,
)

_IGNORE = ("biasbn", None)


# ----------------------------------------------------------------------------------------------
# Directions


def filter_normalize(direction, params, *, ignore="biasbn", filter_axis=-1):
    r"""Rescales each filter of ``direction`` to the norm of the matching filter of ``params``.

    .. math::

        d_{i,j} \leftarrow \frac{d_{i,j}}{\|d_{i,j}\| + 10^{-10}}\, \|\theta_{i,j}\|

    for filter j (one slice along ``filter_axis``) of every leaf i with ``ndim ≥ 2``. Leaves with
    ``ndim ≤ 1`` (biases, BatchNorm scales and offsets) are zeroed with ``ignore='biasbn'``, or set
    to the parameters themselves with ``ignore=None`` (tomgoldstein/loss-landscape's rule).

    Args:
      direction: pytree like ``params``.
      params: the parameters θ.
      ignore: ``'biasbn'`` (default; the recommended setting, without which 1-D leaves dominate)
        or ``None``.
      filter_axis: axis that indexes filters (output units): ``-1`` for flax ``Dense``/``Conv``
        kernels (``[..., in, out]``), ``0`` for PyTorch-layout weights (``[out, in, ...]``).

    Returns:
      The normalised direction (dtypes of ``direction``; norms computed in float32 or wider).

    References:
      Li, Xu, Taylor, Studer & Goldstein, "Visualizing the loss landscape of neural nets",
      https://arxiv.org/abs/1712.09913 (§4); tomgoldstein/loss-landscape ``net_plotter.py``.
    """
    _check_tree("direction", direction)
    _check_tree("params", params)
    _check_choice("ignore", ignore, _IGNORE)
    if jax.tree.structure(direction) != jax.tree.structure(params):
        raise ValueError(
            f"direction must have the structure of params {jax.tree.structure(params)}, "
            f"got {jax.tree.structure(direction)}"
        )

    def leaf(d, w):
        if d.shape != w.shape:
            raise ValueError(f"direction leaf shape {d.shape} != params leaf shape {w.shape}")
        if d.ndim <= 1:
            return jnp.zeros_like(d) if ignore == "biasbn" else w.astype(d.dtype)
        axis = filter_axis % d.ndim
        axes = tuple(a for a in range(d.ndim) if a != axis)
        dt = jnp.promote_types(jnp.promote_types(d.dtype, w.dtype), jnp.float32)
        d_norm = jnp.sqrt(jnp.sum(jnp.square(d.astype(dt)), axis=axes, keepdims=True))
        w_norm = jnp.sqrt(jnp.sum(jnp.square(w.astype(dt)), axis=axes, keepdims=True))
        return (d.astype(dt) * (w_norm / (d_norm + 1e-10))).astype(d.dtype)

    return jax.tree.map(leaf, direction, params)


def filter_normalized_direction(key, params, *, ignore="biasbn", filter_axis=-1):
    """A Gaussian random direction, filter-normalised against ``params``.

    Args:
      key: PRNG key.
      params: the parameters θ.
      ignore: ``'biasbn'`` (zero 1-D leaves) or ``None`` (copy them from ``params``).
      filter_axis: filter axis (``-1`` flax, ``0`` PyTorch layout).

    Returns:
      A pytree like ``params``; see :func:`filter_normalize`.

    References:
      Li et al., https://arxiv.org/abs/1712.09913.
    """
    _check_tree("params", params)
    direction = _sample_probe(key, params, "normal")
    return filter_normalize(direction, params, ignore=ignore, filter_axis=filter_axis)


def eigenvector_directions(eigenvectors, indices=(0, 1)):
    """Unit-norm plotting directions from stacked eigenvectors (leading axis k).

    For surfaces along the top Hessian eigenvectors, pass
    ``hessian_eigenvalues(...).eigenvectors`` from :mod:`jaxlab.curvature.eigen`. The loss then
    varies as ``½ λ_i α²`` to second order along direction i (plus the gradient term).

    Args:
      eigenvectors: pytree whose leaves have a leading axis of size k.
      indices: which eigenvectors to return (ints in ``[0, k)``).

    Returns:
      A tuple of pytrees (one per index) without the leading axis, each scaled to unit norm.
    """
    _check_tree("eigenvectors", eigenvectors)
    sizes = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(eigenvectors)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"eigenvectors leaves must share a leading axis, got sizes {sizes}")
    (k,) = sizes
    for i in indices:
        _check_int("indices", i, 0)
        if i >= k:
            raise ValueError(f"indices must be < k={k}, got indices={indices!r}")
    out = []
    for i in indices:
        v = jax.tree.map(lambda x, i=i: x[i], eigenvectors)
        _, _, ravel, _ = _flattener(v)
        inv = 1.0 / jnp.linalg.norm(ravel(v))
        out.append(jax.tree.map(lambda x, inv=inv: (x * inv).astype(x.dtype), v))
    return tuple(out)


def pca_directions(trajectory, *, num_components=2, ignore=None):
    r"""Principal directions of a trajectory of parameters (stacked along a leading axis).

    Rows :math:`\theta_t` are flattened, centred (:math:`X = [\theta_t - \bar\theta]_t`) and
    decomposed by SVD, :math:`X = U S V^\top`; the directions are the first rows of
    :math:`V^\top` (orthonormal), with explained-variance ratios :math:`S_i^2 / \sum_j S_j^2`.
    Centring on the mean equals tomgoldstein's PCA of the differences to the final point (which
    scikit-learn centres as well).

    Args:
      trajectory: pytree whose leaves have a leading axis T ≥ 2 (e.g. stacked checkpoints).
      num_components: number of directions k ≤ min(T, dimension).
      ignore: ``'biasbn'`` zeroes leaves with ≤ 1 dimension per point (biases, BatchNorm)
        before the PCA, as in tomgoldstein/loss-landscape; ``None`` keeps them.

    Returns:
      ``(directions, explained_variance_ratio)``: a pytree like one point with a leading axis k,
      and a ``[k]`` array. Signs are arbitrary (those of the SVD).

    References:
      Li et al., https://arxiv.org/abs/1712.09913 (§7, "plot_trajectory.py").
    """
    _check_tree("trajectory", trajectory)
    _check_choice("ignore", ignore, _IGNORE)
    sizes = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(trajectory)}
    if len(sizes) != 1 or None in sizes or min(sizes) < 2:
        raise ValueError(f"trajectory leaves must share a leading axis T >= 2, got sizes {sizes}")
    (t,) = sizes
    point = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), trajectory)
    n, _, ravel, unravel = _flattener(point)
    _check_int("num_components", num_components)
    if num_components > min(t, n):
        raise ValueError(
            f"num_components must be <= min(T={t}, dimension={n}), "
            f"got num_components={num_components}"
        )

    def drop(tree):  # 1-D leaves of a point have ndim ≤ 2 once stacked
        if ignore != "biasbn":
            return tree
        return jax.tree.map(lambda x: x if x.ndim > 2 else jnp.zeros_like(x), tree)

    x = jax.vmap(ravel)(drop(trajectory))
    x = x - jnp.mean(x, axis=0, keepdims=True)
    _, s, vt = jnp.linalg.svd(x, full_matrices=False)
    var = jnp.square(s)
    ratio = var / jnp.where(jnp.sum(var) > 0, jnp.sum(var), 1.0)
    return drop(jax.vmap(unravel)(vt[:num_components])), ratio[:num_components]


def project_trajectory(trajectory, origin, directions):
    r"""Coordinates of each :math:`\theta_t - \theta_0` in the span of ``directions``.

    Least-squares coordinates :math:`c_t = (D D^\top)^{-1} D (\theta_t - \theta_0)` for directions
    D (rows), so non-orthogonal directions (e.g. filter-normalised random ones) are handled; for
    orthonormal directions this is the plain projection.

    Args:
      trajectory: pytree with leading axis T.
      origin: θ₀, the centre of the surface (usually the final parameters).
      directions: pytree with leading axis k (e.g. from :func:`pca_directions`).

    Returns:
      ``[T, k]`` coordinates, ready for ``plot_surface_2d(..., trajectory=coords)``.
    """
    _check_tree("trajectory", trajectory)
    _check_tree("origin", origin)
    _check_tree("directions", directions)
    _, _, ravel, _ = _flattener(origin)
    x = jax.vmap(ravel)(trajectory) - ravel(origin)[None, :]
    d = jax.vmap(ravel)(directions)
    coords = jnp.linalg.solve(d @ d.T, d @ x.T)
    return coords.T


# ----------------------------------------------------------------------------------------------
# Surfaces, interpolation, barrier


def _loss_at(loss_fn, batch, axis_name):
    def f(p):
        value = loss_fn(p, batch)
        return value if axis_name is None else jax.lax.pmean(value, axis_name)

    return f


def _move(params, coeffs, directions):
    """θ + Σ_i c_i d_i, computed in the parameters' dtype."""

    def leaf(w, *ds):
        out = w
        for c, d in zip(coeffs, ds, strict=True):
            out = out + c.astype(w.dtype) * d.astype(w.dtype)
        return out

    return jax.tree.map(leaf, params, *directions)


@functools.partial(jax.jit, static_argnames=("loss_fn", "chunk_size", "axis_name"))
def _surface(loss_fn, params, batch, directions, coords, *, chunk_size, axis_name):
    loss = _loss_at(loss_fn, batch, axis_name)
    return jax.lax.map(
        lambda c: loss(_move(params, tuple(c), directions)), coords, batch_size=chunk_size
    )


def _check_surface(loss_fn, params, directions, chunk_size):
    _check_callable("loss_fn", loss_fn)
    _check_tree("params", params)
    for i, d in enumerate(directions):
        if jax.tree.structure(d) != jax.tree.structure(params):
            raise ValueError(
                f"direction {i} must have the structure of params {jax.tree.structure(params)}, "
                f"got {jax.tree.structure(d)}"
            )
    _check_optional_int("chunk_size", chunk_size)


def _as_grid(name, values):
    values = jnp.asarray(values)
    if values.ndim != 1 or values.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {values.shape}")
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.float32)
    return values


def loss_surface_1d(
    loss_fn, params, batch, direction, alphas, *, chunk_size=None, axis_name=None
) -> jax.Array:
    r"""The loss along a line, :math:`f(\alpha) = L(\theta + \alpha d)`, for each α.

    Args:
      loss_fn: ``(params, batch) -> scalar``.
      params: centre θ.
      batch: data.
      direction: pytree like ``params`` (e.g. :func:`filter_normalized_direction`).
      alphas: 1-D array of coordinates.
      chunk_size: points per ``vmap``; ``None``: one per ``lax.scan`` step.
      axis_name: ``pmap``/``shard_map`` axis to average the loss over.

    Returns:
      ``[len(alphas)]`` losses.

    References:
      Goodfellow, Vinyals & Saxe, https://arxiv.org/abs/1412.6544; Li et al.,
      https://arxiv.org/abs/1712.09913.
    """
    _check_surface(loss_fn, params, (direction,), chunk_size)
    alphas = _as_grid("alphas", alphas)
    return _surface(
        loss_fn, params, batch, (direction,), alphas[:, None],
        chunk_size=chunk_size, axis_name=axis_name,
    )  # fmt: skip


def loss_surface_2d(
    loss_fn,
    params,
    batch,
    direction_x,
    direction_y,
    alphas,
    betas,
    *,
    chunk_size=None,
    axis_name=None,
) -> jax.Array:
    r"""The loss on a plane, :math:`f(\alpha, \beta) = L(\theta + \alpha d_x + \beta d_y)`.

    Args:
      loss_fn: ``(params, batch) -> scalar``.
      params: centre θ.
      batch: data.
      direction_x: first direction (pytree like ``params``).
      direction_y: second direction.
      alphas: 1-D coordinates along ``direction_x``.
      betas: 1-D coordinates along ``direction_y``.
      chunk_size: grid points per ``vmap``; ``None``: one per ``lax.scan`` step.
      axis_name: ``pmap``/``shard_map`` axis to average the loss over.

    Returns:
      ``[len(alphas), len(betas)]`` losses, ``out[i, j] = f(alphas[i], betas[j])``.

    References:
      Li et al., https://arxiv.org/abs/1712.09913.
    """
    _check_surface(loss_fn, params, (direction_x, direction_y), chunk_size)
    alphas, betas = _as_grid("alphas", alphas), _as_grid("betas", betas)
    aa, bb = jnp.meshgrid(alphas, betas.astype(alphas.dtype), indexing="ij")
    coords = jnp.stack([aa.ravel(), bb.ravel()], axis=1)
    losses = _surface(
        loss_fn, params, batch, (direction_x, direction_y), coords,
        chunk_size=chunk_size, axis_name=axis_name,
    )  # fmt: skip
    return losses.reshape(alphas.shape[0], betas.shape[0])


@functools.partial(jax.jit, static_argnames=("loss_fn", "chunk_size", "axis_name"))
def _interpolate(loss_fn, params_a, params_b, batch, alphas, *, chunk_size, axis_name):
    loss = _loss_at(loss_fn, batch, axis_name)

    def at(alpha):
        return loss(
            jax.tree.map(
                lambda a, b: ((1 - alpha) * a + alpha * b).astype(a.dtype), params_a, params_b
            )
        )

    return jax.lax.map(at, alphas, batch_size=chunk_size)


def _check_pair(loss_fn, params_a, params_b, chunk_size):
    _check_callable("loss_fn", loss_fn)
    _check_tree("params_a", params_a)
    _check_tree("params_b", params_b)
    if jax.tree.structure(params_a) != jax.tree.structure(params_b):
        raise ValueError(
            f"params_b must have the structure of params_a {jax.tree.structure(params_a)}, "
            f"got {jax.tree.structure(params_b)}"
        )
    _check_optional_int("chunk_size", chunk_size)


def linear_interpolation(
    loss_fn, params_a, params_b, batch, alphas, *, chunk_size=None, axis_name=None
) -> jax.Array:
    r"""Losses along the segment :math:`\theta(\alpha) = (1 - \alpha)\theta_a + \alpha\theta_b`.

    α outside [0, 1] extrapolates. α = 0 and 1 give exactly ``params_a`` and ``params_b``.

    Args:
      loss_fn: ``(params, batch) -> scalar``.
      params_a: first solution θ_a.
      params_b: second solution θ_b (same structure).
      batch: data.
      alphas: 1-D array of α.
      chunk_size: points per ``vmap``; ``None``: one per ``lax.scan`` step.
      axis_name: ``pmap``/``shard_map`` axis to average the loss over.

    Returns:
      ``[len(alphas)]`` losses.

    References:
      Goodfellow, Vinyals & Saxe, https://arxiv.org/abs/1412.6544.
    """
    _check_pair(loss_fn, params_a, params_b, chunk_size)
    alphas = _as_grid("alphas", alphas)
    return _interpolate(
        loss_fn, params_a, params_b, batch, alphas, chunk_size=chunk_size, axis_name=axis_name
    )


class LossBarrier(NamedTuple):
    """Loss barrier on the linear path between two solutions.

    Attributes:
      barrier: ``max_α [L(θ(α)) − ((1 − α) L(θ_a) + α L(θ_b))]`` over the grid (≥ 0, since the
        endpoints give 0).
      alpha: the α at which the maximum is reached.
      alphas: the ``[num_points]`` grid on [0, 1].
      losses: ``[num_points]`` losses along the path.
    """

    barrier: jax.Array
    alpha: jax.Array
    alphas: jax.Array
    losses: Any


def loss_barrier(
    loss_fn, params_a, params_b, batch, *, num_points=25, chunk_size=None, axis_name=None
) -> LossBarrier:
    r"""The loss barrier between two solutions along their linear interpolation.

    .. math::

        B(\theta_a, \theta_b) = \max_{\alpha\in[0,1]} L((1-\alpha)\theta_a + \alpha\theta_b)
        - \big((1-\alpha) L(\theta_a) + \alpha L(\theta_b)\big),

    evaluated on ``num_points`` equally spaced α (include the midpoint with an odd count). It is
    0 for a convex loss and > 0 when the path climbs over a ridge; "linearly mode connected" means
    a barrier near 0.

    Args:
      loss_fn: ``(params, batch) -> scalar``.
      params_a: first solution θ_a.
      params_b: second solution θ_b.
      batch: data.
      num_points: grid size ≥ 2 (endpoints included).
      chunk_size: points per ``vmap``; ``None``: one per ``lax.scan`` step.
      axis_name: ``pmap``/``shard_map`` axis to average the loss over.

    Returns:
      :class:`LossBarrier` ``(barrier, alpha, alphas, losses)``.

    References:
      Frankle et al., "Linear mode connectivity and the lottery ticket hypothesis",
      https://arxiv.org/abs/1912.05671; Entezari et al., https://arxiv.org/abs/2110.06296.
    """
    _check_pair(loss_fn, params_a, params_b, chunk_size)
    _check_int("num_points", num_points, 2)
    alphas = jnp.linspace(0.0, 1.0, num_points)
    losses = _interpolate(
        loss_fn, params_a, params_b, batch, alphas, chunk_size=chunk_size, axis_name=axis_name
    )
    chord = (1.0 - alphas) * losses[0] + alphas * losses[-1]
    gap = losses - chord
    i = jnp.argmax(gap)
    return LossBarrier(barrier=gap[i], alpha=alphas[i], alphas=alphas, losses=losses)


# ----------------------------------------------------------------------------------------------
# Plotting


def _axes(ax):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=(5, 4), layout="constrained").add_subplot()


def _save(ax, path):
    if path is not None:
        ax.figure.savefig(path, dpi=120)


def plot_surface_1d(alphas, losses, *, ax=None, path=None, label=None, log=False):
    """Line plot of a 1-D surface or interpolation (matplotlib).

    Args:
      alphas: ``[n]`` coordinates.
      losses: ``[n]`` losses (or ``[n, c]`` for c curves).
      ax: matplotlib ``Axes`` to draw on; a new figure when None.
      path: file to save the figure to (e.g. ``'surface.png'``).
      label: legend label.
      log: logarithmic loss axis.

    Returns:
      The ``Axes``.
    """
    ax = _axes(ax)
    ax.plot(np.asarray(alphas), np.asarray(losses), label=label)
    ax.set_xlabel("α")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    if label is not None:
        ax.legend()
    _save(ax, path)
    return ax


def plot_surface_2d(
    alphas, betas, losses, *, ax=None, path=None, levels=20, trajectory=None, log=False
):
    """Contour plot of a 2-D surface, optionally with a projected trajectory (matplotlib).

    Args:
      alphas: ``[n]`` coordinates along the first direction.
      betas: ``[m]`` coordinates along the second direction.
      losses: ``[n, m]`` losses from :func:`loss_surface_2d`.
      ax: matplotlib ``Axes``; a new figure when None.
      path: file to save the figure to.
      levels: number of contour levels (or explicit levels).
      trajectory: ``[T, 2]`` coordinates (:func:`project_trajectory`) drawn as a path.
      log: contour ``log10`` of the loss (losses must be positive).

    Returns:
      The ``Axes``.
    """
    ax = _axes(ax)
    z = np.asarray(losses).T
    if log:
        z = np.log10(z)
    contour = ax.contour(np.asarray(alphas), np.asarray(betas), z, levels=levels)
    ax.clabel(contour, fontsize=7)
    if trajectory is not None:
        coords = np.asarray(trajectory)
        ax.plot(coords[:, 0], coords[:, 1], "o-", markersize=3, color="k")
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    _save(ax, path)
    return ax
