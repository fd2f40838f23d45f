"""Tests for jaxlab.data.load_dataset and the DATASETS registry."""

import pickle

import numpy as np
import pytest

import jaxlab.data as data
from jaxlab.data import DATASETS, load_dataset, modular_arithmetic, with_label_noise


def test_registry_names():
    assert set(DATASETS) == {
        "digits",
        "fashion_mnist",
        "mnist1d",
        "cifar10",
        "teacher_student",
        "modular_arithmetic",
    }
    for fn in DATASETS.values():
        assert callable(fn)
    assert set(data.__all__) <= set(dir(data))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"cifar10.*digits.*teacher_student") as err:
        load_dataset("imagenet")
    assert "imagenet" in str(err.value)


def test_options_forwarded_and_unknown_option():
    ds = load_dataset("modular_arithmetic", modulus=11, operation="multiply")
    ref = modular_arithmetic(modulus=11, operation="multiply")
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_train, ref.y_train)
    assert ds.noisy_train is None
    with pytest.raises(TypeError, match=r"\['modulo'\].*modulus"):
        load_dataset("modular_arithmetic", modulo=11)


def test_label_noise_uses_seed():
    ds = load_dataset("modular_arithmetic", modulus=7, label_noise=0.25, seed=5)
    ref = with_label_noise(modular_arithmetic(modulus=7), 0.25, seed=5)
    np.testing.assert_array_equal(ds.y_train, ref.y_train)
    np.testing.assert_array_equal(ds.noisy_train, ref.noisy_train)
    other = load_dataset("modular_arithmetic", modulus=7, label_noise=0.25, seed=6)
    assert not np.array_equal(ds.noisy_train, other.noisy_train)
    with pytest.raises(ValueError, match="num_classes"):
        load_dataset("teacher_student", label_noise=0.1)
    with pytest.raises(ValueError, match="fraction"):
        load_dataset("modular_arithmetic", modulus=7, label_noise=2.0)


def test_data_dir_routing(tmp_path):
    with pytest.raises(ValueError, match="requires data_dir"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion_mnist", data_dir=tmp_path)
    # Loaders without data_dir ignore it.
    ds = load_dataset("teacher_student", data_dir=tmp_path, num_train=4, num_test=2)
    assert ds.x_train.shape == (4, 16)


def test_cifar10_through_registry(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    ds = load_dataset("cifar10", data_dir=tmp_path, label_noise=0.5, seed=0)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.noisy_train.sum() == 5


def test_data_seed_reaches_the_loader():
    for seed in (0, 3):
        got = load_dataset("modular_arithmetic", modulus=7, data_seed=seed)
        want = modular_arithmetic(modulus=7, seed=seed)
        np.testing.assert_array_equal(got.x_train, want.x_train)
    a = load_dataset("modular_arithmetic", modulus=7, data_seed=0)
    b = load_dataset("modular_arithmetic", modulus=7, data_seed=3)
    assert not np.array_equal(a.x_train, b.x_train)
    with pytest.raises(ValueError, match="data_seed"):
        load_dataset("cifar10", data_dir="/nonexistent", data_seed=1)
