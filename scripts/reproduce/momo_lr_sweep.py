"""MoMo is robust to its learning rate: final training loss over a 100× learning-rate grid.

    python scripts/reproduce/momo_lr_sweep.py --workdir runs/momo_lr_sweep [--size small|full]

**Phenomenon.** MoMo builds a model of the loss from momentum averages of losses, gradients
and ⟨g, x⟩ and truncates it at a lower bound (0), which turns the user's learning rate α into an
upper bound of a Polyak-type adaptive step τ ≤ α. Too large an α is then cut back
automatically, so the final training loss varies far less across α than with SGD with momentum;
MoMo-Adam does the same for Adam.

**Paper.** Schaipp, Ohana, Eickenberg, Defazio, Gower, "MoMo: Momentum Models for Adaptive
Learning Rates", ICML 2024, https://arxiv.org/abs/2305.07583 (its sensitivity plots: final
training loss and validation accuracy over the learning rate).

**Protocol.** An MLP is trained for a fixed number of minibatch steps by SGD-M
(``optax.sgd``, momentum 0.9), MoMo (:func:`jaxlab.optim.momo`, β = 0.9), Adam
(``optax.adam``) and MoMo-Adam (:func:`jaxlab.optim.momo_adam`) at each learning rate of a
log-spaced grid spanning ``--span`` (100×) and each seed (init and batch order). SGD-M is the
paper's averaged form ``d ← βd + (1 − β)g, x ← x − αd`` (``optax.sgd`` at learning rate
α(1 − β), momentum β), of which MoMo is the version with step ``τ ≤ α``: at a small α the two
coincide, so the same grid serves both. The learning rate is a traced argument: one compiled
program per optimizer trains the whole grid × seeds at once (``vmap``). The final loss is the
full-batch training loss after the last step, averaged over seeds; a run that ends non-finite or
above its initial loss has diverged and scores its initial loss (no progress). The spread of an
optimizer is max/min of its final loss over the grid.

**Asserted** (``result.json["checks"]``): spread(MoMo) < spread(SGD-M) and
spread(MoMo-Adam) < spread(Adam).

**Sizes.**

- ``small`` (CI, < 40 s on 2 CPU cores): scikit-learn digits (1437 train), MLP 64-64-64-10,
  batch 64, 300 steps, 7 learning rates: 0.1 … 10 (SGD-M, MoMo) and 3e-3 … 0.3 (Adam,
  MoMo-Adam), seeds 0 1.
- ``full``: Fashion-MNIST (Debian ``dataset-fashion-mnist``), MLP 784-256-256-10, batch 128,
  3000 steps, the same grids, seeds 0 1 2.

Writes ``WORKDIR/result.json`` and ``WORKDIR/final_loss.png`` (final loss vs learning rate,
log-log, one panel per pair).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from jaxlab.cli import preset, reproduction_parser

OPTIMIZERS = ("sgdm", "momo", "adam", "momo_adam")
PAIRS = (("sgdm", "momo"), ("adam", "momo_adam"))
SIZES = {
    "small": {
        "dataset": "digits",
        "features": (64, 64),
        "steps": 300,
        "batch_size": 64,
        "seeds": (0, 1),
    },
    "full": {
        "dataset": "fashion_mnist",
        "features": (256, 256),
        "steps": 3000,
        "batch_size": 128,
        "seeds": (0, 1, 2),
    },
}


def parser() -> argparse.ArgumentParser:
    p = reproduction_parser(__doc__, SIZES)
    p.add_argument("--seeds", type=int, nargs="+", help="default: per size")
    p.add_argument("--steps", type=int, help="default: per size")
    p.add_argument("--batch-size", type=int, help="default: per size")
    p.add_argument("--num-lrs", type=int, default=7, help="learning rates in each grid")
    p.add_argument("--span", type=float, default=100.0, help="max/min learning rate of a grid")
    p.add_argument("--sgd-lr-max", type=float, default=10.0, help="top of the SGD-M/MoMo grid")
    p.add_argument("--adam-lr-max", type=float, default=0.3, help="top of the Adam grid")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD-M's momentum, MoMo's β")
    return p


def _check_args(p: argparse.ArgumentParser, args) -> dict:
    cfg = preset(SIZES, args, ("seeds", "steps", "batch_size"))
    for name in ("steps", "batch_size"):
        if cfg[name] < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {cfg[name]}")
    if args.num_lrs < 2:
        p.error(f"--num-lrs must be >= 2, got {args.num_lrs}")
    if not args.span > 1:
        p.error(f"--span must be > 1, got {args.span}")
    for name in ("sgd_lr_max", "adam_lr_max"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if not 0 <= args.momentum < 1:
        p.error(f"--momentum must be in [0, 1), got {args.momentum}")
    seeds = cfg["seeds"]
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        p.error(f"--seeds must be distinct non-negative ints, got {list(seeds)}")
    return cfg


def _optimizer(name: str, lr, momentum: float):
    """The optimizer at a (traced) learning rate; every one accepts ``value=``."""
    import optax

    from jaxlab.optim import momo, momo_adam

    if name == "sgdm":  # d = βd + (1 − β)g, x = x − αd: optax.sgd at lr α(1 − β)
        return optax.with_extra_args_support(optax.sgd(lr * (1 - momentum), momentum=momentum))
    if name == "momo":
        return momo(lr, beta=momentum)
    if name == "adam":
        return optax.with_extra_args_support(optax.adam(lr))
    return momo_adam(lr)


def _make_sweep(name: str, apply, momentum: float):
    """jit(vmap(run)) over (lr, seed) runs: ``run(lr, params, idx, x, y) -> (initial, final)``
    full-batch training losses, after ``idx.shape[0]`` minibatch steps."""
    import jax
    import optax

    def loss(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(apply(params, xb), yb).mean()

    def run(lr, params, idx, x, y):
        tx = _optimizer(name, lr, momentum)

        def step(carry, bidx):
            params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(params, x[bidx], y[bidx])
            updates, opt_state = tx.update(grads, opt_state, params, value=value)
            return (optax.apply_updates(params, updates), opt_state), None

        initial = loss(params, x, y)
        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), idx)
        return initial, loss(params, x, y)

    return jax.jit(jax.vmap(run, in_axes=(0, 0, 0, None, None)))


def _spread(losses) -> float:
    """max/min of the (positive, finite) final losses over the grid."""
    return float(max(losses) / min(losses))


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(PAIRS), figsize=(5 * len(PAIRS), 4))
    for ax, pair in zip(axes, PAIRS, strict=True):
        for j, name in enumerate(pair):
            lrs = np.asarray(result["grids"][name])
            losses = np.asarray(result["final_loss"][name])
            bad = np.asarray(result["diverged_seeds"][name]) > 0
            label = f"{name} (spread {result['spread'][name]:.3g})"
            ax.loglog(lrs, losses, "o-", color=f"C{j}", label=label)
            ax.loglog(lrs[bad], losses[bad], "kx", ms=10)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"final train loss after {result['steps']} steps")
        ax.set_title(" vs ".join(pair) + " (×: a seed diverged)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    cfg = _check_args(p, args)
    start = time.perf_counter()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlab.data import batch_indices, load_dataset
    from jaxlab.models import create_model, init_model

    try:
        data = load_dataset(cfg["dataset"])
    except (FileNotFoundError, ValueError) as err:
        print(f"cannot load {cfg['dataset']}: {err}", file=sys.stderr)
        return 1
    x = jnp.asarray(data.x_train.reshape(len(data.x_train), -1))
    y = jnp.asarray(data.y_train)
    n, seeds = len(x), list(cfg["seeds"])
    if cfg["batch_size"] > n:
        p.error(f"--batch-size must be <= {n} training examples, got {cfg['batch_size']}")
    model = create_model("mlp", num_classes=data.num_classes, features=cfg["features"])

    def apply(params, inputs):
        return model.apply({"params": params}, inputs)

    grid_sgd = np.geomspace(args.sgd_lr_max / args.span, args.sgd_lr_max, args.num_lrs)
    grid_adam = np.geomspace(args.adam_lr_max / args.span, args.adam_lr_max, args.num_lrs)
    grids = {"sgdm": grid_sgd, "momo": grid_sgd, "adam": grid_adam, "momo_adam": grid_adam}

    # Runs are (lr, seed) pairs, lr-major; every optimizer sees the same inits and batches.
    steps, batch = cfg["steps"], cfg["batch_size"]
    per_seed_idx = [np.stack([batch_indices(n, batch, s, seed=seed) for s in range(steps)])
                    for seed in seeds]  # fmt: skip
    idx = jnp.asarray(np.stack(per_seed_idx * args.num_lrs), jnp.int32)
    inits = [init_model(model, jax.random.key(seed), x[:1])[0] for seed in seeds]
    params0 = jax.tree.map(lambda *leaves: jnp.stack(leaves * args.num_lrs), *inits)

    final, initial, diverged, spread, timings = {}, {}, {}, {}, {}
    for name in OPTIMIZERS:
        t0 = time.perf_counter()
        lrs = jnp.repeat(jnp.asarray(grids[name], jnp.float32), len(seeds))
        start_loss, end_loss = _make_sweep(name, apply, args.momentum)(lrs, params0, idx, x, y)
        start_loss = np.asarray(start_loss, float).reshape(args.num_lrs, len(seeds))
        end_loss = np.asarray(end_loss, float).reshape(args.num_lrs, len(seeds))
        bad = ~np.isfinite(end_loss) | (end_loss > start_loss)
        per_lr = np.where(bad, start_loss, end_loss).mean(axis=1)
        final[name] = per_lr.tolist()
        initial[name] = start_loss.mean(axis=1).tolist()
        diverged[name] = bad.sum(axis=1).tolist()
        spread[name] = _spread(per_lr)
        timings[name] = time.perf_counter() - t0

    checks = {f"{b}_spread_smaller": bool(spread[b] < spread[a]) for a, b in PAIRS}
    checks["passed"] = all(checks.values())
    result = {
        "size": args.size,
        "dataset": cfg["dataset"],
        "features": list(cfg["features"]),
        "steps": steps,
        "batch_size": batch,
        "momentum": args.momentum,
        "seeds": seeds,
        "grids": {k: v.tolist() for k, v in grids.items()},
        "final_loss": final,
        "initial_loss": initial,
        "diverged_seeds": diverged,
        "spread": spread,
        "checks": checks,
    }
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _plot(result, workdir / "final_loss.png")
    result["seconds"] = {**timings, "total": time.perf_counter() - start}
    (workdir / "result.json").write_text(json.dumps(result, indent=1))

    for name in OPTIMIZERS:
        losses = " ".join(f"{v:.3g}" for v in final[name])
        print(f"{name:>9}: spread {spread[name]:.3g}  final losses {losses}")
    print(f"checks: {checks}")
    print(f"total {result['seconds']['total']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
