"""Synthetic datasets generated on the fly: a random tanh teacher and modular arithmetic tables."""

import numpy as np

from jaxlab.data.dataset import Dataset

_OPERATIONS = ("add", "subtract", "multiply", "divide")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")


def teacher_student(
    *,
    num_train: int = 1024,
    num_test: int = 1024,
    input_dim: int = 16,
    hidden: int = 32,
    noise_std: float = 0.0,
    seed: int = 0,
) -> Dataset:
    r"""Regression data labelled by a random one-hidden-layer tanh teacher network.

    .. math::
      x \sim \mathcal N(0, I_D),\quad W_{ij} \sim \mathcal N(0, 1/D),\quad
      a_j \sim \mathcal N(0, 1/H),\quad y = \tanh(x W)\, a + \sigma\,\varepsilon

    with ``W: [D, H]``, ``a: [H]``, no biases, and ``ε ~ N(0, 1)`` label noise added to the
    *train* targets only (the test targets are the clean teacher outputs, so the test error
    measures the distance to the teacher). Independent streams ``np.random.default_rng([seed,
    i])`` draw ``W`` then ``a`` (i=0), the train inputs (i=1), the test inputs (i=2) and the noise
    (i=3), so the teacher does not depend on the split sizes and ``noise_std`` only changes
    ``y_train``. Setting: Saad & Solla, "On-line learning in soft committee machines",
    Phys. Rev. E 52 (1995); Goldt et al., "Dynamics of stochastic gradient descent for two-layer
    neural networks in the teacher-student setup", https://arxiv.org/abs/1906.08632.

    Args:
      num_train: number of train examples ``N``.
      num_test: number of test examples.
      input_dim: input dimension ``D``.
      hidden: teacher width ``H``.
      noise_std: standard deviation ``σ >= 0`` of the train label noise.
      seed: non-negative seed.

    Returns:
      :class:`Dataset` with float32 ``x: [N, D]``, ``y: [N, 1]`` and ``num_classes=None``.

    Examples:
      >>> ds = teacher_student(num_train=8, num_test=4, input_dim=3, hidden=5)
      >>> ds.x_train.shape, ds.y_train.shape, ds.num_classes
      ((8, 3), (8, 1), None)
    """
    for name, value in (
        ("num_train", num_train),
        ("num_test", num_test),
        ("input_dim", input_dim),
        ("hidden", hidden),
    ):
        _check_positive_int(name, value)
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got noise_std={noise_std}")
    rng_teacher = np.random.default_rng([seed, 0])
    w = rng_teacher.standard_normal((input_dim, hidden)) / np.sqrt(input_dim)
    a = rng_teacher.standard_normal(hidden) / np.sqrt(hidden)
    x_train = np.random.default_rng([seed, 1]).standard_normal((num_train, input_dim))
    x_test = np.random.default_rng([seed, 2]).standard_normal((num_test, input_dim))
    y_train = np.tanh(x_train @ w) @ a
    y_test = np.tanh(x_test @ w) @ a
    y_train = y_train + noise_std * np.random.default_rng([seed, 3]).standard_normal(num_train)
    return Dataset(
        name="teacher_student",
        x_train=x_train.astype(np.float32),
        y_train=y_train[:, None].astype(np.float32),
        x_test=x_test.astype(np.float32),
        y_test=y_test[:, None].astype(np.float32),
        num_classes=None,
    )


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


def modular_arithmetic(
    *,
    modulus: int = 97,
    operation: str = "add",
    train_fraction: float = 0.3,
    seed: int = 0,
) -> Dataset:
    r"""The binary-operation table ``c = a ∘ b mod p`` split at random into train and test.

    .. math::
      a \circ b \in \{a + b,\ a - b,\ a b,\ a b^{-1}\} \bmod p,\qquad a, b \in \{0, …, p-1\}

    Every pair ``(a, b)`` appears exactly once (for ``"divide"`` only ``b != 0``, and ``b^{-1}``
    is the modular inverse, which needs a prime ``p``). A seeded permutation puts
    ``round(train_fraction * N)`` pairs in the train split and the rest in the test split. The
    grokking setting of Power et al., "Grokking: Generalization Beyond Overfitting on Small
    Algorithmic Datasets", https://arxiv.org/abs/2201.02177 (default p = 97).

    Args:
      modulus: the modulus ``p >= 2`` (prime for ``"divide"``).
      operation: one of ``"add"``, ``"subtract"``, ``"multiply"``, ``"divide"``.
      train_fraction: fraction of the pairs in the train split, in ``(0, 1)``.
      seed: seed of the split permutation.

    Returns:
      :class:`Dataset` with int32 token ids ``x: [N, 2]`` (the pair ``(a, b)``), int32 labels
      ``y = a ∘ b mod p`` and ``num_classes = p``.

    Examples:
      >>> ds = modular_arithmetic(modulus=5, operation="divide", train_fraction=0.5)
      >>> len(ds.x_train) + len(ds.x_test)
      20
      >>> a, b = ds.x_train[0]
      >>> int(ds.y_train[0] * b % 5) == int(a)
      True
    """
    _check_positive_int("modulus", modulus)
    p = int(modulus)
    if p < 2:
        raise ValueError(f"modulus must be >= 2, got modulus={modulus}")
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got operation={operation!r}")
    if operation == "divide" and not _is_prime(p):
        raise ValueError(f"operation='divide' needs a prime modulus, got modulus={modulus}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got train_fraction={train_fraction}")
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if operation == "add":
        c = (a + b) % p
    elif operation == "subtract":
        c = (a - b) % p
    elif operation == "multiply":
        c = (a * b) % p
    else:
        keep = b != 0
        a, b = a[keep], b[keep]
        inverse = np.array([0] + [pow(v, p - 2, p) for v in range(1, p)], dtype=np.int64)
        c = (a * inverse[b]) % p
    x = np.stack([a, b], axis=1).astype(np.int32)
    y = c.astype(np.int32)
    n = len(y)
    n_train = round(train_fraction * n)
    if not 0 < n_train < n:
        raise ValueError(
            f"train_fraction={train_fraction} leaves an empty split of the {n} pairs "
            f"(modulus={modulus}, operation={operation!r})"
        )
    perm = np.random.default_rng(seed).permutation(n)
    train, test = perm[:n_train], perm[n_train:]
    return Dataset(
        name="modular_arithmetic",
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        num_classes=p,
    )
