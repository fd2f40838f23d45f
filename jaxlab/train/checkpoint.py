"""Checkpoints with orbax: every N steps and at the end, the last k kept, atomic, async.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoints intact and the partial one is ignored. Saves are
asynchronous; :meth:`Checkpointer.close` (also on leaving the ``with`` block) waits for them.
Only the pytree of :meth:`~jaxlab.train.state.TrainState.saveable` is stored (host arrays, no
device layout), and it is restored against the abstract tree of a freshly built state, so
optimizer states keep their NamedTuple types and a checkpoint written on 8 devices restores on
one.
"""

import os

import jax
import orbax.checkpoint as ocp

from jaxlab.train.state import TrainState


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


class Checkpointer:
    """Save and restore :class:`~jaxlab.train.state.TrainState` checkpoints under ``directory``.

    Args:
      directory: where checkpoints live (one sub-directory per step).
      save_every: save when ``step % save_every == 0`` (and whenever ``force=True``).
      keep: number of most recent checkpoints kept.
      async_save: write in a background thread.
    """

    def __init__(self, directory, *, save_every: int, keep: int = 3, async_save: bool = True):
        if not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"save_every must be an int >= 1, got {save_every!r}")
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: TrainState, *, force: bool = False) -> bool:
        """Save ``state`` at ``step`` if it is a save step (or ``force``); True if it did."""
        if not force and step % self.save_every:
            return False
        if step in self._manager.all_steps():
            return False
        return self._manager.save(step, args=ocp.args.StandardSave(state.saveable()), force=True)

    def restore(self, like: TrainState, step: int | None = None) -> TrainState:
        """``like`` with the fields stored at ``step`` (default: the latest checkpoint)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self._manager.directory}")
        tree = self._manager.restore(
            step, args=ocp.args.StandardRestore(_abstract(like.saveable()))
        )
        return like.restored(tree)

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
