"""Times SAM-family training steps against the base optimizer on an MLP and a small CNN.

Every method runs ``--steps`` training steps inside one jitted ``lax.scan`` (so LookSAM's
``lax.cond`` amortises over its period k); the methods are timed interleaved, median of
``--repeats`` runs, and printed as ratios to momentum SGD measured in the same run:

- ``sam``: ``jaxlab.optim.sam`` (one call per step; the clean loss passed as ``value=``), with
  and without its diagnostics (‖g‖, cos(g, g_p), ‖ε‖);
- ``sam_value_and_grad``: the drop-in gradient function with plain momentum SGD;
- ``looksam k=5``: ``sam(..., combination="looksam", k=5)``;
- ``saf``: SGD on cross-entropy + 0.3 · SAF trajectory loss with its logits memory;
- ``optax.contrib.sam``: opaque mode with the normalised-SGD adversary (the optax recipe).

    python benchmarks/sam_step.py [--batch-size 64] [--steps 10] [--repeats 10]
"""

import argparse
import platform
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import optim

LR, RHO = 0.05, 0.05


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for width in (512, 512):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        for features in (16, 32):
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def methods(model, batch):
    """Builds, per method, ``step(carry) -> carry`` on a fixed batch, and its initial carry."""
    x, y, idx = batch

    def loss_fn(params):
        logits = model.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def with_optimizer(tx, grad_fn, extra=lambda p, loss: {}):
        def step(carry):
            params, state = carry
            loss, grads = grad_fn(params)
            updates, state = tx.update(grads, state, params, **extra(params, loss))
            return optax.apply_updates(params, updates), state

        return step, lambda p: (p, tx.init(p))

    sgd = optax.sgd(LR, momentum=0.9)
    base = with_optimizer(sgd, jax.value_and_grad(loss_fn))
    sam = with_optimizer(
        optim.sam(sgd, RHO),
        jax.value_and_grad(loss_fn),
        lambda p, loss: {"loss_fn": loss_fn, "value": loss},
    )
    sam_quiet = with_optimizer(
        optim.sam(sgd, RHO, diagnostics=False),
        jax.value_and_grad(loss_fn),
        lambda p, loss: {"loss_fn": loss_fn, "value": loss},
    )
    drop_in = with_optimizer(sgd, optim.sam_value_and_grad(loss_fn, RHO))
    looksam = with_optimizer(
        optim.sam(sgd, RHO, combination="looksam", k=5),
        jax.value_and_grad(loss_fn),
        lambda p, loss: {"loss_fn": loss_fn, "value": loss},
    )
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(RHO))
    optax_sam = with_optimizer(
        optax.contrib.sam(sgd, adversary, opaque_mode=True),
        jax.value_and_grad(loss_fn),
        lambda p, loss: {"grad_fn": lambda q, _: jax.grad(loss_fn)(q)},
    )

    def saf_step(carry):
        params, state, memory, epoch = carry

        def total(p):
            logits = model.apply(p, x)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            # Reads the logits of Ẽ epochs ago and records these (stop-gradient-ed) in one call.
            new_memory, past, valid = optim.saf_memory_update(memory, idx, logits, epoch)
            traj = optim.saf_loss(logits, past, where=valid).sum() / jnp.maximum(valid.sum(), 1)
            return ce + 0.3 * traj, new_memory

        (_, memory), grads = jax.value_and_grad(total, has_aux=True)(params)
        updates, state = sgd.update(grads, state, params)
        return optax.apply_updates(params, updates), state, memory, epoch + 1

    def saf_init(p):
        memory = optim.saf_memory_init(x.shape[0], 10)
        return p, sgd.init(p), memory, jnp.asarray(0, jnp.int32)

    return {
        "sgd (base)": base,
        "sam": sam,
        "sam, no diagnostics": sam_quiet,
        "sam_value_and_grad": drop_in,
        "looksam k=5": looksam,
        "saf": (saf_step, saf_init),
        "optax.contrib.sam": optax_sam,
    }


def time_methods(model, batch, params, steps: int, repeats: int) -> dict[str, float]:
    runs, carries = {}, {}
    for name, (step, init) in methods(model, batch).items():
        scan = jax.jit(lambda c, step=step: jax.lax.fori_loop(0, steps, lambda _, c: step(c), c))
        carries[name] = init(params)
        runs[name] = scan.lower(carries[name]).compile()
        jax.block_until_ready(runs[name](carries[name]))  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(carries[name]))
            times[name].append((time.perf_counter() - start) / steps)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed scan (k=5 divides)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    key = jax.random.key(0)
    x = jax.random.normal(key, (args.batch_size, 28, 28, 1))
    y = jax.random.randint(key, (args.batch_size,), 0, 10)
    batch = (x, y, jnp.arange(args.batch_size))
    device = jax.devices()[0]
    print(
        f"batch {args.batch_size} of 28×28×1, {args.steps} steps per scan, median of "
        f"{args.repeats}; {device.device_kind} ({device.platform}), "
        f"{platform.machine()}, jax {jax.__version__}"
    )
    results = {}
    for name, model in (("MLP 784-512-512-10", MLP()), ("CNN 16-32 conv", CNN())):
        params = model.init(key, x[:1])
        n = sum(p.size for p in jax.tree.leaves(params))
        t = time_methods(model, batch, params, args.steps, args.repeats)
        base = t["sgd (base)"]
        print(f"\n{name} ({n:,} parameters)")
        print(f"{'method':22s} {'ms/step':>8s} {'÷ base':>7s}")
        for method, sec in t.items():
            print(f"{method:22s} {1e3 * sec:8.2f} {sec / base:7.2f}")
        ratio = t["sam"] / t["optax.contrib.sam"]
        print(f"{'jaxlab sam ÷ optax.contrib.sam':31s}{ratio:7.2f}")
        results[name] = {m: sec / base for m, sec in t.items()}
    return results


if __name__ == "__main__":
    main()
