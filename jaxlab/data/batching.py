"""Stateless minibatching: the batch of step ``s`` is a pure function of ``(seed, s)``.

A resumed run therefore sees exactly the batches it would have seen without interruption, with
no iterator state to checkpoint. Epoch ``e`` shuffles with ``np.random.default_rng([seed, e])``
and drops the last ``n mod batch_size`` examples of its permutation.
"""

import jax
import numpy as np


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")


def batch_indices(num_examples: int, batch_size: int, step: int, *, seed: int) -> np.ndarray:
    r"""Indices of the examples in the minibatch of training step ``step``.

    .. math::
      S = \lfloor n / B \rfloor,\quad e = \lfloor s / S \rfloor,\quad
      r = s \bmod S,\quad \mathrm{idx} = \pi_e[rB : (r+1)B]

    with ``π_e = np.random.default_rng([seed, e]).permutation(n)``. Every epoch visits
    ``S * B`` distinct examples once (sampling without replacement); the computation needs no
    earlier step.

    Args:
      num_examples: dataset size ``n >= 1``.
      batch_size: ``B`` with ``1 <= B <= n``.
      step: global step ``s >= 0``.
      seed: non-negative shuffling seed.

    Returns:
      int64 ``[B]`` indices into the dataset.

    Raises:
      ValueError: on a non-positive ``batch_size``, ``batch_size > num_examples``, or a
        negative ``step``/``seed``.

    Examples:
      >>> import numpy as np
      >>> epoch = np.concatenate([batch_indices(10, 5, s, seed=0) for s in range(2)])
      >>> sorted(epoch.tolist()) == list(range(10))
      True
    """
    _check_int("num_examples", num_examples, 1)
    _check_int("batch_size", batch_size, 1)
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size must be <= num_examples={num_examples}, got batch_size={batch_size}"
        )
    _check_int("step", step, 0)
    _check_int("seed", seed, 0)
    epoch, offset = divmod(int(step), num_examples // batch_size)
    perm = np.random.default_rng([int(seed), epoch]).permutation(num_examples)
    return perm[offset * batch_size : (offset + 1) * batch_size]


def shard_for_devices(batch, num_devices: int):
    """Split the leading axis of every leaf into ``(num_devices, B // num_devices)``.

    Args:
      batch: a pytree of arrays sharing the leading batch size ``B``.
      num_devices: number of devices ``D``; must divide ``B``.

    Returns:
      The pytree with leaves reshaped ``[B, ...] -> [D, B // D, ...]`` (same array types).

    Raises:
      ValueError: if ``num_devices < 1``, a leaf is a scalar, or ``D`` does not divide a leaf's
        leading size.

    Examples:
      >>> import numpy as np
      >>> out = shard_for_devices({"x": np.zeros((8, 3)), "y": np.zeros(8)}, 4)
      >>> out["x"].shape, out["y"].shape
      ((4, 2, 3), (4, 2))
    """
    _check_int("num_devices", num_devices, 1)

    def reshape(path, leaf):
        shape = np.shape(leaf)
        if len(shape) == 0 or shape[0] % num_devices:
            raise ValueError(
                f"leaf {jax.tree_util.keystr(path)} with shape {shape} has no leading axis "
                f"divisible by num_devices={num_devices}"
            )
        return leaf.reshape(num_devices, shape[0] // num_devices, *shape[1:])

    return jax.tree_util.tree_map_with_path(reshape, batch)


def get_batch(
    x: np.ndarray,
    y: np.ndarray,
    step: int,
    *,
    batch_size: int,
    seed: int,
    num_devices: int | None = None,
) -> dict:
    """The minibatch ``{"x": x[idx], "y": y[idx]}`` of ``step``, ``idx = batch_indices(...)``.

    Args:
      x: ``[n, ...]`` inputs.
      y: ``[n, ...]`` targets.
      step: global step ``s >= 0``.
      batch_size: global batch size ``B``.
      seed: non-negative shuffling seed.
      num_devices: if given, split the batch for ``jax.pmap``/``shard_map`` into
        ``[num_devices, B // num_devices, ...]`` (must divide ``B``).

    Returns:
      Dict with ``"x": [B, ...]`` and ``"y": [B, ...]`` (or ``[D, B // D, ...]``).

    Examples:
      >>> import numpy as np
      >>> b = get_batch(np.arange(12.0), np.arange(12), 3, batch_size=4, seed=0, num_devices=2)
      >>> b["x"].shape, bool((b["x"] == b["y"]).all())
      ((2, 2), True)
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got len(x)={len(x)}, len(y)={len(y)}")
    idx = batch_indices(len(x), batch_size, step, seed=seed)
    if num_devices is not None:
        _check_int("num_devices", num_devices, 1)
        if batch_size % num_devices:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by num_devices={num_devices}"
            )
    batch = {"x": x[idx], "y": y[idx]}
    return batch if num_devices is None else shard_for_devices(batch, num_devices)
