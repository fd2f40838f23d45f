"""Tests for jaxlab.data.loaders on small real-format files (IDX, CIFAR pickles) and packages."""

import gzip
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from jaxlab.data import load_cifar10, load_digits, load_fashion_mnist, load_mnist1d
from jaxlab.data.loaders import FASHION_MNIST_DIR

# --------------------------------------------------------------------------- Fashion-MNIST (IDX)

_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX file as documented by LeCun: big-endian magic, big-endian uint32 dims, uint8 data."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, payload: bytes, gz: bool) -> None:
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _make_idx_dir(tmp_path: Path, gz, n_train=7, n_test=5, seed=0):
    """Write the four IDX files; ``gz`` is a bool or a per-file dict."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, a in arrays.items():
        magic = 0x00000803 if key.endswith("images") else 0x00000801
        use_gz = gz[key] if isinstance(gz, dict) else gz
        _write(tmp_path / _STEMS[key], _idx_bytes(a, magic), use_gz)
    return arrays


@pytest.mark.parametrize(
    "gz",
    [
        True,
        False,
        {"train_images": True, "train_labels": False, "test_images": False, "test_labels": True},
    ],
)
def test_fashion_mnist_idx_roundtrip(tmp_path, gz):
    arrays = _make_idx_dir(tmp_path, gz)
    ds = load_fashion_mnist(tmp_path)
    assert ds.name == "fashion_mnist" and ds.num_classes == 10
    assert ds.x_train.shape == (7, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    # Exact pixel values: k / 255 in float32, recovered bit for bit.
    np.testing.assert_array_equal(np.rint(ds.x_train[..., 0] * 255), arrays["train_images"])
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["test_images"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])


def test_fashion_mnist_vectors(tmp_path):
    arrays = _make_idx_dir(tmp_path, gz=False)
    ds = load_fashion_mnist(str(tmp_path), image=False)
    assert ds.x_train.shape == (7, 784)
    # Row-major flattening: pixel (r, c) is feature 28 r + c.
    assert ds.x_train[3, 28 * 5 + 17] == np.float32(arrays["train_images"][3, 5, 17]) / 255


def test_fashion_mnist_bad_magic(tmp_path):
    _make_idx_dir(tmp_path, gz=False)
    labels = np.zeros(7, np.uint8)
    (tmp_path / _STEMS["train_labels"]).write_bytes(_idx_bytes(labels, 0x00000803))
    with pytest.raises(ValueError, match="magic"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_truncated_data(tmp_path):
    _make_idx_dir(tmp_path, gz=True)
    path = tmp_path / (_STEMS["test_images"] + ".gz")
    with gzip.open(path, "rb") as f:
        payload = f.read()
    _write(tmp_path / _STEMS["test_images"], payload[:-3], gz=True)
    with pytest.raises(ValueError, match="data bytes"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_count_mismatch(tmp_path):
    _make_idx_dir(tmp_path, gz=False)
    (tmp_path / _STEMS["test_labels"]).write_bytes(_idx_bytes(np.zeros(4, np.uint8), 0x801))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="sudo apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
    _make_idx_dir(tmp_path, gz=False)
    (tmp_path / _STEMS["test_labels"]).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as err:
        load_fashion_mnist(tmp_path)
    assert "data_dir" in str(err.value) and "train-images" not in str(err.value)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_installed():
    ds = load_fashion_mnist()
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # Balanced classes: 6000 train / 1000 test images per class (Xiao et al. 2017).
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))


# --------------------------------------------------------------------------- CIFAR-10 (pickle)


def _cifar_batch(rng, n):
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # HWC ground truth
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # R plane, G plane, B plane
    return images, {b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(), b"data": data}


def _write_cifar(directory: Path, n=3, with_meta=True, skip=()):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    truth = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images, batch = _cifar_batch(rng, n)
        truth[name] = (images, np.array(batch[b"labels"]))
        if name not in skip:
            with open(directory / name, "wb") as f:
                pickle.dump(batch, f, protocol=2)
    if with_meta:
        meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
        with open(directory / "batches.meta", "wb") as f:
            pickle.dump(meta, f, protocol=2)
    return truth


def test_cifar10_roundtrip(tmp_path):
    truth = _write_cifar(tmp_path)
    ds = load_cifar10(tmp_path)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    train_images = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = np.concatenate([truth[f"data_batch_{i}"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.x_train, train_images / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, train_labels)
    np.testing.assert_array_equal(np.rint(ds.x_test * 255), truth["test_batch"][0])
    np.testing.assert_array_equal(ds.y_test, truth["test_batch"][1])


def test_cifar10_chw_to_hwc_hand_built(tmp_path):
    # One hand-built image: red plane = 255 everywhere, green = row index, blue = column index.
    red = np.full(1024, 255, np.uint8)
    green = np.repeat(np.arange(32, dtype=np.uint8), 32)  # row-major: value = row
    blue = np.tile(np.arange(32, dtype=np.uint8), 32)  # value = column
    row = np.concatenate([red, green, blue])[None]
    _write_cifar(tmp_path, with_meta=False)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": row, b"labels": [7]}, f, protocol=2)
    ds = load_cifar10(str(tmp_path))
    img = ds.x_test[0] * 255
    assert ds.y_test.tolist() == [7]
    for r, c in [(0, 0), (0, 31), (5, 9), (31, 2)]:
        np.testing.assert_allclose(img[r, c], [255, r, c], atol=1e-4)


def test_cifar10_nested_folder_and_str_keys(tmp_path):
    truth = _write_cifar(tmp_path / "cifar-10-batches-py", with_meta=False)
    ds = load_cifar10(tmp_path)
    np.testing.assert_array_equal(np.rint(ds.x_test * 255), truth["test_batch"][0])


def test_cifar10_missing_files_listed(tmp_path):
    _write_cifar(tmp_path, skip=("data_batch_3", "test_batch"))
    with pytest.raises(FileNotFoundError, match="data_batch_3, test_batch") as err:
        load_cifar10(tmp_path)
    assert "data_batch_1" not in str(err.value)


def test_cifar10_malformed_batch(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(tmp_path)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_stratification():
    ds = load_digits()
    assert ds.x_train.shape[1:] == (64,) and ds.x_train.dtype == np.float32
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 360  # ceil(0.2 * 1797), sklearn's convention
    both = np.concatenate([ds.x_train, ds.x_test])
    assert both.min() == 0.0 and both.max() == 1.0
    # Multiples of 1/16 exactly (pixels are integers 0..16).
    np.testing.assert_array_equal(both * 16, np.rint(both * 16))
    # Stratified: each class's test share is within one example of the global share.
    from sklearn.datasets import load_digits as sk_load

    _, y = sk_load(return_X_y=True)
    total = np.bincount(y, minlength=10)
    test = np.bincount(ds.y_test, minlength=10)
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10) + test, total)
    assert np.abs(test - total * 360 / 1797).max() <= 1.0


def test_digits_image_and_determinism():
    a = load_digits(image=True, seed=1)
    b = load_digits(image=True, seed=1)
    c = load_digits(seed=1)
    d = load_digits(seed=2)
    assert a.x_train.shape[1:] == (8, 8, 1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_train.reshape(-1, 64), c.x_train)
    assert not np.array_equal(c.y_train, d.y_train)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)


def test_digits_matches_sklearn_pixels():
    from sklearn.datasets import load_digits as sk_load

    x, y = sk_load(return_X_y=True)
    ds = load_digits(image=True)
    # Every image (with its label) is a row of the sklearn data / 16.
    rows = {(tuple(r), int(t)) for r, t in zip(x / 16.0, y, strict=True)}
    for img, label in zip(ds.x_test[:20], ds.y_test[:20], strict=True):
        assert (tuple(img.reshape(64).astype(np.float64)), int(label)) in rows


# --------------------------------------------------------------------------- MNIST-1D


def test_mnist1d_shapes_determinism_and_global_rng_untouched(restore_global_rngs):
    np.random.seed(123)  # noqa: NPY002 (the legacy global state is under test)
    random.seed(7)
    np_before, py_before = np.random.get_state(), random.getstate()  # noqa: NPY002
    a = load_mnist1d(num_samples=200, seed=3)
    np_after, py_after = np.random.get_state(), random.getstate()  # noqa: NPY002
    assert np_before[0] == np_after[0]
    np.testing.assert_array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert py_before == py_after
    assert a.x_train.shape == (160, 40) and a.x_test.shape == (40, 40)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
    assert a.num_classes == 10 and set(np.unique(a.y_train)) <= set(range(10))
    np.testing.assert_array_equal(np.bincount(np.concatenate([a.y_train, a.y_test])), 20)
    b = load_mnist1d(num_samples=200, seed=3)
    c = load_mnist1d(num_samples=200, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.allclose(a.x_train, c.x_train)


def test_mnist1d_matches_package(restore_global_rngs):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 100, 42
    ref = make_dataset(args)  # reseeds the global RNGs (restored by the fixture)
    ds = load_mnist1d(num_samples=100)
    np.testing.assert_allclose(ds.x_train, ref["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 5}, "num_samples"),
        ({"train_split": 1.0}, "train_split"),
        ({"num_samples": 10, "train_split": 0.05}, "empty"),
    ],
)
def test_mnist1d_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_mnist1d(**kwargs)
