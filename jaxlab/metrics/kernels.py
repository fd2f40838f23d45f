"""Empirical neural tangent kernel and kernel-target alignment (lazy vs rich training)."""

import functools

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float

_MODES = ("trace", "full")


def _jacobian(apply_fn, params, x):
    """Per-example Jacobians, each leaf reshaped to (N, K, P_leaf) in float32."""
    out = jax.eval_shape(apply_fn, params, x)
    if len(out.shape) not in (1, 2):
        raise ValueError(f"apply_fn must return (N,) or (N, K) outputs, got shape {out.shape}")
    squeeze = len(out.shape) == 1
    fn = (lambda p: apply_fn(p, x)[:, None]) if squeeze else (lambda p: apply_fn(p, x))
    jac = jax.jacrev(fn)(params)
    n, k = out.shape[0], 1 if squeeze else out.shape[1]
    return [upcast(j).reshape(n, k, -1) for j in jax.tree.leaves(jac)]


def empirical_ntk(apply_fn, params, x1, x2=None, *, mode: str = "trace") -> jax.Array:
    r"""Empirical neural tangent kernel :math:`\Theta(x, x') = J(x) J(x')^\top`.

    Here :math:`J = \partial f/\partial\theta`. ``mode="full"`` gives
    :math:`\Theta_{nmkl} = \sum_p \partial_p f_k(x_n)\,\partial_p f_l(x'_m)`
    of shape ``(N1, N2, K, K)``; ``mode="trace"`` sums the output diagonal,
    :math:`\sum_k \Theta_{nmkk}`, shape ``(N1, N2)`` (for scalar outputs this is the usual NTK
    Gram matrix). Jacobians are materialised with ``jax.jacrev`` (memory N·K·P): meant for small
    models / subsets. ``apply_fn`` must treat examples independently (no batch statistics).

    Args:
      apply_fn: ``(params, inputs) -> outputs`` of shape ``(N,)`` or ``(N, K)``.
      params: pytree of parameters θ.
      x1: inputs (pytree with a leading batch axis N1).
      x2: second inputs (N2); None means ``x1`` (Gram matrix, PSD).
      mode: ``"trace"`` or ``"full"``.

    Returns:
      float32 kernel, ``(N1, N2)`` or ``(N1, N2, K, K)``.

    References:
      Jacot, Gabriel, Hongler, "Neural Tangent Kernel", https://arxiv.org/abs/1806.07572; Kumar,
      Bordelon, Gershman, Pehlevan, "Grokking as the Transition from Lazy to Rich Training
      Dynamics", https://arxiv.org/abs/2310.06110.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
      >>> empirical_ntk(lambda w, x: x @ w, jnp.zeros(2), x)  # linear model: X Xᵀ
      Array([[ 5., 11.],
             [11., 25.]], dtype=float32)
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got apply_fn={apply_fn!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got mode={mode!r}")
    j1 = _jacobian(apply_fn, params, x1)
    j2 = j1 if x2 is None else _jacobian(apply_fn, params, x2)
    if mode == "trace":
        return sum(jnp.einsum("nkp,mkp->nm", a, b) for a, b in zip(j1, j2, strict=True))
    return sum(jnp.einsum("nkp,mlp->nmkl", a, b) for a, b in zip(j1, j2, strict=True))


def kernel_target_alignment(
    kernel: jax.Array, targets: jax.Array, *, centered: bool = False
) -> jax.Array:
    r"""Kernel-target alignment :math:`\langle K, YY^\top\rangle_F / (\|K\|_F \|YY^\top\|_F)`.

    ``centered=True`` uses :math:`K_c = HKH` and :math:`Y_c = HY` with
    :math:`H = I - \mathbf 1\mathbf 1^\top/N` (centred kernel alignment, Cortes et al. 2012).
    Lies in ``[-1, 1]`` (``[0, 1]`` for PSD K); 1 for :math:`K = YY^\top`; invariant to
    scaling K and Y. Zero K or Y gives 0.

    Args:
      kernel: ``(N, N)`` kernel matrix (e.g. :func:`empirical_ntk` in ``"trace"`` mode).
      targets: ``(N,)`` or ``(N, K)`` targets (e.g. one-hot labels).
      centered: centre K and Y first.

    Returns:
      float32 scalar alignment.

    References:
      Cristianini, Shawe-Taylor, Elisseeff, Kandola, "On Kernel-Target Alignment" (NeurIPS 2001);
      Cortes, Mohri, Rostamizadeh, "Algorithms for Learning Kernels Based on Centered Alignment",
      https://arxiv.org/abs/1203.0550.

    Examples:
      >>> import jax.numpy as jnp
      >>> y = jnp.array([1.0, -1.0, 2.0])
      >>> round(float(kernel_target_alignment(jnp.outer(y, y), y)), 5)
      1.0
    """
    k = upcast(as_float("kernel", kernel, ndim=2))
    n = k.shape[0]
    if k.shape != (n, n):
        raise ValueError(f"kernel must be square, got kernel.shape={k.shape}")
    y = upcast(as_float("targets", targets))
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"targets.shape={jnp.shape(targets)} must be ({n},) or ({n}, K)")
    return _alignment(k, y, centered=centered)


@functools.partial(jax.jit, static_argnames="centered")
def _alignment(k, y, *, centered):
    if centered:
        k = k - jnp.mean(k, axis=0, keepdims=True)
        k = k - jnp.mean(k, axis=1, keepdims=True)
        y = y - jnp.mean(y, axis=0, keepdims=True)
    yy = y @ y.T
    num = jnp.sum(k * yy)
    den_sq = jnp.sum(k * k) * jnp.sum(yy * yy)
    ok = den_sq > 0
    return jnp.where(ok, num / jnp.sqrt(jnp.where(ok, den_sq, 1.0)), 0.0)
