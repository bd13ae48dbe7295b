"""Orbax checkpoints of a run: the train state and the loop's progress.

A checkpoint holds the :class:`~bll_jax.engine.TrainState` (every block's
parameters, BatchNorm statistics and optax state, the feedback network's) and
a JSON record of the loop (metric sums of the current epoch, the per-epoch
history), so a run killed mid-epoch resumes to the same final metrics.
Orbax commits a checkpoint atomically: a save cut short by a kill leaves the
previous checkpoints intact and is ignored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be read back (corrupted, or another config)."""


class Checkpointer:
  """Saves and restores `(state, progress)` under `directory/<step>`."""

  def __init__(self, directory: str | os.PathLike, keep: int = 2):
    self.directory = os.path.abspath(os.fspath(directory))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)),
                                             create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, progress: dict[str, Any]) -> None:
    """Writes the checkpoint of `step` (waits until it is committed)."""
    self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        progress=ocp.args.JsonSave(progress)), force=True)
    self._manager.wait_until_finished()

  def discard_from(self, step: int) -> None:
    """Deletes the checkpoints of `step` and later (not known to be good)."""
    for saved in self._manager.all_steps():
      if saved >= step:
        self._manager.delete(saved)

  def restore(self, step: int, template) -> tuple[Any, dict[str, Any]]:
    """The state (shaped like `template`) and progress saved at `step`.

    Raises:
      CheckpointError: one line naming the checkpoint and what is wrong.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    path = os.path.join(self.directory, str(step))
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          progress=ocp.args.JsonRestore()))
    except Exception as e:  # orbax/tensorstore raise many kinds
      reason = _first_line(e)
      raise CheckpointError(
          f"checkpoint {path} cannot be restored ({type(e).__name__}: "
          f"{reason[:300]}); it is corrupted or was written by another "
          "configuration: delete it to fall back to an earlier one, or start "
          "without --resume in a new workdir") from None
    return restored.state, restored.progress

  def close(self) -> None:
    self._manager.close()


def _first_line(error: Exception) -> str:
  """The gist of an orbax/tensorstore error, without its dumps."""
  text = str(error).strip()
  if not text:
    return type(error).__name__
  line = text.splitlines()[0]
  for noise in (" See full TensorStore details", " [source locations", "; "
                "TensorStore("):
    line = line.split(noise)[0]
  return line.strip()
