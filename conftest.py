"""Test configuration: 8 forced CPU devices and strict rank promotion, set before JAX starts.

XLA reads ``--xla_force_host_platform_device_count`` when the CPU backend is first created, so the
flag only has to be in the environment before the first JAX operation, not before ``import jax``.
Nothing in this file may run a JAX operation at import time.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# On a loaded 2-core machine the 8 device threads of a collective can take longer to meet than
# XLA:CPU's default rendezvous timeout, which aborts the process; allow them 20 minutes.
_FLAGS = (
    "--xla_force_host_platform_device_count=8"
    " --xla_cpu_collective_timeout_seconds=1200"
    " --xla_cpu_collective_call_terminate_timeout_seconds=1200"
)
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAGS).strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
