"""Times one optimizer step (update + apply) of jaxlab transforms against their optax counterparts.

The step is jitted on a pytree of MLP-shaped parameters; each pair is timed
in the same run, interleaved, and the ratio jaxlab ÷ optax is printed (1.00 = same speed).

    python benchmarks/optimizer_step.py [--params 4_000_000] [--dtype float32] [--repeats 50]
"""

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import optim


def pairs():
    """(name, jaxlab transform, optax counterpart): same algorithm where optax gets it right."""
    return [
        (
            "adamw coupled",
            optim.adamw(1e-3, weight_decay=1e-2),
            optax.adamw(1e-3, weight_decay=1e-2),
        ),
        (
            "sgdw coupled vs sgd+decay chain",
            optim.sgdw(0.1, 0.9, 1e-2),
            optax.chain(
                optax.trace(0.9), optax.add_decayed_weights(1e-2), optax.scale_by_learning_rate(0.1)
            ),
        ),
        ("momo", optim.momo(1.0), optax.contrib.momo(1.0)),
        ("momo_adam", optim.momo_adam(1e-2), optax.contrib.momo_adam(1e-2)),
    ]


def make_params(n: int, dtype) -> dict:
    width = int(np.sqrt(n / 4))
    key = jax.random.key(0)
    shapes = {"w1": (width, width), "w2": (width, width), "w3": (width, 2 * width), "b": (width,)}
    keys = jax.random.split(key, len(shapes))
    return {
        name: jax.random.normal(k, shape, dtype)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def stepper(tx):
    tx = optax.with_extra_args_support(tx)

    @jax.jit
    def step(params, state, grads, loss):
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    return step


def time_interleaved(txs, params, grads, repeats: int) -> list[float]:
    """Median seconds per step of each transform, alternating them step by step."""
    loss = jnp.float32(1.0)
    steps = [stepper(tx) for tx in txs]
    carries = [
        jax.block_until_ready(s(params, tx.init(params), grads, loss))
        for s, tx in zip(steps, txs, strict=True)
    ]  # compiles
    times = [[] for _ in txs]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            carries[i] = jax.block_until_ready(step(*carries[i], grads, loss))
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=4_000_000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)

    dtype = jnp.dtype(args.dtype)
    params = make_params(args.params, dtype)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.cos(p), params)
    n = sum(p.size for p in jax.tree.leaves(params))
    device = jax.devices()[0]
    print(
        f"{n:,} {args.dtype} parameters; device {device.device_kind} ({device.platform}); "
        f"{platform.processor() or platform.machine()}; jax {jax.__version__}, "
        f"optax {optax.__version__}; median of {args.repeats} steps"
    )
    header = f"{'transform':34s} {'jaxlab ms':>10s} {'optax ms':>10s} {'ratio':>7s}"
    print(header + "\n" + "-" * len(header))
    results = {}
    for name, ours, theirs in pairs():
        t_ours, t_theirs = time_interleaved([ours, theirs], params, grads, args.repeats)
        results[name] = t_ours / t_theirs
        print(f"{name:34s} {1e3 * t_ours:10.3f} {1e3 * t_theirs:10.3f} {results[name]:7.2f}")
    return results


if __name__ == "__main__":
    main()
