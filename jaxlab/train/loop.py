"""The host loop: batches, the compiled step, evaluation, JSON-lines metrics, checkpoints, resume.

Everything a step depends on is a pure function of the step number: the batch
(:func:`jaxlab.data.get_batch` of ``(seed, step)``), the PRNG key (folded in by the step) and
the state (restored from the checkpoint). A run killed at any moment and resumed therefore logs,
for every step, exactly the metrics an uninterrupted run logs (bit-equal on CPU); steps between
the last checkpoint and the kill are recomputed and logged again after a
``{"event": "resume", "step": S}`` line.

The loop synchronises with the device only to log, evaluate, monitor and checkpoint; the step is
compiled once (fixed batch shapes; the last evaluation batch is padded and masked).
"""

import dataclasses
import json
import os
import sys
from collections.abc import Callable

import jax
import numpy as np
from tqdm import tqdm

from jaxlab.data import get_batch
from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.parallel import DataParallel
from jaxlab.train.state import TrainState


class NonFiniteLossError(FloatingPointError):
    """The loss or the parameters became NaN/inf; the last finite checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Host-side schedule of a run.

    Attributes:
      num_steps: optimizer steps in total.
      batch_size: global batch size (split across devices).
      seed: data-order seed.
      log_every: steps between metrics lines.
      eval_every: steps between evaluations (also at the end); 0: only at the end.
      eval_batch_size: fixed evaluation batch (a multiple of the device count).
      checkpoint_every: steps between checkpoints (also at the end); 0: no checkpoints.
      keep_checkpoints: how many checkpoints to keep.
      monitor_every: steps between calls of the monitor (0: never).
      progress: show a progress bar; None: only when stderr is a terminal.
    """

    num_steps: int
    batch_size: int
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_batch_size: int = 256
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    monitor_every: int = 0
    progress: bool | None = None

    def __post_init__(self):
        for name in ("num_steps", "batch_size", "log_every", "eval_batch_size", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("seed", "eval_every", "checkpoint_every", "monitor_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")


class MetricsLog:
    """Append-only JSON lines; a line cut short by a kill is dropped when reopened."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            if data and not data.endswith(b"\n"):
                with open(path, "wb") as f:
                    f.write(data[: data.rfind(b"\n") + 1])
        self._file = open(path, "a")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path) -> list[dict]:
    """The records of a metrics file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _floats(tree) -> dict:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def evaluate(eval_step, state, x, y, *, parallel: DataParallel, batch_size: int) -> dict:
    """Mean per-example metrics over ``(x, y)`` in fixed-size padded batches."""
    totals: dict[str, float] = {}
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        pad = batch_size - len(xb)
        mask = np.arange(batch_size) < len(xb)
        batch = {
            "x": np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)]),
            "y": np.concatenate([yb, np.zeros((pad, *yb.shape[1:]), yb.dtype)]),
            "mask": mask,
        }
        sums = _floats(parallel.get_output(eval_step(state, parallel.put_batch(batch))))
        totals = {k: totals.get(k, 0.0) + v for k, v in sums.items()}
    count = totals.pop("count")
    return {k: v / count for k, v in totals.items()}


def _check_finite(state, checkpointer) -> None:
    bad = int(jax.device_get(state.nonfinite_step).reshape(-1)[0])
    if bad >= 0:
        last = None if checkpointer is None else checkpointer.latest_step()
        kept = f"the last good checkpoint (step {last}) is kept" if last else "no checkpoint saved"
        raise NonFiniteLossError(
            f"non-finite loss or parameters at step {bad + 1}; training stopped, {kept}. "
            "Lower the learning rate or check the data."
        )


def fit(
    state: TrainState,
    dataset,
    *,
    train_step: Callable,
    eval_step: Callable | None,
    parallel: DataParallel,
    config: LoopConfig,
    workdir,
    resume: bool = False,
    monitor: Callable | None = None,
    log: Callable[[dict], None] | None = None,
) -> tuple[TrainState, dict]:
    """Train ``state`` on ``dataset`` for ``config.num_steps`` steps; returns the host state and
    the final evaluation.

    Args:
      state: a fresh host-side state (also the template checkpoints are restored into).
      dataset: a :class:`jaxlab.data.Dataset`.
      train_step: the per-device step (:func:`~jaxlab.train.step.make_train_step`), built with
        ``parallel.axis_name``; it is compiled here.
      eval_step: :func:`~jaxlab.train.step.make_eval_step`'s step, or None.
      parallel: where and how the step runs.
      config: the schedule.
      workdir: ``metrics.jsonl`` and ``checkpoints/`` go here.
      resume: continue from the latest checkpoint in ``workdir`` (fresh start if none).
      monitor: ``monitor(state) -> dict`` of scalars on the single-copy state, e.g. the
        sharpness monitor of :mod:`jaxlab.train.monitor`; called every ``monitor_every`` steps.
      log: also called with each metrics record (e.g. to print).

    Raises:
      NonFiniteLossError: the loss became non-finite (no checkpoint of the bad state is saved).
      FileExistsError: ``workdir`` has a previous run and ``resume`` is False.
      NotImplementedError: with several JAX processes (its batches, metrics file and
        checkpoints are one process's); drive :class:`DataParallel` directly there.
    """
    if jax.process_count() > 1:
        raise NotImplementedError(
            f"fit runs in one process, got jax.process_count()={jax.process_count()}; across "
            "processes place batches with DataParallel.put_batch and call the compiled step"
        )
    os.makedirs(workdir, exist_ok=True)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    if not resume and (os.path.exists(metrics_path) or os.path.exists(checkpoint_dir)):
        raise FileExistsError(
            f"{workdir} already holds a run; pass resume=True (--resume) or another workdir"
        )
    checkpointer = None
    if config.checkpoint_every:
        checkpointer = Checkpointer(
            checkpoint_dir, save_every=config.checkpoint_every, keep=config.keep_checkpoints
        )
    metrics_log = MetricsLog(metrics_path)
    start = 0
    if resume and checkpointer is not None and checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
        start = int(state.step)
        metrics_log.write({"event": "resume", "step": start})

    step_fn = parallel.compile(train_step, donate_state=True)
    eval_fn = None if eval_step is None else parallel.compile(eval_step)
    placed = parallel.put_state(state)
    result: dict = {}
    show = sys.stderr.isatty() if config.progress is None else config.progress
    try:
        bar = tqdm(
            range(start, config.num_steps), initial=start, total=config.num_steps, disable=not show
        )
        for step in bar:
            batch = get_batch(
                dataset.x_train,
                dataset.y_train,
                step,
                batch_size=config.batch_size,
                seed=config.seed,
            )
            placed, metrics = step_fn(placed, parallel.put_batch(batch))
            done = step + 1
            final = done == config.num_steps
            record = None
            if done % config.log_every == 0 or final:
                record = {"step": done, **_floats(parallel.get_output(metrics))}
                _check_finite(placed, checkpointer)
            evaluating = eval_fn is not None and (
                final or (config.eval_every and done % config.eval_every == 0)
            )
            if evaluating:
                result = evaluate(
                    eval_fn,
                    placed,
                    dataset.x_test,
                    dataset.y_test,
                    parallel=parallel,
                    batch_size=config.eval_batch_size,
                )
                record = {
                    **(record or {"step": done}),
                    **{f"eval_{k}": v for k, v in result.items()},
                }
            if monitor is not None and config.monitor_every and done % config.monitor_every == 0:
                record = {
                    **(record or {"step": done}),
                    **_floats(monitor(parallel.get_state(placed))),
                }
            if record is not None:
                metrics_log.write(record)
                if show:
                    bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
                if log is not None:
                    log(record)
            if checkpointer is not None and (final or done % config.checkpoint_every == 0):
                _check_finite(placed, checkpointer)
                checkpointer.save(done, parallel.get_state(placed), force=final)
        if eval_fn is not None and not result:  # resumed a finished run: evaluate it anyway
            result = evaluate(
                eval_fn, placed, dataset.x_test, dataset.y_test, parallel=parallel,
                batch_size=config.eval_batch_size,
            )  # fmt: skip
        state = jax.device_get(parallel.get_state(placed))
    finally:
        metrics_log.close()
        if checkpointer is not None:
            checkpointer.close()
    return state, result
