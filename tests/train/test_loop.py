"""The host loop's pieces: evaluation with padding, metrics log, checkpoints, monitor, config."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.curvature.stability import _hessian_sharpness, hessian_sharpness
from jaxlab.data import Dataset
from jaxlab.optim import momo
from jaxlab.train import (
    Checkpointer,
    DataParallel,
    LoopConfig,
    MetricsLog,
    TrainState,
    classification_objective,
    evaluate,
    fit,
    make_eval_step,
    make_train_step,
    read_metrics,
    sharpness_monitor,
)


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        return nn.Dense(3)(nn.tanh(nn.Dense(8)(x)))


def _setup(tx=None, n_train=40, n_test=13):
    rng = np.random.default_rng(0)
    ds = Dataset(
        "toy",
        rng.normal(size=(n_train, 4)).astype(np.float32),
        rng.integers(0, 3, n_train).astype(np.int32),
        rng.normal(size=(n_test, 4)).astype(np.float32),
        rng.integers(0, 3, n_test).astype(np.int32),
        num_classes=3,
    )
    model = _Net()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))["params"]
    state = TrainState.create(params=params, tx=tx or optax.sgd(0.1), key=jax.random.PRNGKey(1))
    return ds, model, state


@pytest.mark.parametrize("parallel", [DataParallel(), DataParallel("shard_map", 4)],
                         ids=["single", "shard_map"])  # fmt: skip
def test_evaluate_pads_the_last_batch(parallel):
    ds, model, state = _setup()
    _, eval_fn, _ = classification_objective(model)
    step = parallel.compile(make_eval_step(eval_fn, axis_name=parallel.axis_name))
    got = evaluate(step, parallel.put_state(state), ds.x_test, ds.y_test, parallel=parallel,
                   batch_size=8)  # fmt: skip
    want = eval_fn(state.params, {}, {"x": ds.x_test, "y": ds.y_test})
    assert got["loss"] == pytest.approx(float(want["loss"].mean()), rel=1e-6)
    assert got["accuracy"] == pytest.approx(float(want["accuracy"].mean()))


def test_metrics_log_drops_a_cut_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo')  # a kill during a write
    log = MetricsLog(path)
    log.write({"step": 2})
    log.close()
    assert read_metrics(path) == [{"step": 1}, {"step": 2}]


def test_checkpointer_keeps_last_k_and_restores_types(tmp_path):
    _, _, state = _setup(tx=momo(1.0))
    with Checkpointer(tmp_path, save_every=2, keep=2) as ckpt:
        for step in range(1, 8):
            ckpt.save(step, state.replace(step=jnp.int32(step)))
        ckpt.save(7, state.replace(step=jnp.int32(7)), force=True)
    with Checkpointer(tmp_path, save_every=2, keep=2) as ckpt:
        assert ckpt.all_steps() == [6, 7]
        restored = ckpt.restore(state)
        assert int(restored.step) == 7
        assert type(restored.opt_state) is type(state.opt_state)
        earlier = ckpt.restore(state, 6)
    assert int(earlier.step) == 6
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError), Checkpointer(tmp_path / "empty", save_every=1) as c:
        c.restore(state)
    with pytest.raises(ValueError, match="save_every"):
        Checkpointer(tmp_path, save_every=0)


def test_monitor_matches_direct_measure_and_compiles_once(tmp_path):
    ds, model, state = _setup()
    _, _, curvature_loss_fn = classification_objective(model)
    batch = {"x": ds.x_train, "y": ds.y_train}
    monitor = sharpness_monitor(curvature_loss_fn, batch, learning_rate=0.1,
                                num_trace_probes=4, max_steps=10)  # fmt: skip
    first = monitor(state)
    direct = hessian_sharpness(curvature_loss_fn, state.params, ({}, batch),
                               key=jax.random.PRNGKey(0), learning_rate=0.1, num_trace_probes=4,
                               max_steps=10)  # fmt: skip
    assert float(first["sharpness_lambda_max"]) == pytest.approx(float(direct["lambda_max"]))
    assert float(first["sharpness_ratio"]) == pytest.approx(float(direct["lambda_max"]) * 0.1 / 2)
    size = _hessian_sharpness._cache_size()
    moved = state.replace(params=jax.tree.map(lambda p: p * 1.5, state.params))
    second = monitor(moved)
    assert _hessian_sharpness._cache_size() == size  # new parameters, no new compilation
    assert float(second["sharpness_lambda_max"]) != float(first["sharpness_lambda_max"])
    with pytest.raises(ValueError, match="optimizer"):
        sharpness_monitor(curvature_loss_fn, batch, learning_rate=0.1, optimizer="adam")


def test_fit_with_monitor_and_workdir_guard(tmp_path):
    ds, model, state = _setup()
    loss_fn, eval_fn, curvature_loss_fn = classification_objective(model)
    monitor = sharpness_monitor(curvature_loss_fn, {"x": ds.x_train, "y": ds.y_train},
                                learning_rate=0.1, max_steps=5)  # fmt: skip
    config = LoopConfig(num_steps=6, batch_size=8, log_every=2, monitor_every=3, progress=False)
    kwargs = dict(train_step=make_train_step(loss_fn), eval_step=make_eval_step(eval_fn),
                  parallel=DataParallel(), config=config, monitor=monitor)  # fmt: skip
    final, result = fit(state, ds, workdir=tmp_path, **kwargs)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 3, 4, 6]
    assert "sharpness_lambda_max" in records[1] and "sharpness_ratio" in records[3]
    assert "eval_loss" in records[-1] and set(result) == {"loss", "accuracy"}
    assert int(final.step) == 6
    with pytest.raises(FileExistsError, match="resume"):
        fit(state, ds, workdir=tmp_path, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_steps": 0},
        {"batch_size": -1},
        {"log_every": 0},
        {"eval_every": -1},
        {"checkpoint_every": 1.5},
    ],
)
def test_loop_config_rejects(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LoopConfig(**{"num_steps": 10, "batch_size": 4, **kwargs})
