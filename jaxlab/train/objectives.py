"""Loss functions at the train step's boundary, built from a Flax linen model.

The train step (:mod:`jaxlab.train.step`) needs ``loss_fn(params, model_state, batch, key) ->
(loss, (model_state, metrics))``; the eval step needs ``eval_fn(params, model_state, batch) ->
per-example dict``; the curvature measures need ``(params, batch) -> loss``. Any model fits
behind these three signatures: a linen module through ``model.apply``, an NNX module through
``nnx.split``/``nnx.merge`` (README), or a plain function.
"""

import jax.numpy as jnp
import optax


def _apply(model, params, model_state, x, *, train: bool, key=None):
    variables = {"params": params, **model_state}
    rngs = None if key is None else {"dropout": key}
    if train and model_state:
        logits, updates = model.apply(
            variables, x, train=True, mutable=list(model_state), rngs=rngs
        )
        return logits, {**model_state, **updates}
    return model.apply(variables, x, train=train, rngs=rngs), model_state


def _per_example(logits, labels, label_smoothing: float):
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    if label_smoothing:
        targets = optax.smooth_labels(jnp.eye(num_classes)[labels], label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets)
    else:
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return loss, correct


def classification_objective(model, *, label_smoothing: float = 0.0):
    """``(loss_fn, eval_fn, curvature_loss_fn)`` for a classifier on ``{"x", "y"}`` batches.

    ``loss_fn`` runs the model in training mode (dropout with the step's key, BatchNorm batch
    statistics, updated ``model_state``) and returns the mean softmax cross-entropy (optionally
    with label smoothing) and the accuracy; ``eval_fn`` runs it in inference mode and returns
    per-example ``loss`` and ``accuracy``; ``curvature_loss_fn(params, (model_state, batch))`` is
    the inference-mode mean loss, a deterministic function of the parameters as the Hessian
    measures need.

    Args:
      model: a linen module called as ``model.apply(variables, x, train=...)`` returning logits.
      label_smoothing: α in [0, 1): targets (1 − α)·onehot + α/C.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")

    def loss_fn(params, model_state, batch, key):
        logits, model_state = _apply(model, params, model_state, batch["x"], train=True, key=key)
        loss, correct = _per_example(logits, batch["y"], label_smoothing)
        return loss.mean(), (model_state, {"accuracy": correct.mean()})

    def eval_fn(params, model_state, batch):
        logits, _ = _apply(model, params, model_state, batch["x"], train=False)
        loss, correct = _per_example(logits, batch["y"], 0.0)
        return {"loss": loss, "accuracy": correct}

    def curvature_loss_fn(params, data):
        model_state, batch = data
        return eval_fn(params, model_state, batch)["loss"].mean()

    return loss_fn, eval_fn, curvature_loss_fn
