"""One training run from a flat configuration: dataset, model, optimizer, devices, schedule.

This is what ``scripts/train.py`` and the README's main job call; a config file (JSON) holds the
same keys as :class:`ExperimentConfig`.
"""

import dataclasses
import inspect
from typing import Any

import jax
import numpy as np

from jaxlab.data import DATASETS, Dataset, load_dataset, standardize
from jaxlab.models import create_model, init_model
from jaxlab.optim.registry import make_optimizer
from jaxlab.train.loop import LoopConfig, fit
from jaxlab.train.monitor import sharpness_monitor
from jaxlab.train.objectives import classification_objective
from jaxlab.train.parallel import DataParallel
from jaxlab.train.state import TrainState
from jaxlab.train.step import make_eval_step, make_train_step

CLASSIFICATION_DATASETS = ("digits", "fashion_mnist", "mnist1d", "cifar10")
IMAGE_MODELS = ("cnn", "resnet18", "wrn")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A classification run. ``optimizer_options`` and ``model_options`` are keyword arguments
    of :func:`~jaxlab.optim.registry.make_optimizer` and :func:`~jaxlab.models.create_model`.

    ``seed`` seeds the initialisation, the batches and the label noise; ``data_seed`` is the
    loader's own seed (the digits train/test split, the MNIST-1D generation), its default when
    None, so that runs over several ``seed``s share one split unless asked otherwise.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    label_noise: float = 0.0
    model: str = "mlp"
    model_options: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "momentum"
    optimizer_options: dict = dataclasses.field(default_factory=dict)
    learning_rate: float = 0.1
    label_smoothing: float = 0.0
    sam_rho: float | None = None
    accumulation_steps: int = 1
    steps: int = 500
    batch_size: int = 128
    seed: int = 0
    data_seed: int | None = None
    devices: int = 1
    parallel: str = "shard_map"
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    monitor_every: int = 0
    monitor_batch_size: int = 256
    progress: bool | None = None

    def __post_init__(self):
        if self.dataset not in CLASSIFICATION_DATASETS:
            raise ValueError(
                f"dataset must be one of {CLASSIFICATION_DATASETS}, got {self.dataset!r}"
            )
        for name in ("steps", "batch_size", "accumulation_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.data_seed is not None:
            if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int):
                raise ValueError(f"data_seed must be an int or None, got {self.data_seed!r}")
            if "seed" not in inspect.signature(DATASETS[self.dataset]).parameters:
                raise ValueError(
                    f"dataset {self.dataset!r} has a fixed split, got data_seed={self.data_seed}"
                )
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got {self.label_noise!r}")
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.parallel not in ("pmap", "shard_map"):
            raise ValueError(f"parallel must be 'pmap' or 'shard_map', got {self.parallel!r}")
        if not isinstance(self.devices, int) or self.devices < 1:
            raise ValueError(f"devices must be an int >= 1, got {self.devices!r}")
        if self.batch_size % self.devices:
            raise ValueError(
                f"batch_size={self.batch_size} must be divisible by devices={self.devices}"
            )
        self.loop_config()  # validates the schedule fields

    def loop_config(self) -> LoopConfig:
        return LoopConfig(
            num_steps=self.steps,
            batch_size=self.batch_size,
            seed=self.seed,
            log_every=self.log_every,
            eval_every=self.eval_every,
            eval_batch_size=max(self.devices, 256 // self.devices * self.devices),
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints,
            monitor_every=self.monitor_every,
            progress=self.progress,
        )

    @classmethod
    def from_dict(cls, values: dict) -> "ExperimentConfig":
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**values)


def load_experiment_data(config: ExperimentConfig) -> Dataset:
    """The standardized dataset, as images for convolutional models."""
    options = {}
    if config.dataset in ("digits", "fashion_mnist"):
        options["image"] = config.model in IMAGE_MODELS
    dataset = load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        label_noise=config.label_noise,
        seed=config.seed,
        data_seed=config.data_seed,
        **options,
    )
    return standardize(dataset)


def build_model(config: ExperimentConfig, num_classes: int, axis_name: str | None = None):
    options = dict(config.model_options)
    model = create_model(config.model, num_classes=num_classes, **options)
    if "bn_axis_name" in inspect.signature(type(model)).parameters:
        model = model.clone(bn_axis_name=axis_name)
    return model


def parallel_for(config: ExperimentConfig) -> DataParallel:
    if config.devices == 1:
        return DataParallel()
    return DataParallel(config.parallel, config.devices)


def initial_state(config: ExperimentConfig, dataset: Dataset, axis_name: str | None = None):
    """The step-0 :class:`TrainState` (also the template a checkpoint is restored into)."""
    key_init, key_train = jax.random.split(jax.random.PRNGKey(config.seed))
    params, model_state = init_model(
        build_model(config, dataset.num_classes), key_init, dataset.x_train[:1]
    )
    tx = make_optimizer(
        config.optimizer, config.learning_rate, axis_name=axis_name, **config.optimizer_options
    )
    return TrainState.create(params=params, tx=tx, key=key_train, model_state=model_state)


def run_experiment(
    config: ExperimentConfig, workdir, *, resume: bool = False, log=None
) -> tuple[TrainState, dict[str, Any], Dataset, Any]:
    """Train as configured; returns the final host state, the final evaluation, the dataset and
    the inference-mode curvature loss ``(params, (model_state, batch)) -> loss``."""
    dataset = load_experiment_data(config)
    parallel = parallel_for(config)
    state = initial_state(config, dataset, parallel.axis_name)
    model = build_model(config, dataset.num_classes, parallel.axis_name)
    loss_fn, eval_fn, _ = classification_objective(model, label_smoothing=config.label_smoothing)
    # The curvature measures run outside the mapped axis: a model without a BatchNorm axis.
    _, _, curvature_loss_fn = classification_objective(build_model(config, dataset.num_classes))
    train_step = make_train_step(
        loss_fn, axis_name=parallel.axis_name, accumulation_steps=config.accumulation_steps,
        sam_rho=config.sam_rho,
    )  # fmt: skip
    eval_step = make_eval_step(eval_fn, axis_name=parallel.axis_name)
    monitor = None
    if config.monitor_every:
        monitor = sharpness_monitor(
            curvature_loss_fn,
            first_examples(dataset, config.monitor_batch_size),
            learning_rate=config.learning_rate,
            optimizer="momentum" if config.optimizer == "momentum" else "gd",
            momentum=config.optimizer_options.get("momentum", 0.9),
            num_trace_probes=10,
        )
    state, result = fit(
        state, dataset, train_step=train_step, eval_step=eval_step, parallel=parallel,
        config=config.loop_config(), workdir=workdir, resume=resume, monitor=monitor, log=log,
    )  # fmt: skip
    return state, result, dataset, curvature_loss_fn


def first_examples(dataset: Dataset, size: int) -> dict:
    """The first ``size`` training examples as a host batch (the curvature measures' batch)."""
    return {"x": np.asarray(dataset.x_train[:size]), "y": np.asarray(dataset.y_train[:size])}
