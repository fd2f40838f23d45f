"""Train a classifier with any jaxlab or optax optimizer, on one device or data-parallel.

    python scripts/train.py --dataset digits --model mlp --optimizer sam --opt rho=0.05 \
        --steps 500 --batch-size 128 --learning-rate 0.1 --workdir runs/sam [--devices 8]

Writes ``WORKDIR/config.json``, ``WORKDIR/metrics.jsonl`` (one JSON object per logged step),
``WORKDIR/checkpoints/`` and ``WORKDIR/result.json``; ``--resume`` continues from the latest
checkpoint; ``--tensorboard`` also writes ``WORKDIR/tensorboard``. ``--config FILE`` reads the
same keys from JSON (``scripts/configs/``); flags given on the command line override it.
``--devices N`` forces N host devices on CPU (set before JAX starts); ``--devices all`` uses
every accelerator. Bad flag values exit with code 2.
"""

import argparse
import ast
import json
import os
import sys


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare string such as inner=adam


def _devices(text: str):
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="JSON file with ExperimentConfig keys")
    p.add_argument("--workdir", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--dataset", help="digits | fashion_mnist | mnist1d | cifar10")
    p.add_argument("--data-dir", help="folder of the dataset files (cifar10, fashion_mnist)")
    p.add_argument("--label-noise", type=float, help="fraction of train labels replaced")
    p.add_argument("--model", help="mlp | cnn | resnet18 | wrn")
    p.add_argument("--model-opt", type=_key_value, action="append", metavar="KEY=VALUE")
    p.add_argument("--optimizer", help="momentum, sam, looksam, momo, momo_adam, adamw, sgd, ...")
    p.add_argument(
        "--opt",
        type=_key_value,
        action="append",
        metavar="KEY=VALUE",
        help="optimizer hyperparameter, e.g. --opt rho=0.05 --opt inner=adam",
    )
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--sam-rho", type=float, help="per-device SAM gradient (m-sharpness)")
    p.add_argument("--accumulation-steps", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--data-seed", type=int, help="the loader's split/generation seed")
    p.add_argument("--devices", type=_devices, help="N forced CPU devices, or 'all'")
    p.add_argument("--parallel", choices=["pmap", "shard_map"])
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--keep-checkpoints", type=int)
    p.add_argument("--monitor-every", type=int, help="steps between λ_max/trace measurements")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--tensorboard", action="store_true",
                   help="also write WORKDIR/tensorboard (needs tensorboardX)")  # fmt: skip
    return p


def resolve(args, p: argparse.ArgumentParser) -> dict:
    """Config-file values overridden by the flags given."""
    values = {}
    if args.config:
        try:
            with open(args.config) as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            p.error(f"--config {args.config}: {e}")
    flags = {k: v for k, v in vars(args).items() if v is not None}
    for name in ("config", "workdir", "resume", "tensorboard"):
        flags.pop(name, None)
    if "opt" in flags:
        values["optimizer_options"] = {
            **values.get("optimizer_options", {}),
            **dict(flags.pop("opt")),
        }
    if "model_opt" in flags:
        values["model_options"] = {
            **values.get("model_options", {}),
            **dict(flags.pop("model_opt")),
        }
    return {**values, **flags}


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    values = resolve(args, p)
    devices = values.get("devices", 1)
    if isinstance(devices, int) and devices > 1 and "jax" not in sys.modules:
        from jaxlab.train.parallel import force_host_devices

        force_host_devices(devices)

    import jax

    from jaxlab.models import create_model
    from jaxlab.optim.registry import make_optimizer
    from jaxlab.train import NonFiniteLossError
    from jaxlab.train.experiment import ExperimentConfig, run_experiment

    if devices == "all":
        values["devices"] = jax.device_count()
    try:
        config = ExperimentConfig.from_dict(values)
        make_optimizer(config.optimizer, config.learning_rate, **config.optimizer_options)
        create_model(config.model, num_classes=2, **config.model_options)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "config.json"), "w") as f:
        json.dump(values, f, indent=2)
    log, writer = None, None
    if args.tensorboard:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            p.error("--tensorboard needs tensorboardX: pip install 'jaxlab[tensorboard]'")
        writer = SummaryWriter(os.path.join(args.workdir, "tensorboard"))

        def log(record):
            for name, value in record.items():
                if name != "step":
                    writer.add_scalar(name, value, record["step"])

    try:
        _, result, _, _ = run_experiment(config, args.workdir, resume=args.resume, log=log)
    except (FileNotFoundError, FileExistsError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if writer is not None:
            writer.close()
    with open(os.path.join(args.workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(" ".join(f"{k}={v:.4f}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
