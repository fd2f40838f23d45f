"""train.full_batch_descent: one lax.scan equals the Python loop of tx.update steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import optim
from jaxlab.train import full_batch_descent

RNG = np.random.default_rng(0)
BATCH = {
    "x": jnp.asarray(RNG.normal(size=(32, 5)), jnp.float32),
    "y": jnp.asarray(RNG.integers(0, 3, 32)),
}
PARAMS = {"w": jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32), "b": jnp.zeros(3)}


def loss_fn(params, batch):
    logits = batch["x"] @ params["w"] + params["b"][None, :]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def python_loop(tx, params, steps):
    """The reference: steps taken one by one on the host, extra args passed explicitly."""
    state, losses = tx.init(params), []
    objective = lambda p: loss_fn(p, BATCH)  # noqa: E731
    for _ in range(steps):
        value, grads = jax.value_and_grad(objective)(params)
        updates, state = tx.update(grads, state, params, value=value, loss_fn=objective)
        params = optax.apply_updates(params, updates)
        losses.append(float(value))
    return params, np.array(losses)


@pytest.mark.parametrize(
    "tx",
    [
        optax.with_extra_args_support(optax.sgd(0.1, momentum=0.9)),
        optim.momo(learning_rate=1.0),
        optim.sam(optax.sgd(0.1), rho=0.05),
    ],
    ids=["sgd_momentum", "momo", "sam"],
)
def test_scan_equals_the_python_loop(tx):
    params, _, losses = jax.jit(lambda p: full_batch_descent(loss_fn, tx, p, BATCH, 12))(PARAMS)
    ref_params, ref_losses = python_loop(tx, PARAMS, 12)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]


def test_passing_the_state_back_continues_the_run():
    tx = optim.momo(learning_rate=1.0)
    whole, _, losses = full_batch_descent(loss_fn, tx, PARAMS, BATCH, 10)
    half, state, first = full_batch_descent(loss_fn, tx, PARAMS, BATCH, 5)
    half, _, second = full_batch_descent(loss_fn, tx, half, BATCH, 5, state)
    np.testing.assert_allclose(np.concatenate([first, second]), losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(half), jax.tree.leaves(whole), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("num_steps", [0, -1, 2.0, True])
def test_bad_num_steps(num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        full_batch_descent(loss_fn, optax.sgd(0.1), PARAMS, BATCH, num_steps)
