r"""Moving activations between stages as a collective both stages dispatch.

Across processes, `jax.device_put` from one stage's devices to another's is
a copy that the *sending* process serves when the receiver asks for it, on
its in-order queue of device work: if the sender has already queued its
next block step, the copy waits behind it, and the receiving stage idles
for a whole step (measured with one process per stage: the two stages of a
tick ran one after the other). Worse, a sender whose queue then holds a
collective that waits on the receiver deadlocks with the copy it has yet to
serve.

Here a move is a small SPMD program over the two stages' columns of the
mesh, a `jax.lax.ppermute` inside `jax.shard_map`, which every process
dispatches at the same point of the same loop. The copy then happens where
both queues agree, ahead of the work queued after it:

    out[d, dst] = in[d, src]    for every `data` index d

Arrays keep their layout: the batch (leading) axis split over `data` on the
source stage arrives split the same way on the destination stage, without a
copy into or out of the stacked array (only views of the same buffers).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import placement

_SPEC = P(("block", "data"))


class StageTransfer:
  """Moves batch-sharded arrays between the stages (columns) of a mesh.

  Args:
    mesh: the `(data, block)` mesh; stage `s` is its column `s`.
  """

  def __init__(self, mesh: Mesh):
    self.grid = np.asarray(mesh.devices)
    self.stage_meshes = [mesh_lib.stage_mesh(mesh, s)
                         for s in range(self.grid.shape[1])]
    self._zeros = {}
    self._programs = {}

  def _program(self, src: int, dst: int):
    """The pair mesh `(data, block=2)` of columns `(src, dst)` and the jitted
    shift from its first column to its second (built once per pair)."""
    if (src, dst) not in self._programs:
      pair = Mesh(self.grid[:, [src, dst]], mesh_lib.AXES)
      shift = jax.shard_map(lambda x: jax.lax.ppermute(x, "block", [(0, 1)]),
                            mesh=pair, in_specs=_SPEC, out_specs=_SPEC)
      self._programs[(src, dst)] = NamedSharding(pair, _SPEC), jax.jit(shift)
    return self._programs[(src, dst)]

  def _placeholders(self, dst: int, shape, dtype):
    """The destination's half of the input: zeros, allocated once."""
    key = (dst, tuple(shape), np.dtype(dtype))
    if key not in self._zeros:
      local = [d for d in self.grid[:, dst]
               if d.process_index == jax.process_index()]
      self._zeros[key] = [jax.device_put(np.zeros(shape, dtype), d)
                          for d in local]
    return self._zeros[key]

  def move(self, x: jax.Array, src: int, dst: int) -> jax.Array:
    """`x`, batch-sharded on stage `src`, batch-sharded on stage `dst`.

    Every process must call this, in the same order, for every move: the
    processes that hold neither stage take part in nothing.
    """
    if src == dst:
      return x
    sharding, shift = self._program(src, dst)
    rows = x.shape[0] // self.grid.shape[0]     # rows per data shard
    shard_shape = (rows,) + tuple(x.shape[1:])
    stacked = jax.make_array_from_single_device_arrays(
        (2 * x.shape[0],) + tuple(x.shape[1:]), sharding,
        [s.data for s in x.addressable_shards]
        + self._placeholders(dst, shard_shape, x.dtype), dtype=x.dtype)
    out = shift(stacked)
    column = set(self.grid[:, dst])
    return jax.make_array_from_single_device_arrays(
        x.shape, placement.batch_sharding(self.stage_meshes[dst]),
        [s.data for s in out.addressable_shards if s.device in column],
        dtype=x.dtype)

  def move_replicated(self, x: jax.Array, src: int, dst: int) -> jax.Array:
    """`x`, replicated on stage `src`, replicated on stage `dst`.

    Each `data` device's copy travels to the `data` device of the same
    index (the copies, viewed as the rows of one batch-sharded array, make
    one :meth:`move`): no gather, no reduction. Every process calls it.
    """
    if src == dst:
      return x
    copies = self.grid.shape[0]
    shape = tuple(x.shape)
    rows = jax.make_array_from_single_device_arrays(
        (copies * shape[0],) + shape[1:],
        placement.batch_sharding(self.stage_meshes[src]),
        [s.data for s in x.addressable_shards], dtype=x.dtype)
    out = self.move(rows, src, dst)
    return jax.make_array_from_single_device_arrays(
        shape, placement.replicated(self.stage_meshes[dst]),
        [s.data for s in out.addressable_shards], dtype=x.dtype)
