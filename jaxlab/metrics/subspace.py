"""Weight geometry of fine-tuning: principal angles of top-k singular subspaces, spectral drift."""

import functools

import jax
import jax.numpy as jnp

from jaxlab._tree import upcast
from jaxlab.metrics._checks import as_float, check_int

_SIDES = ("left", "right")


def _check_pair(w_a, w_b, k, names):
    a = upcast(as_float(names[0], w_a, ndim=2))
    b = upcast(as_float(names[1], w_b, ndim=2))
    if a.shape != b.shape:
        raise ValueError(f"{names[0]}.shape={a.shape} must equal {names[1]}.shape={b.shape}")
    check_int("k", k, 1)
    if k > min(a.shape):
        raise ValueError(f"k={k} must be <= min({names[0]}.shape)={min(a.shape)}")
    return a, b


def _top_basis(w, k, side):
    u, _, vt = jnp.linalg.svd(w, full_matrices=False)
    return u[:, :k] if side == "left" else vt[:k].T


def principal_angles(w_a: jax.Array, w_b: jax.Array, *, k: int, side: str = "left") -> jax.Array:
    r"""Principal angles between the top-k singular subspaces of two weight matrices.

    With orthonormal bases :math:`Q_a, Q_b` of the top-k left (or right) singular vectors,
    :math:`\cos\theta_i = \sigma_i(Q_a^\top Q_b)` and
    :math:`\sin\theta_i = \sigma_{k+1-i}((I - Q_aQ_a^\top)Q_b)`; as in
    ``scipy.linalg.subspace_angles``, the sine is used where :math:`\cos^2\theta \ge 1/2` (small
    angles) and the cosine elsewhere, for accuracy over the whole range. Measures principal-
    subspace rotation between a pretrained ``W0`` and fine-tuned ``W1`` (all 0 for W1 = W0).
    Top-k subspaces are only well-defined when :math:`\sigma_k > \sigma_{k+1}`.

    Args:
      w_a: ``(m, n)`` matrix.
      w_b: ``(m, n)`` matrix.
      k: subspace dimension, ``1 <= k <= min(m, n)``.
      side: ``"left"`` (column space, singular vectors in R^m) or ``"right"`` (R^n).

    Returns:
      ``(k,)`` angles in radians, ascending.

    References:
      Björck, Golub, "Numerical Methods for Computing Angles Between Linear Subspaces" (1973);
      Knyazev, Argentati, "Principal Angles between Subspaces in an A-Based Scalar Product"
      (2002); Zhu et al., "The Path Not Taken: RLVR Provably Learns Off the Principals",
      https://arxiv.org/abs/2511.08567.

    Examples:
      >>> import jax.numpy as jnp
      >>> principal_angles(jnp.diag(jnp.array([2.0, 1.0])), jnp.diag(jnp.array([1.0, 2.0])), k=1)
      Array([1.5707964], dtype=float32)
    """
    a, b = _check_pair(w_a, w_b, k, ("w_a", "w_b"))
    if side not in _SIDES:
        raise ValueError(f"side must be one of {_SIDES}, got side={side!r}")
    return _principal_angles(a, b, k=k, side=side)


@functools.partial(jax.jit, static_argnames=("k", "side"))
def _principal_angles(a, b, *, k, side):
    qa, qb = _top_basis(a, k, side), _top_basis(b, k, side)
    cross = qa.T @ qb
    cos = jnp.linalg.svd(cross, compute_uv=False)  # descending -> angles ascending
    sin = jnp.linalg.svd(qb - qa @ cross, compute_uv=False)[::-1]  # ascending
    small = cos**2 >= 0.5
    return jnp.where(small, jnp.arcsin(jnp.clip(sin, 0.0, 1.0)), jnp.arccos(jnp.clip(cos, -1, 1)))


def spectral_drift(w0: jax.Array, w1: jax.Array, *, k: int) -> jax.Array:
    r"""Relative change of the top-k singular values between two weight matrices.

    .. math::
        \mathrm{drift}_k(W_0, W_1) = \frac{\|\sigma_{1:k}(W_1) - \sigma_{1:k}(W_0)\|_2}
        {\|\sigma_{1:k}(W_0)\|_2}

    (singular values sorted descending). 0 for :math:`W_1 = W_0` and for any
    :math:`W_1 = U W_0 V` with orthogonal U, V: it measures spectrum distortion, not rotation
    (see :func:`principal_angles`). A zero ``w0`` gives the absolute change.

    Args:
      w0: ``(m, n)`` reference (e.g. pretrained) matrix.
      w1: ``(m, n)`` updated matrix.
      k: number of leading singular values, ``1 <= k <= min(m, n)``.

    Returns:
      float32 scalar.

    References:
      Zhu et al., "The Path Not Taken: RLVR Provably Learns Off the Principals",
      https://arxiv.org/abs/2511.08567 (spectral drift of RLVR vs SFT updates).

    Examples:
      >>> import jax.numpy as jnp
      >>> round(float(spectral_drift(jnp.eye(3), 2.0 * jnp.eye(3), k=2)), 4)
      1.0
    """
    a, b = _check_pair(w0, w1, k, ("w0", "w1"))
    return _spectral_drift(a, b, k=k)


@functools.partial(jax.jit, static_argnames="k")
def _spectral_drift(a, b, *, k):
    s0 = jnp.linalg.svd(a, compute_uv=False)[:k]
    s1 = jnp.linalg.svd(b, compute_uv=False)[:k]
    num = jnp.sum(jnp.square(s1 - s0))
    den = jnp.sum(jnp.square(s0))
    ratio = num / jnp.where(den > 0, den, 1.0)
    return jnp.where(ratio > 0, jnp.sqrt(jnp.where(ratio > 0, ratio, 1.0)), 0.0)
