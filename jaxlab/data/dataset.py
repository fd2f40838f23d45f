"""The in-memory ``Dataset`` container and dataset-level transforms (label noise, standardization).

Everything here is host-side NumPy: a :class:`Dataset` holds the full train and test splits as
``np.ndarray`` and the transforms return new datasets without mutating their input.
"""

import dataclasses
import numbers

import numpy as np


def _check_array(name: str, value) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a np.ndarray, got {name}={type(value).__name__}")
    if value.ndim == 0:
        raise ValueError(f"{name} must have a leading example axis, got {name}.shape={value.shape}")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A supervised dataset with a train and a test split, all host-side NumPy arrays.

    Attributes:
      name: human-readable name (e.g. ``"digits"``).
      x_train: ``[N, ...]`` inputs: float32 features (images NHWC in ``[0, 1]``, vectors
        ``[N, D]``) or int32 token ids (modular arithmetic).
      y_train: ``[N]`` int32 class labels, or ``[N, ...]`` float32 regression targets.
      x_test: ``[M, ...]`` inputs with the same trailing shape as ``x_train``.
      y_test: ``[M, ...]`` targets with the same trailing shape as ``y_train``.
      num_classes: number of classes (labels lie in ``[0, num_classes)``), ``None`` for regression.
      noisy_train: optional ``[N]`` bool mask of the train labels replaced by
        :func:`with_label_noise` (``None`` when no noise was injected).

    Raises:
      TypeError: if a split is not a ``np.ndarray``.
      ValueError: naming the offending field on inconsistent lengths/shapes, an empty train split,
        non-integer or out-of-range labels, or a bad ``num_classes``.

    Examples:
      >>> import numpy as np
      >>> ds = Dataset("toy", np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1], np.int32),
      ...              np.zeros((2, 2), np.float32), np.array([1, 0], np.int32), num_classes=2)
      >>> ds.x_train.shape, ds.num_classes
      ((4, 2), 2)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None
    noisy_train: np.ndarray | None = None

    def __post_init__(self) -> None:
        for field in ("x_train", "y_train", "x_test", "y_test"):
            _check_array(field, getattr(self, field))
        n, m = len(self.x_train), len(self.x_test)
        if n == 0:
            raise ValueError(f"x_train must be non-empty, got x_train.shape={self.x_train.shape}")
        if len(self.y_train) != n:
            raise ValueError(
                f"y_train must have len(x_train)={n} rows, got y_train.shape={self.y_train.shape}"
            )
        if len(self.y_test) != m:
            raise ValueError(
                f"y_test must have len(x_test)={m} rows, got y_test.shape={self.y_test.shape}"
            )
        if self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(
                f"x_test must have the trailing shape of x_train {self.x_train.shape[1:]}, "
                f"got x_test.shape={self.x_test.shape}"
            )
        if self.y_test.shape[1:] != self.y_train.shape[1:]:
            raise ValueError(
                f"y_test must have the trailing shape of y_train {self.y_train.shape[1:]}, "
                f"got y_test.shape={self.y_test.shape}"
            )
        if self.num_classes is not None:
            self._check_labels()
        if self.noisy_train is not None:
            _check_array("noisy_train", self.noisy_train)
            if self.noisy_train.dtype != np.bool_ or self.noisy_train.shape != (n,):
                raise ValueError(
                    f"noisy_train must be a bool array of shape ({n},), got "
                    f"noisy_train.dtype={self.noisy_train.dtype}, shape={self.noisy_train.shape}"
                )

    def _check_labels(self) -> None:
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"num_classes must be a positive int or None, got num_classes={k!r}")
        for field in ("y_train", "y_test"):
            y = getattr(self, field)
            if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
                raise ValueError(
                    f"{field} must be a 1-D integer label array when num_classes is set, got "
                    f"{field}.dtype={y.dtype}, {field}.shape={y.shape}"
                )
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(
                    f"{field} labels must lie in [0, num_classes={k}), got range "
                    f"[{y.min()}, {y.max()}]"
                )


def with_label_noise(dataset: Dataset, fraction: float, *, seed: int) -> Dataset:
    """Replace a fraction of the train labels by a uniformly random *different* class.

    Exactly ``k = round(fraction * N)`` train labels are corrupted: the first ``k`` entries of a
    seeded permutation of ``range(N)``; each gets ``(y + u) mod C`` with ``u ~ U{1, ..., C-1}``,
    i.e. a uniform draw among the ``C - 1`` other classes. The test split is untouched. This is
    the "symmetric" label noise of Zhang et al., "Understanding deep learning requires rethinking
    generalization", https://arxiv.org/abs/1611.03530, with the true label excluded.

    Args:
      dataset: a classification :class:`Dataset` with ``num_classes >= 2`` and no noise yet.
      fraction: fraction of train labels to corrupt, in ``[0, 1]``.
      seed: seed of ``np.random.default_rng`` that picks the examples and their new labels.

    Returns:
      A new :class:`Dataset` with noisy ``y_train`` and ``noisy_train`` marking the ``k``
      corrupted examples.

    Raises:
      ValueError: if ``fraction`` is outside ``[0, 1]``, the dataset is a regression dataset or
        has fewer than 2 classes, or it already carries label noise.

    Examples:
      >>> import numpy as np
      >>> ds = Dataset("toy", np.zeros((10, 1), np.float32), np.zeros(10, np.int32),
      ...              np.zeros((1, 1), np.float32), np.zeros(1, np.int32), num_classes=3)
      >>> noisy = with_label_noise(ds, 0.3, seed=0)
      >>> int(noisy.noisy_train.sum()), int((noisy.y_train != 0).sum())
      (3, 3)
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got fraction={fraction}")
    if dataset.num_classes is None or dataset.num_classes < 2:
        raise ValueError(
            "with_label_noise needs a classification dataset with num_classes >= 2, got "
            f"num_classes={dataset.num_classes}"
        )
    if dataset.noisy_train is not None:
        raise ValueError(
            f"dataset {dataset.name!r} already carries label noise (noisy_train is set); "
            "apply with_label_noise once to the clean dataset"
        )
    n, c = len(dataset.y_train), dataset.num_classes
    k = round(fraction * n)
    rng = np.random.default_rng(seed)
    flipped = rng.permutation(n)[:k]
    shift = rng.integers(1, c, size=k)
    y = dataset.y_train.copy()
    y[flipped] = (y[flipped] + shift) % c
    mask = np.zeros(n, dtype=bool)
    mask[flipped] = True
    return dataclasses.replace(dataset, y_train=y, noisy_train=mask)


def standardize(dataset: Dataset) -> Dataset:
    r"""Standardize inputs per feature (vectors) or per channel (NHWC images) with train statistics.

    .. math::
      x' = \frac{x - \mu}{\max(\sigma, 10^{-6})}

    with ``μ, σ`` the mean and (population) standard deviation over the train split, taken over
    every axis but the last one (the feature/channel axis; a 1-D input is one feature). The same
    ``μ, σ`` are applied to both splits; statistics accumulate in float64, output is float32.

    Args:
      dataset: a :class:`Dataset` with floating-point inputs.

    Returns:
      A new :class:`Dataset` with standardized ``x_train`` and ``x_test`` (float32).

    Raises:
      ValueError: if the inputs are not floating point (e.g. token ids).

    Examples:
      >>> import numpy as np
      >>> ds = Dataset("toy", np.array([[0.0], [2.0]], np.float32), np.array([0, 1], np.int32),
      ...              np.array([[4.0]], np.float32), np.array([0], np.int32), num_classes=2)
      >>> s = standardize(ds)
      >>> s.x_train.ravel().tolist(), s.x_test.ravel().tolist()
      ([-1.0, 1.0], [3.0])
    """
    x = dataset.x_train
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"standardize needs floating-point inputs, got x_train.dtype={x.dtype} "
            f"for dataset {dataset.name!r}"
        )
    axes = tuple(range(x.ndim - 1)) if x.ndim > 1 else (0,)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    std = x64.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-6, 1.0, std)  # a constant train feature is only centred

    def apply(a: np.ndarray) -> np.ndarray:
        return ((a.astype(np.float64) - mean) / std).astype(np.float32)

    return dataclasses.replace(dataset, x_train=apply(x), x_test=apply(dataset.x_test))
