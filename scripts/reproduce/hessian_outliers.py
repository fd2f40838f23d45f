"""Hessian outliers: a C-class classifier's Hessian is a bulk near zero plus about C outliers.

Sagun, Evci, Güney, Dauphin & Bottou, "Empirical Analysis of the Hessian of Over-Parametrized
Neural Networks", https://arxiv.org/abs/1706.04454; Papyan, "Measurements of Three-Level
Hierarchical Structure in the Outliers in the Spectrum of Deepnet Hessians", ICML 2019,
https://arxiv.org/abs/1901.08244.

The phenomenon: after training with cross-entropy on C classes, the Hessian spectrum splits into
a *bulk* concentrated near zero (most of the mass) and a few *outliers*, about C of them (C − 1
in Papyan's class-means picture, since the softmax is invariant to a shift of the logits). The
Hessian is ``H = G + R`` with the Gauss-Newton part ``G = Jᵀ ∇²ℓ J`` and a residual ``R``
weighted by the loss gradients; the outliers come from ``G`` (its top eigenvalues match the
Hessian's), which Papyan traces to the class means of the logit gradients.

This script trains an MLP classifier by full-batch gradient descent on a subset of the training
set (one compiled ``lax.scan``), then in one compiled call each computes the top 2C eigenvalues of
the Hessian and of the GGN by Lanczos (``hessian_eigenvalues``; ``ggn_operator`` +
``lanczos_eigenvalues``) and the SLQ spectral density (``hessian_density``). The *gap index* is
the ``i`` (1-based) maximising ``λ_i / λ_{i+1}`` over the top 2C, i.e. the largest gap on the log
scale where the outliers separate from the bulk.

Outputs in ``WORKDIR``: ``result.json`` (``hessian_top``, ``ggn_top``, ``gap_index``,
``gap_ratios``, ``ggn_relative_error`` of the top C, ``density`` summary: the SLQ mass within
``5 %`` of λ_max around 0, and the mass above the middle of the largest gap next to its expected
value, (number of outliers)/(number of parameters); training loss and accuracy) and
``hessian_outliers.png`` (top-2C eigenvalues on a log scale, Hessian and GGN, and the SLQ
density).

Settings:

* ``--size full``: digits (sklearn 8×8, 10 classes), all 1437 training examples, MLP 64-256-256-10
  (ReLU), 100 GD steps at η = 0.05; SLQ 10 runs × 100 steps.
* ``--size small`` (CI): digits, 500 examples, MLP 64-128-128-10 (ReLU), 50 GD steps at η = 0.05;
  SLQ 4 runs × 60 steps.

Training is stopped early on purpose (train loss ≈ 0.5–1): on a dataset as easy as digits, GD
drives the loss to ≈ 0 within a few hundred steps, and the outliers then shrink into the bulk
(their size scales with the softmax curvature p(1 − p), which vanishes at zero loss).

Explicit flags override the size's values. Example::

    python scripts/reproduce/hessian_outliers.py --workdir /tmp/outliers --size small
"""

import argparse
import json
import os
import sys
import time

from jaxlab.cli import positive_float, positive_int, preset, reproduction_parser

SIZES = {
    "small": {"num_classes": 10, "num_examples": 500, "width": 128, "depth": 2, "lr": 0.05,
              "steps": 50, "density_runs": 4, "density_steps": 60},
    "full": {"num_classes": 10, "num_examples": 1437, "width": 256, "depth": 2, "lr": 0.05,
             "steps": 100, "density_runs": 10, "density_steps": 100},
}  # fmt: skip
BULK_FRACTION = 0.05  # |λ| ≤ 5 % of λ_max counts as "near zero"


def parser() -> argparse.ArgumentParser:
    p = reproduction_parser(__doc__, SIZES)
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and subset")
    p.add_argument("--lr", type=positive_float, help="learning rate of full-batch GD")
    p.add_argument("--steps", type=positive_int, help="training steps")
    p.add_argument("--num-examples", type=positive_int, help="training subset size")
    p.add_argument("--width", type=positive_int, help="hidden width")
    p.add_argument("--depth", type=positive_int, help="number of hidden layers")
    p.add_argument("--num-classes", type=positive_int, help="C: use the digits 0..C-1 only")
    p.add_argument("--density-runs", type=positive_int, help="SLQ probes")
    p.add_argument("--density-steps", type=positive_int, help="Lanczos steps per SLQ probe")
    return p


def _settings(p: argparse.ArgumentParser, args) -> dict:
    cfg = preset(SIZES, args)
    if cfg["num_examples"] > 1437:  # digits' training split (80 % of 1797)
        p.error(f"--num-examples must be <= 1437 (digits train split), got {cfg['num_examples']}")
    if not 2 <= cfg["num_classes"] <= 10:
        p.error(f"--num-classes must be in 2..10, got {cfg['num_classes']}")
    cfg["seed"] = args.seed
    return cfg


def _run(cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlab.curvature import (
        density_grid,
        ggn_operator,
        hessian_density,
        hessian_eigenvalues,
        lanczos_eigenvalues,
        spectral_density,
    )
    from jaxlab.data import load_dataset, standardize
    from jaxlab.losses.classification import softmax_cross_entropy
    from jaxlab.losses.reduce import weighted_mean
    from jaxlab.models import init_model
    from jaxlab.models.mlp import MLP

    ds = standardize(load_dataset("digits"))
    c = cfg["num_classes"]
    rng = np.random.default_rng(cfg["seed"])
    pool = np.nonzero(ds.y_train < c)[0]
    idx = rng.choice(pool, min(cfg["num_examples"], len(pool)), replace=False)
    batch = (jnp.asarray(ds.x_train[idx]), jnp.asarray(ds.y_train[idx]))
    model = MLP(features=(cfg["width"],) * cfg["depth"], num_classes=c)
    params, _ = init_model(model, jax.random.key(cfg["seed"]), batch[0][:1])

    def apply_fn(p, b):
        return model.apply({"params": p}, b[0])

    def output_loss(logits, b):
        return weighted_mean(softmax_cross_entropy(logits, b[1]))

    def loss_fn(p, b):
        return output_loss(apply_fn(p, b), b)

    @jax.jit
    def train(p):
        def step(p, _):
            loss, g = jax.value_and_grad(loss_fn)(p, batch)
            return jax.tree.map(lambda w, d: w - cfg["lr"] * d, p, g), loss

        return jax.lax.scan(step, p, length=cfg["steps"])

    params, losses = train(params)
    logits = apply_fn(params, batch)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == batch[1]))

    k = 2 * c
    key_h, key_g, key_d = jax.random.split(jax.random.key(cfg["seed"] + 1), 3)
    hess = hessian_eigenvalues(loss_fn, params, batch, k=k, key=key_h, max_steps=120, tol=1e-5)

    @jax.jit
    def ggn_top(p, b, v0):
        op = ggn_operator(apply_fn, output_loss, p, b)
        return lanczos_eigenvalues(op, v0, k=k, max_steps=120, tol=1e-5)

    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key_g, len(leaves))
    v0 = treedef.unflatten(
        [jax.random.normal(kk, a.shape) for kk, a in zip(keys, leaves, strict=True)]
    )
    ggn = ggn_top(params, batch, v0)
    nodes, weights = hessian_density(
        loss_fn, params, batch, key=key_d, num_steps=cfg["density_steps"],
        num_runs=cfg["density_runs"],
    )  # fmt: skip
    grid = density_grid(nodes, weights, num_points=512)
    density = spectral_density(nodes, weights, grid)
    return {
        "losses": np.asarray(losses),
        "accuracy": accuracy,
        "hessian_top": np.asarray(hess.eigenvalues, np.float64),
        "ggn_top": np.asarray(ggn.eigenvalues, np.float64),
        "nodes": np.asarray(nodes, np.float64),
        "weights": np.asarray(weights, np.float64),
        "grid": np.asarray(grid),
        "density": np.asarray(density),
        "num_params": int(sum(a.size for a in leaves)),
    }


def _summarize(cfg: dict, run: dict) -> dict:
    import numpy as np

    c = cfg["num_classes"]
    hess, ggn = run["hessian_top"], run["ggn_top"]
    ratios = hess[:-1] / np.maximum(hess[1:], np.finfo(np.float32).tiny)
    gap_index = int(np.argmax(ratios)) + 1  # the gap lies after the gap_index-th eigenvalue
    lam_max = float(hess[0])
    nodes, weights = run["nodes"], run["weights"] / run["nodes"].shape[0]
    near_zero = float(np.sum(weights[np.abs(nodes) <= BULK_FRACTION * lam_max]))
    cut = np.sqrt(hess[gap_index - 1] * hess[gap_index])  # the middle of the gap (log scale)
    outlier_mass = float(np.sum(weights[nodes >= cut]))
    rel = np.abs(ggn[:c] - hess[:c]) / np.abs(hess[:c])
    return {
        "config": cfg,
        "num_classes": c,
        "num_params": run["num_params"],
        "train_loss_initial": float(run["losses"][0]),
        "train_loss_final": float(run["losses"][-1]),
        "train_accuracy": run["accuracy"],
        "hessian_top": hess.tolist(),
        "ggn_top": ggn.tolist(),
        "gap_ratios": ratios.tolist(),
        "gap_index": gap_index,
        "ggn_relative_error": rel.tolist(),
        "ggn_max_relative_error": float(np.max(rel)),
        "density": {
            "lambda_max": lam_max,
            "bulk_fraction": BULK_FRACTION,
            "mass_near_zero": near_zero,
            "outlier_cut": float(cut),
            "mass_above_cut": outlier_mass,
            "outlier_mass_expected": gap_index / run["num_params"],
            "num_runs": int(nodes.shape[0]),
            "num_steps": int(nodes.shape[1]),
        },
    }


def _plot(result: dict, run: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxlab.curvature import plot_density

    fig, (ax_top, ax_den) = plt.subplots(1, 2, figsize=(11, 4))
    i = np.arange(1, len(result["hessian_top"]) + 1)
    ax_top.semilogy(i, np.abs(result["hessian_top"]), "o-", label="Hessian")
    ax_top.semilogy(i, np.abs(result["ggn_top"]), "x--", label="Gauss-Newton")
    ax_top.axvline(result["gap_index"] + 0.5, color="k", ls=":", label="largest gap")
    ax_top.set_xlabel("index i")
    ax_top.set_ylabel("λ_i")
    ax_top.set_title(f"top {len(i)} eigenvalues (C = {result['num_classes']})")
    ax_top.legend()
    plot_density(run["grid"], run["density"], ax=ax_den)
    ax_den.set_title("Hessian spectral density (SLQ)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    cfg = _settings(p, args)
    os.makedirs(args.workdir, exist_ok=True)
    t0 = time.perf_counter()
    run = _run(cfg)
    result = _summarize(cfg, run)
    result["seconds"] = time.perf_counter() - t0
    with open(os.path.join(args.workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    _plot(result, run, os.path.join(args.workdir, "hessian_outliers.png"))
    hess = ", ".join(f"{v:.3g}" for v in result["hessian_top"])
    print(
        f"train loss {result['train_loss_final']:.3g} (acc {result['train_accuracy']:.3f}); top "
        f"{len(result['hessian_top'])} Hessian eigenvalues: {hess}; largest gap after "
        f"#{result['gap_index']}; GGN top-{result['num_classes']} max rel. error "
        f"{result['ggn_max_relative_error']:.3f}; SLQ mass near 0 "
        f"{result['density']['mass_near_zero']:.3f}; {result['seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
