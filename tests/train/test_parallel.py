"""One device, pmap on 8 devices and jit(shard_map) run the same step to the same state."""

import os
import socket
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.optim import momo, sam
from jaxlab.optim.sharpness_aware import SAMState
from jaxlab.train.objectives import classification_objective
from jaxlab.train.parallel import DataParallel, force_host_devices
from jaxlab.train.state import TrainState
from jaxlab.train.step import make_train_step

N = 8


class _Net(nn.Module):
    batch_norm: bool = False
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.Dense(16)(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name)(x)
        return nn.Dense(3)(nn.tanh(x))


def _data(batch_size=32, steps=3):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(steps, batch_size, 5)).astype(np.float32)
    ys = rng.integers(0, 3, size=(steps, batch_size)).astype(np.int32)
    return [{"x": x, "y": y} for x, y in zip(xs, ys, strict=True)]


def _run(parallel, tx, *, batch_norm=False, data=None, **step_kwargs):
    model = _Net(batch_norm=batch_norm, bn_axis_name=parallel.axis_name)
    variables = _Net(batch_norm=batch_norm).init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))
    params = variables.pop("params")
    state = TrainState.create(
        params=params, tx=tx, key=jax.random.PRNGKey(1), model_state=dict(variables)
    )
    loss_fn, _, _ = classification_objective(model)
    step = parallel.compile(make_train_step(loss_fn, axis_name=parallel.axis_name, **step_kwargs))
    state = parallel.put_state(state)
    losses = []
    for batch in data or _data():
        state, metrics = step(state, parallel.put_batch(batch))
        losses.append(float(parallel.get_output(metrics)["loss"]))
    return jax.device_get(parallel.get_state(state)), losses


MODES = ("pmap", "shard_map")  # built inside the tests: the worker imports this module


def _comparable(state):
    # SAM's cosine diagnostic is by design the mean of the per-device cos(g, g_p), not the
    # cosine of the averaged gradients; every other leaf must agree.
    opt_state = state.opt_state
    if isinstance(opt_state, SAMState):
        opt_state = opt_state._replace(
            diagnostics=opt_state.diagnostics._replace(cosine=np.zeros(()))
        )
    return state.replace(opt_state=opt_state).saveable()


def _assert_same(a, b, atol=1e-5):
    (state_a, losses_a), (state_b, losses_b) = a, b
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5, atol=atol)
    tree_a, tree_b = _comparable(state_a), _comparable(state_b)
    assert jax.tree.structure(tree_a) == jax.tree.structure(tree_b)
    for x, y in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)


CASES = {
    "sgd_momentum": (lambda axis: optax.sgd(0.1, momentum=0.9), {}),
    "sam_transform_synced": (lambda axis: sam(optax.sgd(0.1), rho=0.1, axis_name=axis), {}),
    "sam_gradient_synced": (lambda axis: optax.sgd(0.1), {"sam_rho": 0.1, "sam_sync": True}),
    "momo": (lambda axis: momo(0.5), {}),
}


def _one_device(name):
    """``CASES[name]`` on one device, the reference of the parallel runs."""
    make_tx, kwargs = CASES[name]
    if kwargs.get("sam_sync"):
        kwargs = {"sam_rho": kwargs["sam_rho"]}  # one device: the only ε is the global one
    return _run(DataParallel(), make_tx(None), **kwargs)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_parallel_equals_one_device(name, mode):
    parallel = DataParallel(mode, N)
    make_tx, kwargs = CASES[name]
    _assert_same(_one_device(name), _run(parallel, make_tx(parallel.axis_name), **kwargs))


@pytest.mark.parametrize("mode", MODES)
def test_per_device_sam_equals_grouped_sam_on_one_device(mode):
    parallel = DataParallel(mode, N)
    # m-sharpness with m = the per-device batch: one device perturbs per group of 32/8 examples.
    single = _run(DataParallel(), optax.sgd(0.1), sam_rho=0.1, sam_group_size=32 // N)
    _assert_same(single, _run(parallel, optax.sgd(0.1), sam_rho=0.1))
    synced = _run(parallel, optax.sgd(0.1), sam_rho=0.1, sam_sync=True)
    assert not np.allclose(synced[1], single[1], rtol=1e-6)  # the two SAM modes really differ


@pytest.mark.parametrize("mode", MODES)
def test_batch_norm_model(mode):
    parallel = DataParallel(mode, N)
    single = _run(DataParallel(), optax.sgd(0.1, momentum=0.9), batch_norm=True)
    _assert_same(single, _run(parallel, optax.sgd(0.1, momentum=0.9), batch_norm=True))
    stats = single[0].model_state["batch_stats"]
    assert not np.allclose(jax.tree.leaves(stats)[0], 0.0)  # statistics were updated


def test_accumulation_equals_full_batch():
    full = _run(DataParallel(), optax.sgd(0.1))
    accumulated = _run(DataParallel(), optax.sgd(0.1), accumulation_steps=4)
    _assert_same(full, accumulated)


def test_check_vma_true_would_scale_gradients():
    # The hazard the wrappers avoid: with check_vma=True the gradient of a replicated parameter
    # arrives psum-ed, so a pmap-style pmean leaves it N times too large.
    from jax.sharding import PartitionSpec as P

    mesh = DataParallel("shard_map", N).mesh
    w, x = jnp.ones(()), jnp.arange(N, dtype=jnp.float32)

    def grad(check_vma):
        def body(w, x):
            return jax.lax.pmean(jax.grad(lambda w: jnp.sum(w * x))(w), "batch")

        f = jax.shard_map(
            body, mesh=mesh, in_specs=(P(), P("batch")), out_specs=P(), check_vma=check_vma
        )
        return float(jax.jit(f)(w, x))

    assert grad(False) == pytest.approx(x.mean())
    assert grad(True) == pytest.approx(N * x.mean())


def test_nonfinite_loss_freezes_state():
    data = _data(steps=4)
    data[1]["x"][0, 0] = np.nan
    good, _ = _run(DataParallel(), optax.sgd(0.1), data=data[:1])
    for parallel in [DataParallel(), *(DataParallel(mode, N) for mode in MODES)]:
        state, losses = _run(parallel, optax.sgd(0.1), data=data)
        assert np.isnan(losses[1]) and int(state.nonfinite_step) == 1
        assert int(state.step) == 4  # the step counter runs on; nothing else moves
        for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(good.params), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)


def test_bad_arguments():
    loss_fn = lambda p, s, b, k: (0.0, (s, {}))  # noqa: E731
    with pytest.raises(ValueError, match="accumulation_steps"):
        make_train_step(loss_fn, accumulation_steps=0)
    with pytest.raises(ValueError, match="sam_rho"):
        make_train_step(loss_fn, sam_sync=True)
    with pytest.raises(ValueError, match="axis_name"):
        make_train_step(loss_fn, sam_rho=0.1, sam_sync=True)
    with pytest.raises(TypeError, match="loss_fn"):
        make_train_step(None)
    with pytest.raises(ValueError, match="mode"):
        DataParallel("spmd", 2)
    with pytest.raises(ValueError, match="num_devices"):
        DataParallel("pmap", 100)
    with pytest.raises(TypeError, match="tx"):
        TrainState.create(params={}, tx=None, key=jax.random.PRNGKey(0))


def _unforced_env():
    """This process's environment without the forced devices, for a fresh interpreter."""
    return {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PJRT_NPROC")}


def test_force_host_devices_sets_the_device_count_and_the_thread_pool():
    # A fresh interpreter: the flag and the pool size must be in place before JAX starts.
    code = (
        "from jaxlab.train import force_host_devices; force_host_devices(4); "
        "import jax, os; print(jax.device_count(), os.environ['PJRT_NPROC'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_unforced_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["4", "8"]
    with pytest.raises(ValueError, match="num_devices"):
        force_host_devices(0)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="num_devices"):
            force_host_devices(bad)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name", ["sgd_momentum", "sam_transform_synced"])
def test_two_processes_equal_one_device(name, tmp_path):
    # JAX's multi-controller runtime on one machine: 2 processes x 4 CPU devices, each feeding
    # its half of every batch, against one device on the whole batch.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    port, outs = _free_port(), [tmp_path / f"{p}.npz" for p in range(2)]
    module = "tests.train.multiprocess_worker"
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", module, str(p), str(port), name, str(outs[p])],
            cwd=root,
            env=_unforced_env(),
            **pipes,
        )
        for p in range(2)
    ]
    try:
        for worker in workers:
            output, _ = worker.communicate(timeout=300)
            assert worker.returncode == 0, output[-3000:]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()
    state, losses = _one_device(name)
    expected = jax.tree.leaves(_comparable(state))
    for out in outs:
        got = np.load(out)
        np.testing.assert_allclose(got["losses"], losses, rtol=1e-5, atol=1e-5)
        leaves = [got[f"leaf{i}"] for i in range(len(expected))]
        for x, y in zip(leaves, expected, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
