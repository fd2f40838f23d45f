"""Loaders for real datasets from local files or installed packages (nothing is ever downloaded).

* digits: scikit-learn's bundled 8x8 digits.
* Fashion-MNIST: IDX files, by default from the Debian package ``dataset-fashion-mnist``.
* MNIST-1D: generated offline by the ``mnist1d`` package.
* CIFAR-10: the "python version" pickle batches.
"""

import gzip
import os
import pickle
import random
from pathlib import Path

import numpy as np

from jaxlab.data.dataset import Dataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


def load_digits(*, test_fraction: float = 0.2, seed: int = 0, image: bool = False) -> Dataset:
    """The scikit-learn 8x8 handwritten digits (1797 examples, 10 classes), split stratified.

    Pixels (integers 0..16) are divided by 16 into ``[0, 1]``. The split is
    ``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``, so each
    class keeps its proportion in both splits and the same ``seed`` gives the same split.

    Args:
      test_fraction: fraction of the examples in the test split, in ``(0, 1)``.
      seed: seed of the split.
      image: return NHWC images ``[N, 8, 8, 1]`` instead of vectors ``[N, 64]``.

    Returns:
      :class:`Dataset` with float32 inputs in ``[0, 1]``, int32 labels, ``num_classes=10``.

    Examples:
      >>> ds = load_digits(image=True)
      >>> ds.x_train.shape[1:], len(ds.x_train) + len(ds.x_test)
      ((8, 8, 1), 1797)
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got test_fraction={test_fraction}")
    x, y = sk_load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y.astype(np.int32), test_size=test_fraction, random_state=seed, stratify=y
    )
    return Dataset("digits", x_train, y_train, x_test, y_test, num_classes=10)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (optionally gzipped) with the expected magic number.

    Layout: a big-endian uint32 magic ``0x000008NN`` (``0x08`` = unsigned byte, ``NN`` = number of
    dimensions), ``NN`` big-endian uint32 sizes, then the row-major uint8 data.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"{path} is too short for an IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path} has IDX magic number {found:#010x}, expected {magic:#010x}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} declares shape {shape} ({int(np.prod(shape))} bytes) but holds "
            f"{data.size} data bytes"
        )
    return data.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, image: bool = True) -> Dataset:
    """Fashion-MNIST (60000 train / 10000 test 28x28 grayscale images, 10 classes) from IDX files.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each either plain or gzipped (``.gz``). The IDX format is
    parsed here (magic ``0x00000803`` for images, ``0x00000801`` for labels, big-endian sizes).
    Xiao et al., "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
    Algorithms", https://arxiv.org/abs/1708.07747.

    Args:
      data_dir: directory of the four files; default ``/usr/share/datasets/fashion-mnist``
        (Debian package ``dataset-fashion-mnist``).
      image: return NHWC images ``[N, 28, 28, 1]`` instead of vectors ``[N, 784]``.

    Returns:
      :class:`Dataset` with float32 pixels ``/ 255`` in ``[0, 1]``, int32 labels,
      ``num_classes=10``.

    Raises:
      FileNotFoundError: if a file is missing (the message says how to install or point to it).
      ValueError: on a bad magic number, a size mismatch, or image/label counts that differ.
    """
    directory = FASHION_MNIST_DIR if data_dir is None else Path(data_dir)
    paths = {key: _find_idx(directory, stem) for key, stem in _FASHION_FILES.items()}
    missing = [_FASHION_FILES[key] + "[.gz]" for key, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files missing in {directory}: {', '.join(missing)}. Install them with "
            "`sudo apt-get install dataset-fashion-mnist` (into "
            f"{FASHION_MNIST_DIR}) or pass data_dir= pointing to a directory holding them."
        )
    arrays = {}
    for key, path in paths.items():
        arrays[key] = _read_idx(path, _IDX_IMAGES_MAGIC if key[0] == "x" else _IDX_LABELS_MAGIC)
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_x != n_y:
            raise ValueError(f"Fashion-MNIST {split} split has {n_x} images but {n_y} labels")
    out = {}
    for key, a in arrays.items():
        if key[0] == "x":
            a = a.astype(np.float32) / np.float32(255.0)
            a = a[..., None] if image else a.reshape(len(a), -1)
        else:
            a = a.astype(np.int32)
        out[key] = a
    return Dataset("fashion_mnist", **out, num_classes=10)


def load_mnist1d(*, num_samples: int = 5000, seed: int = 42, train_split: float = 0.8) -> Dataset:
    """MNIST-1D generated offline with the ``mnist1d`` package (never downloads).

    Calls ``mnist1d.data.make_dataset`` with ``get_dataset_args()`` overridden by the arguments;
    it reseeds Python's ``random`` and NumPy's global RNG, whose states are saved and restored
    around the call. ``num_samples // 10`` examples per class are made; the defaults give the
    canonical 4000/1000 split. Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D",
    https://arxiv.org/abs/2011.14439.

    Args:
      num_samples: total number of examples (``>= 10``; rounded down to a multiple of 10).
      seed: generation seed (42 is the published dataset).
      train_split: fraction of the examples in the train split, in ``(0, 1)``.

    Returns:
      :class:`Dataset` with float32 ``x: [N, 40]``, int32 labels, ``num_classes=10``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise ValueError(f"num_samples must be an int >= 10, got num_samples={num_samples!r}")
    if num_samples < 10:
        raise ValueError(f"num_samples must be an int >= 10, got num_samples={num_samples!r}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must lie in (0, 1), got train_split={train_split}")
    n = num_samples // 10 * 10
    if not 0 < int(n * train_split) < n:
        raise ValueError(
            f"train_split={train_split} leaves an empty split of num_samples={num_samples}"
        )
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = int(num_samples), seed, train_split
    # mnist1d seeds the legacy global RNGs; we only save and restore their state.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return Dataset(
        "mnist1d",
        x_train=np.asarray(data["x"], dtype=np.float32),
        y_train=np.asarray(data["y"], dtype=np.int32),
        x_test=np.asarray(data["x_test"], dtype=np.float32),
        y_test=np.asarray(data["y_test"], dtype=np.int32),
        num_classes=10,
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path} is not a CIFAR-10 batch: keys {sorted(map(repr, batch))}")
    data = np.asarray(data, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int32)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(
            f"{path}: expected data [N, 3072] and N labels, got data.shape={data.shape}, "
            f"{len(labels)} labels"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images.astype(np.float32) / np.float32(255.0), labels


def load_cifar10(data_dir: str | os.PathLike) -> Dataset:
    """CIFAR-10 (50000 train / 10000 test 32x32 RGB images, 10 classes) from the pickle batches.

    Reads ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` of the "CIFAR-10 python
    version": pickled dicts with ``b"data"`` (uint8 ``[N, 3072]``, each row the R, G, B planes of
    a 32x32 image, row-major) and ``b"labels"``. Rows are reordered CHW → HWC. An optional
    ``batches.meta`` sets ``num_classes`` to ``len(label_names)``. If ``data_dir`` lacks the
    files but holds the extracted ``cifar-10-batches-py`` folder, that folder is used. Only load
    trusted files: pickle can execute code. Krizhevsky, "Learning Multiple Layers of Features
    from Tiny Images" (2009), https://www.cs.toronto.edu/~kriz/cifar.html.

    Args:
      data_dir: directory holding the batch files.

    Returns:
      :class:`Dataset` with float32 NHWC images ``[N, 32, 32, 3]`` in ``[0, 1]``, int32 labels.

    Raises:
      FileNotFoundError: listing the missing batch files.
      ValueError: if a file is not a well-formed CIFAR-10 batch.
    """
    directory = Path(data_dir)
    names = (*_CIFAR_TRAIN, _CIFAR_TEST)
    if not all((directory / f).is_file() for f in names):
        nested = directory / "cifar-10-batches-py"
        if all((nested / f).is_file() for f in names):
            directory = nested
    missing = [f for f in names if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batch files missing in {directory}: {', '.join(missing)} (expected the "
            "extracted 'CIFAR-10 python version', cifar-10-python.tar.gz)"
        )
    train = [_read_cifar_batch(directory / f) for f in _CIFAR_TRAIN]
    x_test, y_test = _read_cifar_batch(directory / _CIFAR_TEST)
    num_classes = 10
    meta_path = directory / "batches.meta"
    if meta_path.is_file():
        with open(meta_path, "rb") as f:
            meta = pickle.load(f, encoding="bytes")
        names = meta.get(b"label_names", meta.get("label_names"))
        if names is not None:
            num_classes = len(names)
    return Dataset(
        "cifar10",
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
    )
