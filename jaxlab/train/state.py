"""The train state: parameters, optimizer state, model state and PRNG key, with a step that
forwards optax extra args.

flax's linen ``TrainState.apply_gradients(grads=...)`` calls ``tx.update(grads, opt_state,
params)`` with no extra arguments, so transforms that need the loss value (MoMo, Polyak SGD) or
the loss function (:func:`jaxlab.optim.sam`) fail there. :meth:`TrainState.apply_gradients` passes
every keyword on to ``tx.update``; transforms that don't use them ignore them
(``optax.with_extra_args_support``).
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes; a pytree (``tx`` is static).

    Attributes:
      step: number of steps taken (int32 scalar).
      params: trainable parameters.
      opt_state: state of ``tx``.
      model_state: non-trainable model collections, e.g. ``{"batch_stats": ...}``; ``{}`` if none.
      key: raw PRNG key (``jax.random.PRNGKey``); each step folds in its step number and device.
      nonfinite_step: the step at which the loss or the new parameters were first non-finite,
        -1 while all are finite. From then on the step leaves the state unchanged, so the last
        finite state is kept and the host can stop with a message at its next check.
      tx: the optimizer (static, not saved in checkpoints).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    key: jax.Array
    nonfinite_step: jax.Array
    tx: optax.GradientTransformationExtraArgs = struct.field(pytree_node=False)

    @classmethod
    def create(cls, *, params, tx: optax.GradientTransformation, key, model_state=None):
        """A state at step 0 with ``tx`` initialised on ``params``."""
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        tx = optax.with_extra_args_support(tx)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            model_state={} if model_state is None else model_state,
            key=key,
            nonfinite_step=jnp.full((), -1, jnp.int32),
            tx=tx,
        )

    def apply_gradients(self, grads, **extra_args):
        """One optimizer step; ``extra_args`` (``value=``, ``loss_fn=``...) go to ``tx.update``."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params, **extra_args)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state)

    def saveable(self):
        """The checkpointed part: the state without ``tx``, as host NumPy arrays."""
        return jax.device_get(
            {
                "step": self.step,
                "params": self.params,
                "opt_state": self.opt_state,
                "model_state": self.model_state,
                "key": self.key,
                "nonfinite_step": self.nonfinite_step,
            }
        )

    def restored(self, tree):
        """This state with the fields of :meth:`saveable`'s ``tree`` (as read from a checkpoint)."""
        return self.replace(
            **{name: jax.tree.map(jnp.asarray, value) for name, value in tree.items()}
        )
