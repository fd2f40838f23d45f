"""Test configuration: 8 forced CPU devices and strict rank promotion, set before JAX starts.

XLA reads ``--xla_force_host_platform_device_count`` when the CPU backend is first created, so the
flag only has to be in the environment before the first JAX operation, not before ``import jax``.
Nothing in this file may run a JAX operation at import time.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # read when JAX is imported
os.environ.setdefault("MPLBACKEND", "Agg")

from jaxlab.train.parallel import force_host_devices  # imports JAX, starts no backend

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    force_host_devices(8)  # also widens XLA:CPU's thread pool (collectives deadlock without)
# A collective that still hangs aborts its worker after 5 minutes.
os.environ["XLA_FLAGS"] += (
    " --xla_cpu_collective_timeout_seconds=300"
    " --xla_cpu_collective_call_terminate_timeout_seconds=300"
)

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
