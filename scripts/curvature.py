"""Curvature of a checkpoint written by scripts/train.py: eigenvalues, trace, density, landscape.

    python scripts/curvature.py --workdir runs/sam [--step S] [--num-examples 1024]

Reads ``WORKDIR/config.json`` and the checkpoint (default: the latest), measures the Hessian of
the inference-mode training loss on the first ``--num-examples`` training examples, and writes
``OUT/summary.json`` (top eigenvalues, λ_max, trace ± stderr, loss), ``OUT/density.png`` (SLQ
spectral density) and ``OUT/landscape.png`` (loss along a filter-normalised random direction);
``OUT`` defaults to ``WORKDIR/curvature``.
"""

import argparse
import json
import os
import sys

from jaxlab.cli import positive_int


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", required=True, help="a scripts/train.py output directory")
    p.add_argument("--step", type=positive_int, help="checkpoint step (default: the latest)")
    p.add_argument("--out", help="output directory (default: WORKDIR/curvature)")
    p.add_argument("--num-examples", type=positive_int, default=1024)
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--trace-probes", type=positive_int, default=100)
    p.add_argument("--density-runs", type=positive_int, default=5)
    p.add_argument("--density-steps", type=positive_int, default=80)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.trace_probes < 2:
        p.error(f"--trace-probes must be >= 2, got {args.trace_probes}")
    config_path = os.path.join(args.workdir, "config.json")
    if not os.path.exists(config_path):
        p.error(f"--workdir {args.workdir} has no config.json (not a scripts/train.py run)")

    import jax

    from jaxlab.train import Checkpointer, classification_objective
    from jaxlab.train.analysis import analyze_solution, plot_summaries, scalars
    from jaxlab.train.experiment import (
        ExperimentConfig,
        build_model,
        first_examples,
        initial_state,
        load_experiment_data,
    )

    with open(config_path) as f:
        config = ExperimentConfig.from_dict({**json.load(f), "devices": 1})
    dataset = load_experiment_data(config)
    template = initial_state(config, dataset)
    checkpointer = Checkpointer(os.path.join(args.workdir, "checkpoints"), save_every=1)
    try:
        available = checkpointer.all_steps()
        if not available or (args.step is not None and args.step not in available):
            print(f"error: no checkpoint {args.step or ''} in {args.workdir}; have {available}",
                  file=sys.stderr)  # fmt: skip
            return 1
        state = checkpointer.restore(template, args.step)
    finally:
        checkpointer.close()
    _, _, curvature_loss_fn = classification_objective(build_model(config, dataset.num_classes))
    summary = analyze_solution(
        curvature_loss_fn, state.params, state.model_state,
        first_examples(dataset, args.num_examples), key=jax.random.PRNGKey(args.seed),
        top_k=args.top_k, trace_probes=args.trace_probes, density_runs=args.density_runs,
        density_steps=args.density_steps,
    )  # fmt: skip
    out = args.out or os.path.join(args.workdir, "curvature")
    os.makedirs(out, exist_ok=True)
    result = {"step": int(state.step), **scalars(summary)}
    result.update(plot_summaries({f"step {int(state.step)}": summary}, out))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(scalars(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
