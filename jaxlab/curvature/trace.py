"""Stochastic trace and diagonal estimators: Hutchinson, Hutch++, XTrace and XDiag.

Every estimator takes a symmetric ``matvec`` (a pytree shaped like ``params_like`` to a pytree of
the same structure), a PRNG key and a budget ``num_probes`` of products with the operator, and
returns ``(estimate, stderr)``. There is no relative-change early stop (PyHessian's rule, which
stops after 5–37 probes with errors up to 8 %): the budget is fixed, so everything is a
``lax.scan`` with static shapes, and the standard error says how far to trust the result.

Products are taken ``batch_size`` at a time (``vmap`` inside a ``lax.scan`` over chunks); ``None``
takes one product per scan step, which is the fastest choice on CPU. All sums are accumulated in
float32 (float64 for float64 operators).

The formulas follow the papers and were checked against matfree's ``stochtrace`` (read, not copied)
and against dense NumPy transcriptions in ``tests/curvature/test_trace.py``.
"""

import functools
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jaxlab._tree import tree_vdot
from jaxlab.curvature.operators import _resolve_mask, hessian_operator

_PROBES = ("rademacher", "normal")
_METHODS = ("hutchinson", "hutchpp", "xtrace")


# ----------------------------------------------------------------------------------------------
# Argument checks (shared with sharpness.py and landscape.py)


def _check_int(name: str, value, minimum: int = 1) -> None:
    """Raises ``TypeError`` unless ``value`` is an int, ``ValueError`` unless it is ≥ minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {name}={value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value!r}")


def _check_optional_int(name: str, value, minimum: int = 1) -> None:
    if value is not None:
        _check_int(name, value, minimum)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {name}={value!r}")


def _check_tree(name: str, tree) -> None:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} must be a pytree with at least one array leaf, got {tree!r}")
    for leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{name} must have floating-point leaves, got a leaf of dtype {dtype}")


def _check_callable(name: str, value) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {name}={value!r}")


# ----------------------------------------------------------------------------------------------
# Private helpers


def _acc_dtype(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _rademacher(key, shape, dtype):
    """I.i.d. ±1 entries, one random bit each: ``1 − 2b`` for the bits ``b`` of 32-bit words.

    ``jax.random.rademacher`` draws a 32-bit word per entry (a Bernoulli from a uniform); taking
    all 32 bits of each word runs the generator (threefry) 32 times less, which is most of the cost
    of a probe next to a Hessian-vector product on CPU.
    """
    size = math.prod(shape)
    words = jax.random.bits(key, (-(-size // 32),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)[None, :]) & 1
    signs = 1 - 2 * bits.reshape(-1)[:size].astype(jnp.int32)
    return signs.reshape(shape).astype(dtype)


def _sample_probe(key, params_like, probe: str):
    """One random vector shaped like ``params_like``: Rademacher (±1), standard normal, or
    uniform on ``[-1, 1)`` (``probe='uniform'``) entries.

    Drawn as one flat vector (in float32, or float64 for float64 leaves) and cut into the leaves:
    one generator call whatever the number of leaves, which compiles several times faster on CPU
    than a threefry draw per leaf.
    """
    n, dtype, _, unravel = _flattener(params_like)
    if probe == "rademacher":
        flat = _rademacher(key, (n,), jnp.int8)
    elif probe == "normal":
        flat = jax.random.normal(key, (n,), dtype)
    else:
        flat = jax.random.uniform(key, (n,), dtype, -1.0, 1.0)
    return unravel(flat)


def _flat_probes(key, shape, probe: str, dtype):
    draw = _rademacher if probe == "rademacher" else jax.random.normal
    return draw(key, shape, dtype)


def _flattener(params_like):
    """(dimension, flat dtype, ravel, unravel) for pytrees shaped like ``params_like``.

    The flat vector is in the accumulation dtype (float32, or float64 if any leaf is float64);
    ``unravel`` casts back to each leaf's dtype.
    """
    leaves, treedef = jax.tree.flatten(params_like)
    shapes = [tuple(x.shape) for x in leaves]
    dtypes = [x.dtype for x in leaves]
    sizes = [math.prod(s) for s in shapes]
    flat_dtype = functools.reduce(jnp.promote_types, dtypes, jnp.dtype(jnp.float32))
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]

    def ravel(tree):
        return jnp.concatenate([jnp.ravel(x).astype(flat_dtype) for x in jax.tree.leaves(tree)])

    def unravel(vec):
        parts = [
            vec[lo:hi].reshape(shape).astype(dtype)
            for lo, hi, shape, dtype in zip(offsets[:-1], offsets[1:], shapes, dtypes, strict=True)
        ]
        return treedef.unflatten(parts)

    return offsets[-1], flat_dtype, ravel, unravel


def _flat_matmat(matvec, ravel, unravel, batch_size):
    """Columns-to-columns product ``(n, k) -> (n, k)`` through the pytree ``matvec``."""

    def matvec_flat(v):
        return ravel(matvec(unravel(v)))

    def matmat(mat):
        return jax.lax.map(matvec_flat, mat.T, batch_size=batch_size).T

    return matvec_flat, matmat


def _chunked_mean_var(fn: Callable, xs, batch_size: int | None):
    """Mean and unbiased variance of ``fn(x)`` over the leading axis of ``xs``, leaf by leaf.

    ``fn`` is vmapped over chunks of ``batch_size`` rows inside a ``lax.scan`` (a last, smaller
    chunk takes the remainder); chunk statistics are merged with Chan et al.'s pairwise update, so
    memory is one chunk of outputs and identical samples give a variance of zero up to rounding.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    b = 1 if batch_size is None else min(batch_size, n)
    num_full, rem = divmod(n, b)

    def stats(chunk):
        vals = jax.vmap(fn)(chunk)
        vals = jax.tree.map(lambda v: v.astype(_acc_dtype(v.dtype)), vals)
        mean = jax.tree.map(lambda v: jnp.mean(v, axis=0), vals)
        m2 = jax.tree.map(lambda v, mu: jnp.sum(jnp.square(v - mu[None]), axis=0), vals, mean)
        return mean, m2

    def merge(acc, count, new, new_count):
        (mean_a, m2_a), (mean_b, m2_b) = acc, new
        treedef = jax.tree.structure(mean_a)
        means, m2s = [], []
        for ma, sa, mb, sb in zip(*map(jax.tree.leaves, (mean_a, m2_a, mean_b, m2_b)), strict=True):
            n_a, n_b, n = (jnp.asarray(c, ma.dtype) for c in (count, new_count, count + new_count))
            delta = mb - ma
            means.append(ma + delta * (n_b / n))
            m2s.append(sa + sb + jnp.square(delta) * (n_a * n_b / n))
        return treedef.unflatten(means), treedef.unflatten(m2s)

    head = jax.tree.map(lambda x: x[: num_full * b].reshape(num_full, b, *x.shape[1:]), xs)
    shapes = jax.eval_shape(stats, jax.tree.map(lambda x: x[0], head))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(carry, chunk):
        count, acc = carry
        return (count + b, merge(acc, count, stats(chunk), b)), None

    (count, acc), _ = jax.lax.scan(body, (jnp.zeros((), jnp.int32), zeros), head)
    if rem:
        tail = jax.tree.map(lambda x: x[num_full * b :], xs)
        acc = merge(acc, count, stats(tail), rem)
    mean, m2 = acc
    var = jax.tree.map(lambda s: s / (n - 1), m2)
    return mean, var


def _stderr(var, n: int):
    return jax.tree.map(lambda v: jnp.sqrt(v / n), var)


def _check_common(matvec, params_like, num_probes, probe, batch_size, min_probes):
    _check_callable("matvec", matvec)
    _check_tree("params_like", params_like)
    _check_int("num_probes", num_probes, min_probes)
    _check_choice("probe", probe, _PROBES)
    _check_optional_int("batch_size", batch_size)


# ----------------------------------------------------------------------------------------------
# Hutchinson


def hutchinson_trace(matvec, params_like, key, *, num_probes, probe="rademacher", batch_size=None):
    r"""Hutchinson's estimate of ``tr(A)`` with its standard error.

    .. math::

        \widehat{\mathrm{tr}}(A) = \frac1N \sum_{i=1}^N v_i^\top A v_i,\qquad
        \mathrm{se} = \sqrt{\frac{1}{N(N-1)} \sum_i (v_i^\top A v_i - \widehat{\mathrm{tr}})^2},

    with i.i.d. probes :math:`v_i` of identity covariance (Rademacher or standard normal).

    Args:
      matvec: ``v -> A v`` on pytrees shaped like ``params_like`` (e.g. a Hessian-vector product).
      params_like: pytree of arrays (or ``jax.ShapeDtypeStruct``) giving the probes' shapes/dtypes.
      key: PRNG key. Under ``pmap``/``shard_map`` pass the same key on every device.
      num_probes: number of probes N = number of products with ``A`` (≥ 2).
      probe: ``'rademacher'`` (lower variance, the default) or ``'normal'``.
      batch_size: products per ``vmap``; ``None`` takes one per ``lax.scan`` step.

    Returns:
      ``(estimate, stderr)``, scalars in float32 (float64 for a float64 operator). ``stderr`` is the
      sample standard error of the mean above.

    References:
      Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
      smoothing splines", 1989. Avron & Toledo, https://arxiv.org/abs/1101.5765 (2011).
    """
    _check_common(matvec, params_like, num_probes, probe, batch_size, 2)

    def sample(k):
        v = _sample_probe(k, params_like, probe)
        return tree_vdot(v, matvec(v))

    mean, var = _chunked_mean_var(sample, jax.random.split(key, num_probes), batch_size)
    return mean, _stderr(var, num_probes)


def hutchinson_diagonal(
    matvec, params_like, key, *, num_probes, probe="rademacher", batch_size=None
):
    r"""Hutchinson's estimate of ``diag(A)`` as a pytree, with elementwise standard errors.

    .. math::

        \widehat{\mathrm{diag}}(A) = \frac1N \sum_{i=1}^N v_i \odot A v_i .

    With Rademacher probes each sample's k-th entry is :math:`A_{kk} + \sum_{j\ne k}
    A_{kj} v_{ik} v_{ij}`, so a diagonal matrix is recovered exactly (standard error 0 up to
    rounding).

    Args:
      matvec: ``v -> A v`` on pytrees shaped like ``params_like``.
      params_like: pytree of arrays (or ``jax.ShapeDtypeStruct``) shaped like the vectors.
      key: PRNG key (the same on every device under ``pmap``/``shard_map``).
      num_probes: number of probes = number of products (≥ 2).
      probe: ``'rademacher'`` (default) or ``'normal'``.
      batch_size: products per ``vmap``; ``None`` takes one per ``lax.scan`` step.

    Returns:
      ``(diagonal, stderr)``, two pytrees shaped like ``params_like`` in float32 (float64 leaves
      stay float64). Memory is one chunk of products plus two running pytrees.

    References:
      Bekas, Kokiopoulou & Saad, "An estimator for the diagonal of a matrix", 2007.
    """
    _check_common(matvec, params_like, num_probes, probe, batch_size, 2)

    def sample(k):
        v = _sample_probe(k, params_like, probe)
        av = matvec(v)
        return jax.tree.map(
            lambda a, b: a.astype(_acc_dtype(a.dtype)) * b.astype(_acc_dtype(a.dtype)), v, av
        )

    mean, var = _chunked_mean_var(sample, jax.random.split(key, num_probes), batch_size)
    return mean, _stderr(var, num_probes)


# ----------------------------------------------------------------------------------------------
# Hutch++


def hutchpp_trace(matvec, params_like, key, *, num_probes, probe="rademacher", batch_size=None):
    r"""Hutch++ estimate of ``tr(A)``: an exact trace on a sketched subspace plus Hutchinson.

    With :math:`k = \lfloor N/3 \rfloor` sketch probes :math:`S` and :math:`g = N - 2k` Hutchinson
    probes :math:`G`,

    .. math::

        Q = \mathrm{orth}(A S),\qquad
        \widehat{\mathrm{tr}} = \mathrm{tr}(Q^\top A Q) + \frac1g \sum_{j=1}^g
        \tilde g_j^\top A \tilde g_j,\quad \tilde g_j = (I - QQ^\top) g_j,

    which spends exactly N products. The error is :math:`O(1/N)` instead of Hutchinson's
    :math:`O(1/\sqrt N)` when the spectrum is dominated by a few large eigenvalues (the usual
    Hessian outliers), and no better when it decays slowly.

    Args:
      matvec: ``v -> A v`` on pytrees shaped like ``params_like``.
      params_like: pytree of arrays (or ``jax.ShapeDtypeStruct``) shaped like the vectors.
      key: PRNG key (the same on every device under ``pmap``/``shard_map``).
      num_probes: budget N of products (≥ 4, with ``N // 3`` ≤ the dimension).
      probe: ``'rademacher'`` (default) or ``'normal'``.
      batch_size: products per ``vmap`` inside ``lax.map``/``lax.scan``; ``None``: one at a time.

    Returns:
      ``(estimate, stderr)``. ``stderr`` is the sample standard error of the Hutchinson part given
      ``Q``: the estimator is unbiased conditionally on ``Q``, so this measures its error (the
      subspace trace has no variance once ``Q`` is drawn).

    References:
      Meyer, Musco, Musco & Woodruff, "Hutch++: optimal stochastic trace estimation",
      https://arxiv.org/abs/2010.09649 (2021), Algorithm 1.

    .. note:: The sketch stores ``N // 3`` flat vectors of the parameter dimension.
    """
    _check_common(matvec, params_like, num_probes, probe, batch_size, 4)
    n, dtype, ravel, unravel = _flattener(params_like)
    k = num_probes // 3
    g = num_probes - 2 * k
    if k > n:
        raise ValueError(
            f"hutchpp_trace needs num_probes // 3 <= dimension {n}, got num_probes={num_probes}; "
            "for so small an operator take the exact trace"
        )
    matvec_flat, matmat = _flat_matmat(matvec, ravel, unravel, batch_size)
    key_sketch, key_hutch = jax.random.split(key)
    sketch = _flat_probes(key_sketch, (n, k), probe, dtype)
    q, _ = jnp.linalg.qr(matmat(sketch))
    low_rank = jnp.sum(q * matmat(q))

    def sample(kk):
        w = _flat_probes(kk, (n,), probe, dtype)
        w = w - q @ (q.T @ w)
        return jnp.vdot(w, matvec_flat(w))

    mean, var = _chunked_mean_var(sample, jax.random.split(key_hutch, g), batch_size)
    return low_rank + mean, _stderr(var, g)


# ----------------------------------------------------------------------------------------------
# XTrace and XDiag


def _sketch(matmat, omega):
    """Y = AΩ = QR, Z = AQ, whether Y has full column rank, and the leave-one-out factors.

    ``s[:, i]`` is column i of R^{-T}, normalised; ``inv_norm[i] = s_iᵀ r_i = 1/‖(R^{-T})_{:,i}‖``.
    Removing test vector i from the sketch turns QQᵀ into Q(I - s_i s_iᵀ)Qᵀ (Epperly et al. §2).
    """
    n, m = omega.shape
    q, r = jnp.linalg.qr(matmat(omega))
    z = matmat(q)
    diag = jnp.abs(jnp.diagonal(r))
    full_rank = jnp.all(diag > jnp.max(diag) * max(n, m) * jnp.finfo(r.dtype).eps)
    # Only used when Y has full rank; a safe R keeps the unselected branch finite.
    safe_r = jnp.where(full_rank, r, jnp.eye(m, dtype=r.dtype))
    c = solve_triangular(safe_r, jnp.eye(m, dtype=r.dtype), trans="T", lower=False)
    c_norm = jnp.linalg.norm(c, axis=0)
    s = c / c_norm[None, :]
    return q, r, z, full_rank, s, 1.0 / c_norm


def _xtrace_estimates(matmat, omega, *, resphere: bool):
    r"""The m exchangeable leave-one-out XTrace estimates for test vectors ``omega`` (n × m).

    Estimate i is tr(Q_iᵀAQ_i) + ω̃_iᵀ(I − Q_iQ_iᵀ)A(I − Q_iQ_iᵀ)ω̃_i, with Q_i an orthonormal
    basis of A Ω_{−i}; ``resphere`` rescales the projected probe to norm √(n − m + 1) (valid for
    Gaussian probes only). Assumes A symmetric.
    """
    n, m = omega.shape
    q, r, z, full_rank, s, inv_norm = _sketch(matmat, omega)
    h = q.T @ z
    w = q.T @ omega
    sw = jnp.sum(s * w, axis=0)
    x = w - s * sw[None, :]
    trace_loo = jnp.trace(h) - jnp.sum(s * (h @ s), axis=0)
    residual = -jnp.sum(r * w, axis=0) + 2.0 * sw * inv_norm + jnp.sum(x * (h @ x), axis=0)
    if resphere:
        projected_sq = jnp.sum(jnp.square(omega), axis=0) - jnp.sum(jnp.square(x), axis=0)
        positive = projected_sq > 0
        scale = jnp.where(positive, (n - m + 1) / jnp.where(positive, projected_sq, 1.0), 1.0)
        residual = scale * residual
    # Rank-deficient sketch: range(A) ⊆ range(Q), so tr(QᵀAQ) is the exact trace.
    exact = jnp.full((m,), jnp.trace(h))
    return jnp.where(full_rank, trace_loo + residual, exact)


def _xdiag_estimates(matmat, omega):
    """The m leave-one-out XDiag estimates (rows), diag(Q_iQ_iᵀA) + ω_i ⊙ (I − Q_iQ_iᵀ)Aω_i."""
    q, _, z, full_rank, s, inv_norm = _sketch(matmat, omega)
    low_rank = jnp.sum(q * z, axis=1)
    qs = q @ s
    est = low_rank[None, :] - (qs * (z @ s)).T + (omega * qs * inv_norm[None, :]).T
    return jnp.where(full_rank, est, jnp.broadcast_to(low_rank[None, :], est.shape))


def _check_xtrace_budget(fn_name, num_probes, n):
    m = num_probes // 2
    if m > n:
        raise ValueError(
            f"{fn_name} needs num_probes // 2 <= dimension {n}, got num_probes={num_probes}; "
            "for so small an operator take the exact trace"
        )
    return m


def xtrace(matvec, params_like, key, *, num_probes, probe="normal", batch_size=None):
    r"""XTrace estimate of ``tr(A)`` for symmetric ``A``, with its leave-one-out standard error.

    With :math:`m = \lfloor N/2 \rfloor` test vectors :math:`\Omega` (2m products), XTrace averages
    the m exchangeable Hutch++-type estimates that use all vectors but one for the sketch and the
    left-out vector for the residual:

    .. math::

        t_i = \mathrm{tr}(Q_i^\top A Q_i) + \tilde\omega_i^\top (I - Q_iQ_i^\top) A
        (I - Q_iQ_i^\top) \tilde\omega_i,\quad Q_i = \mathrm{orth}(A\Omega_{-i}),\qquad
        \widehat{\mathrm{tr}} = \bar t,\quad \mathrm{se} = \mathrm{sd}(t)/\sqrt m .

    All m estimates come from one QR of :math:`A\Omega` and one product :math:`AQ` by rank-one
    downdates. With ``probe='normal'`` the projected test vector is resphered to norm
    :math:`\sqrt{n - m + 1}` (the paper's improved variant).

    Args:
      matvec: ``v -> A v`` on pytrees shaped like ``params_like``; ``A`` must be symmetric.
      params_like: pytree of arrays (or ``jax.ShapeDtypeStruct``) shaped like the vectors.
      key: PRNG key (the same on every device under ``pmap``/``shard_map``).
      num_probes: budget N of products (≥ 4, with ``N // 2`` ≤ the dimension).
      probe: ``'normal'`` (default, resphered) or ``'rademacher'`` (no resphering).
      batch_size: products per ``vmap`` inside ``lax.map``; ``None``: one at a time.

    Returns:
      ``(estimate, stderr)``; ``stderr`` is the paper's error estimate sd(t)/√m. When
      :math:`A\Omega` is rank-deficient the sketch holds the whole range of A and the estimate is
      exact (stderr 0).

    References:
      Epperly, Tropp & Webber, "XTrace: making the most of every sample in stochastic trace
      estimation", https://arxiv.org/abs/2301.07825 (2024).

    .. note:: Stores ``N // 2`` flat vectors of the parameter dimension.
    """
    _check_common(matvec, params_like, num_probes, probe, batch_size, 4)
    n, dtype, ravel, unravel = _flattener(params_like)
    m = _check_xtrace_budget("xtrace", num_probes, n)
    _, matmat = _flat_matmat(matvec, ravel, unravel, batch_size)
    omega = _flat_probes(key, (n, m), probe, dtype)
    est = _xtrace_estimates(matmat, omega, resphere=probe == "normal")
    return jnp.mean(est), jnp.std(est, ddof=1) / math.sqrt(m)


def xdiag(matvec, params_like, key, *, num_probes, probe="rademacher", batch_size=None):
    r"""XDiag estimate of ``diag(A)`` for symmetric ``A``, with elementwise standard errors.

    The diagonal counterpart of :func:`xtrace`: with :math:`m = \lfloor N/2 \rfloor` test vectors,

    .. math::

        d_i = \mathrm{diag}(Q_iQ_i^\top A) + \omega_i \odot (I - Q_iQ_i^\top) A\omega_i,\qquad
        \widehat{\mathrm{diag}} = \bar d,\quad \mathrm{se} = \mathrm{sd}(d)/\sqrt m

    (elementwise), from one QR of :math:`A\Omega` and one product :math:`AQ`.

    Args:
      matvec: ``v -> A v`` on pytrees shaped like ``params_like``; ``A`` must be symmetric.
      params_like: pytree of arrays (or ``jax.ShapeDtypeStruct``) shaped like the vectors.
      key: PRNG key (the same on every device under ``pmap``/``shard_map``).
      num_probes: budget N of products (≥ 4, with ``N // 2`` ≤ the dimension).
      probe: ``'rademacher'`` (default, as in the paper) or ``'normal'``.
      batch_size: products per ``vmap`` inside ``lax.map``; ``None``: one at a time.

    Returns:
      ``(diagonal, stderr)`` as pytrees shaped like ``params_like`` in the flat accumulation dtype
      (float32, or float64). ``stderr`` is the XTrace-style heuristic sd(d)/√m of the exchangeable
      leave-one-out estimates.

    References:
      Epperly, Tropp & Webber, https://arxiv.org/abs/2301.07825 (2024), §5 (XDiag).

    .. note:: Stores ``N // 2`` flat vectors of the parameter dimension, plus m of them for the
      per-sample diagonals.
    """
    _check_common(matvec, params_like, num_probes, probe, batch_size, 4)
    n, dtype, ravel, unravel = _flattener(params_like)
    m = _check_xtrace_budget("xdiag", num_probes, n)
    _, matmat = _flat_matmat(matvec, ravel, unravel, batch_size)
    omega = _flat_probes(key, (n, m), probe, dtype)
    est = _xdiag_estimates(matmat, omega)
    mean = jnp.mean(est, axis=0)
    stderr = jnp.std(est, axis=0, ddof=1) / math.sqrt(m)
    _, _, _, unravel_acc = _flattener(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, _acc_dtype(x.dtype)), params_like)
    )
    return unravel_acc(mean), unravel_acc(stderr)


# ----------------------------------------------------------------------------------------------
# Convenience entry point


@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "num_probes", "method", "probe", "batch_size", "axis_name"),
)
def _hessian_trace(
    loss_fn, params, batch, key, mask, *, num_probes, method, probe, batch_size, axis_name
):
    hvp = hessian_operator(loss_fn, params, batch, axis_name=axis_name, mask=mask)
    estimator = {"hutchinson": hutchinson_trace, "hutchpp": hutchpp_trace, "xtrace": xtrace}
    return estimator[method](
        hvp, params, key, num_probes=num_probes, probe=probe, batch_size=batch_size
    )


def hessian_trace(
    loss_fn,
    params,
    batch,
    *,
    key,
    num_probes=100,
    method="hutchinson",
    probe=None,
    batch_size=None,
    axis_name=None,
    mask=None,
):
    """``tr ∇²L(θ)`` of ``L = loss_fn(params, batch)`` with its standard error, jitted.

    Builds :func:`~jaxlab.curvature.operators.hessian_operator` (linearised once) and runs
    :func:`hutchinson_trace`, :func:`hutchpp_trace` or :func:`xtrace` in one compiled program
    (``loss_fn`` is static: pass the same object every call to compile once per shape).

    Args:
      loss_fn: ``(params, batch) -> scalar`` mean loss.
      params: point θ.
      batch: data.
      key: PRNG key (the same on every device under ``pmap``/``shard_map``).
      num_probes: budget of Hessian-vector products.
      method: ``'hutchinson'`` (default), ``'hutchpp'`` or ``'xtrace'``. Prefer the last two when
        a few outlier eigenvalues dominate the trace (fast spectral decay); with a flat spectrum
        they are no better than Hutchinson.
      probe: ``'rademacher'`` or ``'normal'``; ``None`` takes the method's default (Rademacher,
        normal for XTrace).
      batch_size: products per ``vmap``; ``None``: one per ``lax.scan`` step (fastest on CPU).
      axis_name: ``pmap``/``shard_map`` axis: the Hessian of the mean loss over all shards.
      mask: pytree of bools like ``params`` (or ``params -> mask``): the trace of that diagonal
        block of the Hessian (e.g. one layer), see :mod:`jaxlab.curvature.operators`.

    Returns:
      ``(estimate, stderr)`` as float32 scalars (float64 for float64 params); see each method
      for how ``stderr`` is defined.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlab.curvature.trace import hessian_trace
      >>> loss = lambda p, b: 0.5 * jnp.sum(b * p ** 2)
      >>> est, se = hessian_trace(loss, jnp.ones(4), jnp.arange(1.0, 5.0), key=jax.random.key(0),
      ...                         num_probes=8)
      >>> float(est), float(se)  # a diagonal Hessian: Rademacher probes are exact
      (10.0, 0.0)
    """
    _check_callable("loss_fn", loss_fn)
    _check_choice("method", method, _METHODS)
    if probe is None:
        probe = "normal" if method == "xtrace" else "rademacher"
    _check_tree("params", params)
    _check_int("num_probes", num_probes, 2 if method == "hutchinson" else 4)
    _check_choice("probe", probe, _PROBES)
    _check_optional_int("batch_size", batch_size)
    return _hessian_trace(
        loss_fn, params, batch, key, _resolve_mask(mask, params), num_probes=num_probes,
        method=method, probe=probe, batch_size=batch_size, axis_name=axis_name,
    )  # fmt: skip
