"""Eigen-solvers for symmetric operators on pytrees: Lanczos, LOBPCG and power iteration.

All solvers are pure and jittable, run in ``lax.while_loop`` (no host syncs) and stop on a
residual, not on the change of the estimate (PyHessian's rule, which stops 0.2–0.5 % low on
λ_max when λ₂/λ₁ ≥ 0.8; anchors_hessian.md §6). They return an :class:`EigenResult`.

Convergence rule (all solvers): eigenpair ``(θ_i, y_i)`` has converged when
``‖A y_i − θ_i y_i‖ ≤ tol · ‖A‖_est``, where ``‖A‖_est`` is the largest Ritz value in magnitude
seen by the solver. Measuring against ``‖A‖`` (a backward error) lets zero and tiny eigenvalues
converge too; since the eigenvalue error is at most the residual and usually its square over the
spectral gap, ``tol=1e-6`` gives eigenvalues to ≈ 1e-6 relative of λ_max or better.

Why our own Lanczos rather than matfree's ``decomp.tridiag_sym``: the Ritz-residual stop needs a
``while_loop`` that checks after each step (``tridiag_sym`` runs a fixed number of matvecs),
``reortho='blocked'`` and restart on breakdown are not offered there, and it would add a
dependency for ~100 lines.
"""

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.curvature.lanczos import (
    MatVec,
    _basis_rows,
    _check_int,
    _check_reortho,
    _combine_prefix,
    _dot,
    _flatten,
    _hashed,
    _lanczos_init,
    _lanczos_step,
    _normalize,
    _num_elements,
)
from jaxlab.curvature.operators import (
    _apply_mask,
    _check_like,
    _mask_size,
    _resolve_mask,
    _stacked_or_single_hessian,
)
from jaxlab.curvature.trace import _sample_probe
from jaxlab.optim._checks import check_non_negative

WHICH = ("largest", "smallest", "magnitude")


class EigenResult(NamedTuple):
    """Eigenpairs of a symmetric operator.

    Attributes:
      eigenvalues: ``[k]``; descending for ``which='largest'`` and ``'magnitude'`` (by ``|λ|``),
        ascending for ``'smallest'``.
      eigenvectors: pytree like the start vector with a leading ``k`` axis, unit norm.
      residuals: ``[k]`` residual norms ``‖A y − λ y‖`` (Lanczos: the Ritz estimate
        ``|β_m s_{m,i}|``, exact in exact arithmetic; LOBPCG and power: computed from the
        iterates).
      num_matvecs: number of operator applications (int32 scalar).
      converged: True when every residual met the tolerance.
    """

    eigenvalues: jax.Array
    eigenvectors: Any
    residuals: jax.Array
    num_matvecs: jax.Array
    converged: jax.Array


def _check_which(which: str, allowed=WHICH) -> None:
    if which not in allowed:
        raise ValueError(f"which must be one of {allowed}, got which={which!r}")


def _check_k(k, n: int) -> None:
    _check_int("k", k)
    if k > n:
        raise ValueError(f"k must be <= the dimension {n}, got k={k}")


def _scores(theta, which: str):
    if which == "largest":
        return theta
    if which == "smallest":
        return -theta
    return jnp.abs(theta)


# ---------------------------------------------------------------------------------------------
# Lanczos with a Ritz-residual stop.


def _ritz(alphas, betas, j, size: int, k: int, which: str):
    """Wanted Ritz pairs of ``T_j`` (``j ≤ size``), from a ``size × size`` padded eigenproblem.

    Rows ``≥ j`` are decoupled and set to a sentinel above every Gershgorin disc, so the active
    eigenvalues are the first ``j`` in ascending order and no degeneracy mixes the two blocks.
    Returns ``(θ [k], Ritz residuals [k], ‖T‖, eigenvectors [size, k])``.
    """
    a, b = alphas[:size], betas[:size]
    idx = jnp.arange(size)
    active = idx < j
    e = jnp.where(idx[:-1] + 1 < j, b[:-1], jnp.zeros_like(b[:-1]))
    e_pad = jnp.pad(jnp.abs(e), 1)
    gersh = jnp.max(jnp.where(active, jnp.abs(a) + e_pad[:-1] + e_pad[1:], 0.0))
    d = jnp.where(active, a, 2.0 * gersh + jnp.finfo(a.dtype).tiny)
    t = jnp.diag(d) + jnp.diag(e, 1) + jnp.diag(e, -1)
    evals, evecs = jnp.linalg.eigh(t)
    score = jnp.where(active, _scores(evals, which), -jnp.inf)
    _, sel = jax.lax.top_k(score, k)
    last = jax.lax.dynamic_index_in_dim(evecs, j - 1, axis=0, keepdims=False)[sel]
    beta_j = jax.lax.dynamic_index_in_dim(betas, j - 1, keepdims=False)
    norm = jnp.maximum(jnp.abs(evals[0]), jnp.abs(jax.lax.dynamic_index_in_dim(evals, j - 1)[0]))
    return evals[sel], jnp.abs(beta_j * last), norm, evecs[:, sel]


def _bucket_sizes(k: int, max_steps: int) -> tuple[int, ...]:
    """Step limits of the solver's phases: 32 (or ``2k``), then ``max_steps``.

    The first phase keeps a basis of that many rows and checks convergence on a 32 × 32 padded
    eigenproblem; only a solve that needs more steps pays for the ``max_steps`` ones.
    """
    small = min(max_steps, max(2 * k, 32))
    return (small,) if small == max_steps else (small, max_steps)


def lanczos_eigenvalues(
    matvec: MatVec,
    v0,
    *,
    k: int = 1,
    which: str = "largest",
    max_steps: int = 100,
    tol: float = 1e-6,
    reortho: str = "full",
    block_size: int = 16,
) -> EigenResult:
    r"""The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with a Ritz-residual stop.

    After each step ``j ≥ k`` the tridiagonal ``T_j = S Θ Sᵀ`` gives Ritz values ``θ_i`` and the
    residual norms of the Ritz vectors ``y_i = Q_j s_i`` for free:

    .. math::
      \|A y_i - \theta_i y_i\| = \beta_j\, |e_j^\top s_i|,

    and the loop stops when the ``k`` wanted ones are ``≤ tol · ‖T_j‖``, or after ``max_steps``
    (clipped to the dimension, where Lanczos is exact). Ritz vectors are formed once at the end.
    On λ₁ of a trained MLP, 20 steps give 1e-6 relative error where 100 power iterations are
    needed (anchors_hessian.md §6).

    Args:
      matvec: symmetric ``v -> A v`` on pytrees like ``v0``.
      v0: start vector (e.g. random; for tracking, the previous top eigenvector or the sum of
        the previous ones). Restricting it to a subspace that ``A`` leaves invariant (a mask)
        restricts the solver to it.
      k: number of eigenpairs.
      which: ``'largest'`` (algebraic), ``'smallest'`` (algebraic: most negative) or
        ``'magnitude'`` (largest ``|λ|``).
      max_steps: maximum number of matvecs. Time and memory follow the steps taken: the first
        ``max(32, 2k)`` steps store their vectors in a basis of that size; a solve that needs
        more copies it into one of ``max_steps + 1`` rows (rounded up to whole blocks).
      tol: relative Ritz-residual tolerance; 0 stops only on an exactly zero residual estimate
        (an invariant subspace, or float32 underflow of β_j·s_jk), else after ``max_steps``.
      reortho: ``'full'`` (default; needed for reliable ``k > 1``), ``'blocked'`` or ``'none'``
        (Ritz values of converged eigenvalues then repeat, so ``k > 1`` may return copies). See
        :func:`jaxlab.curvature.lanczos.lanczos_tridiag`.
      block_size: rows per block of the re-orthogonalisation and Ritz-vector loops, which read
        only the blocks holding filled rows (so the cost follows the steps taken, not
        ``max_steps``).

    Returns:
      :class:`EigenResult` (residuals are the Ritz estimates).

    Raises:
      ValueError: for ``k < 1``, ``k`` above the dimension or ``max_steps``, unknown ``which`` or
        ``reortho``, negative ``tol``.

    References:
      Paige, "Computational variants of the Lanczos method for the eigenproblem", 1972; Parlett,
      The Symmetric Eigenvalue Problem, ch. 13; Ghorbani, Krishnan & Xiao, "An investigation into
      neural net optimization via Hessian eigenvalue density", https://arxiv.org/abs/1901.10159.

    .. note::
      Call inside ``jax.jit``; compiles once per shape. A breakdown before ``k`` pairs are found
      (``v0`` in an invariant subspace) restarts from a pseudo-random vector orthogonal to the
      basis.
      The convergence check solves a padded tridiagonal eigenproblem of size 32 while ``j ≤ 32``
      and of size ``max_steps`` after, which stays small next to a Hessian product. Why two
      phases: zero-filling a ``max_steps``-row basis of a 85k-parameter model costs ≈ 15 ms on
      CPU (fresh pages), more than three Hessian products, in a solve that typically takes 15.
    """
    n = _num_elements(v0)
    _check_int("max_steps", max_steps)
    _check_k(k, n)
    _check_which(which)
    _check_reortho(reortho)
    check_non_negative("tol", tol)
    max_steps = min(max_steps, n)
    if k > max_steps:
        raise ValueError(f"k must be <= max_steps, got k={k}, max_steps={max_steps}")
    sizes = _bucket_sizes(k, max_steps)
    flat_matvec, ravel, unravel = _flatten(matvec, v0)
    step = partial(_lanczos_step, flat_matvec, reortho=reortho, block_size=block_size, restart=True)
    skip = lambda *_: jnp.asarray(False)  # noqa: E731

    def run(lz, size):
        """Steps until the ``k`` wanted Ritz pairs of ``T_j`` (padded to ``size``) converge."""

        def converged(alphas, betas, j):
            res, norm = _ritz(alphas, betas, j, size, k, which)[1:3]
            return jnp.all(res <= tol * norm)

        def body(carry):
            lz = step(carry[0])
            # Only T's entries enter the cond, not the state holding the basis.
            return lz, jax.lax.cond(lz.j >= k, converged, skip, lz.alphas, lz.betas, lz.j)

        return jax.lax.while_loop(
            lambda carry: (carry[0].j < size) & ~carry[1], body, (lz, jnp.asarray(False))
        )

    def finish(lz, size):
        theta, res, norm, vecs = _ritz(lz.alphas, lz.betas, lz.j, size, k, which)
        vecs = jnp.zeros((lz.basis.shape[0], k), vecs.dtype).at[:size].set(vecs)  # 0 on rows ≥ j
        return EigenResult(
            eigenvalues=theta,
            eigenvectors=jax.vmap(unravel)(_combine_prefix(vecs, lz.basis, lz.j, block_size)),
            residuals=res,
            num_matvecs=lz.j,
            converged=jnp.all(res <= tol * norm),
        )

    def more(lz):
        basis = jnp.zeros((_basis_rows(max_steps, block_size), lz.basis.shape[1]), lz.basis.dtype)
        basis = jax.lax.dynamic_update_slice_in_dim(basis, lz.basis, 0, 0)
        return finish(run(lz._replace(basis=basis), max_steps)[0], max_steps)

    # Most solves converge within sizes[0] steps: they run on a basis of that many rows, and the
    # max_steps-row basis (whose zero-filling alone costs more than a few steps on CPU) is
    # allocated only when they do not.
    lz, done = run(_lanczos_init(ravel(v0), _basis_rows(sizes[0], block_size), max_steps), sizes[0])
    if len(sizes) == 1:
        return finish(lz, sizes[0])
    return jax.lax.cond(done, partial(finish, size=sizes[0]), more, lz)


# ---------------------------------------------------------------------------------------------
# LOBPCG: block solver for top-k with warm start.


def _gram(a, b):
    return _dot(a, b.T)


def _project_out_block(x, bx, z, bz, passes: int = 2):
    """``z ← z − X Xᵀ z`` (and the same combination on ``Bz``), for orthonormal rows ``X``."""
    for _ in range(passes):
        c = _gram(z, x)
        z, bz = z - _dot(c, x), bz - _dot(c, bx)
    return z, bz


def _svqb(z, bz, drop: float):
    """Orthonormalises the rows of ``z`` through the eigendecomposition of their Gram matrix.

    Rows are first scaled to unit norm (zero rows stay zero); directions whose Gram eigenvalue
    is ``≤ drop · max`` are dropped (returned as zero rows). Returns ``(z, bz, keep)`` with
    ``keep`` the mask of non-zero rows. Stathopoulos & Wu, "A block orthogonalization procedure
    with constant synchronization requirements", 2002.
    """
    g = _gram(z, z)
    d = jnp.sqrt(jnp.maximum(jnp.diag(g), 0.0))
    dinv = jnp.where(d > 0, 1.0 / jnp.where(d > 0, d, 1.0), 0.0)
    g = g * dinv[:, None] * dinv[None, :]
    mu, v = jnp.linalg.eigh(0.5 * (g + g.T))
    keep = mu > drop * jnp.maximum(jnp.max(mu), jnp.finfo(mu.dtype).tiny)
    w = dinv[:, None] * v * jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, mu, 1.0)), 0.0)[None]
    return _dot(w.T, z), _dot(w.T, bz), keep


def _rayleigh_ritz(s, bs, keep, k: int):
    """Top-``k`` Ritz pairs on the rows ``s`` (orthonormal where kept); dropped rows never win."""
    m = _gram(s, bs)
    m = jnp.where(keep[:, None] & keep[None, :], 0.5 * (m + m.T), 0.0)
    m = m - jnp.diag(jnp.where(keep, 0.0, 2.0 * jnp.max(jnp.abs(m)) + 1.0))
    evals, evecs = jnp.linalg.eigh(m)
    norm = jnp.max(jnp.where(keep, jnp.abs(evals), 0.0))
    return evals[::-1][:k], evecs[:, ::-1][:, :k], norm


def lobpcg_eigenvalues(
    matvec: MatVec,
    x0,
    *,
    which: str = "largest",
    max_steps: int = 100,
    tol: float = 1e-6,
    key: jax.Array | None = None,
) -> EigenResult:
    r"""The ``k`` extreme eigenpairs by LOBPCG, started from a block (warm start for tracking).

    Each iteration applies ``A`` to the ``k`` residuals ``R = A X − X Θ`` and solves the
    Rayleigh-Ritz problem on ``span[X, R, P]`` (``P`` the previous update direction):

    .. math::
      [X, P] \leftarrow \text{top-}k\ \text{Ritz vectors of } A \text{ on } [X, R, P],

    keeping every block orthonormal with SVQB (rank-deficient directions are dropped, not
    divided by ≈ 0). Started from last step's eigenvectors, it needs a few iterations where a
    cold start needs tens: this is the central-flows tracker's method.

    Args:
      matvec: symmetric ``v -> A v`` on single pytree vectors (applied to the block with
        ``jax.vmap``).
      x0: start block: a pytree with a leading axis ``k`` (the number of eigenpairs), e.g. the
        previous :class:`EigenResult`'s eigenvectors, or random; linearly dependent rows are
        replaced by independent directions (pseudo-random, or drawn from ``key``).
      which: ``'largest'`` or ``'smallest'`` (algebraic; LOBPCG on ``-A``).
      max_steps: maximum iterations (each costs ``k`` matvecs; the start costs ``k``).
      tol: relative residual tolerance (see the module notes). In float32, residuals floor near
        1e-6·‖A‖; use ``tol ≥ 1e-5`` there.
      key: for replacement directions (default: a fixed pseudo-random hash).

    Returns:
      :class:`EigenResult` with exact residual norms of the returned vectors (from the carried
      ``A X``).

    Raises:
      ValueError: unknown ``which``, ``k`` above the dimension, ``max_steps < 1``, ``tol < 0``.

    References:
      Knyazev, "Toward the optimal preconditioned eigensolver: LOBPCG", 2001,
      https://doi.org/10.1137/S1064827500366124; Hetmaniuk & Lehoucq, "Basis selection in
      LOBPCG", 2006; Duersch et al., "A robust and efficient implementation of LOBPCG",
      https://arxiv.org/abs/1704.07458; central flows (Cohen, Damian et al.),
      https://arxiv.org/abs/2410.24206.

    .. note::
      Memory: about ``9k`` vectors (``X, R, P`` and their products). ``jax.experimental.sparse.
      linalg.lobpcg_standard`` is not used: it wants flat arrays, has no smallest mode, requires
      ``5k < n`` and jits with the operator as a static argument (a recompile per parameter
      point).
    """
    _check_which(which, ("largest", "smallest"))
    _check_int("max_steps", max_steps)
    check_non_negative("tol", tol)
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(x0)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"x0 leaves must share a leading k axis, got leading sizes {sizes}")
    (k,) = sizes
    n = _num_elements(x0) // k
    _check_k(k, n)
    sign = 1.0 if which == "largest" else -1.0
    flat_matvec, ravel, unravel = _flatten(matvec, jax.tree.map(lambda x: x[0], x0))
    bmatvec = jax.vmap(lambda x: sign * flat_matvec(x))
    x = jax.vmap(ravel)(x0)
    drop = float(np.sqrt(np.finfo(x.dtype).eps))

    # Orthonormal start; dependent rows of x0 are replaced by orthogonal fill directions.
    x, _, keep = _svqb(x, x, drop)
    if key is None:
        fill = _hashed(x.shape, x.dtype, 0)
    else:
        fill = jax.random.normal(key, x.shape, x.dtype)
    fill, _ = _project_out_block(x, x, fill, fill)
    fill, _, _ = _svqb(fill, fill, drop)
    x = jnp.where(keep[:, None], x, fill)
    bx = bmatvec(x)
    theta, y, norm = _rayleigh_ritz(x, bx, jnp.ones((k,), bool), k)
    x, bx = _dot(y.T, x), _dot(y.T, bx)

    def residual(x, bx, theta):
        r = bx - theta[:, None] * x
        return r, jnp.linalg.norm(r, axis=1)

    _, res = residual(x, bx, theta)
    p = jnp.zeros_like(x)
    init = (x, bx, p, p, theta, res, norm, jnp.zeros((), jnp.int32))

    def cond(carry):
        *_, res, norm, it = carry
        return (it < max_steps) & ~jnp.all(res <= tol * norm)

    def body(carry):
        x, bx, p, bp, theta, _, _, it = carry
        r, res = residual(x, bx, theta)
        r = r * jnp.where(res > 0, 1.0 / jnp.where(res > 0, res, 1.0), 0.0)[:, None]
        w, bw = jnp.concatenate([r, p]), jnp.concatenate([bmatvec(r), bp])
        w, bw = _project_out_block(x, bx, w, bw)
        w, bw, _ = _svqb(w, bw, drop)
        w, bw = _project_out_block(x, bx, w, bw, passes=1)
        w, bw, keep_w = _svqb(w, bw, drop)
        s, bs = jnp.concatenate([x, w]), jnp.concatenate([bx, bw])
        theta, y, norm = _rayleigh_ritz(s, bs, jnp.concatenate([jnp.ones((k,), bool), keep_w]), k)
        y_p = y.at[:k].set(0.0)
        x, bx, p, bp = _dot(y.T, s), _dot(y.T, bs), _dot(y_p.T, s), _dot(y_p.T, bs)
        _, res = residual(x, bx, theta)
        return x, bx, p, bp, theta, res, norm, it + 1

    x, _, _, _, theta, res, norm, it = jax.lax.while_loop(cond, body, init)
    return EigenResult(
        eigenvalues=sign * theta,
        eigenvectors=jax.vmap(unravel)(x),
        residuals=res,
        num_matvecs=(k * (it + 1)).astype(jnp.int32),
        converged=jnp.all(res <= tol * norm),
    )


# ---------------------------------------------------------------------------------------------
# Power iteration.


def power_iteration(matvec: MatVec, v0, *, max_steps: int = 100, tol: float = 1e-6) -> EigenResult:
    r"""The dominant eigenpair (largest ``|λ|``) by power iteration with a residual stop.

    .. math::
      v_{t+1} = A v_t / \|A v_t\|,\qquad \theta_t = \langle v_t, A v_t\rangle,\qquad
      \text{stop when } \|A v_t - \theta_t v_t\| \le \text{tol}\,|\theta_t|.

    Converges like ``(λ₂/λ₁)^t``: prefer :func:`lanczos_eigenvalues`, which needs far fewer
    matvecs for the same accuracy. Provided as the classical baseline (optax's
    ``power_iteration`` has the same stop but no eigenvector/residual result).

    Args:
      matvec: symmetric ``v -> A v``.
      v0: start vector (pytree).
      max_steps: maximum matvecs.
      tol: relative residual tolerance.

    Returns:
      :class:`EigenResult` with ``k = 1``.

    References:
      von Mises & Pollaczek-Geiringer, 1929; Golub & Van Loan, Matrix Computations, §8.2.1.
    """
    _check_int("max_steps", max_steps)
    check_non_negative("tol", tol)
    flat_matvec, ravel, unravel = _flatten(matvec, v0)

    def evaluate(v):
        w = flat_matvec(v)
        theta = _dot(v, w)
        return w, theta, jnp.linalg.norm(w - theta * v)

    def cond(carry):
        _, _, theta, res, t = carry
        return (t < max_steps) & (res > tol * jnp.abs(theta))

    def body(carry):
        _, w, *_, t = carry
        v = _normalize(w)
        w, theta, res = evaluate(v)
        return v, w, theta, res, t + 1

    x0 = ravel(v0)
    v = _normalize(jnp.where(jnp.any(x0 != 0), x0, _hashed(x0.shape, x0.dtype, -1)))
    w, theta, res = evaluate(v)
    v, _, theta, res, t = jax.lax.while_loop(
        cond, body, (v, w, theta, res, jnp.ones((), jnp.int32))
    )
    return EigenResult(
        eigenvalues=theta[None],
        eigenvectors=jax.vmap(unravel)(v[None]),
        residuals=res[None],
        num_matvecs=t,
        converged=res <= tol * jnp.abs(theta),
    )


# ---------------------------------------------------------------------------------------------
# Convenience entry point.


@partial(
    jax.jit,
    static_argnames=(
        "loss_fn",
        "k",
        "which",
        "method",
        "max_steps",
        "reortho",
        "axis_name",
        "stacked",
    ),
)
def _hessian_eigenvalues(
    loss_fn, params, batch, key, init, mask, batch_weights, tol,
    *, k, which, method, max_steps, reortho, axis_name, stacked,
):  # fmt: skip
    op = _stacked_or_single_hessian(
        loss_fn, params, batch, stacked, batch_weights, axis_name=axis_name, mask=mask
    )
    if method == "lanczos":
        v0 = (
            _sample_probe(key, params, "normal")
            if init is None
            else jax.tree.map(lambda x: jnp.sum(x, axis=0), init)
        )
        return lanczos_eigenvalues(
            op,
            _apply_mask(mask, v0),
            k=k,
            which=which,
            max_steps=max_steps,
            tol=tol,
            reortho=reortho,
        )
    x0 = init
    if x0 is None:
        x0 = jax.vmap(lambda kk: _sample_probe(kk, params, "normal"))(jax.random.split(key, k))
    return lobpcg_eigenvalues(
        op,
        _apply_mask(mask, x0, batch_dims=1),
        which=which,
        max_steps=max_steps,
        tol=tol,
    )


def hessian_eigenvalues(
    loss_fn: Callable,
    params,
    batch,
    *,
    k: int = 1,
    key: jax.Array | None = None,
    which: str = "largest",
    method: str = "lanczos",
    init=None,
    max_steps: int | None = None,
    tol: float = 1e-6,
    reortho: str = "full",
    axis_name: str | None = None,
    mask=None,
    stacked: bool = False,
    batch_weights=None,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of the Hessian of ``loss_fn(params, batch)``, jitted.

    Builds :func:`~jaxlab.curvature.operators.hessian_operator` (linearised once) and runs
    :func:`lanczos_eigenvalues` (default) or :func:`lobpcg_eigenvalues` in one compiled program.
    Pass the same ``loss_fn`` object every call: it is a static argument, so a second call with
    the same shapes does not compile again.

    Args:
      loss_fn: ``(params, batch) -> scalar`` (BatchNorm mode: see
        :mod:`jaxlab.curvature.operators`).
      params: point θ.
      batch: data; with ``stacked=True`` a stack of batches (leading axis) averaged by
        :func:`~jaxlab.curvature.operators.dataset_operator` with ``batch_weights``.
      k: number of eigenpairs.
      key: PRNG key for the random start; required unless ``init`` is given. Use the same key
        on every device under ``pmap``/``shard_map``.
      which: ``'largest'`` (descending), ``'smallest'`` (ascending), or ``'magnitude'``
        (Lanczos only).
      method: ``'lanczos'`` (one Krylov run, Ritz-residual stop) or ``'lobpcg'`` (block solver;
        best for tracking with ``init``).
      init: warm start, e.g. the previous result's ``eigenvectors`` (pytree with leading axis
        ``k``): LOBPCG starts from the block, Lanczos from the sum of its rows.
      max_steps: Lanczos steps (default 100, clipped to the dimension) or LOBPCG iterations
        (default 100).
      tol: relative residual tolerance (see :mod:`jaxlab.curvature.eigen`).
      reortho: Lanczos re-orthogonalisation, ``'full' | 'blocked' | 'none'``.
      axis_name: ``pmap``/``shard_map`` axis; the product is averaged across it.
      mask: restrict to a parameter block (pytree of bools or callable); start vectors are
        masked so the result is the spectrum of the sub-block.
      stacked: ``batch`` holds stacked batches.
      batch_weights: weights of the stacked batches (their sizes); equal when None.

    Returns:
      :class:`EigenResult`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlab.curvature.eigen import hessian_eigenvalues
      >>> loss = lambda p, b: 0.5 * jnp.sum(b * p["w"] ** 2)
      >>> res = hessian_eigenvalues(loss, {"w": jnp.ones(4)}, jnp.arange(1.0, 5.0), k=2,
      ...                           key=jax.random.key(0))
      >>> [round(float(x), 4) for x in res.eigenvalues]
      [4.0, 3.0]
    """
    if method not in ("lanczos", "lobpcg"):
        raise ValueError(f"method must be 'lanczos' or 'lobpcg', got method={method!r}")
    _check_which(which, WHICH if method == "lanczos" else ("largest", "smallest"))
    _check_reortho(reortho)
    check_non_negative("tol", tol)
    n = _mask_size(mask, params)
    n = _num_elements(params) if n is None else n
    if n == 0:
        raise ValueError("mask must select at least one entry, got an all-False mask")
    _check_k(k, n)
    mask = _resolve_mask(mask, params)
    if max_steps is None:
        max_steps = min(100, n) if method == "lanczos" else 100
    _check_int("max_steps", max_steps)
    if method == "lanczos":
        max_steps = min(max_steps, n)
        if k > max_steps:
            raise ValueError(f"k must be <= max_steps, got k={k}, max_steps={max_steps}")
    if init is None and key is None:
        raise ValueError("key is required when init is None, got key=None")
    if init is not None:
        _check_like(init, params, "init")
        lead = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(init)}
        if lead != {k}:
            raise ValueError(f"init must have a leading axis of size k={k}, got sizes {lead}")
    if stacked and batch_weights is not None:
        batch_weights = jnp.asarray(batch_weights)
    return _hessian_eigenvalues(
        loss_fn, params, batch, key, init, mask, batch_weights, tol,
        k=k, which=which, method=method, max_steps=max_steps, reortho=reortho,
        axis_name=axis_name, stacked=stacked,
    )  # fmt: skip
