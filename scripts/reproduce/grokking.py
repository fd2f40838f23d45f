"""Grokking at the edge of numerical stability: Softmax Collapse, StableMax and ⊥Grad.

    python scripts/reproduce/grokking.py --workdir runs/grokking [--size small|full] [--seed 0]

Phenomenon: on modular addition ``c = a + b mod p`` with a fraction of the table for training, an
MLP trained by full-batch Adam with softmax cross-entropy and *no* weight decay fits the training
set at once but does not generalise. Once every training example is fitted, the loss falls
fastest by scaling the logits up ("naïve loss minimisation", the direction of the weights), the
logit norm keeps growing, and eventually the float32 loss of the fitted examples rounds to
exactly 0 (Softmax Collapse, SC): their gradients vanish and learning stops. ⊥Grad, which removes
the gradient's component along the weights (``jaxlab.optim.scale_by_perp_grad`` chained before
Adam), blocks that direction and the same network generalises (groks) without any regulariser.
The script also runs StableMax cross-entropy (``jaxlab.losses.stablemax_cross_entropy``), the
paper's other remedy, whose loss cannot collapse; in the settings below its test accuracy stays
at the baseline's (its logits grow even faster), which the result records as it is.

Paper: Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability",
ICLR 2025, https://arxiv.org/abs/2501.04697.

Model: the one-hot codes of ``a`` and ``b`` concatenated (``2p`` inputs) into a ReLU MLP with two
hidden layers (``jaxlab.models`` "mlp"), float32, full-batch Adam (lr 0.01, β = (0.9, 0.999)), no
weight decay. Variants: ``softmax`` (baseline), ``stablemax`` (StableMax CE), ``perp_grad``
(⊥Grad + Adam, softmax CE).

Settings (override any with the flags):
  full:  p = 97, train fraction 0.4, width 200, 10000 steps, eval every 100 steps (about
         25 min on a busy 2-core CPU).
  small: p = 59, train fraction 0.4, width 200, 600 steps, eval every 25 steps (the CI size).
At the small size (seeds 0–2) the baseline reaches 100 % train and 0 % test accuracy with a
growing logit norm, while ⊥Grad reaches > 99 % test accuracy; exactly-zero float32 losses (SC
proper) appear in the baseline only after a few thousand steps. At the full size (seed 0) the
baseline fits the train split by step 100 and never exceeds 0.04 % test accuracy; its logit norm
grows from 88 to 270 and the fraction of training examples with an exactly-zero float32 loss
passes 1 % at step 5100, 50 % at 6800 and reaches 99.9 % at 10000 (collapse: no gradient left).
⊥Grad reaches 90 % test accuracy by step 200 and 100 % at the end (logit norm 70). StableMax
never collapses (no zero losses) but stays at 0.04 % test accuracy with a logit norm of 2·10⁴.
StableMax is therefore *not* reproduced here: the paper's StableMax run (official code,
Figure 1) takes 80 000 full-batch epochs of Adam with ε = 1e-25 and β₂ = 0.999, a float64 loss
and a bias-free MLP on p = 113, out of reach of a CPU session; with those Adam settings on
p = 59, 20 000 steps still give 0 % test accuracy while the logit norm grows to 10⁵, with
biases or without.

Writes ``WORKDIR/result.json`` (config; per variant the curves ``step``, ``train_accuracy``,
``test_accuracy``, ``train_loss``, ``zero_loss_fraction`` (fraction of training examples whose
float32 loss is exactly 0), ``logit_norm`` (mean L2 norm of the training logits), the final
values and the wall time), ``WORKDIR/accuracy.png`` and ``WORKDIR/collapse.png``.
"""

import argparse
import json
import os
import time

from jaxlab.cli import preset, reproduction_parser

VARIANTS = ("softmax", "stablemax", "perp_grad")
SIZES = {
    "full": {"modulus": 97, "train_fraction": 0.4, "width": 200, "steps": 10000, "eval_every": 100},
    "small": {"modulus": 59, "train_fraction": 0.4, "width": 200, "steps": 600, "eval_every": 25},
}


def parser() -> argparse.ArgumentParser:
    p = reproduction_parser(__doc__, SIZES)
    p.add_argument("--seed", type=int, default=0, help="seeds the train/test split and the init")
    p.add_argument("--modulus", type=int, help="p (default: from --size)")
    p.add_argument("--train-fraction", type=float, help="fraction of the table to train on")
    p.add_argument("--width", type=int, help="width of both hidden layers")
    p.add_argument("--steps", type=int, help="full-batch training steps")
    p.add_argument("--eval-every", type=int, help="steps between evaluations; divides --steps")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    return p


def _settings(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The size preset overridden by the flags given, validated (``parser.error`` on bad values)."""
    cfg = preset(SIZES, args)
    if cfg["modulus"] < 2:
        p.error(f"--modulus must be >= 2, got {cfg['modulus']}")
    if not 0.0 < cfg["train_fraction"] < 1.0:
        p.error(f"--train-fraction must lie in (0, 1), got {cfg['train_fraction']}")
    for name in ("width", "steps", "eval_every"):
        if cfg[name] < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {cfg[name]}")
    if cfg["steps"] % cfg["eval_every"]:
        p.error(f"--eval-every={cfg['eval_every']} must divide --steps={cfg['steps']}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    n_train = round(cfg["train_fraction"] * cfg["modulus"] ** 2)
    if not 0 < n_train < cfg["modulus"] ** 2:
        p.error(f"--train-fraction={cfg['train_fraction']} leaves an empty split")
    return {**cfg, "lr": args.lr, "seed": args.seed, "variants": list(dict.fromkeys(args.variants))}


def _run_variant(variant: str, cfg: dict, data, model, params) -> dict:
    """Train one variant with one jitted nested ``lax.scan``; the curves at every evaluation."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlab.losses import softmax_cross_entropy, stablemax_cross_entropy
    from jaxlab.optim import scale_by_perp_grad

    x_train, y_train, x_test, y_test = data
    per_example = stablemax_cross_entropy if variant == "stablemax" else softmax_cross_entropy
    tx = optax.adam(cfg["lr"])
    if variant == "perp_grad":
        tx = optax.chain(scale_by_perp_grad(), tx)

    def loss_fn(p):
        return jnp.mean(per_example(model.apply({"params": p}, x_train), y_train))

    def step(carry, _):
        p, opt_state = carry
        grads = jax.grad(loss_fn)(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    def evaluate(p):
        z_train = model.apply({"params": p}, x_train)
        z_test = model.apply({"params": p}, x_test)
        losses = per_example(z_train, y_train)
        return {
            "train_accuracy": jnp.mean(jnp.argmax(z_train, -1) == y_train),
            "test_accuracy": jnp.mean(jnp.argmax(z_test, -1) == y_test),
            "train_loss": jnp.mean(losses),
            "zero_loss_fraction": jnp.mean(losses == 0),
            "logit_norm": jnp.mean(jnp.linalg.norm(z_train, axis=-1)),
        }

    def chunk(carry, _):
        carry, _ = jax.lax.scan(step, carry, None, length=cfg["eval_every"])
        return carry, evaluate(carry[0])

    @jax.jit
    def train(p):
        return jax.lax.scan(chunk, (p, tx.init(p)), None, length=cfg["steps"] // cfg["eval_every"])

    start = time.perf_counter()
    _, curves = jax.device_get(train(params))
    seconds = time.perf_counter() - start
    out = {k: [float(v) for v in values] for k, values in curves.items()}
    steps = range(cfg["eval_every"], cfg["steps"] + 1, cfg["eval_every"])
    return {
        "step": list(steps),
        **out,
        "final": {k: values[-1] for k, values in out.items()},
        "max_test_accuracy": max(out["test_accuracy"]),
        "seconds": seconds,
    }


def _plot(result: dict, workdir: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result["config"]
    title = f"a + b mod {cfg['modulus']}, train fraction {cfg['train_fraction']}, no weight decay"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, run) in enumerate(result["variants"].items()):
        color = f"C{i}"
        ax.plot(run["step"], run["train_accuracy"], "--", color=color, label=f"{name} train")
        ax.plot(run["step"], run["test_accuracy"], "-", color=color, label=f"{name} test")
    ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "accuracy.png"), dpi=120)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, run in result["variants"].items():
        ax1.plot(run["step"], run["logit_norm"], label=name)
        ax2.plot(run["step"], run["zero_loss_fraction"], label=name)
    ax1.set(xlabel="step", ylabel="mean ‖logits‖ (train)", yscale="log", title="logit norm")
    ax2.set(
        xlabel="step", ylabel="fraction", ylim=(-0.02, 1.02), title="train loss exactly 0 (float32)"
    )
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "collapse.png"), dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    cfg = _settings(p, args)

    import jax
    import jax.numpy as jnp

    from jaxlab.data import modular_arithmetic
    from jaxlab.models import create_model, init_model

    ds = modular_arithmetic(  # load_dataset's seed= cannot reach the split's seed
        modulus=cfg["modulus"],
        train_fraction=cfg["train_fraction"],
        seed=cfg["seed"],
    )
    m = cfg["modulus"]

    def one_hot_pairs(x):
        x = jnp.asarray(x)
        return jnp.concatenate([jax.nn.one_hot(x[:, 0], m), jax.nn.one_hot(x[:, 1], m)], axis=1)

    data = (
        one_hot_pairs(ds.x_train),
        jnp.asarray(ds.y_train),
        one_hot_pairs(ds.x_test),
        jnp.asarray(ds.y_test),
    )
    model = create_model("mlp", num_classes=m, features=(cfg["width"], cfg["width"]))
    params, _ = init_model(model, jax.random.key(cfg["seed"]), data[0][:2])

    result = {"config": {**cfg, "num_train": len(ds.y_train), "num_test": len(ds.y_test)}}
    result["variants"] = {v: _run_variant(v, cfg, data, model, params) for v in cfg["variants"]}
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    _plot(result, args.workdir)

    print(f"modular addition p={m}, {len(ds.y_train)} train / {len(ds.y_test)} test pairs")
    for name, run in result["variants"].items():
        fin = run["final"]
        print(
            f"  {name:10s} train acc {fin['train_accuracy']:.3f}"
            f"  test acc {fin['test_accuracy']:.3f}"
            f"  zero-loss frac {fin['zero_loss_fraction']:.3f}  ‖logits‖ {fin['logit_norm']:.1f}"
            f"  ({run['seconds']:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
