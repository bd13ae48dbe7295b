"""Orbax checkpoints of a run: the train state and the loop's progress.

A checkpoint holds the :class:`~bll_jax.engine.TrainState` (every block's
parameters, BatchNorm statistics and optax state, the feedback network's) and
a JSON record of the loop (metric sums of the current epoch, the per-epoch
history), so a run killed mid-epoch resumes to the same final metrics.
Orbax commits a checkpoint atomically: a save cut short by a kill leaves the
previous checkpoints intact and is ignored.

Every committed checkpoint's files are recorded with their sizes and CRC-32
in `<directory>-sums/<step>.json`. :meth:`Checkpointer.restore_latest` checks
them before orbax reads anything, so a checkpoint damaged on disk (a
truncated or overwritten file) is told apart from one written by another
configuration: a damaged latest checkpoint is moved aside to
`<directory>-unreadable/<step>` and the run falls back to the newest intact
one; a checkpoint that is intact but does not fit the run is never touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be read back (corrupted, or another config)."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """What :meth:`Checkpointer.restore_latest` found.

  Attributes:
    step: the step restored.
    state, progress: as saved.
    set_aside: `(step, folder, what is wrong)` of each newer checkpoint
      found damaged and moved aside, newest first.
  """

  step: int
  state: Any
  progress: dict[str, Any]
  set_aside: tuple[tuple[int, str, str], ...] = ()


class Checkpointer:
  """Saves and restores `(state, progress)` under `directory/<step>`."""

  def __init__(self, directory: str | os.PathLike, keep: int = 2):
    self.directory = os.path.abspath(os.fspath(directory))
    self.sums_directory = self.directory + "-sums"
    self.aside_directory = self.directory + "-unreadable"
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)),
                                             create=True),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "progress": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, progress: dict[str, Any]) -> None:
    """Writes the checkpoint of `step` (waits until it is committed).

    Raises:
      CheckpointError: one line when there is no room for it (checked
        before anything is written: the size of the last checkpoint, or of
        the state's arrays) or the file system fails the write; the earlier
        checkpoints are intact either way. Other failures (a peer process
        gone mid-save) propagate as they are.
    """
    need = self._expected_bytes(state)
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise CheckpointError(
          f"no room for the checkpoint of step {step} in {self.directory}: "
          f"{free / 2**20:.1f} MiB free, about {need / 2**20:.1f} MiB needed; "
          + self._what_is_kept())
    try:
      self._manager.save(int(step), args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          progress=ocp.args.JsonSave(progress)), force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # orbax/tensorstore raise many kinds
      if not _is_disk_error(e):
        raise      # e.g. a peer process gone: not a matter of disk space
      raise CheckpointError(
          f"the checkpoint of step {step} could not be written in "
          f"{self.directory} ({type(e).__name__}: {_first_line(e)[:300]}); "
          + self._what_is_kept()) from None
    if jax.process_index() == 0:
      try:
        self._record_sums(int(step))
      except OSError:       # no sums: the checkpoint is restored unchecked
        pass

  def _expected_bytes(self, state) -> int:
    """About what a checkpoint of `state` takes on disk: the newest one's
    size, else its arrays' bytes; plus 256 KiB of metadata and slack."""
    latest = self._manager.latest_step()
    if latest is not None:
      size = sum(s for s, _ in _file_sums(
          os.path.join(self.directory, str(latest)), crc=False).values())
    else:
      size = sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(state))
    return size + 2**18

  def _what_is_kept(self) -> str:
    latest = self._manager.latest_step()
    if latest is None:
      return "no checkpoint was written: make room and start again"
    return (f"the last complete checkpoint is step {latest}: make room and "
            "continue it with --resume")

  def _record_sums(self, step: int) -> None:
    """Writes the sizes and CRC-32 of the files of checkpoint `step`, and
    forgets those of checkpoints orbax has since deleted."""
    os.makedirs(self.sums_directory, exist_ok=True)
    path = os.path.join(self.sums_directory, f"{step}.json")
    with open(path + ".tmp", "w") as f:
      json.dump(_file_sums(os.path.join(self.directory, str(step))), f)
    os.replace(path + ".tmp", path)
    kept = {f"{s}.json" for s in self._manager.all_steps()}
    for name in os.listdir(self.sums_directory):
      if name.endswith(".json") and name not in kept:
        os.remove(os.path.join(self.sums_directory, name))

  def damage(self, step: int) -> str | None:
    """What is wrong with the files of checkpoint `step` against their
    recorded sums (None: intact, or no sums recorded)."""
    path = os.path.join(self.sums_directory, f"{step}.json")
    try:
      with open(path) as f:
        recorded = json.load(f)
    except (OSError, ValueError):
      return None
    found = _file_sums(os.path.join(self.directory, str(step)))
    for name, (size, crc) in recorded.items():
      if name not in found:
        return f"{name} is missing"
      if found[name][0] != size:
        return f"{name} has {found[name][0]} bytes, {size} were written"
      if found[name][1] != crc:
        return f"{name} differs from what was written (CRC-32)"
    return None

  def restore_latest(self, template) -> Restored:
    """The newest checkpoint whose files are intact, restored.

    Checkpoints newer than it whose files differ from what was written are
    moved aside to `<directory>-unreadable/<step>` (kept for inspection),
    once an older one has been restored.

    Raises:
      CheckpointError: no checkpoint; every checkpoint damaged; or an intact
        checkpoint that does not fit `template` (another configuration).
    """
    damaged = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      reason = self.damage(step)
      if reason is not None:
        damaged.append((step, reason))
        continue
      state, progress = self.restore(step, template)
      aside = tuple((s, self._set_aside(s), why) for s, why in damaged)
      if aside:
        self._manager.reload()
      return Restored(step, state, progress, aside)
    if not damaged:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    step, reason = damaged[0]
    raise CheckpointError(
        f"every checkpoint in {self.directory} is damaged (the latest, step "
        f"{step}: {reason}); nothing was changed: start a new run in another "
        "--workdir")

  def _set_aside(self, step: int) -> str:
    target = os.path.join(self.aside_directory, str(step))
    if jax.process_index() == 0:
      os.makedirs(self.aside_directory, exist_ok=True)
      if os.path.exists(target):
        shutil.rmtree(target)
      shutil.move(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"bll_jax set aside {step}")
    return target

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
    mismatch = self._mismatch(step, abstract)
    if mismatch:
      raise CheckpointError(
          f"checkpoint {path} holds the state of another configuration "
          f"({mismatch}): resume with the run's own config.json, or start a "
          "new run in another --workdir")
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          progress=ocp.args.JsonRestore()))
    except Exception as e:  # orbax/tensorstore raise many kinds
      reason = _first_line(e)
      intact = (os.path.exists(os.path.join(self.sums_directory,
                                            f"{step}.json"))
                and self.damage(step) is None)
      raise CheckpointError(
          f"checkpoint {path} cannot be restored ({type(e).__name__}: "
          f"{reason[:300]}); "
          + ("its files are as written, so it holds another configuration's "
             "state: resume with the run's own config.json, or start a new "
             "run in another --workdir" if intact else
             "it was damaged, or written by another configuration: resume "
             "with the run's own config, or start a new run in another "
             "--workdir")) from None
    return restored.state, restored.progress

  def _mismatch(self, step: int, abstract) -> str | None:
    """How the arrays saved at `step` differ from `abstract` (names, shapes,
    dtypes; the first three differences), read from orbax's metadata alone;
    None when they agree or the metadata cannot be read."""
    try:
      saved = ocp.tree.to_flat_dict(
          self._manager.item_metadata(step)["state"], sep=".")
    except Exception:  # unreadable metadata: the restore will say why
      return None
    wanted = ocp.tree.to_flat_dict(abstract, sep=".")
    differences = []
    for name in sorted(set(saved) | set(wanted)):
      if name not in wanted:
        differences.append(f"{name} saved, not in this network")
      elif name not in saved:
        differences.append(f"{name} not saved")
      else:
        a, b = saved[name], wanted[name]
        if (tuple(a.shape), str(a.dtype)) != (tuple(b.shape), str(b.dtype)):
          differences.append(f"{name}: {tuple(a.shape)} {a.dtype} saved, "
                             f"{tuple(b.shape)} {b.dtype} here")
    if not differences:
      return None
    more = len(differences) - 3
    return "; ".join(differences[:3]) + (f"; {more} more" if more > 0 else "")

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


def _is_disk_error(error: Exception) -> bool:
  """Whether a failed write is the file system's (full, quota, I/O): an
  `OSError`, or tensorstore's `RESOURCE_EXHAUSTED` wrapped by orbax."""
  text = str(error)
  return isinstance(error, OSError) or any(
      word in text for word in ("RESOURCE_EXHAUSTED", "No space left",
                                "Disk quota exceeded"))


def _file_sums(folder: str, crc: bool = True) -> dict[str, list[int]]:
  """`{path relative to folder: [size, CRC-32]}` of every file under it
  (CRC 0 with `crc=False`)."""
  sums = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      value = 0
      if crc:
        with open(path, "rb") as f:
          while chunk := f.read(1 << 22):
            value = zlib.crc32(chunk, value)
      sums[os.path.relpath(path, folder)] = [os.path.getsize(path), value]
  return sums
