"""Edge of Stability: full-batch gradient descent drives the sharpness up to 2/η and holds it there.

Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically Occurs at the
Edge of Stability", ICLR 2021, https://arxiv.org/abs/2103.00065.

The phenomenon: with a fixed step size η, full-batch GD on a neural network first *sharpens*
(the top Hessian eigenvalue λ_max grows, "progressive sharpening") until λ_max reaches the
stability threshold of GD on a quadratic, 2/η. Classical theory says GD diverges beyond it;
instead λ_max hovers at (or just above) 2/η — the *edge of stability* — while the training loss
keeps decreasing over long horizons, but non-monotonically (it spikes and recovers). For
heavy-ball momentum ``v ← βv + g, θ ← θ − ηv`` the threshold is (2 + 2β)/η.

This script trains a tanh MLP with the squared loss ``½‖f(x) − onehot(y)‖²`` averaged over a fixed
subset of the training set (the paper's MSE setting, where EoS is cleanest) by full-batch GD
(``--optimizer gd``) or GD with heavy-ball momentum (``--optimizer momentum``), and tracks λ_max
every ``--eig-every`` steps by Lanczos, warm-started from the previous top eigenvector. The
training steps run in one compiled ``lax.scan`` per chunk of ``--eig-every`` steps, the Lanczos
tracker is one compiled call, so nothing is recompiled inside the loop.

Outputs in ``WORKDIR``: ``result.json`` (``threshold``, ``sharpness`` = [{"step", "lambda_max"}],
``loss`` = [{"step", "loss"}], ``ratio_last_quarter`` = mean λ_max/threshold over the last quarter
of the run, plus its min/max, the step at which λ_max first reaches 90 % of the threshold, and the
loss increases counted over the run) and ``edge_of_stability.png`` (loss and sharpness vs step with
the threshold line).

Settings:

* ``--size full``: digits (sklearn 8×8), 1000 training examples, MLP 64-64-64-10 (tanh),
  η = 0.2 (threshold 10), 4000 steps, λ_max every 20 steps (≈ 20 s on a CPU). (A wider
  MLP, 64-200-200-10, starts above 2/η = 10 — λ_max ≈ 15 — and is at the edge from the first
  steps on, without a visible progressive-sharpening phase.)
* ``--size small`` (CI): digits, 500 examples, MLP 64-64-64-10 (tanh), η = 0.2 (threshold 10),
  1200 steps, λ_max every 20 steps (≈ 15 s on a CPU). λ_max dips from ≈ 8 to ≈ 7, sharpens
  progressively and reaches 10 around step 700. With ``--optimizer momentum --momentum 0.5
  --lr 0.3`` (threshold (2 + 1)/0.3 = 10) it reaches the threshold within ≈ 250 steps. (With
  β = 0.9 and η = 0.3 the effective step η/(1 − β) = 3 drives the loss to ≈ 5e-4 so fast that on
  some seeds λ_max levels off at 85–95 % of the threshold.)

Inputs are standardised; the subset is drawn with ``--seed``.

Explicit flags override the size's values. Example::

    python scripts/reproduce/edge_of_stability.py --workdir /tmp/eos --size small
    python scripts/reproduce/edge_of_stability.py --workdir /tmp/eos_m --size small \\
        --optimizer momentum --momentum 0.5 --lr 0.3
"""

import argparse
import json
import os
import sys
import time

from jaxlab.cli import positive_float, positive_int, preset, reproduction_parser

SIZES = {
    "small": {"num_examples": 500, "width": 64, "depth": 2, "lr": 0.2, "steps": 1200,
              "eig_every": 20},
    "full": {"num_examples": 1000, "width": 64, "depth": 2, "lr": 0.2, "steps": 4000,
             "eig_every": 20},
}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = reproduction_parser(__doc__, SIZES)
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and subset")
    p.add_argument("--optimizer", choices=("gd", "momentum"), default="gd")
    p.add_argument("--momentum", type=float, default=0.9, help="β of heavy-ball momentum")
    p.add_argument("--lr", type=positive_float, help="learning rate η")
    p.add_argument("--steps", type=positive_int, help="number of full-batch steps")
    p.add_argument("--eig-every", type=positive_int, help="steps between λ_max measurements")
    p.add_argument("--num-examples", type=positive_int, help="training subset size")
    p.add_argument("--width", type=positive_int, help="hidden width")
    p.add_argument("--depth", type=positive_int, help="number of hidden layers")
    return p


def _settings(p: argparse.ArgumentParser, args) -> dict:
    cfg = preset(SIZES, args)
    if not 0.0 <= args.momentum < 1.0:
        p.error(f"--momentum must be in [0, 1), got {args.momentum}")
    if cfg["steps"] % cfg["eig_every"]:
        p.error(f"--steps must be a multiple of --eig-every, got {cfg['steps']} and "
                f"{cfg['eig_every']}")  # fmt: skip
    if cfg["num_examples"] > 1437:  # digits' training split (80 % of 1797)
        p.error(f"--num-examples must be <= 1437 (digits train split), got {cfg['num_examples']}")
    momentum = args.momentum if args.optimizer == "momentum" else 0.0
    cfg.update(optimizer=args.optimizer, momentum=momentum, seed=args.seed)
    return cfg


def _run(cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxlab.curvature import hessian_eigenvalues, stability_threshold
    from jaxlab.data import load_dataset, standardize
    from jaxlab.losses.reduce import weighted_mean
    from jaxlab.losses.regression import squared_error
    from jaxlab.models import init_model
    from jaxlab.models.mlp import MLP

    ds = standardize(load_dataset("digits"))
    rng = np.random.default_rng(cfg["seed"])
    idx = rng.choice(len(ds.x_train), cfg["num_examples"], replace=False)
    x = jnp.asarray(ds.x_train[idx])
    y = jnp.asarray(np.eye(ds.num_classes, dtype=np.float32)[ds.y_train[idx]])
    model = MLP(features=(cfg["width"],) * cfg["depth"], num_classes=ds.num_classes,
                activation=jnp.tanh)  # fmt: skip
    params, _ = init_model(model, jax.random.key(cfg["seed"]), x[:1])

    def loss_fn(p, batch):
        """½‖f(x) − y‖² summed over classes, averaged over examples (Cohen et al.'s MSE)."""
        inputs, targets = batch
        out = model.apply({"params": p}, inputs)
        return weighted_mean(0.5 * jnp.sum(squared_error(out, targets), axis=-1))

    beta = cfg["momentum"]
    tx = optax.sgd(cfg["lr"], momentum=beta or None)
    threshold = float(stability_threshold(cfg["lr"], optimizer=cfg["optimizer"], momentum=beta))
    batch = (x, y)

    @jax.jit
    def chunk(p, opt_state):
        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, batch)
            updates, s = tx.update(g, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (p, opt_state), losses = jax.lax.scan(step, (p, opt_state), length=cfg["eig_every"])
        return p, opt_state, losses

    opt_state = tx.init(params)
    # A random start with a leading k = 1 axis: the same compiled call as the warm starts.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(cfg["seed"] + 1), len(leaves))
    v0 = treedef.unflatten(
        [jax.random.normal(k, (1, *a.shape)) for k, a in zip(keys, leaves, strict=True)]
    )
    eig = hessian_eigenvalues(loss_fn, params, batch, k=1, init=v0, tol=1e-4)
    sharpness = [{"step": 0, "lambda_max": float(eig.eigenvalues[0])}]
    losses = []
    for start in range(0, cfg["steps"], cfg["eig_every"]):
        params, opt_state, chunk_losses = chunk(params, opt_state)
        losses.extend(float(v) for v in np.asarray(chunk_losses))
        eig = hessian_eigenvalues(loss_fn, params, batch, k=1, init=eig.eigenvectors, tol=1e-4)
        sharpness.append(
            {"step": start + cfg["eig_every"], "lambda_max": float(eig.eigenvalues[0])}
        )
        if not np.isfinite(losses[-1]):
            break
    return {"threshold": threshold, "sharpness": sharpness, "losses": losses}


def _summarize(cfg: dict, run: dict) -> dict:
    import numpy as np

    threshold = run["threshold"]
    steps = np.array([s["step"] for s in run["sharpness"]])
    lam = np.array([s["lambda_max"] for s in run["sharpness"]])
    loss = np.array(run["losses"])
    total = len(loss)
    last = steps >= 0.75 * total
    ratio = lam[last] / threshold
    low = int(np.argmin(lam[: max(1, len(lam) // 2)]))  # after the initial drop, if any
    reached = low + np.nonzero(lam[low:] >= 0.9 * threshold)[0]
    increases = int(np.sum(np.diff(loss) > 0))
    return {
        "config": cfg,
        "threshold": threshold,
        "sharpness": run["sharpness"],
        "loss": [{"step": i, "loss": float(v)} for i, v in enumerate(loss)],
        "ratio_last_quarter": float(np.mean(ratio)),
        "ratio_last_quarter_min": float(np.min(ratio)),
        "ratio_last_quarter_max": float(np.max(ratio)),
        "step_reached_threshold": int(steps[reached[0]]) if reached.size else None,
        "lambda_max_initial": float(lam[0]),
        "lambda_max_min_first_half": float(lam[low]),
        "loss_initial": float(loss[0]),
        "loss_final": float(loss[-1]),
        "loss_increases": increases,
        "loss_increases_last_half": int(np.sum(np.diff(loss[total // 2 :]) > 0)),
        "loss_last_quarter_start": float(loss[(3 * total) // 4]),
        "loss_finite": bool(np.all(np.isfinite(loss))),
    }


def _plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_sharp) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_loss.plot([r["step"] for r in result["loss"]], [r["loss"] for r in result["loss"]])
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss")
    cfg = result["config"]
    ax_loss.set_title(f"full-batch {cfg['optimizer']}, η = {cfg['lr']:g}")
    ax_sharp.plot([s["step"] for s in result["sharpness"]],
                  [s["lambda_max"] for s in result["sharpness"]], label="λ_max")  # fmt: skip
    label = "2/η" if cfg["optimizer"] == "gd" else "(2+2β)/η"
    ax_sharp.axhline(result["threshold"], color="k", ls="--", label=label)
    ax_sharp.set_xlabel("step")
    ax_sharp.set_ylabel("sharpness λ_max")
    ax_sharp.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    cfg = _settings(p, args)
    os.makedirs(args.workdir, exist_ok=True)
    t0 = time.perf_counter()
    result = _summarize(cfg, _run(cfg))
    result["seconds"] = time.perf_counter() - t0
    with open(os.path.join(args.workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    _plot(result, os.path.join(args.workdir, "edge_of_stability.png"))
    print(
        f"threshold {result['threshold']:.3g}; λ_max {result['lambda_max_initial']:.3g} → reached "
        f"0.9×threshold at step {result['step_reached_threshold']}; last-quarter λ_max/threshold "
        f"mean {result['ratio_last_quarter']:.3f} (min {result['ratio_last_quarter_min']:.3f}, "
        f"max {result['ratio_last_quarter_max']:.3f}); loss {result['loss_initial']:.3g} → "
        f"{result['loss_final']:.3g} with {result['loss_increases']} increases; "
        f"{result['seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
