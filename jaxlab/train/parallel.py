"""Run one per-device step on one device, under ``jax.pmap``, or under ``jit(shard_map)``.

:class:`DataParallel` owns the placement: it replicates the state, splits a host batch across
devices and compiles the step once. All three modes run the *same* step body (written with
``axis_name``, :mod:`jaxlab.train.step`) and give the same numbers up to float reassociation.
``shard_map`` is used with ``check_vma=False`` so the body sees local gradients as under pmap;
with ``check_vma=True`` a replicated parameter's gradient would arrive already psum-ed and the
step's ``pmean`` would not undo it (gradients n times too large, no error).

Across several processes (JAX's multi-controller runtime, after ``jax.distributed.initialize()``)
only ``"shard_map"`` over all ``jax.device_count()`` devices is offered: every process builds
the same state, feeds its own slice of the global batch to :meth:`DataParallel.put_batch`
(process ``p`` the ``p``-th of ``jax.process_count()`` equal slices), and gets its local copy
of the replicated state back from :meth:`DataParallel.get_state`. Tested with two CPU processes
of four devices each (gloo collectives) against one device.
"""

import dataclasses
import os
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MODES = ("single", "pmap", "shard_map")


def force_host_devices(num_devices: int) -> None:
    """Make XLA:CPU expose ``num_devices`` devices; call before JAX's first operation.

    Appends ``--xla_force_host_platform_device_count`` to ``XLA_FLAGS`` and, unless it is set,
    sets ``PJRT_NPROC`` to twice the device count. XLA:CPU runs every launch and execution on
    one pool of max(PJRT_NPROC or cores, devices) threads. With fewer cores than devices that is
    exactly one collective's worth: a collective's last per-device launch can then wait for an
    in-flight slot of its device held by queued single-device work (``x[d]`` slices of a pmap
    output, say) that no free thread will run, while the other devices wait in the all-reduce
    until XLA's collective timeout aborts the process (seen on 2 cores with 8 devices).
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int):
        raise TypeError(f"num_devices must be an int, got {num_devices!r}")
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    flag = f"--xla_force_host_platform_device_count={num_devices}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    os.environ.setdefault("PJRT_NPROC", str(2 * num_devices))


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Placement and compilation of a per-device step.

    Attributes:
      mode: ``"single"`` (``jax.jit`` on the first device, no axis), ``"pmap"`` or
        ``"shard_map"``.
      num_devices: devices used (1 for ``"single"``).
      axis_name: the mapped axis the step must be built with (None for ``"single"``).
    """

    mode: str = "single"
    num_devices: int = 1
    axis_name: str | None = "batch"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        available = jax.device_count()
        if not 1 <= self.num_devices <= available:
            raise ValueError(f"num_devices must be in [1, {available}], got {self.num_devices}")
        if self.mode == "single":
            if self.num_devices != 1:
                raise ValueError(f"mode='single' uses 1 device, got num_devices={self.num_devices}")
            object.__setattr__(self, "axis_name", None)
        elif not self.axis_name:
            raise ValueError(f"mode={self.mode!r} needs an axis_name")
        if jax.process_count() > 1 and (self.mode != "shard_map" or self.num_devices != available):
            raise ValueError(
                f"with {jax.process_count()} processes use mode='shard_map' over all "
                f"{available} devices, got mode={self.mode!r}, num_devices={self.num_devices}"
            )

    @property
    def devices(self):
        return jax.devices()[: self.num_devices]

    @property
    def mesh(self) -> Mesh:
        return Mesh(np.array(self.devices), (self.axis_name,))

    def compile(self, fn: Callable, *, donate_state: bool = False) -> Callable:
        """``fn(state, batch) -> outputs`` (outputs replicated) compiled for this mode."""
        donate = (0,) if donate_state else ()
        if self.mode == "single":
            return jax.jit(fn, donate_argnums=donate)
        if self.mode == "pmap":
            return jax.pmap(
                fn, axis_name=self.axis_name, devices=self.devices, donate_argnums=donate
            )
        mapped = jax.shard_map(
            fn,
            mesh=self.mesh,
            in_specs=(P(), P(self.axis_name)),
            out_specs=P(),
            check_vma=False,
        )
        return jax.jit(mapped, donate_argnums=donate)

    def put_state(self, state):
        """Place a host or single-device state: replicated on every device.

        Every leaf gets its own buffer (a state may hold one array object twice, which a
        donating step would otherwise receive twice).
        """
        host = jax.tree.map(np.array, jax.device_get(state))
        if self.mode == "single":
            return jax.device_put(host, self.devices[0])
        if self.mode == "pmap":  # a leading device axis, one slice per device
            host = jax.tree.map(lambda x: np.broadcast_to(x, (self.num_devices, *x.shape)), host)
            return jax.device_put(host, NamedSharding(self.mesh, P(self.axis_name)))
        return jax.device_put(host, NamedSharding(self.mesh, P()))

    def get_state(self, state):
        """One copy of a placed state: the state itself, or a host copy of device 0's replica
        under pmap and of this process's replica with several processes.

        The pmap copy is a transfer of device 0's buffers, not an ``x[0]`` per leaf: each slice is a
        computation, and on a CPU with few cores enough of them queued behind a running step
        can deadlock the next collective launch (see :func:`force_host_devices`).
        """
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], state)
        if jax.process_count() > 1:  # the local copy of a replicated global array
            return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state)
        return state

    def put_batch(self, batch):
        """Place this process's host batch, split over its devices along the leading axis.

        With one process that is the whole batch; with several, this process's slice of the
        global batch. The leading axis must divide evenly over the process's devices.
        """
        n = self.num_devices // jax.process_count()
        for leaf in jax.tree.leaves(batch):
            if leaf.shape[0] % n:
                raise ValueError(f"batch size {leaf.shape[0]} is not divisible by {n} devices")
        if self.mode == "single":
            return jax.device_put(batch, self.devices[0])
        if self.mode == "pmap":
            batch = jax.tree.map(lambda x: np.reshape(x, (n, x.shape[0] // n, *x.shape[1:])), batch)
        sharding = NamedSharding(self.mesh, P(self.axis_name))
        if jax.process_count() == 1:
            return jax.device_put(batch, sharding)  # the same placement, 1.5x less overhead
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)

    def get_output(self, outputs):
        """Host copy of replicated step outputs (metrics)."""
        return jax.device_get(self.get_state(outputs))
