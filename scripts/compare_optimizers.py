"""Main job: momentum SGD, SAM and MoMo train the same model; their solutions' curvature compared.

    python scripts/compare_optimizers.py [--dataset auto] [--steps N] [--workdir runs/compare]

Trains an MLP on Fashion-MNIST when the Debian package ``dataset-fashion-mnist`` is installed,
else on scikit-learn's digits (``--dataset`` picks), with each optimizer of ``OPTIMIZERS`` via
the training stack (``jaxlab.train``, checkpoints and ``metrics.jsonl`` under
``WORKDIR/<optimizer>/``); then measures each solution's Hessian on 1024 training examples:
top eigenvalues (Lanczos), trace (Hutchinson), spectral density (SLQ) and the loss along a
filter-normalised random direction. Writes ``WORKDIR/summary.json``, ``WORKDIR/table.md``,
``WORKDIR/density.png`` and ``WORKDIR/landscape.png`` and prints the table. Runs of a previous
call in ``WORKDIR/<optimizer>/`` are replaced.
"""

import argparse
import json
import os
import shutil
import sys
import time

OPTIMIZERS = {
    "sgd_momentum": {"optimizer": "momentum", "learning_rate": 0.05},
    "sam": {"optimizer": "sam", "learning_rate": 0.05, "optimizer_options": {"rho": 0.05}},
    "momo": {"optimizer": "momo", "learning_rate": 1.0},
}
DEFAULT_STEPS = {"digits": 1000, "fashion_mnist": 2000}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=["auto", "digits", "fashion_mnist"], default="auto")
    p.add_argument("--steps", type=int, help="per optimizer (default 1000 digits, 2000 F-MNIST)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--curvature-examples", type=int, default=1024)
    p.add_argument("--trace-probes", type=int, default=100)
    p.add_argument("--density-runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="runs/compare")
    return p


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| optimizer | train loss | test accuracy | λ_max | trace | ms/step |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['loss']:.4f} | {r['test_accuracy']:.4f} | {r['lambda_max']:.2f} "
            f"| {r['trace']:.1f} ± {r['trace_stderr']:.1f} | {r['ms_per_step']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "curvature_examples", "trace_probes", "density_runs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")

    import jax

    from jaxlab.data.loaders import FASHION_MNIST_DIR
    from jaxlab.train.analysis import analyze_solution, plot_summaries, scalars
    from jaxlab.train.experiment import ExperimentConfig, first_examples, run_experiment

    dataset = args.dataset
    if dataset == "auto":
        dataset = "fashion_mnist" if os.path.isdir(FASHION_MNIST_DIR) else "digits"
    steps = args.steps or DEFAULT_STEPS[dataset]
    os.makedirs(args.workdir, exist_ok=True)
    print(f"dataset {dataset}, MLP, {steps} steps of batch {args.batch_size} per optimizer")
    rows, summaries = {}, {}
    for name, options in OPTIMIZERS.items():
        config = ExperimentConfig(
            dataset=dataset, model="mlp", steps=steps, batch_size=args.batch_size,
            seed=args.seed, log_every=max(1, steps // 10), checkpoint_every=steps, progress=False,
            **options,
        )  # fmt: skip
        run_dir = os.path.join(args.workdir, name)
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.perf_counter()
        state, result, data, curvature_loss_fn = run_experiment(config, run_dir)
        seconds = time.perf_counter() - start
        summary = analyze_solution(
            curvature_loss_fn, state.params, state.model_state,
            first_examples(data, args.curvature_examples), key=jax.random.PRNGKey(args.seed),
            trace_probes=args.trace_probes, density_runs=args.density_runs,
        )  # fmt: skip
        summaries[name] = summary
        rows[name] = {
            **scalars(summary),
            "test_accuracy": result["accuracy"],
            "test_loss": result["loss"],
            "ms_per_step": 1e3 * seconds / steps,
        }
        print(
            f"  {name}: test accuracy {result['accuracy']:.4f}, λ_max {summary['lambda_max']:.2f}"
        )
    plots = plot_summaries(summaries, args.workdir)
    text = table(rows)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump({"dataset": dataset, "steps": steps, "runs": rows, **plots}, f, indent=2)
    print(text)
    print(f"figures and summary in {args.workdir}/ (ms/step includes compilation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
