"""Lanczos tridiagonalisation of a symmetric operator on pytrees.

One Lanczos step is shared by :func:`lanczos_tridiag` (a fixed number of steps, for stochastic
Lanczos quadrature) and the eigen-solvers of :mod:`jaxlab.curvature.eigen` (which stop on a
Ritz residual). The public functions take and return pytrees shaped like the parameters;
internally the vectors are raveled once into one flat array (float32, or float64 for float64
parameters), so that the stored basis is one ``[m, n]`` buffer and re-orthogonalisation is one
matrix product however many leaves the model has (fewer, larger kernels; faster compiles). Every
contraction asks for ``Precision.HIGHEST`` so that no TF32 shortcut is taken on GPUs.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxlab._tree import accumulation_dtype

MatVec = Callable[[Any], Any]
REORTHO = ("full", "blocked", "none")
_HIGHEST = jax.lax.Precision.HIGHEST
_DGKS = 1.0 / math.sqrt(2.0)  # repeat a Gram-Schmidt pass that kept less of ‖w‖ than this


# ---------------------------------------------------------------------------------------------
# Flat vectors.


def _flat_dtype(tree) -> jnp.dtype:
    """float64 if any leaf is float64, else float32: the dtype of the internal flat vectors."""
    return jnp.result_type(*[accumulation_dtype(x) for x in jax.tree.leaves(tree)])


def _flatten(matvec: MatVec, like):
    """``(flat_matvec, ravel, unravel)`` for pytree vectors shaped like ``like``."""
    dt = _flat_dtype(like)
    _, unravel = ravel_pytree(like)
    structure = jax.tree.structure(like)

    def ravel(tree):
        return ravel_pytree(tree)[0].astype(dt)

    def flat_matvec(x):
        out = matvec(unravel(x))
        if jax.tree.structure(out) != structure:
            raise TypeError(
                "matvec must return a pytree shaped like its input, got "
                f"{jax.tree.structure(out)} for input {structure}"
            )
        return ravel(out)

    return flat_matvec, ravel, unravel


def _dot(a, b):
    return jnp.matmul(a, b, precision=_HIGHEST)


def _normalize(x):
    """``x / ‖x‖``, or zeros for a zero ``x`` (no NaN)."""
    nrm = jnp.linalg.norm(x)
    return jnp.where(nrm > 0, x / jnp.where(nrm > 0, nrm, 1.0), jnp.zeros_like(x))


def _hashed(shape, dtype, seed):
    """A deterministic pseudo-random array in [-0.5, 0.5) (a sine hash of the flat index).

    Used for restart and fill directions, which only need to be generic: it compiles in a
    fraction of the time of ``jax.random`` (threefry) and needs no key.
    """
    i = jnp.arange(math.prod(shape), dtype=dtype).reshape(shape) + 1
    h = jnp.sin(i * 12.9898 + (jnp.asarray(seed, dtype) + 1) * 78.233) * 43758.5453
    return h - jnp.floor(h) - 0.5


def _num_elements(tree) -> int:
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(tree))


def _check_reortho(reortho: str) -> None:
    if reortho not in REORTHO:
        raise ValueError(f"reortho must be one of {REORTHO}, got reortho={reortho!r}")


def _check_int(name: str, value, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {name}={value!r}")


# ---------------------------------------------------------------------------------------------
# Re-orthogonalisation and the Lanczos step (flat vectors).


def _project_out_cgs(w, basis, num_rows, block_size: int):
    """Classical Gram-Schmidt of ``w`` against rows ``[0, num_rows)`` of ``basis``, blocked,
    with a second pass only where the first cancelled much of ``w``.

    A pass is ``w ← w − Qᵀ(Q w)`` with every coefficient taken from the same ``w`` (classical,
    not modified, Gram-Schmidt), summed a block of ``block_size`` rows at a time: the same result
    as one product with the whole zero-padded basis up to the order of summation, but step ``j``
    reads only the ``⌈(j + 1)/block_size⌉`` blocks holding filled rows (``O(j·n)``, not
    ``O(m·n)``). The pass is repeated when it shrank ``‖w‖`` below ``1/√2`` of its value (the
    Daniel-Gragg-Kaufman-Stewart criterion): otherwise one pass is already orthogonal to working
    precision, and "twice is enough" when it is not. The second pass runs over 0 rows when it is
    not needed, and ``num_rows = 0`` costs nothing (used to skip the restart projection).
    """

    def one_pass(w, rows):
        def body(b, acc):
            block = jax.lax.dynamic_slice_in_dim(basis, b * block_size, block_size, 0)
            return acc + _dot(_dot(block, w), block)

        num_blocks = (rows + block_size - 1) // block_size
        return w - jax.lax.fori_loop(0, num_blocks, body, jnp.zeros_like(w))

    once = one_pass(w, num_rows)
    again = jnp.linalg.norm(once) < _DGKS * jnp.linalg.norm(w)
    return one_pass(once, jnp.where(again, num_rows, 0))


def _combine_prefix(coeffs, basis, num_rows, block_size: int):
    """``coeffsᵀ Q`` (``[k, n]``) over rows ``[0, num_rows)`` only, a block at a time.

    ``coeffs`` is ``[rows, k]`` like ``basis``'s rows; the rows after ``num_rows`` (rounded up to
    a block) are skipped, which changes nothing when their coefficients or basis rows are zero.
    """

    def body(b, acc):
        c = jax.lax.dynamic_slice_in_dim(coeffs, b * block_size, block_size, 0)
        rows = jax.lax.dynamic_slice_in_dim(basis, b * block_size, block_size, 0)
        return acc + _dot(c.T, rows)

    num_blocks = (num_rows + block_size - 1) // block_size
    init = jnp.zeros((coeffs.shape[1], basis.shape[1]), basis.dtype)
    return jax.lax.fori_loop(0, num_blocks, body, init)


def _project_out_prefix(w, basis, num_rows, block_size: int):
    """One block-Gram-Schmidt pass of ``w`` against rows ``[0, num_rows)``, a block at a time.

    The loop stops at the last block holding a filled row, so step ``j`` costs ``O(j·n)`` rather
    than ``O(m·n)`` for the whole preallocated basis.
    """

    def body(b, w):
        rows = jax.lax.dynamic_slice_in_dim(basis, b * block_size, block_size, 0)
        return w - _dot(_dot(rows, w), rows)

    num_blocks = (num_rows + block_size - 1) // block_size
    return jax.lax.fori_loop(0, num_blocks, body, w)


class _Lanczos(NamedTuple):
    """Loop state: ``j`` steps done, ``q`` = q_j (the next vector to multiply)."""

    j: jax.Array
    q: jax.Array
    q_prev: jax.Array
    beta_prev: jax.Array
    basis: jax.Array | None  # [rows, n]: q_0 ... (q_j stored at row j); None when not stored
    alphas: jax.Array
    betas: jax.Array
    scale: jax.Array  # running ‖T‖ estimate: max of |α_i| + β_i + β_{i-1}


def _lanczos_init(x0, num_rows: int | None, num_steps: int) -> _Lanczos:
    """Initial state from a flat ``x0`` (a zero ``x0`` is replaced by a pseudo-random vector)."""
    q = _normalize(jnp.where(jnp.any(x0 != 0), x0, _hashed(x0.shape, x0.dtype, -1)))
    basis = None
    if num_rows is not None:
        basis = jnp.zeros((num_rows, q.size), q.dtype).at[0].set(q)
    zero = jnp.zeros((), q.dtype)
    return _Lanczos(
        j=jnp.zeros((), jnp.int32),
        q=q,
        q_prev=jnp.zeros_like(q),
        beta_prev=zero,
        basis=basis,
        alphas=jnp.zeros((num_steps,), q.dtype),
        betas=jnp.zeros((num_steps,), q.dtype),
        scale=zero,
    )


def _lanczos_step(
    matvec, state: _Lanczos, *, reortho: str, block_size: int = 16, restart: bool = False
) -> _Lanczos:
    """One step of the three-term recurrence, with re-orthogonalisation and breakdown handling.

    A breakdown (β_j ≤ ε^{3/4}·‖T‖: the Krylov space is invariant) records β_j = 0 and continues
    with zero, or with ``restart`` (needs the stored basis) with a pseudo-random unit vector
    orthogonal to the basis, so that more eigenpairs can be found. Both keep
    ``A Q = Q T + r e_mᵀ`` valid and leave the quadrature weights of the start vector exact.
    """
    j, q = state.j, state.q
    w = matvec(q)
    alpha = _dot(q, w)
    w = w - alpha * q - state.beta_prev * state.q_prev
    if reortho == "full":
        w = _project_out_cgs(w, state.basis, j + 1, block_size)
    elif reortho == "blocked":
        w = _project_out_prefix(w, state.basis, j + 1, block_size)
    beta = jnp.linalg.norm(w)
    scale = jnp.maximum(state.scale, jnp.abs(alpha) + beta + state.beta_prev)
    breakdown = beta <= jnp.finfo(w.dtype).eps ** 0.75 * scale

    if restart:
        # Neither branch of the cond touches the basis; without a breakdown the projection runs
        # over 0 rows.
        fresh = jax.lax.cond(
            breakdown, lambda: _hashed(w.shape, w.dtype, j), lambda: jnp.zeros_like(w)
        )
        num_rows = jnp.where(breakdown, j + 1, 0)
        fallback = _normalize(_project_out_cgs(fresh, state.basis, num_rows, block_size))
    else:
        fallback = jnp.zeros_like(w)
    q_next = jnp.where(breakdown, fallback, w / jnp.where(breakdown, 1.0, beta))
    beta = jnp.where(breakdown, jnp.zeros_like(beta), beta)

    basis = state.basis
    if basis is not None:
        # A plain dynamic-update-slice (the row is clamped already), not ``.at[].set``'s scatter
        # with its out-of-bounds select.
        row = jnp.minimum(j + 1, basis.shape[0] - 1)
        basis = jax.lax.dynamic_update_slice_in_dim(basis, q_next[None], row, 0)
    return _Lanczos(
        j=j + 1,
        q=q_next,
        q_prev=q,
        beta_prev=beta,
        basis=basis,
        alphas=state.alphas.at[j].set(alpha),
        betas=state.betas.at[j].set(beta),
        scale=scale,
    )


def _basis_rows(num_steps: int, block_size: int) -> int:
    """Rows to allocate: ``num_steps + 1`` (q_m too), rounded up to whole blocks."""
    return -(-(num_steps + 1) // block_size) * block_size


# ---------------------------------------------------------------------------------------------
# Public API.


class Tridiagonal(NamedTuple):
    """A Lanczos decomposition ``A Q = Q T + r e_mᵀ`` after ``m`` steps.

    Attributes:
      basis: ``Q``, the Lanczos vectors q_0 … q_{m-1} as a pytree with leading axis ``m``, or
        ``None`` when it was not kept (``return_basis=False``).
      alphas: ``[m]`` diagonal of ``T``.
      betas: ``[m - 1]`` off-diagonal of ``T``.
      residual: ``r = β_m q_m``, the part of ``A q_{m-1}`` outside the Krylov space (a pytree
        like ``v0``); its norm is the last β and is ≈ 0 when ``m`` equals the dimension.
    """

    basis: Any
    alphas: jax.Array
    betas: jax.Array
    residual: Any


def lanczos_tridiag(
    matvec: MatVec,
    v0,
    num_steps: int,
    *,
    reortho: str = "full",
    block_size: int = 16,
    return_basis: bool = True,
) -> Tridiagonal:
    r"""Tridiagonalises a symmetric operator by ``num_steps`` Lanczos steps from ``v0``.

    .. math::
      q_0 = v_0 / \|v_0\|,\quad
      w_j = A q_j - \alpha_j q_j - \beta_{j-1} q_{j-1},\quad
      \alpha_j = \langle q_j, A q_j\rangle,\quad
      \beta_j = \|w_j\|,\quad q_{j+1} = w_j / \beta_j,

    so that ``A Q = Q T + β_m q_m e_mᵀ`` with ``T = tridiag(β, α, β)``. The eigenvalues of ``T``
    (Ritz values) approximate the extreme eigenvalues of ``A``; ``T``'s eigenvectors' first
    components squared are the Gauss-quadrature weights of the spectral measure of ``v0``.

    Args:
      matvec: ``v -> A v`` on pytrees shaped like ``v0`` (symmetric ``A``).
      v0: start vector (pytree); it is normalised here (a zero ``v0`` is replaced by a fixed
        pseudo-random vector).
      num_steps: ``m``, the number of matvecs and the size of ``T``; at most the dimension.
      reortho: ``'full'`` — a classical Gram-Schmidt pass of every new vector against the
        stored basis, repeated when it cancelled more than ``1 − 1/√2`` of the vector's norm
        (the DGKS criterion; orthonormal to working precision either way), summed over the
        filled blocks of ``block_size`` rows only (``O(j·n)`` at step ``j``); ``'blocked'`` —
        one block-Gram-Schmidt pass against the filled prefix, ``block_size`` vectors at a time
        (``O(j·n)`` too, never repeated, so not guaranteed orthonormal to working precision);
        ``'none'`` — the bare three-term recurrence: Ritz values of converged eigenvalues repeat
        ("ghosts"), which spoils eigenvector counts but not quadrature, and needs only ``O(n)``
        memory when ``return_basis=False``.
      block_size: rows per block of the re-orthogonalisation loops (the basis is allocated in
        whole blocks).
      return_basis: keep and return ``Q`` (``(m + 1)·n`` floats). Re-orthogonalisation stores the
        basis anyway.

    Returns:
      A :class:`Tridiagonal`.

    Raises:
      ValueError: on ``num_steps`` < 1 or larger than the dimension of ``v0``, or an unknown
        ``reortho``.

    References:
      Lanczos, "An iteration method for the solution of the eigenvalue problem", 1950;
      Golub & Van Loan, Matrix Computations, §10.1; Giraud et al., "Rounding error analysis of the
      classical Gram-Schmidt orthogonalization process" ("twice is enough"), 2005; Daniel, Gragg,
      Kaufman & Stewart, "Reorthogonalization and stable algorithms for updating the Gram-Schmidt
      QR factorization", Math. Comp. 30 (1976) (when to repeat a pass); the JAX
      precedent is matfree's ``decomp.tridiag_sym`` (Krämer et al.,
      https://arxiv.org/abs/2405.17277).

    .. note::
      Pure and jittable (``lax.fori_loop``; no host syncs); call it inside ``jax.jit`` — the
      eigen-solvers and :func:`jaxlab.curvature.density.slq` do. Vectors are held as one flat
      array in float32 (float64 for float64 parameters) and returned in ``v0``'s leaf dtypes.
      If the Krylov space becomes invariant after ``d < m`` steps (``v0`` has components along
      only ``d`` distinct eigenvalues), the remaining rows of ``Q`` are zero and ``T`` is padded
      with zeros: the quadrature of ``v0`` stays exact and ``A Q = Q T + r e_mᵀ`` still holds.
      Under ``pmap``/``shard_map`` pass an operator that averages over devices (``axis_name``)
      and the same ``v0`` on every device; every device then runs the identical recurrence.
    """
    _check_int("num_steps", num_steps)
    _check_reortho(reortho)
    _check_int("block_size", block_size)
    n = _num_elements(v0)
    if num_steps > n:
        raise ValueError(f"num_steps must be <= the dimension {n} of v0, got num_steps={num_steps}")
    keep = return_basis or reortho != "none"
    flat_matvec, ravel, unravel = _flatten(matvec, v0)
    state = _lanczos_init(ravel(v0), _basis_rows(num_steps, block_size) if keep else None,
                          num_steps)  # fmt: skip
    state = jax.lax.fori_loop(
        0,
        num_steps,
        lambda _, s: _lanczos_step(flat_matvec, s, reortho=reortho, block_size=block_size),
        state,
    )
    basis = jax.vmap(unravel)(state.basis[:num_steps]) if return_basis else None
    return Tridiagonal(
        basis=basis,
        alphas=state.alphas,
        betas=state.betas[:-1],
        residual=unravel(state.betas[-1] * state.q),
    )
