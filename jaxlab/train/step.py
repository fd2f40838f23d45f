r"""Per-device train and eval steps, written once with an ``axis_name`` for data parallelism.

The same step body runs under ``jax.jit`` (``axis_name=None``, one device), ``jax.pmap`` and
``jax.jit(jax.shard_map(..., check_vma=False))`` (see :mod:`jaxlab.train.parallel`). With an
``axis_name`` the step averages the gradient, the loss, the metrics and floating model state
(BatchNorm statistics) across devices with ``lax.pmean``, so every replica takes the same update:

.. math::

  g = \frac1n \sum_{d=1}^n \nabla L_d(\theta), \qquad
  \theta \leftarrow \theta + \mathrm{tx}(g;\ \mathrm{value} = \tfrac1n \textstyle\sum_d L_d,\
  \mathrm{loss\_fn} = L_{\mathrm{local}})

Why ``check_vma=False``: under ``shard_map(check_vma=True)`` the gradient of a replicated
parameter is already the ``psum`` over devices, and a pmap-style ``pmean`` on top of it gives the
mean times n *silently*; with ``check_vma=False`` the step sees local gradients exactly as under
``pmap`` (tests/train/test_parallel.py checks both wrappers against one device).

The loss function contract is ``loss_fn(params, model_state, batch, key) -> (loss, (model_state,
metrics))`` where ``loss`` is the mean over the local batch and ``metrics`` a dict of scalar
means (see :mod:`jaxlab.train.objectives`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab.optim.sam_gradient import sam_value_and_grad
from jaxlab.train.state import TrainState

LossFn = Callable  # (params, model_state, batch, key) -> (loss, (model_state, metrics))


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _pmean_floating(tree, axis_name):
    return jax.tree.map(
        lambda x: lax.pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def _microbatches(batch, num: int):
    def split(x):
        if x.shape[0] % num:
            raise ValueError(
                f"the per-device batch ({x.shape[0]}) must be divisible by accumulation_steps={num}"
            )
        return x.reshape(num, x.shape[0] // num, *x.shape[1:])

    return jax.tree.map(split, batch)


def make_train_step(
    loss_fn: LossFn,
    *,
    axis_name: str | None = None,
    accumulation_steps: int = 1,
    sam_rho: float | None = None,
    sam_adaptive: bool = False,
    sam_sync: bool = False,
    sam_group_size: int | None = None,
) -> Callable[[TrainState, object], tuple[TrainState, dict]]:
    """Build ``train_step(state, batch) -> (state, metrics)`` for one device's shard of a batch.

    The step folds ``state.step`` and (with ``axis_name``) the device index into ``state.key``;
    computes the gradient of ``loss_fn`` (optionally accumulated over ``accumulation_steps``
    micro-batches, or the SAM gradient); averages gradient, loss, metrics and model state over
    ``axis_name``; and calls ``state.apply_gradients(grads, value=loss, loss_fn=...)``, so MoMo
    receives the averaged loss and :func:`jaxlab.optim.sam` the loss of the local batch (build
    that transform with the same ``axis_name``). If the loss or the new parameters are not
    finite, the state is left unchanged and ``nonfinite_step`` records the step (see
    :class:`~jaxlab.train.state.TrainState`).

    Args:
      loss_fn: ``(params, model_state, batch, key) -> (loss, (model_state, metrics))``.
      axis_name: mapped axis of data parallelism, or None on one device.
      accumulation_steps: micro-batches per step; gradients and metrics are their means and the
        model state is threaded through them.
      sam_rho: if set, the gradient is SAM's :math:`\\nabla L(w + \\epsilon)` from
        :func:`~jaxlab.optim.sam_value_and_grad` with this radius (the loss and metrics are the
        clean ones).
      sam_adaptive: ASAM's perturbation.
      sam_sync: one global ε from the averaged gradient; False: each device perturbs with its
        own gradient (m-sharpness with m = per-device batch, google-research/sam's default).
      sam_group_size: on each device, perturb per micro-group of this many examples
        (m-sharpness); one device with ``sam_group_size = B/n`` equals n devices without it.

    Returns:
      The step function; ``metrics`` holds ``loss`` and ``loss_fn``'s metrics (averaged).
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
    if not isinstance(accumulation_steps, int) or accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be an int >= 1, got {accumulation_steps!r}")
    if sam_rho is None and (sam_adaptive or sam_sync or sam_group_size is not None):
        raise ValueError("sam_adaptive, sam_sync and sam_group_size need sam_rho")
    if sam_sync and axis_name is None:
        raise ValueError("sam_sync=True needs an axis_name")
    if sam_sync and sam_group_size is not None:
        raise ValueError("sam_sync and sam_group_size are exclusive")

    def objective(params, batch, model_state, key):
        return loss_fn(params, model_state, batch, key)

    if sam_rho is None:
        grad_fn = jax.value_and_grad(objective, has_aux=True)
    else:
        grad_fn = sam_value_and_grad(
            objective,
            sam_rho,
            adaptive=sam_adaptive,
            has_aux=True,
            sync_axis_name=axis_name if sam_sync else None,
            group_size=sam_group_size,
        )

    def local_gradient(params, batch, model_state, key):
        (loss, (model_state, metrics)), grads = grad_fn(params, batch, model_state, key)
        if sam_group_size is not None:  # aux has a leading group axis
            model_state, metrics = jax.tree.map(lambda x: x.mean(0), (model_state, metrics))
        return loss, model_state, metrics, grads

    def accumulated_gradient(params, batch, model_state, key):
        def body(carry, inputs):
            model_state, totals = carry
            index, micro = inputs
            loss, model_state, metrics, grads = local_gradient(
                params, micro, model_state, jax.random.fold_in(key, index)
            )
            totals = jax.tree.map(jnp.add, totals, (loss, metrics, grads))
            return (model_state, totals), None

        micro = _microbatches(batch, accumulation_steps)
        first = jax.tree.map(lambda x: x[0], micro)
        shapes = jax.eval_shape(local_gradient, params, first, model_state, key)
        zeros = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), (shapes[0], shapes[2], shapes[3])
        )
        indices = jnp.arange(accumulation_steps)
        (model_state, totals), _ = lax.scan(body, (model_state, zeros), (indices, micro))
        loss, metrics, grads = jax.tree.map(lambda t: t / accumulation_steps, totals)
        return loss, model_state, metrics, grads

    gradient = local_gradient if accumulation_steps == 1 else accumulated_gradient

    def train_step(state: TrainState, batch):
        key = jax.random.fold_in(state.key, state.step)
        if axis_name is not None:
            key = jax.random.fold_in(key, lax.axis_index(axis_name))
        loss, model_state, metrics, grads = gradient(state.params, batch, state.model_state, key)
        if axis_name is not None:
            grads, loss, metrics = lax.pmean((grads, loss, metrics), axis_name)
            model_state = _pmean_floating(model_state, axis_name)

        def local_loss(params):  # for transforms that re-evaluate the loss (jaxlab.optim.sam)
            return loss_fn(params, state.model_state, batch, key)[0]

        new = state.apply_gradients(grads, value=loss, loss_fn=local_loss)
        new = new.replace(model_state=model_state)
        ok = (state.nonfinite_step < 0) & jnp.isfinite(loss) & _all_finite(new.params)
        kept = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state.replace(step=new.step))
        nonfinite_step = jnp.where(
            (state.nonfinite_step < 0) & ~ok, state.step, state.nonfinite_step
        )
        return kept.replace(nonfinite_step=nonfinite_step), {"loss": loss, **metrics}

    return train_step


def make_eval_step(eval_fn: Callable, *, axis_name: str | None = None) -> Callable:
    """Build ``eval_step(state, batch) -> sums`` summing per-example metrics over devices.

    Args:
      eval_fn: ``(params, model_state, batch) -> dict`` of per-example values ``[B]``.
      axis_name: mapped axis, or None on one device.

    Returns:
      ``eval_step(state, batch)`` returning a dict of sums (``lax.psum`` over ``axis_name``)
      plus ``"count"``. ``batch`` may hold a boolean ``"mask"`` ``[B]`` marking padded examples
      with False, so a last partial batch is padded to the fixed size instead of recompiling.
    """
    if not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable, got {eval_fn!r}")

    def eval_step(state: TrainState, batch):
        values = eval_fn(state.params, state.model_state, batch)
        some = next(iter(values.values()))
        mask = batch.get("mask", jnp.ones(some.shape[:1], bool))
        sums = {
            name: jnp.sum(jnp.where(mask, v.astype(jnp.float32), 0)) for name, v in values.items()
        }
        sums["count"] = jnp.sum(mask.astype(jnp.float32))
        if axis_name is not None:
            sums = lax.psum(sums, axis_name)
        return sums

    return eval_step
