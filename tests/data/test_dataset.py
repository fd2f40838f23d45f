"""Tests for jaxlab.data.dataset: Dataset validation, with_label_noise, standardize."""

import dataclasses

import numpy as np
import pytest

from jaxlab.data import Dataset, standardize, with_label_noise


def _toy(n=200, m=50, num_classes=5, seed=0, x_shape=(3,)):
    rng = np.random.default_rng(seed)
    return Dataset(
        "toy",
        x_train=rng.normal(3.0, 2.0, (n, *x_shape)).astype(np.float32),
        y_train=rng.integers(0, num_classes, n).astype(np.int32),
        x_test=rng.normal(3.0, 2.0, (m, *x_shape)).astype(np.float32),
        y_test=rng.integers(0, num_classes, m).astype(np.int32),
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------- Dataset validation


def test_dataset_is_frozen():
    ds = _toy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("y_train", np.zeros(199, np.int32)),
        ("y_test", np.zeros(49, np.int32)),
        ("x_test", np.zeros((50, 4), np.float32)),
        ("y_train", np.full(200, 5, np.int32)),  # label == num_classes
        ("y_test", np.full(50, -1, np.int32)),
        ("y_train", np.zeros(200, np.float32)),  # float labels for a classification dataset
        ("num_classes", 0),
        ("noisy_train", np.zeros(200, np.int32)),
        ("noisy_train", np.zeros(199, bool)),
        ("x_train", np.zeros((0, 3), np.float32)),
    ],
)
def test_dataset_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(_toy(), **{field: value})


def test_dataset_rejects_non_arrays():
    with pytest.raises(TypeError, match="x_train"):
        dataclasses.replace(_toy(), x_train=[[0.0, 1.0, 2.0]])


def test_dataset_regression_allows_float_targets():
    ds = Dataset(
        "reg",
        np.zeros((4, 2), np.float32),
        np.ones((4, 1), np.float32),
        np.zeros((3, 2), np.float32),
        np.ones((3, 1), np.float32),
        num_classes=None,
    )
    assert ds.noisy_train is None


# --------------------------------------------------------------------------- with_label_noise


@pytest.mark.parametrize(("n", "fraction"), [(200, 0.3), (101, 0.5), (7, 0.25), (10, 1.0)])
def test_label_noise_flips_exact_count_to_different_class(n, fraction):
    ds = _toy(n=n)
    noisy = with_label_noise(ds, fraction, seed=3)
    k = round(fraction * n)
    changed = noisy.y_train != ds.y_train
    assert changed.sum() == k  # every chosen label really changed
    np.testing.assert_array_equal(changed, noisy.noisy_train)
    assert noisy.noisy_train.dtype == np.bool_
    assert noisy.y_train.dtype == np.int32
    assert noisy.y_train.min() >= 0 and noisy.y_train.max() < ds.num_classes
    # Test split and inputs are untouched; the input dataset is not mutated.
    np.testing.assert_array_equal(noisy.y_test, ds.y_test)
    np.testing.assert_array_equal(noisy.x_train, ds.x_train)
    assert ds.noisy_train is None


def test_label_noise_zero_and_determinism():
    ds = _toy()
    clean = with_label_noise(ds, 0.0, seed=0)
    np.testing.assert_array_equal(clean.y_train, ds.y_train)
    assert not clean.noisy_train.any()
    a = with_label_noise(ds, 0.4, seed=11)
    b = with_label_noise(ds, 0.4, seed=11)
    c = with_label_noise(ds, 0.4, seed=12)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.noisy_train, b.noisy_train)
    assert not np.array_equal(a.noisy_train, c.noisy_train)


def test_label_noise_new_label_is_uniform_over_other_classes():
    # All labels 0 with 4 classes: the new labels should be ~uniform over {1, 2, 3}.
    n = 3000
    ds = Dataset(
        "const",
        np.zeros((n, 1), np.float32),
        np.zeros(n, np.int32),
        np.zeros((1, 1), np.float32),
        np.zeros(1, np.int32),
        num_classes=4,
    )
    noisy = with_label_noise(ds, 1.0, seed=0)
    counts = np.bincount(noisy.y_train, minlength=4)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:] / n, 1 / 3, atol=0.03)


def test_label_noise_two_classes_is_a_flip():
    ds = _toy(num_classes=2)
    noisy = with_label_noise(ds, 0.5, seed=0)
    m = noisy.noisy_train
    np.testing.assert_array_equal(noisy.y_train[m], 1 - ds.y_train[m])


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_label_noise_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        with_label_noise(_toy(), fraction, seed=0)


def test_label_noise_rejects_regression_and_double_noise():
    reg = Dataset(
        "reg",
        np.zeros((4, 2), np.float32),
        np.ones((4, 1), np.float32),
        np.zeros((3, 2), np.float32),
        np.ones((3, 1), np.float32),
        num_classes=None,
    )
    with pytest.raises(ValueError, match="num_classes"):
        with_label_noise(reg, 0.1, seed=0)
    with pytest.raises(ValueError, match="already"):
        with_label_noise(with_label_noise(_toy(), 0.1, seed=0), 0.1, seed=1)


# --------------------------------------------------------------------------- standardize


def test_standardize_vectors_per_feature():
    ds = _toy(x_shape=(3,))
    s = standardize(ds)
    assert s.x_train.dtype == np.float32 and s.x_test.dtype == np.float32
    np.testing.assert_allclose(s.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(0), 1.0, atol=1e-5)
    # Test split uses the TRAIN statistics (independent float64 computation).
    x64 = ds.x_train.astype(np.float64)
    expect = (ds.x_test - x64.mean(0)) / x64.std(0)
    np.testing.assert_allclose(s.x_test, expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s.y_train, ds.y_train)


def test_standardize_images_per_channel():
    ds = _toy(x_shape=(4, 5, 3))
    ds = dataclasses.replace(ds, x_train=ds.x_train * np.array([1.0, 10.0, 0.1], np.float32))
    s = standardize(ds)
    np.testing.assert_allclose(s.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
    # Per channel, not per pixel: a single pixel position is not standardized on its own.
    assert np.abs(s.x_train[:, 0, 0, :].mean(0)).max() > 1e-3


def test_standardize_constant_feature_is_only_centred():
    ds = _toy()
    x = ds.x_train.copy()
    x[:, 1] = 5.0
    s = standardize(dataclasses.replace(ds, x_train=x))
    assert np.isfinite(s.x_train).all() and np.isfinite(s.x_test).all()
    np.testing.assert_array_equal(s.x_train[:, 1], 0.0)
    np.testing.assert_allclose(s.x_test[:, 1], ds.x_test[:, 1] - 5.0, rtol=1e-6)


def test_standardize_rejects_tokens():
    ds = Dataset(
        "tok",
        np.zeros((4, 2), np.int32),
        np.zeros(4, np.int32),
        np.zeros((1, 2), np.int32),
        np.zeros(1, np.int32),
        num_classes=3,
    )
    with pytest.raises(ValueError, match=r"x_train\.dtype"):
        standardize(ds)
