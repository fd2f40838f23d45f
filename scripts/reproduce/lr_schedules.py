"""Linear decay to zero (D2Z) vs cosine decay to 10 % at equal steps, with AdamW.

    python scripts/reproduce/lr_schedules.py --workdir runs/lr_schedules [--size small|full]

Phenomenon: for a fixed training budget, decaying the learning rate linearly to exactly zero
(D2Z, ``jaxlab.optim.warmup_linear_decay_to_zero``) ends at a lower loss than the common cosine
decay to 10 % of the peak (``jaxlab.optim.warmup_cosine_to_fraction``). Viewing AdamW's weights as
an exponential moving average of its updates, D2Z averages over more of the late updates and
damps the gradient noise that a floor of 10 % keeps injecting until the end; the gain is largest
at a high peak learning rate and many tokens per parameter.

Paper: Bergsma, Dey, Gosal, Gray, Soboleva & Hestness, "Straight to Zero: Why Linearly Decaying
the Learning Rate to Zero Works Best for LLMs", ICLR 2025, https://arxiv.org/abs/2502.15938.

Setup: a causal Transformer LM (``jaxlab.models`` "transformer_lm", pre-LN) trained on a
synthetic corpus drawn from a seeded random Markov chain of order ``k`` over ``V`` tokens (each
context's next-token distribution ~ Dirichlet(0.2)); every batch is fresh (one pass over the
corpus, as in LLM pretraining). Both schedules use the same initialisation, the same batches, a
5 % linear warmup and AdamW (β = (0.9, 0.95), coupled weight decay 0.1). The loss is the next-token
cross-entropy on the positions whose full Markov context is in the sequence; the held-out loss is
on 512 fresh sequences, and ``oracle_loss`` (the true chain's cross-entropy on them) is its floor.

Settings (override any with the flags):
  full:  V = 64, order 1, length 64, batch 32, 1500 steps, d_model 64, 2 layers, peak lr 0.05
         (112k parameters, 27 tokens per parameter; about 3 min per schedule on 2 CPU cores).
  small: V = 32, order 1, length 32, batch 32, 300 steps, d_model 32, 1 layer, peak lr 0.1
         (the CI size).
At the small size D2Z's final held-out loss is lower than cosine-to-10 %'s by 0.004–0.010 nats
(seeds 0–3), 10–20 % of the excess over the oracle. At the full size (seed 0) the held-out
losses are 2.897 (D2Z) and 2.910 (cosine), excess over the oracle 0.017 vs 0.030.

Writes ``WORKDIR/result.json`` (config, ``oracle_loss``, per schedule the ``final_train_loss``,
``final_heldout_loss`` and curves ``step``/``train_loss``/``heldout_loss``/``lr``),
``WORKDIR/loss.png`` (loss vs step) and ``WORKDIR/schedules.png`` (the two schedules).
"""

import argparse
import json
import os
import time

from jaxlab.cli import preset, reproduction_parser

SCHEDULES = ("d2z", "cosine_10pct")
SIZES = {
    "full": {
        "vocab_size": 64,
        "order": 1,
        "seq_len": 64,
        "batch_size": 32,
        "steps": 1500,
        "d_model": 64,
        "num_layers": 2,
        "lr": 0.05,
        "eval_every": 50,
    },
    "small": {
        "vocab_size": 32,
        "order": 1,
        "seq_len": 32,
        "batch_size": 32,
        "steps": 300,
        "d_model": 32,
        "num_layers": 1,
        "lr": 0.1,
        "eval_every": 15,
    },
}
NUM_HEADS = 4
HELDOUT_SEQUENCES = 512
DIRICHLET_ALPHA = 0.2
WARMUP_FRACTION = 0.05


def parser() -> argparse.ArgumentParser:
    p = reproduction_parser(__doc__, SIZES)
    p.add_argument("--seed", type=int, default=0, help="seeds the chain, the corpus and the init")
    p.add_argument("--vocab-size", type=int, help="V, tokens of the Markov chain")
    p.add_argument("--order", type=int, help="k, order of the Markov chain (1 or 2)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence fed to the model")
    p.add_argument("--batch-size", type=int, help="sequences per step")
    p.add_argument("--steps", type=int, help="training steps (the same for both schedules)")
    p.add_argument("--d-model", type=int, help="Transformer width (divisible by 4 heads)")
    p.add_argument("--num-layers", type=int, help="Transformer blocks")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (coupled)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations; divides --steps")
    return p


def _settings(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The size preset overridden by the flags given, validated (``parser.error`` on bad values)."""
    cfg = preset(SIZES, args)
    for name in ("vocab_size", "seq_len", "batch_size", "steps", "d_model", "num_layers"):
        if cfg[name] < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {cfg[name]}")
    if cfg["vocab_size"] < 2:
        p.error(f"--vocab-size must be >= 2, got {cfg['vocab_size']}")
    if cfg["order"] not in (1, 2):
        p.error(f"--order must be 1 or 2, got {cfg['order']}")
    if cfg["seq_len"] <= cfg["order"]:
        p.error(f"--seq-len must exceed --order={cfg['order']}, got {cfg['seq_len']}")
    if cfg["d_model"] % NUM_HEADS:
        p.error(f"--d-model must be divisible by {NUM_HEADS}, got {cfg['d_model']}")
    if cfg["steps"] < 20:
        p.error(f"--steps must be >= 20 (5 % warmup), got {cfg['steps']}")
    if cfg["eval_every"] < 1 or cfg["steps"] % cfg["eval_every"]:
        p.error(f"--eval-every={cfg['eval_every']} must be >= 1 and divide --steps={cfg['steps']}")
    if not cfg["lr"] > 0:
        p.error(f"--lr must be > 0, got {cfg['lr']}")
    if not args.weight_decay >= 0:
        p.error(f"--weight-decay must be >= 0, got {args.weight_decay}")
    return {
        **cfg,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "num_heads": NUM_HEADS,
        "warmup_steps": round(WARMUP_FRACTION * cfg["steps"]),
        "dirichlet_alpha": DIRICHLET_ALPHA,
        "heldout_sequences": HELDOUT_SEQUENCES,
    }


def _contexts(tokens, order: int, vocab_size: int):
    """Index of the order-k context of every target position t >= k: ``[n, L + 1 − k]``."""
    import numpy as np

    width = tokens.shape[1] - order
    ctx = np.zeros((tokens.shape[0], width), np.int64)
    for j in range(order):
        ctx = ctx * vocab_size + tokens[:, j : j + width]
    return ctx


def _sample_chain(rng, probs, num_sequences: int, length: int, order: int):
    """``[num_sequences, length]`` int32 tokens: ``order`` uniform tokens, then the chain."""
    import numpy as np

    vocab_size = probs.shape[1]
    cumulative = np.cumsum(probs, axis=1)
    tokens = np.empty((num_sequences, length), np.int32)
    tokens[:, :order] = rng.integers(0, vocab_size, (num_sequences, order))
    for t in range(order, length):
        ctx = np.zeros(num_sequences, np.int64)
        for j in range(order):
            ctx = ctx * vocab_size + tokens[:, t - order + j]
        u = rng.random(num_sequences)
        nxt = (u[:, None] > cumulative[ctx]).sum(axis=1)
        tokens[:, t] = np.minimum(nxt, vocab_size - 1)
    return tokens


def _run_schedule(schedule, cfg: dict, model, params, train_tokens, heldout) -> dict:
    """Train with one schedule, one jitted nested ``lax.scan`` over the pre-drawn batches."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlab.losses import softmax_cross_entropy
    from jaxlab.losses.reduce import weighted_mean
    from jaxlab.optim import adamw

    order = cfg["order"]
    tx = adamw(schedule, b1=0.9, b2=0.95, weight_decay=cfg["weight_decay"])

    def loss_fn(p, tokens):
        logits = model.apply({"params": p}, tokens[:, :-1])
        targets = tokens[:, 1:]
        has_context = jnp.arange(1, targets.shape[1] + 1) >= order  # target position >= k
        mask = jnp.broadcast_to(has_context[None, :], targets.shape)
        return weighted_mean(softmax_cross_entropy(logits, targets), where=mask)

    def step(carry, tokens):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, tokens)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    @jax.jit
    def train(p, batches, heldout):
        def chunk(carry, chunk_batches):
            carry, losses = jax.lax.scan(step, carry, chunk_batches)
            return carry, (jnp.mean(losses), loss_fn(carry[0], heldout))

        return jax.lax.scan(chunk, (p, tx.init(p)), batches)[1]

    num_evals = cfg["steps"] // cfg["eval_every"]
    batches = train_tokens.reshape(num_evals, cfg["eval_every"], *train_tokens.shape[1:])
    start = time.perf_counter()
    train_loss, heldout_loss = jax.device_get(train(params, batches, heldout))
    seconds = time.perf_counter() - start
    return {
        "final_train_loss": float(train_loss[-1]),
        "final_heldout_loss": float(heldout_loss[-1]),
        "step": list(range(cfg["eval_every"], cfg["steps"] + 1, cfg["eval_every"])),
        "train_loss": [float(v) for v in train_loss],
        "heldout_loss": [float(v) for v in heldout_loss],
        "seconds": seconds,
    }


def _plot(result: dict, workdir: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"d2z": "linear to zero (D2Z)", "cosine_10pct": "cosine to 10 %"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, run) in enumerate(result["schedules"].items()):
        label, color = labels[name], f"C{i}"
        ax.plot(run["step"], run["train_loss"], ":", color=color, label=f"{label} train")
        ax.plot(run["step"], run["heldout_loss"], "-", color=color, label=f"{label} held-out")
    ax.axhline(result["oracle_loss"], color="k", lw=0.8, ls="--", label="oracle (true chain)")
    finals = [run["final_heldout_loss"] for run in result["schedules"].values()]
    top = max(finals) + 4 * (max(finals) - result["oracle_loss"])
    bottom = result["oracle_loss"] - 0.02
    ax.set(xlabel="step", ylabel="next-token cross-entropy", ylim=(bottom, top))
    ax.set_title("AdamW on a Markov-chain corpus, equal steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "loss.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, (name, run) in enumerate(result["schedules"].items()):
        ax.plot(range(len(run["lr"])), run["lr"], color=f"C{i}", label=labels[name])
    ax.set(xlabel="step", ylabel="learning rate", title="schedules (5 % warmup)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "schedules.png"), dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    cfg = _settings(p, args)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlab.models import create_model, init_model
    from jaxlab.optim import warmup_cosine_to_fraction, warmup_linear_decay_to_zero

    v, k, length = cfg["vocab_size"], cfg["order"], cfg["seq_len"] + 1
    rng = np.random.default_rng(cfg["seed"])
    probs = rng.dirichlet(np.full(v, DIRICHLET_ALPHA), size=v**k)  # [V^k contexts, V]
    num_train = cfg["steps"] * cfg["batch_size"]
    train_tokens = _sample_chain(rng, probs, num_train, length, k)
    train_tokens = train_tokens.reshape(cfg["steps"], cfg["batch_size"], length)
    heldout = _sample_chain(rng, probs, HELDOUT_SEQUENCES, length, k)
    oracle = float(np.mean(-np.log(probs[_contexts(heldout, k, v), heldout[:, k:]])))

    model = create_model(
        "transformer_lm",
        num_classes=v,
        d_model=cfg["d_model"],
        num_heads=NUM_HEADS,
        num_layers=cfg["num_layers"],
        max_len=cfg["seq_len"],
    )
    params, _ = init_model(model, jax.random.key(cfg["seed"]), jnp.asarray(heldout[:2, :-1]))
    num_params = sum(int(x.size) for x in jax.tree.leaves(params))
    tokens_seen = num_train * cfg["seq_len"]
    schedules = {
        "d2z": warmup_linear_decay_to_zero(cfg["lr"], cfg["steps"], cfg["warmup_steps"]),
        "cosine_10pct": warmup_cosine_to_fraction(
            cfg["lr"], cfg["steps"], cfg["warmup_steps"], final_fraction=0.1
        ),
    }
    result = {
        "config": {**cfg, "num_params": num_params, "tokens_per_param": tokens_seen / num_params},
        "oracle_loss": oracle,
        "schedules": {},
    }
    train_tokens, heldout = jnp.asarray(train_tokens), jnp.asarray(heldout)
    for name, schedule in schedules.items():
        run = _run_schedule(schedule, cfg, model, params, train_tokens, heldout)
        run["lr"] = [float(x) for x in np.asarray(schedule(jnp.arange(cfg["steps"])))]
        result["schedules"][name] = run
    d2z, cos = (result["schedules"][n]["final_heldout_loss"] for n in SCHEDULES)
    result["heldout_gap"] = cos - d2z  # > 0: D2Z ends lower
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    _plot(result, args.workdir)

    print(
        f"Markov chain V={v} order={k}; {num_params} params, "
        f"{tokens_seen / num_params:.0f} tokens/param; oracle loss {oracle:.4f}"
    )
    for name, run in result["schedules"].items():
        print(
            f"  {name:13s} final train {run['final_train_loss']:.4f}  held-out "
            f"{run['final_heldout_loss']:.4f} (excess {run['final_heldout_loss'] - oracle:.4f})"
            f"  ({run['seconds']:.1f} s)"
        )
    print(f"  cosine-to-10% minus D2Z held-out loss: {result['heldout_gap']:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
