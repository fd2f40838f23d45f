"""Full-batch training as one ``lax.scan``: the loop of the edge-of-stability, Hessian-spectrum
and transform-composition experiments, where every step sees the same batch."""

from collections.abc import Callable
from typing import Any

import jax
import optax


def full_batch_descent(
    loss_fn: Callable, tx: optax.GradientTransformation, params, batch, num_steps: int,
    opt_state=None,
) -> tuple[Any, Any, jax.Array]:  # fmt: skip
    r"""``num_steps`` optimizer steps on one fixed batch, as a single ``lax.scan``.

    .. math::
      \ell_t = L(\theta_t),\quad g_t = \nabla L(\theta_t),\quad
      (u_t, s_{t+1}) = \texttt{tx.update}(g_t, s_t, \theta_t),\quad
      \theta_{t+1} = \theta_t + u_t,

    with ``L = loss_fn(·, batch)``. ``tx.update`` also receives ``value=ℓ_t`` and
    ``loss_fn=L`` (through :func:`optax.with_extra_args_support`), so MoMo and
    :func:`jaxlab.optim.sam` work unchanged. Passing the returned state back in continues the
    run: two calls of ``n`` steps equal one of ``2n``.

    Args:
      loss_fn: ``(params, batch) -> scalar``.
      tx: any optax transformation.
      params: θ₀.
      batch: the data, passed to ``loss_fn`` as is.
      num_steps: number of steps (a Python int ≥ 1; the scan length).
      opt_state: ``s₀``; None starts from ``tx.init(params)``.

    Returns:
      ``(params, opt_state, losses)``: θ and s after the last step and ``losses[t] = ℓ_t``, the
      loss *before* step ``t`` (shape ``[num_steps]``).

    Raises:
      ValueError: if ``num_steps`` is not an int ≥ 1.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> loss = lambda p, b: jnp.sum((p - b) ** 2)
      >>> p, _, losses = full_batch_descent(loss, optax.sgd(0.25), jnp.zeros(2), jnp.ones(2), 3)
      >>> p.tolist(), losses.tolist()
      ([0.875, 0.875], [2.0, 0.5, 0.125])

    .. note::
      Pure and jittable with ``loss_fn``, ``tx`` and ``num_steps`` static (close over them).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got num_steps={num_steps!r}")
    tx = optax.with_extra_args_support(tx)

    def objective(p):
        return loss_fn(p, batch)

    def step(carry, _):
        p, state = carry
        value, grads = jax.value_and_grad(objective)(p)
        updates, state = tx.update(grads, state, p, value=value, loss_fn=objective)
        return (optax.apply_updates(p, updates), state), value

    state = tx.init(params) if opt_state is None else opt_state
    (params, state), losses = jax.lax.scan(step, (params, state), length=num_steps)
    return params, state, losses
