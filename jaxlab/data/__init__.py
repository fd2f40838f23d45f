"""Host-side datasets (NumPy): loaders, synthetic tasks, label noise, and stateless batching.

``load_dataset(name, ...)`` looks a loader up in :data:`DATASETS`, calls it, and optionally
injects label noise. Batches come from :func:`get_batch`, a pure function of ``(seed, step)``.
"""

import inspect
import os
from collections.abc import Callable

from jaxlab.data.batching import batch_indices, get_batch, shard_for_devices
from jaxlab.data.dataset import Dataset, standardize, with_label_noise
from jaxlab.data.loaders import load_cifar10, load_digits, load_fashion_mnist, load_mnist1d
from jaxlab.data.synthetic import modular_arithmetic, teacher_student

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "mnist1d": load_mnist1d,
    "cifar10": load_cifar10,
    "teacher_student": teacher_student,
    "modular_arithmetic": modular_arithmetic,
}
"""Registry of dataset names to loader functions used by :func:`load_dataset`."""


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    data_seed: int | None = None,
    **options,
) -> Dataset:
    """Load a registered dataset by name, optionally with symmetric train label noise.

    ``data_dir`` is forwarded only to loaders that take it (``fashion_mnist`` optionally,
    ``cifar10`` requires it) and ignored by the others. ``options`` are the loader's own
    keyword arguments. ``seed`` seeds the label noise; ``data_seed`` is the loader's own
    ``seed`` (its split or generation; the loader's default when None).

    Args:
      name: a key of :data:`DATASETS`.
      data_dir: directory of the data files, for loaders that read files.
      label_noise: fraction of train labels replaced by :func:`with_label_noise` (0: none).
      seed: seed of the label noise.
      data_seed: the loader's ``seed`` (digits, mnist1d, teacher_student, modular_arithmetic);
        a ValueError for loaders without one.
      **options: keyword arguments of the loader (e.g. ``image=True``, ``modulus=97``).

    Returns:
      The :class:`Dataset`.

    Raises:
      ValueError: on an unknown ``name``, a missing required ``data_dir``, or bad label noise.
      TypeError: on an option the loader does not accept.

    Examples:
      >>> ds = load_dataset("modular_arithmetic", modulus=7, label_noise=0.5, seed=1)
      >>> ds.num_classes, int(ds.noisy_train.sum()) == round(0.5 * len(ds.y_train))
      (7, True)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name={name!r}; valid names: {sorted(DATASETS)}")
    loader = DATASETS[name]
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - {p for p in params if p != "data_dir"})
    if unknown:
        valid = sorted(p for p in params if p != "data_dir")
        raise TypeError(f"dataset {name!r} got unknown options {unknown}; valid options: {valid}")
    if "data_dir" in params:
        required = params["data_dir"].default is inspect.Parameter.empty
        if data_dir is None and required:
            raise ValueError(f"dataset {name!r} requires data_dir=, got data_dir=None")
        if data_dir is not None:
            options["data_dir"] = data_dir
    if data_seed is not None:
        if "seed" not in params:
            raise ValueError(f"dataset {name!r} takes no seed, got data_seed={data_seed!r}")
        options["seed"] = data_seed
    dataset = loader(**options)
    if label_noise:
        dataset = with_label_noise(dataset, label_noise, seed=seed)
    return dataset


__all__ = [
    "DATASETS",
    "Dataset",
    "batch_indices",
    "get_batch",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist1d",
    "modular_arithmetic",
    "shard_for_devices",
    "standardize",
    "teacher_student",
    "with_label_noise",
]
