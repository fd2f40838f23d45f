"""Training-step throughput: steps/s and examples/s, SGD vs SAM, one device vs 8 devices.

    python benchmarks/train_step.py [--devices 8] [--repeats 20] [--full-size]

One process with N forced host devices (set before JAX starts) so one device (``jax.jit``) and
N devices (``jit(shard_map)`` and ``pmap``) are timed in the same run, interleaved. Each step is
the real :func:`jaxlab.train.make_train_step` step (momentum SGD, or SAM = the
:func:`jaxlab.optim.sam` transform around it) compiled once; times are medians over repeats
after a warm-up, with ``block_until_ready``. CPU sizes are reduced (``--full-size`` gives
ResNet-18 width 64 and WRN-16-8 on 32×32×3 at batch 128, the GPU setting).
"""

import argparse
import sys
import time

DEFAULT_DEVICES = 8


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=DEFAULT_DEVICES)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--full-size", action="store_true")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if "jax" not in sys.modules and args.devices > 1:
        from jaxlab.train.parallel import force_host_devices

        force_host_devices(args.devices)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlab.models import create_model, init_model
    from jaxlab.optim.registry import make_optimizer
    from jaxlab.train import DataParallel, TrainState, classification_objective, make_train_step

    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    if args.full_size:
        models = {
            "resnet18": ("resnet18", {"width": 64}, (32, 32, 3), 128),
            "wrn16_8": ("wrn", {"depth": 16, "widen_factor": 8}, (32, 32, 3), 128),
        }
    else:
        models = {
            "mlp (digits)": ("mlp", {}, (64,), 128),
            "cnn (28x28)": ("cnn", {}, (28, 28, 1), 128),
            "resnet18 w16": ("resnet18", {"width": 16}, (32, 32, 3), 32),
            "wrn16_2": ("wrn", {"depth": 16, "widen_factor": 2}, (32, 32, 3), 32),
        }
    n = min(args.devices, jax.device_count())
    modes = [DataParallel()]
    if n > 1:
        modes += [DataParallel("shard_map", n), DataParallel("pmap", n)]
    print(f"{jax.devices()[0].platform}, {n} devices, {args.dtype}, median of {args.repeats}")
    header = ("model", "mode", "opt", "steps/s", "examples/s", "SAM/SGD")
    print("{:14s} {:10s} {:4s} {:>9s} {:>11s} {:>8s}".format(*header))
    rng = np.random.default_rng(0)
    for label, (name, options, shape, batch_size) in models.items():
        x = rng.normal(size=(batch_size, *shape)).astype(np.float32)
        batch = {"x": x, "y": rng.integers(0, 10, batch_size).astype(np.int32)}
        compiled = {}
        for parallel in modes:
            unmapped = create_model(name, num_classes=10, dtype=dtype, **options)
            model = unmapped
            if "bn_axis_name" in type(unmapped).__dataclass_fields__:  # sync BatchNorm
                model = unmapped.clone(bn_axis_name=parallel.axis_name)
            params, model_state = init_model(unmapped, jax.random.PRNGKey(0), x[:1])
            loss_fn, _, _ = classification_objective(model)
            for opt in ("sgd", "sam"):
                extra = {"rho": 0.05} if opt == "sam" else {}
                tx = make_optimizer("sam" if opt == "sam" else "momentum", 0.01,
                                    axis_name=parallel.axis_name, **extra)  # fmt: skip
                state = TrainState.create(params=params, tx=tx, key=jax.random.PRNGKey(1),
                                          model_state=model_state)  # fmt: skip
                step = parallel.compile(make_train_step(loss_fn, axis_name=parallel.axis_name))
                placed = parallel.put_state(state)
                device_batch = parallel.put_batch(batch)
                placed, metrics = step(placed, device_batch)  # compile + warm-up
                jax.block_until_ready(metrics)
                compiled[(parallel.mode, opt)] = (step, placed, device_batch, [])
        for _ in range(args.repeats):  # interleaved so drift hits every variant alike
            for key, (step, placed, device_batch, times) in compiled.items():
                start = time.perf_counter()
                placed, metrics = step(placed, device_batch)
                jax.block_until_ready(metrics)
                times.append(time.perf_counter() - start)
                compiled[key] = (step, placed, device_batch, times)
        for parallel in modes:
            sgd = float(np.median(compiled[(parallel.mode, "sgd")][3]))
            sam = float(np.median(compiled[(parallel.mode, "sam")][3]))
            for opt, t in (("sgd", sgd), ("sam", sam)):
                ratio = f"{sam / sgd:8.2f}" if opt == "sam" else ""
                print(f"{label:14s} {parallel.mode:10s} {opt:4s} {1 / t:9.1f} "
                      f"{batch_size / t:11.0f} {ratio}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
