"""Where arrays live: shardings, a state on its stages, arrays to the host.

* :func:`put` -- host data onto a sharding that may span other processes;
* :class:`Stages` -- the stages of a `(data, block)` mesh: each block's
  state replicated over its stage's `data` devices, batches split over
  them, random keys replicated;
* :func:`to_host` -- any tree as host arrays in every process, whatever
  process holds each leaf.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bll_jax.engine import TrainState
from bll_jax.parallel import mesh as mesh_lib


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device of `mesh` holds the whole array."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis over `data`, everything else replicated."""
  return NamedSharding(mesh, P("data"))


def put(value, sharding: NamedSharding) -> jax.Array:
  """Host (or local) data onto `sharding`, which may span other processes.

  Each process supplies only its own devices' parts (every process holds
  the same global value), so a stage on another process's devices costs
  this process nothing.
  """
  if jax.process_count() == 1 or isinstance(value, jax.Array) and (
      not value.is_fully_addressable):
    return jax.device_put(value, sharding)
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding,
                                      lambda index: value[index],
                                      dtype=value.dtype)


class Stages:
  """The stages of a `(data, block)` mesh and what lives on each.

  Stage `s` is the mesh's column `s` (:func:`bll_jax.parallel.mesh.stage_mesh`)
  and holds the blocks `stage_blocks[s]`; the feedback network and the step
  count live on stage 0.

  Args:
    mesh: the `(data, block)` mesh.
    stage_blocks: the blocks of each stage (one stage per mesh column).
  """

  def __init__(self, mesh: Mesh, stage_blocks: Sequence[Sequence[int]]):
    if len(stage_blocks) != mesh.shape["block"]:
      raise ValueError(f"{len(stage_blocks)} stages for a mesh with block="
                       f"{mesh.shape['block']}")
    self.mesh = mesh
    self.stage_blocks = tuple(tuple(b) for b in stage_blocks)
    self.stage_of = {k: s for s, blocks in enumerate(self.stage_blocks)
                     for k in blocks}
    self.meshes = [mesh_lib.stage_mesh(mesh, s)
                   for s in range(len(self.stage_blocks))]

  @classmethod
  def even(cls, mesh: Mesh, num_blocks: int) -> "Stages":
    """`num_blocks` blocks split evenly over the mesh's block slices
    (:func:`bll_jax.parallel.schedule.stage_blocks_of`).

    Raises:
      ValueError: more block slices than blocks.
    """
    from bll_jax.parallel import schedule
    num_stages = mesh.shape["block"]
    if num_stages > num_blocks:
      raise ValueError(
          f"mesh block={num_stages} asks for more stages than the "
          f"{num_blocks} blocks of the network")
    return cls(mesh, schedule.stage_blocks_of(num_blocks, num_stages))

  @property
  def num_stages(self) -> int:
    return len(self.stage_blocks)

  @property
  def data_size(self) -> int:
    """Devices per stage: the batch is split this many ways."""
    return int(self.mesh.shape["data"])

  @functools.cached_property
  def on_default_device(self) -> bool:
    """Whether the whole mesh is this process's default device (one device,
    one process): a jitted step then places host arrays and keys itself."""
    return (jax.process_count() == 1 and self.mesh.devices.size == 1
            and self.mesh.devices.flat[0] == jax.devices()[0])

  def replicated(self, stage: int) -> NamedSharding:
    return replicated(self.meshes[stage])

  def sharded(self, stage: int) -> NamedSharding:
    return batch_sharding(self.meshes[stage])

  def state_shardings(self, state: TrainState) -> TrainState:
    """Where each leaf of `state` lives (for placement and restoring)."""
    blocks = tuple(
        jax.tree.map(lambda _, k=k: self.replicated(self.stage_of[k]), b)
        for k, b in enumerate(state.blocks))
    feedback = jax.tree.map(lambda _: self.replicated(0), state.feedback)
    return TrainState(self.replicated(0), blocks, feedback)

  def place(self, state: TrainState) -> TrainState:
    """Every block's state onto its stage, the feedback's onto stage 0."""
    return jax.tree.map(put, state, self.state_shardings(state))

  def batch_on(self, batch: dict[str, Any], stage: int,
               local: bool = False) -> dict[str, jax.Array]:
    """A batch on a stage's devices, split over `data`.

    Args:
      batch: host arrays: the global batch, or with `local=True` this
        process's rows of it (multi-host: each host reads only its shard).
      stage: the stage.
      local: whether `batch` holds only this process's rows.
    """
    sharding = self.sharded(stage)
    if local:
      return {k: jax.make_array_from_process_local_data(sharding, v)
              for k, v in batch.items()}
    return {k: put(v, sharding) for k, v in batch.items()}

  def key_on(self, key: jax.Array, stage: int) -> jax.Array:
    """A random key replicated on a stage's devices."""
    if jax.process_count() == 1:
      return jax.device_put(key, self.replicated(stage))
    data = put(np.asarray(jax.random.key_data(key)), self.replicated(stage))
    return jax.random.wrap_key_data(data)


def to_host(tree, mesh: Mesh):
  """`tree` as host arrays, in every process.

  An array that not every process holds (a block of another stage, its
  metrics) is copied to one device of every process in turn (cross-process
  transfers are one-to-one) and each process reads its own copy. What is
  copied depends only on where arrays live, not on which process asks, so
  every process makes the same transfers; all must call this together.
  """
  if jax.process_count() == 1:
    return jax.device_get(tree)
  every = sorted({d.process_index for d in mesh.devices.flat})
  targets = {}
  for device in mesh.devices.flat:
    targets.setdefault(device.process_index, NamedSharding(
        Mesh(np.asarray([device]), ("one",)), P()))
  leaves, treedef = jax.tree.flatten(tree)
  out, copied = [], False
  for leaf in leaves:
    if not isinstance(leaf, jax.Array):
      out.append(leaf)
      continue
    holders = sorted({d.process_index for d in leaf.sharding.device_set})
    if holders == every and leaf.is_fully_replicated:
      out.append(np.asarray(leaf.addressable_shards[0].data))
      continue
    copies = [jax.device_put(leaf, targets[p]) for p in every]
    out.append(np.asarray(copies[every.index(jax.process_index())]))
    copied = True
  if copied:
    # A process serves the copies it sends only when its queue of device
    # work gets to them; none may queue more (a collective, say) until
    # every process holds its copy.
    mesh_lib.host_barrier("on_host")
  return jax.tree.unflatten(treedef, out)


def drives_several_cpu_devices(mesh: Mesh) -> bool:
  """Whether this process drives more than one CPU device of `mesh`.

  XLA:CPU runs the programs of the devices one process drives on one
  thread pool (a thread per core), in any order their inputs allow. Two
  collectives with no data between them (a stage transfer, the feedback
  all-reduce, a pipeline tick) can then start in opposite orders on two
  devices, each holding a thread while it waits for the other; with as
  many waiting devices as cores, every thread waits and XLA aborts after
  40 s (measured: the Fashion-MNIST MLP pipelined on 2 simulated devices
  and 2 cores). The runners then finish each collective before they
  dispatch the next (a simulation of several devices, where speed does not
  matter); one device per process, or GPUs and TPUs, are not affected.
  """
  local = [d for d in mesh.devices.flat
           if d.process_index == jax.process_index()]
  return len(local) > 1 and local[0].platform == "cpu"

