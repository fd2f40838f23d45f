"""Curvature operators: Hessian-, Gauss-Newton- and empirical-Fisher-vector products on pytrees.

Each factory takes ``(params, batch)`` explicitly, linearises the model **once** and returns a
pure ``matvec(v) -> pytree``; every product then reuses the stored linearisation (no new forward
pass). Vectors are pytrees shaped like ``params``. Build the operator and run the solver inside
one ``jax.jit`` (the ``hessian_*`` convenience functions do): the returned closure is not meant to
be jitted on its own.

Conventions shared by every operator:

* ``axis_name``: under ``pmap`` / ``shard_map``, each device holds a shard of the batch and the same
  ``params`` and ``v``; the product is ``pmean``-averaged over the axis, i.e. the operator of the
  mean loss over all shards (exact when the shards have equal size and ``loss_fn`` returns the
  mean over its shard). The result is identical on every device.
* ``mask``: a pytree of bools like ``params`` (leaves may be Python bools or bool arrays of the
  leaf's shape), or a callable ``params -> mask`` as in ``optax.masked``. The operator becomes
  ``P A P`` with ``P`` the projection on the selected entries: its spectrum is that of the
  sub-block ``A[S, S]`` plus zeros. Solvers started from a masked vector stay inside the block and
  never see those zeros (the ``hessian_*`` functions mask their start vectors). The full product
  is still computed, then masked.
* dtype: products are computed in the parameters' dtype (float64 when ``jax.enable_x64`` is on and
  the params are float64); ``v`` is cast to it.
* **BatchNorm and other train/eval-dependent layers**: the operator differentiates exactly the
  function you pass, so the mode is chosen by what ``loss_fn`` / ``apply_fn`` closes over.
  *Eval mode* (``train=False``, running statistics as constants) gives the Hessian of the
  inference-time loss, which is what PyHessian measures (it forces ``model.eval()``). *Train mode*
  (``train=True``, ``mutable=['batch_stats']`` with the updated statistics discarded) gives the
  Hessian of the loss that training actually descends, including the dependence of the batch
  statistics on the parameters (init2winit, Ghorbani et al. 2019); it depends on the batch
  composition, so use one fixed batch per operator. Dropout must be disabled or use a fixed key,
  otherwise the "operator" is not symmetric or not even linear.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlab._tree import accumulation_dtype
from jaxlab.curvature.lanczos import MatVec

Mask = Any  # pytree of bools like params, or Callable[[params], pytree of bools]


def _resolve_mask(mask, params):
    """Validates a mask against ``params`` before any tracing; returns bool arrays or None."""
    if mask is None:
        return None
    if callable(mask):
        mask = mask(params)
    p_def, m_def = jax.tree.structure(params), jax.tree.structure(mask)
    if p_def != m_def:
        raise ValueError(f"mask must have the structure of params {p_def}, got mask={m_def}")
    leaves = []
    for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params), strict=True):
        m = jnp.asarray(m)
        if m.dtype != jnp.bool_ or m.shape not in ((), jnp.shape(p)):
            raise ValueError(
                "mask leaves must be bools or bool arrays of the leaf's shape, got "
                f"mask leaf of dtype {m.dtype} and shape {m.shape} for a leaf of shape "
                f"{jnp.shape(p)}"
            )
        leaves.append(m)
    return m_def.unflatten(leaves)


def _apply_mask(mask, tree, batch_dims: int = 0):
    """Zeros the unselected entries; ``batch_dims`` leading axes of ``tree`` are broadcast over."""
    if mask is None:
        return tree

    def leaf(m, x):
        m = m.reshape((1,) * batch_dims + m.shape) if m.ndim else m
        return jnp.where(m, x, jnp.zeros((), x.dtype))

    return jax.tree.map(leaf, mask, tree)


def _mask_size(mask, params) -> int | None:
    """Number of selected entries (the masked operator's dimension); None if the mask is traced."""
    mask = _resolve_mask(mask, params)
    if mask is None:
        return sum(int(jnp.size(p)) for p in jax.tree.leaves(params))
    if any(isinstance(m, jax.core.Tracer) for m in jax.tree.leaves(mask)):
        return None
    return sum(
        int(jnp.sum(jnp.broadcast_to(m, jnp.shape(p))))
        for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params), strict=True)
    )


def _check_like(v, params, name: str = "v") -> None:
    if jax.tree.structure(v) != jax.tree.structure(params):
        raise ValueError(
            f"{name} must be a pytree shaped like params {jax.tree.structure(params)}, "
            f"got {name}={jax.tree.structure(v)}"
        )


def _finalize(product: Callable, params, axis_name, mask) -> MatVec:
    """Wraps a raw product with dtype casting, masking and the cross-device mean."""

    def matvec(v):
        _check_like(v, params)
        v = jax.tree.map(lambda x, p: jnp.asarray(x, jnp.result_type(p)), v, params)
        v = _apply_mask(mask, v)
        out = product(v)
        if axis_name is not None:
            out = jax.lax.pmean(out, axis_name)
        return _apply_mask(mask, out)

    return matvec


def hessian_operator(
    loss_fn: Callable, params, batch, *, axis_name: str | None = None, mask: Mask = None
) -> MatVec:
    r"""Hessian-vector product ``v -> ∇²L(θ) v`` of ``L = loss_fn(params, batch)``.

    .. math::
      H v = \frac{d}{d\epsilon} \nabla_\theta L(\theta + \epsilon v, \text{batch})\big|_{\epsilon=0}

    computed forward-over-reverse with ``jax.linearize`` of the gradient, once; each product then
    costs about one extra backward pass (≈ 1.6× a gradient on CPU, vs 2× for ``jvp(grad)``).

    Args:
      loss_fn: ``(params, batch) -> scalar`` (the mean loss over the batch; pick the BatchNorm
        mode by what it closes over, see the module notes).
      params: point θ at which the Hessian is taken (any pytree of float arrays).
      batch: data passed to ``loss_fn`` (never closed over, so no constant folding under jit).
      axis_name: ``pmap``/``shard_map`` axis to average the product over (see module notes).
      mask: restricts the operator to a parameter block (see module notes).

    Returns:
      ``matvec(v)`` mapping a pytree like ``params`` to ``H v`` (same structure and dtypes).

    References:
      Pearlmutter, "Fast exact multiplication by the Hessian", 1994; Yao et al., "PyHessian",
      https://arxiv.org/abs/1912.07145.

    .. note::
      Memory: the linearisation stores the activations of one forward-and-backward pass for the
      lifetime of the operator.
    """
    mask = _resolve_mask(mask, params)
    _, lin = jax.linearize(lambda p: jax.grad(loss_fn)(p, batch), params)
    return _finalize(lin, params, axis_name, mask)


def ggn_operator(
    apply_fn: Callable,
    output_loss_fn: Callable,
    params,
    batch,
    *,
    axis_name: str | None = None,
    mask: Mask = None,
) -> MatVec:
    r"""Generalised Gauss-Newton product ``v -> Jᵀ H_out J v``.

    .. math::
      G = J^\top \nabla^2_z \ell(z)\, J,\qquad z = f(\theta, \text{batch}),\quad
      J = \partial z / \partial\theta,

    with ``f = apply_fn`` and ``ℓ = output_loss_fn``. The model is linearised once (``J v`` by
    its stored JVP, ``Jᵀ u`` by transposing that same linear map, with no second forward pass), as
    is the loss gradient at the outputs. ``G`` is positive semi-definite when ``ℓ`` is convex in
    ``z`` (cross-entropy, squared error); for those losses it equals the Fisher information of the
    model's predictive distribution.

    Args:
      apply_fn: ``(params, batch) -> outputs`` (any pytree, e.g. logits ``[B, C]``).
      output_loss_fn: ``(outputs, batch) -> scalar`` mean loss (labels come from ``batch``).
      params: point θ.
      batch: data for both functions.
      axis_name: ``pmap``/``shard_map`` axis to average the product over.
      mask: restricts the operator to a parameter block.

    Returns:
      ``matvec(v)`` mapping a pytree like ``params`` to ``G v``.

    References:
      Schraudolph, "Fast curvature matrix-vector products for second-order gradient descent",
      2002; Martens, "New insights and perspectives on the natural gradient method",
      https://arxiv.org/abs/1412.1193.
    """
    mask = _resolve_mask(mask, params)
    outputs, jvp = jax.linearize(lambda p: apply_fn(p, batch), params)
    vjp = jax.linear_transpose(jvp, params)
    _, hess_out = jax.linearize(jax.grad(lambda z: output_loss_fn(z, batch)), outputs)
    return _finalize(lambda v: vjp(hess_out(jvp(v)))[0], params, axis_name, mask)


def empirical_fisher_operator(
    per_example_loss_fn: Callable,
    params,
    batch,
    *,
    axis_name: str | None = None,
    mask: Mask = None,
) -> MatVec:
    r"""Empirical-Fisher product ``v -> (1/B) Σ_i g_i g_iᵀ v`` with ``g_i = ∇ℓ_i(θ)``.

    .. math::
      F v = \frac{1}{B} J^\top (J v),\qquad J = \partial [\ell_1, \dots, \ell_B] / \partial\theta

    (the uncentred gradient covariance of the mean loss; Kunstner et al. explain why it is not the
    Fisher). ``J v`` is the JVP of the per-example losses and ``Jᵀ u`` its transpose, from one
    linearisation, so per-example gradients are never materialised.

    Args:
      per_example_loss_fn: ``(params, batch) -> [B]`` per-example losses.
      params: point θ.
      batch: data.
      axis_name: ``pmap``/``shard_map`` axis to average the product over (the global empirical
        Fisher when shards have equal size).
      mask: restricts the operator to a parameter block.

    Returns:
      ``matvec(v)`` mapping a pytree like ``params`` to ``F v``.

    Raises:
      ValueError: if ``per_example_loss_fn`` does not return a 1-D array.

    References:
      Kunstner, Balles & Hennig, "Limitations of the empirical Fisher approximation for natural
      gradient descent", https://arxiv.org/abs/1905.12558.
    """
    mask = _resolve_mask(mask, params)
    losses, jvp = jax.linearize(lambda p: per_example_loss_fn(p, batch), params)
    if losses.ndim != 1:
        raise ValueError(
            "per_example_loss_fn must return per-example losses of shape [B], got shape "
            f"{losses.shape}"
        )
    vjp = jax.linear_transpose(jvp, params)
    inv_b = 1.0 / losses.shape[0]
    return _finalize(
        lambda v: jax.tree.map(lambda x: (x * inv_b).astype(x.dtype), vjp(jvp(v))[0]),
        params,
        axis_name,
        mask,
    )


def dataset_operator(
    build: Callable[[Any, Any], MatVec],
    params,
    batches,
    *,
    weights=None,
    axis_name: str | None = None,
    mask: Mask = None,
) -> MatVec:
    r"""The operator of a dataset of stacked batches: ``v -> Σ_b w_b A_b v / Σ_b w_b``.

    ``batches`` has a leading axis over batches; ``lax.scan`` runs ``build(params, batch_b)(v)``
    for each and accumulates in float32 (float64 for float64 params). With ``weights`` = the number
    of examples in each batch (e.g. valid examples of padded batches, with ``loss_fn`` taking the
    mean over valid examples), this is exactly the operator of the mean loss over the dataset.

    Args:
      build: ``(params, batch) -> matvec``, e.g.
        ``lambda p, b: hessian_operator(loss_fn, p, b)`` (without its own ``axis_name``/``mask``).
      params: point θ.
      batches: pytree whose leaves share a leading axis of length ``num_batches``.
      weights: ``[num_batches]`` non-negative weights (batch sizes); equal when None.
      axis_name: ``pmap``/``shard_map`` axis to average the product over.
      mask: restricts the operator to a parameter block.

    Returns:
      ``matvec(v)`` mapping a pytree like ``params`` to the dataset-averaged product.

    .. note::
      Memory is that of one batch: each product re-linearises every batch (a forward and
      backward pass per batch per product), the price of not storing all batches' activations.
      For data that fit at once, one large batch with the plain operator is faster.
    """
    mask = _resolve_mask(mask, params)
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batches)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"batches leaves must share a leading batches axis, got leading sizes {sizes}"
        )
    (num_batches,) = sizes
    dt = jnp.result_type(*[accumulation_dtype(p) for p in jax.tree.leaves(params)])
    if weights is None:
        weights = jnp.ones((num_batches,), dt)
    weights = jnp.asarray(weights, dt)
    if weights.shape != (num_batches,):
        raise ValueError(
            f"weights must have shape ({num_batches},), got weights.shape={weights.shape}"
        )
    weights = weights / jnp.sum(weights)

    def product(v):
        def body(acc, xs):
            batch, w = xs
            out = build(params, batch)(v)
            return jax.tree.map(lambda a, o: a + w * o.astype(a.dtype), acc, out), None

        acc0 = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), accumulation_dtype(p)), params)
        acc, _ = jax.lax.scan(body, acc0, (batches, weights))
        return jax.tree.map(lambda a, p: a.astype(jnp.result_type(p)), acc, params)

    return _finalize(product, params, axis_name, mask)


def _stacked_or_single_hessian(loss_fn, params, batch, stacked, batch_weights, *, axis_name, mask):
    """The Hessian operator of one batch, or of stacked batches (``stacked``) weighted by size."""
    if not stacked:
        return hessian_operator(loss_fn, params, batch, axis_name=axis_name, mask=mask)
    return dataset_operator(
        lambda p, b: hessian_operator(loss_fn, p, b),
        params,
        batch,
        weights=batch_weights,
        axis_name=axis_name,
        mask=mask,
    )
