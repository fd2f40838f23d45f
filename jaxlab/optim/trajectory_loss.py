"""Trajectory losses of SAF and MESA: sharpness-aware training at about the cost of SGD.

SAF replaces SAM's second gradient by a distillation term against the network's own past
outputs, which penalises sudden drops of the loss along the trajectory:

.. math::

  L = \\mathrm{CE}(z, y) + λ\\,τ^2\\,\\mathrm{KL}\\big(\\mathrm{softmax}(z_{\\mathrm{ref}}/τ)
      \\,\\|\\, \\mathrm{softmax}(z/τ)\\big)

with z the current logits of an example. SAF takes z_ref from a per-example memory of the logits
recorded Ẽ epochs earlier (:func:`saf_memory_init` / :func:`saf_memory_update`); MESA takes them
from an EMA copy of the weights (:func:`jaxlab.optim.ema_params_init` / ``ema_params_update``,
decay 0.9998). The reference is ``stop_gradient``-ed, so no gradient flows into the memory or
the EMA model: SAF costs one forward-backward pass plus an N × C memory, MESA one more forward.

Official hyperparameters (github.com/AngusDujw/SAF README and ``run.sh``): λ = 0.3 (SAF) or 0.8
(MESA), τ = 5, Ẽ = 2 (or 3), the term switched on after epoch E_start = 5 (``epoch >
kl_start_epoch``). λ and E_start are the caller's: the losses here return per-example τ²·KL.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxlab._tree import accumulation_dtype
from jaxlab.optim._checks import check_positive


def saf_loss(
    logits: jax.Array,
    past_logits: jax.Array,
    *,
    temperature: float = 5.0,
    where: jax.Array | None = None,
) -> jax.Array:
    """SAF trajectory loss τ² KL(softmax(z_past/τ) ‖ softmax(z/τ)) per example.

    .. math::

      \\ell_i = τ^2 \\sum_c q_{ic}\\,(\\log q_{ic} - \\log p_{ic}), \\qquad
      p_i = \\mathrm{softmax}(z_i/τ), \\quad
      q_i = \\mathrm{softmax}(\\mathrm{sg}(z^{\\mathrm{past}}_i)/τ)

    This is the official ``F.kl_div(log_softmax(z/τ), softmax(z_past/τ)).sum(-1) · τ²`` (the
    past outputs are the target distribution); its gradient is ``∂ℓ_i/∂z_i = τ (p_i − q_i)``.
    The trajectory term of SAF is ``λ · mean_i ℓ_i`` (official λ = 0.3), added by the caller.

    Args:
      logits: Current logits z, shape ``[..., num_classes]`` (any float dtype; computed in
        float32).
      past_logits: Reference logits, same shape, e.g. from :func:`saf_memory_update`.
        Wrapped in ``stop_gradient``: no gradient reaches them.
      temperature: τ > 0 (official 5).
      where: Optional bools of shape ``logits.shape[:-1]``; examples where False get 0 (and no
        gradient), e.g. the ``valid`` mask of :func:`saf_memory_update`.

    Returns:
      Per-example losses of shape ``logits.shape[:-1]`` in float32 (float64 for float64 logits).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxlab.optim.trajectory_loss import saf_loss
      >>> z = jnp.array([[2.0, 0.0], [1.0, 1.0]])
      >>> saf_loss(z, z)  # no change along the trajectory: no penalty
      Array([0., 0.], dtype=float32)

    References:
      Du, Zhou, Feng, Tan, Zhou, `Sharpness-Aware Training for Free
      <https://arxiv.org/abs/2205.14083>`_, NeurIPS 2022. Followed: ``SAF_train.py`` of
      github.com/AngusDujw/SAF.

    .. note::
      Safe for huge logits (log-softmax on both sides) and for −inf reference logits (classes
      with q = 0 contribute exactly 0).
    """
    check_positive("temperature", temperature)
    dtype = accumulation_dtype(logits)
    t = jnp.asarray(temperature, dtype)
    log_p = jax.nn.log_softmax(logits.astype(dtype) / t, axis=-1)
    log_q = jax.nn.log_softmax(lax.stop_gradient(past_logits).astype(dtype) / t, axis=-1)
    q = jnp.exp(log_q)
    kl = jnp.sum(jnp.where(q > 0, q * (log_q - log_p), 0.0), axis=-1)
    loss = t * t * kl
    return loss if where is None else jnp.where(where, loss, jnp.zeros_like(loss))


def mesa_loss(
    logits: jax.Array,
    ema_logits: jax.Array,
    *,
    temperature: float = 5.0,
    where: jax.Array | None = None,
) -> jax.Array:
    """MESA trajectory loss τ² KL(softmax(z_ema/τ) ‖ softmax(z/τ)) per example.

    The SAF loss of :func:`saf_loss` with the reference taken from an exponential moving
    average of the weights instead of a logit memory (``MESA_train.py``: the EMA model's
    outputs under ``no_grad``, EMA decay 0.9998, λ = 0.8). A training step::

      def loss_fn(params, ema_params, x, y):
          logits = apply(params, x)
          ema_logits = apply(ema_params, x)  # one extra forward, no backward
          ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
          return jnp.mean(ce + 0.8 * mesa_loss(logits, ema_logits))

      loss, grads = jax.value_and_grad(loss_fn)(params, ema.ema, x, y)
      ...  # optimizer step
      ema = ema_params_update(ema, params, decay=0.9998)

    Args:
      logits: Current logits z, shape ``[..., num_classes]``.
      ema_logits: Logits of the EMA model on the same inputs; ``stop_gradient``-ed.
      temperature: τ > 0 (official 5).
      where: Optional per-example bools of shape ``logits.shape[:-1]``.

    Returns:
      Per-example losses of shape ``logits.shape[:-1]`` in float32.

    References:
      Du, Zhou, Feng, Tan, Zhou, `Sharpness-Aware Training for Free
      <https://arxiv.org/abs/2205.14083>`_, NeurIPS 2022 (MESA: the memory-efficient variant).
    """
    return saf_loss(logits, ema_logits, temperature=temperature, where=where)


class SafMemory(NamedTuple):
    """Ring buffer of per-example logits over the last Ẽ + 1 epochs.

    Slot ``e mod (Ẽ+1)`` holds the logits recorded in epoch e; ``epoch`` says which epoch each
    entry was recorded in (−1: never), so stale or missing entries are detected exactly.
    """

    logits: jax.Array  # [Ẽ + 1, num_examples, num_classes]
    epoch: jax.Array  # [Ẽ + 1, num_examples] int32


def saf_memory_init(
    num_examples: int, num_classes: int, *, epochs_ago: int = 2, dtype=jnp.float32
) -> SafMemory:
    """Allocates an empty SAF logit memory for ``num_examples`` examples.

    Args:
      num_examples: N, the size of the training set (examples are addressed by index).
      num_classes: C, the number of logits per example.
      epochs_ago: Ẽ ≥ 1, how many epochs back the reference logits are taken (official 2 or 3).
      dtype: Storage dtype of the logits (``jnp.bfloat16`` halves the (Ẽ+1)·N·C memory).

    Returns:
      A :class:`SafMemory` with every entry unrecorded.
    """
    for name, value, low in (
        ("num_examples", num_examples, 1),
        ("num_classes", num_classes, 1),
        ("epochs_ago", epochs_ago, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {name}={value!r}")
    slots = epochs_ago + 1
    return SafMemory(
        logits=jnp.zeros((slots, num_examples, num_classes), dtype),
        epoch=jnp.full((slots, num_examples), -1, jnp.int32),
    )


def saf_memory_update(
    memory: SafMemory,
    indices: jax.Array,
    logits: jax.Array,
    epoch: jax.Array | int,
    *,
    axis_name: str | None = None,
) -> tuple[SafMemory, jax.Array, jax.Array]:
    """Records this epoch's logits and returns those recorded Ẽ epochs earlier.

    Writes ``stop_gradient(logits)`` to slot ``epoch mod (Ẽ+1)`` at ``indices`` and reads slot
    ``(epoch − Ẽ) mod (Ẽ+1)``, as the official ``train_logits[indices, epoch % (Ẽ+1)]``; the
    two slots differ, so the order does not matter and one call after the forward pass
    suffices (the read does not depend on ``logits``). Fixed shapes: jits once for any epoch.

    Args:
      memory: The :class:`SafMemory` to update.
      indices: int array ``[batch]`` of example indices in ``[0, N)``, unique within a step.
        An index ≥ N (padding) is neither written nor valid; negative indices wrap.
      logits: Current logits ``[batch, C]`` of those examples.
      epoch: Current epoch (int scalar, may be traced), counted from 0.
      axis_name: Mapped axis of a data-parallel step. When set, the indices and logits of all
        devices are ``all_gather``-ed and written, so every replica keeps the same full memory
        (an example may land on another device Ẽ epochs later). None: no collectives.

    Returns:
      ``(memory, past_logits, valid)``: the updated memory, the logits ``[batch, C]`` (memory
      dtype) recorded for these examples in epoch ``epoch − Ẽ``, and bools ``[batch]`` that
      are False where that epoch did not record the example (first Ẽ epochs, skipped examples,
      padding); pass ``valid`` as ``where`` to :func:`saf_loss`.
    """
    slots = memory.logits.shape[0]
    epoch = jnp.asarray(epoch, jnp.int32)
    read_epoch = epoch - (slots - 1)
    read = jnp.remainder(read_epoch, slots)
    past = memory.logits.at[read, indices].get(mode="fill", fill_value=0)
    recorded = memory.epoch.at[read, indices].get(mode="fill", fill_value=-1)
    valid = (recorded >= 0) & (recorded == read_epoch)
    values = lax.stop_gradient(logits).astype(memory.logits.dtype)
    if axis_name is not None:
        indices = lax.all_gather(indices, axis_name, tiled=True)
        values = lax.all_gather(values, axis_name, tiled=True)
    write = jnp.remainder(epoch, slots)
    memory = SafMemory(
        logits=memory.logits.at[write, indices].set(values, mode="drop"),
        epoch=memory.epoch.at[write, indices].set(epoch, mode="drop"),
    )
    return memory, past, valid
