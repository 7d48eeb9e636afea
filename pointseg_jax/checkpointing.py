"""Thin wrapper over orbax's CheckpointManager: async, atomic, keeps the last N steps.

A checkpoint is the whole train state pytree (params, optimiser state, step, RNG key data). The
input pipeline makes batch k a pure function of (seed, k), so the step is all the data iterator
needs to resume, and a resumed run is bit-identical to an uninterrupted one. Orbax writes each step
into a temporary directory and renames it only when complete, so a run killed mid-save leaves the
previous checkpoint intact; the temporary leftovers are removed when the manager is reopened.
"""
import pathlib

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Save / restore the train state under `directory` (orbax V0 CheckpointManager)."""

  def __init__(self, directory, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        cleanup_tmp_directories=True,
        enable_async_checkpointing=async_save,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Newest committed step (None when there is none)."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state) -> None:
    """Start saving `state` as `step` (returns once the device->host copy is done)."""
    self._manager.save(int(step), args=ocp.args.StandardSave(state))

  def restore(self, abstract_state, step: int | None = None):
    """Restore `step` (default: latest) into the structure, dtypes and shardings of abstract_state.

    abstract_state: a pytree of jax.ShapeDtypeStruct (with .sharding) or of arrays, e.g. the freshly
    initialised state; its shardings decide where the restored arrays live.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    """Block until pending asynchronous saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def latest_step(directory) -> int | None:
  """The newest committed step under `directory`, without creating it (None: no checkpoint)."""
  if not pathlib.Path(directory).is_dir():
    return None
  with Checkpointer(directory, async_save=False) as ckpt:
    return ckpt.latest_step()
