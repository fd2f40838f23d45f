"""Test configuration: 8 forced CPU devices and strict rank promotion, set before JAX starts.

XLA reads ``--xla_force_host_platform_device_count`` when the CPU backend is first created, so the
flag only has to be in the environment before the first JAX operation, not before ``import jax``.
Nothing in this file may run a JAX operation at import time.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
