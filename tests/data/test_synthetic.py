"""Tests for jaxlab.data.synthetic: teacher_student and modular_arithmetic."""

import numpy as np
import pytest

from jaxlab.data import modular_arithmetic, teacher_student

# --------------------------------------------------------------------------- teacher_student


def test_teacher_student_matches_documented_recipe():
    # Independent transcription of the docstring's sampling recipe in float64.
    seed, n, m, d, h = 5, 30, 20, 4, 6
    ds = teacher_student(num_train=n, num_test=m, input_dim=d, hidden=h, seed=seed)
    rng = np.random.default_rng([seed, 0])
    w = rng.normal(0.0, 1 / np.sqrt(d), (d, h))
    a = rng.normal(0.0, 1 / np.sqrt(h), h)
    x_tr = np.random.default_rng([seed, 1]).normal(size=(n, d))
    x_te = np.random.default_rng([seed, 2]).normal(size=(m, d))

    def teacher(x):
        rows = [sum(a[j] * np.tanh(x[i] @ w[:, j]) for j in range(h)) for i in range(len(x))]
        return np.array(rows)

    np.testing.assert_allclose(ds.x_train, x_tr, rtol=1e-6)
    np.testing.assert_allclose(ds.x_test, x_te, rtol=1e-6)
    np.testing.assert_allclose(ds.y_train[:, 0], teacher(x_tr), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.y_test[:, 0], teacher(x_te), rtol=1e-5, atol=1e-6)
    assert ds.y_train.shape == (n, 1) and ds.y_train.dtype == np.float32
    assert ds.num_classes is None


def test_teacher_student_determinism_and_prefix_stability():
    a = teacher_student(num_train=50, seed=1)
    b = teacher_student(num_train=50, seed=1)
    c = teacher_student(num_train=50, seed=2)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.allclose(a.y_train, c.y_train)
    # Same teacher regardless of the split sizes.
    big = teacher_student(num_train=80, num_test=7, seed=1)
    np.testing.assert_array_equal(big.x_train[:50], a.x_train)
    np.testing.assert_array_equal(big.y_train[:50], a.y_train)


def test_teacher_student_noise_on_train_only():
    clean = teacher_student(num_train=4000, num_test=100, seed=0)
    noisy = teacher_student(num_train=4000, num_test=100, noise_std=0.5, seed=0)
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    np.testing.assert_array_equal(noisy.y_test, clean.y_test)
    eps = (noisy.y_train - clean.y_train)[:, 0]
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 0.5) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_train": 0}, "num_train"),
        ({"hidden": 2.5}, "hidden"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"input_dim": True}, "input_dim"),
    ],
)
def test_teacher_student_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        teacher_student(**kwargs)


# --------------------------------------------------------------------------- modular_arithmetic


def _brute(a, b, p, op):
    if op == "add":
        return (a + b) % p
    if op == "subtract":
        return (a - b) % p
    if op == "multiply":
        return (a * b) % p
    # Division by search: the unique c with c * b ≡ a (mod p).
    return next(c for c in range(p) if (c * b) % p == a)


@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide"])
@pytest.mark.parametrize("p", [7, 11])
def test_modular_all_pairs_once_and_labels(op, p):
    ds = modular_arithmetic(modulus=p, operation=op, train_fraction=0.4, seed=2)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape[1] == 2
    expected_pairs = {(a, b) for a in range(p) for b in range(p) if op != "divide" or b != 0}
    pairs = [tuple(map(int, r)) for r in x]
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected_pairs
    for (a, b), c in zip(pairs, y.tolist(), strict=True):
        assert c == _brute(a, b, p, op)
    n = len(expected_pairs)
    assert len(ds.x_train) == round(0.4 * n)
    assert ds.num_classes == p


def test_modular_divide_is_true_inverse_large_prime():
    p = 97
    ds = modular_arithmetic(modulus=p, operation="divide", train_fraction=0.5)
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.int64)
    y = np.concatenate([ds.y_train, ds.y_test]).astype(np.int64)
    np.testing.assert_array_equal((y * x[:, 1]) % p, x[:, 0])
    assert len(y) == p * (p - 1)


def test_modular_split_determinism():
    a = modular_arithmetic(modulus=13, seed=0)
    b = modular_arithmetic(modulus=13, seed=0)
    c = modular_arithmetic(modulus=13, seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"operation": "pow"}, "operation"),
        ({"modulus": 1}, "modulus"),
        ({"modulus": 12, "operation": "divide"}, "prime"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"modulus": 2, "train_fraction": 0.01}, "empty"),
    ],
)
def test_modular_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        modular_arithmetic(**kwargs)


def test_modular_non_prime_ok_for_other_ops():
    ds = modular_arithmetic(modulus=12, operation="multiply", train_fraction=0.5)
    assert ds.num_classes == 12 and len(ds.x_train) + len(ds.x_test) == 144
