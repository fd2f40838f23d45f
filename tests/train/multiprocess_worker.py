"""One of the two processes of ``test_two_processes_equal_one_device`` (test_parallel.py).

Run as ``python -m tests.train.multiprocess_worker PROCESS_ID PORT CASE OUT``: four forced CPU
devices, gloo collectives, ``jax.distributed`` over localhost; trains ``CASE`` of
test_parallel.py's ``CASES`` on this process's half of every batch and saves the final state's
leaves and the losses to ``OUT`` (``.npz``).
"""

import sys


def main(process_id: int, port: int, case: str, out: str) -> None:
    from jaxlab.train.parallel import force_host_devices

    force_host_devices(4)
    import jax
    import numpy as np

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)

    from jaxlab.train.parallel import DataParallel
    from tests.train.test_parallel import CASES, _comparable, _data, _run

    parallel = DataParallel("shard_map", jax.device_count())
    half = slice(16 * process_id, 16 * (process_id + 1))
    data = [{k: v[half] for k, v in batch.items()} for batch in _data()]
    make_tx, kwargs = CASES[case]
    state, losses = _run(parallel, make_tx(parallel.axis_name), data=data, **kwargs)
    leaves = {f"leaf{i}": x for i, x in enumerate(jax.tree.leaves(_comparable(state)))}
    np.savez(out, losses=np.asarray(losses), **leaves)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
