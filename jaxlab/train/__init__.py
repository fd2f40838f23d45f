"""Training stack: a train state that forwards optax extra args, one per-device step run on one
device, under ``pmap`` or under ``jit(shard_map)``, orbax checkpoints, and the host loop."""

from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.full_batch import full_batch_descent
from jaxlab.train.loop import (
    LoopConfig,
    MetricsLog,
    NonFiniteLossError,
    evaluate,
    fit,
    read_metrics,
)
from jaxlab.train.monitor import sharpness_monitor
from jaxlab.train.objectives import classification_objective
from jaxlab.train.parallel import DataParallel, force_host_devices
from jaxlab.train.state import TrainState
from jaxlab.train.step import make_eval_step, make_train_step

__all__ = [
    "Checkpointer",
    "DataParallel",
    "LoopConfig",
    "MetricsLog",
    "NonFiniteLossError",
    "TrainState",
    "classification_objective",
    "evaluate",
    "fit",
    "force_host_devices",
    "full_batch_descent",
    "make_eval_step",
    "make_train_step",
    "read_metrics",
    "sharpness_monitor",
]
