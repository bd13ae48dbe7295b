r"""The feedback network replicated on every stage, updated by one all-reduce.

In the `pipelined` schedule every hidden block reads the feedback network
each tick, and the feedback network learns from every hidden block. Sending
the blocks' gradients to one stage and the new parameters back costs two
cross-stage transfers in series per tick, the second waiting on the first;
with one process per stage this measured as the stages running one after
the other (`experiments/process_benchmark.py`). Here instead every stage
holds a replica of the feedback's state (parameters and optax state; they
are small next to the blocks). Each stage sums the feedback gradients of its
own hidden blocks where they live; one jitted update over the whole mesh
sums the stages' parts (an all-reduce over `block`) and applies the same
optax update to every replica:

    g_t     = sum_s sum_{k in stage s, active at tick t} grad_phi L^fb_k(phi)
    phi_t+1 = phi_t + optax.update(g_t)          (on every stage, identically)

The same all-reduce carries each active block's feedback loss `L^fb_k`, so
every process knows every block's loss of the tick (the runner adds them up
per micro-batch).

No natural parameters leave a stage, and no stage is the feedback's home.
Every replica stays bit-identical, so any one of them is the feedback's
state; :meth:`FeedbackReplicas.view` reads stage `s`'s without copying.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bll_jax.engine import BlockState
from bll_jax.engine import apply_update
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import placement


class FeedbackReplicas:
  """A feedback state on every device of `mesh`, viewed per stage.

  Args:
    engine: the engine whose feedback network is replicated.
    mesh: the `(data, block)` mesh; stage `s` is its column `s`.
  """

  def __init__(self, engine, mesh: Mesh):
    self.engine = engine
    self.mesh = mesh
    grid = np.asarray(mesh.devices)
    self.columns = [set(grid[:, s]) for s in range(grid.shape[1])]
    self.stage_meshes = [mesh_lib.stage_mesh(mesh, s)
                         for s in range(grid.shape[1])]
    self.everywhere = NamedSharding(mesh, P())
    self.stacked = NamedSharding(mesh, P("block"))
    self._zero_parts = {}
    self._parts = {}

  @property
  def num_stages(self) -> int:
    return len(self.columns)

  # --------------------------------------------------------------- layout

  def _on_stage(self, s: int) -> NamedSharding:
    return placement.replicated(self.stage_meshes[s])

  def broadcast(self, tree):
    """`tree`, replicated on stage 0, replicated on every device.

    A collective (stage 0's copy plus zeros from every other stage, summed
    over `block`), so every process dispatches it at the same point of its
    queue (see `bll_jax.parallel.transfer` for why a cross-process
    `device_put` is avoided).
    """
    leading = self._leading_axis(tree)
    parts = [leading] + [self._zeros(s, tree)
                         for s in range(1, self.num_stages)]
    return self._sum(self._stack(parts))

  @functools.cached_property
  def _leading_axis(self):
    return jax.jit(lambda tree: jax.tree.map(lambda x: x[None], tree))

  @functools.cached_property
  def _sum(self):
    return jax.jit(sum_over_stages, out_shardings=self.everywhere)

  def view(self, tree, s: int):
    """Stage `s`'s replica of a replicated `tree` (no copy)."""
    column, sharding = self.columns[s], self._on_stage(s)

    def leaf_view(x):
      shards = [shard.data for shard in x.addressable_shards
                if shard.device in column]
      return jax.make_array_from_single_device_arrays(x.shape, sharding,
                                                      shards, dtype=x.dtype)

    return jax.tree.map(leaf_view, tree)

  def views(self, tree) -> list:
    """`[view(tree, s) for every stage s]`."""
    return [self.view(tree, s) for s in range(self.num_stages)]

  def sum(self, parts: Sequence[Any]):
    """Per-stage trees with a leading axis 1 (one per stage, on its
    devices) -> their sum, replicated on every device (one all-reduce)."""
    return self._sum(self._stack(parts))

  def zeros(self, s: int, tree):
    """Zeros shaped like `tree` (arrays or shape structs) with a leading
    axis 1, on stage `s` (allocated once)."""
    return self._zeros(s, tree)

  def _stack(self, parts: Sequence[Any]):
    """Per-stage trees with a leading axis 1 -> one tree `[S, ...]` over
    `block` (each device holds its stage's row)."""

    def assemble(*leaves):
      shards = [shard.data for leaf in leaves
                for shard in leaf.addressable_shards]
      shape = (self.num_stages,) + leaves[0].shape[1:]
      return jax.make_array_from_single_device_arrays(
          shape, self.stacked, shards, dtype=leaves[0].dtype)

    return jax.tree.map(assemble, *parts)

  # --------------------------------------------------------------- update

  def _stage_part(self, blocks: tuple[int, ...]):
    """:func:`stage_part` of hidden `blocks`, compiled once per `blocks`."""
    if blocks not in self._parts:
      self._parts[blocks] = jax.jit(
          functools.partial(stage_part, self.engine, blocks))
    return self._parts[blocks]

  def _zeros(self, s: int, tree):
    """Zeros shaped like `tree` with a leading axis 1, on stage `s`."""
    key = (s, jax.tree.structure(tree),
           tuple((x.shape, x.dtype) for x in jax.tree.leaves(tree)))
    if key not in self._zero_parts:
      self._zero_parts[key] = jax.tree.map(
          lambda x: placement.put(np.zeros((1,) + x.shape, x.dtype),
                                 self._on_stage(s)), tree)
    return self._zero_parts[key]

  @functools.cached_property
  def _apply(self):
    tx = self.engine.feedback_tx

    def apply(state: BlockState, stacked):
      grads, losses = sum_over_stages(stacked)
      return apply_update(tx, state, grads, {}), losses

    return jax.jit(apply, out_shardings=(self.everywhere, self.everywhere))

  def update(self, state: BlockState,
             contributions: dict[int, list[tuple[int, Any, jax.Array]]]):
    """One feedback update from every stage's part.

    Args:
      state: the replicated feedback state.
      contributions: stage -> `(k, grad_phi L^fb_k, L^fb_k)` of each of its
        hidden blocks that worked in this tick, on that stage's devices.

    Returns:
      `(state, losses)`, both replicated: the updated state and the
      `[hidden blocks]` vector of the tick's `L^fb_k` (zero for a block
      that did not work in it).
    """
    parts = {}
    for s, pairs in contributions.items():
      if pairs:
        blocks = tuple(k for k, _, _ in pairs)
        parts[s] = self._stage_part(blocks)([(g, loss) for _, g, loss in pairs])
    return self.apply_parts(state, parts)

  def apply_parts(self, state: BlockState, parts: dict[int, Any]):
    """:meth:`update` from every stage's :func:`stage_part` (a stage's
    program may compute its own: :mod:`bll_jax.parallel.stage`); a stage
    without one contributes zeros."""
    hidden = self.engine.num_blocks - 1
    zero = (state.params, jax.ShapeDtypeStruct((hidden,), jnp.float32))
    stacked = [parts[s] if s in parts else self._zeros(s, zero)
               for s in range(self.num_stages)]
    return self._apply(state, self._stack(stacked))


def stage_part(engine, blocks: Sequence[int], pairs):
  """One stage's `(grads, loss)` pairs of hidden `blocks` -> the summed
  gradient and the vector of every hidden block's loss (zero for the
  others), each with a leading axis 1 (the stage's row of the stack that
  :func:`sum_over_stages` reduces)."""
  hidden = engine.num_blocks - 1
  total = functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b),
                           [g for g, _ in pairs])
  losses = jnp.zeros((hidden,), jnp.float32).at[jnp.asarray(blocks)].set(
      jnp.stack([loss for _, loss in pairs]))
  return jax.tree.map(lambda x: jnp.asarray(x)[None], (total, losses))


def sum_over_stages(stacked):
  """`tree[S, ...] -> tree[...]`, summed over the stages, one all-reduce per
  dtype.

  The leaves of each dtype are raveled into one `[S, N]` array first: a
  collective costs about the same for one small array as for many
  (measured with gloo on CPU: ~2 ms each; the feedback update of a 4-block
  CNN fell from 18 ms to 1.7 ms).
  """
  leaves, treedef = jax.tree.flatten(stacked)
  groups: dict[Any, list[int]] = {}
  for i, x in enumerate(leaves):
    groups.setdefault(x.dtype, []).append(i)
  out = [None] * len(leaves)
  for indices in groups.values():
    flat = jnp.concatenate(
        [leaves[i].reshape(leaves[i].shape[0], -1) for i in indices],
        axis=1).sum(0)
    start = 0
    for i in indices:
      shape = leaves[i].shape[1:]
      out[i] = flat[start:start + math.prod(shape)].reshape(shape)
      start += math.prod(shape)
  return jax.tree.unflatten(treedef, out)
