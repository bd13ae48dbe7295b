r"""Homogeneous stacks: one SPMD program per tick, activations rotated by ppermute.

When the middle blocks of a network are identical (Transformer layers cut
evenly, equal MLP blocks), their parameters and optax states are stacked on a
leading block axis and sharded over the mesh axis `block`; one tick of the
`pipelined` schedule is a single `jax.shard_map` program over the whole
`(data, block)` mesh (the MaxText pipeline pattern):

* every device holds `L = stacked blocks / block shards` blocks; their step
  is `jax.vmap`ped over that local axis (forward, local loss, gradient,
  optax update, all on the device);
* each shard's loss is its part of the global-batch mean; the parameters
  are invariant over `data`, so differentiating inside `shard_map` sums the
  gradients over `data` (the transpose of the implicit broadcast is a
  `psum`) and the `data` replicas stay equal;
* the stack's outputs move one block up: within a device by a shift of the
  local axis, across devices by `jax.lax.ppermute` along `block`;
* a block with no micro-batch in this tick (pipeline fill or drain) keeps
  its state (`where(valid, new, old)`), exactly as in the sequential
  simulation.

The first and last blocks (embedding, head: heterogeneous) stay MPMD: their
own jitted steps on the sub-meshes of the first and last block shard. The
schedule and its staleness are those of :mod:`bll_jax.parallel.schedules`
with one stage per block; the result equals `pipelined_reference` (tested).
BatchNorm statistics would not be synchronised over `data` here, so stacks
with BatchNorm are refused.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bll_jax import step as step_lib
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import schedules

sg = jax.lax.stop_gradient


def homogeneous_middle(engine: step_lib.Engine) -> tuple[int, ...]:
  """The middle blocks `1..N-2` if they are identical, else `()`.

  Identical includes the loss: per-block temperatures
  (`Objective.temperature` as a tuple) must agree on the middle blocks,
  since one vmapped program computes all their losses.
  """
  middle = tuple(range(1, engine.num_blocks - 1))
  if len(middle) < 2:
    return ()
  first = engine.blocks[middle[0]]
  shapes = engine.eta_shapes
  same = all(
      engine.blocks[k].units == first.units
      and engine.blocks[k].activations == first.activations
      and engine.latents[k] == engine.latents[middle[0]]
      and engine.block_temperature(k) == engine.block_temperature(middle[0])
      and shapes[k] == shapes[middle[0]] for k in middle)
  # Input of each middle block = output of the one before: equal shapes.
  return middle if same and shapes[0] == shapes[middle[0]] else ()


class StackedPipeline:
  """The `pipelined` schedule with the middle blocks as one SPMD program.

  Args:
    engine: an engine whose middle blocks are identical
      (:func:`homogeneous_middle`), without BatchNorm.
    mesh: a `(data, block)` mesh; `block` must divide the middle blocks.
  """

  def __init__(self, engine: step_lib.Engine, mesh: Mesh):
    schedules.check_pipelined(engine)
    self.engine, self.mesh = engine, mesh
    self.middle = homogeneous_middle(engine)
    if not self.middle:
      raise ValueError(
          "the SPMD pipeline needs identical middle blocks (at least 2, e.g. "
          "Transformer layers cut evenly); use the MPMD path for this network")
    shards = mesh.shape["block"]
    if len(self.middle) % shards:
      raise ValueError(
          f"mesh block={shards} must divide the {len(self.middle)} stacked "
          "middle blocks")
    self.shards = shards
    self.first_mesh = mesh_lib.stage_mesh(mesh, 0)
    self.last_mesh = mesh_lib.stage_mesh(mesh, shards - 1)
    self._tick = self._make_tick()
    self._fb_forward = jax.jit(
        lambda params: engine.feedback_forward(params, None))

  # ------------------------------------------------------------- placement

  def _stacked_sharding(self):
    return NamedSharding(self.mesh, P("block"))

  def stack(self, state: step_lib.TrainState):
    """`(ends, stacked)`: the first/last blocks, and the middle stacked.

    Raises:
      ValueError: if a middle block has BatchNorm statistics.
    """
    if any(jax.tree.leaves(state.blocks[k].batch_stats) for k in self.middle):
      raise ValueError("the SPMD pipeline does not synchronise BatchNorm "
                       "statistics; use the MPMD path")
    # Through the host: the blocks may live on different devices.
    middle = jax.device_get([state.blocks[k] for k in self.middle])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *middle)
    stacked = jax.device_put(stacked, self._stacked_sharding())
    first = jax.device_put(state.blocks[0],
                           mesh_lib.replicated(self.first_mesh))
    last = jax.device_put(state.blocks[-1], mesh_lib.replicated(self.last_mesh))
    feedback = jax.device_put(state.feedback,
                              mesh_lib.replicated(self.first_mesh))
    return first, stacked, last, feedback

  def unstack(self, state, first, stacked, last, feedback, num_steps):
    middle = [jax.tree.map(lambda x, j=j: x[j], stacked)
              for j in range(len(self.middle))]
    return step_lib.TrainState(state.step + num_steps,
                               (first, *middle, last), feedback)

  # ------------------------------------------------------------------ tick

  def _make_tick(self):
    engine, k0 = self.engine, self.middle[0]
    shards, tx = self.shards, engine.tx

    def data_mean(values, weights):
      """This shard's part of the global-batch mean (summed by psum)."""
      total = sg(jax.lax.psum(jnp.sum(weights), "data"))
      return jnp.sum(values * weights) / jnp.maximum(total, 1.0)

    def one_block(block, h, fb, labels, weights, key_data, valid):
      key = jax.random.wrap_key_data(key_data)

      def loss_fn(params):
        eta, h_out, _ = engine._forward(k0, params, {}, h, True, key)
        loss, metrics = engine._block_objective(k0, eta, fb, labels, weights,
                                                mean=data_mean)
        return loss, (eta, h_out, metrics)

      # The parameters are invariant over `data` and the loss varies over it:
      # shard_map's transpose of that broadcast is a psum over `data`, so
      # these gradients are already those of the global-batch mean.
      grads, (eta, h_out, metrics) = jax.grad(loss_fn, has_aux=True)(
          block.params)
      updates, opt_state = tx.update(grads, block.opt_state, block.params)
      new = step_lib.BlockState(optax.apply_updates(block.params, updates),
                                block.batch_stats, opt_state)
      new = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, block)
      metrics = jax.tree.map(lambda m: jax.lax.psum(m, "data"), metrics)
      return new, h_out, eta, metrics

    def body(stacked, buffer, injected, fb, labels, weights, keys, valid):
      first_shard = jax.lax.axis_index("block") == 0
      inputs = buffer.at[0].set(jnp.where(first_shard, injected, buffer[0]))
      stacked, outs, etas, metrics = jax.vmap(one_block)(
          stacked, inputs, fb, labels, weights, keys, valid)
      shifted = jax.lax.ppermute(outs[-1], "block",
                                 [(i, (i + 1) % shards) for i in range(shards)])
      buffer = jnp.concatenate([shifted[None], outs[:-1]], 0)
      return stacked, buffer, outs[-1:], etas, metrics

    sharded = P("block", "data")
    tick = jax.shard_map(
        body, mesh=self.mesh,
        in_specs=(P("block"), sharded, P("data"), P("block"), sharded,
                  sharded, P("block"), P("block")),
        out_specs=(P("block"), sharded, sharded, sharded, P("block")))
    return jax.jit(tick)

  # -------------------------------------------------------------- schedule

  def pipelined(self, state: step_lib.TrainState,
                micro_batches: Iterable[dict[str, Any]],
                keys: Sequence[jax.Array]):
    """Runs the stream through the pipeline and drains it.

    Returns:
      `(state, metrics, feedback_losses)` as
      :meth:`bll_jax.parallel.mpmd.BlockParallel.pipelined`.
    """
    engine = self.engine
    hidden = engine.num_blocks - 1
    n_mid = len(self.middle)
    last_k = engine.num_blocks - 1
    batches = list(micro_batches)
    m_total = len(batches)
    first, stacked, last, fb_state = self.stack(state)
    mb = batches[0]["labels"].shape[0]
    h_shape = engine.eta_shapes[0][1:]
    full_sharded = NamedSharding(self.mesh, P("block", "data"))
    buffer = jax.device_put(jnp.zeros((n_mid, mb) + h_shape), full_sharded)
    injected_next = None          # output of block 0, for the stack next tick
    ejected = None                # output of the stack, for the last block
    metrics = [dict() for _ in range(m_total)]
    feedback_losses = []
    first_sh = mesh_lib.batch_sharding(self.first_mesh)
    last_sh = mesh_lib.batch_sharding(self.last_mesh)
    zero_labels = jnp.zeros_like(jnp.asarray(batches[0]["labels"]))
    zero_weights = jnp.zeros_like(jnp.asarray(batches[0]["weights"]))
    for t in range(m_total + engine.num_blocks - 1):
      fb = self._fb_forward(fb_state.params)
      etas, labels, weights = {}, {}, {}
      # Block 0 (stage 0) on micro-batch t.
      injected = injected_next
      injected_next = None
      if t < m_total:
        b = jax.device_put(batches[t], first_sh)
        first, h0, eta0, met = engine.block_step(0)(
            first, b["inputs"], fb[0], b["labels"], b["weights"],
            jax.device_put(keys[t], mesh_lib.replicated(self.first_mesh)))
        metrics[t].update({f"block0/{n}": v for n, v in met.items()})
        etas[0], labels[0], weights[0] = eta0, b["labels"], b["weights"]
        injected_next = h0
      # The stack: middle block k on micro-batch t - k.
      ms = [t - k for k in self.middle]
      valid = jnp.asarray([0 <= m < m_total for m in ms])
      stage_labels = jnp.stack([jnp.asarray(batches[m]["labels"])
                                if 0 <= m < m_total else zero_labels
                                for m in ms])
      stage_weights = jnp.stack([jnp.asarray(batches[m]["weights"])
                                 if 0 <= m < m_total else zero_weights
                                 for m in ms])
      stage_keys = jnp.stack([jax.random.key_data(keys[m])
                              if 0 <= m < m_total
                              else jax.random.key_data(keys[0]) for m in ms])
      fb_mid = jnp.stack([fb[k] for k in self.middle])
      inj = (jnp.zeros((mb,) + h_shape) if injected is None
             else injected)
      put = lambda x, spec: jax.device_put(x, NamedSharding(self.mesh, spec))
      previous_ejected = ejected
      stacked, buffer, out, mid_etas, mid_metrics = self._tick(
          stacked, buffer, put(inj, P("data")), put(fb_mid, P("block")),
          put(stage_labels, P("block", "data")),
          put(stage_weights, P("block", "data")), put(stage_keys, P("block")),
          put(valid, P("block")))
      ejected = out[-1]
      for j, (k, m) in enumerate(zip(self.middle, ms)):
        if 0 <= m < m_total:
          metrics[m].update({f"block{k}/{n}": v[j]
                             for n, v in mid_metrics.items()})
          etas[k] = jax.device_put(mid_etas[j], first_sh)
          labels[k] = jax.device_put(stage_labels[j], first_sh)
          weights[k] = jax.device_put(stage_weights[j], first_sh)
      # The last block on micro-batch t - (N - 1), from last tick's stack.
      m = t - last_k
      if 0 <= m < m_total:
        b = jax.device_put(batches[m], last_sh)
        h = jax.device_put(previous_ejected, last_sh)
        last, _, _, met = engine.block_step(last_k)(
            last, h, None, b["labels"], b["weights"],
            jax.device_put(keys[m], mesh_lib.replicated(self.last_mesh)))
        metrics[m].update({f"block{last_k}/{n}": v for n, v in met.items()})
      if engine.trains_feedback and etas:
        # Each active block's part of the feedback gradient, then one update
        # (as `schedules.pipelined_reference`, feedback lag 0).
        parts = [engine.feedback_grad(k)(fb_state.params, etas[k], labels[k],
                                         weights[k]) for k in sorted(etas)]
        total = functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b),
                                 [g for g, _ in parts])
        fb_state = engine.feedback_apply(fb_state, total)
        feedback_losses.append(sum(loss for _, loss in parts))
    del hidden
    return (self.unstack(state, first, stacked, last, fb_state, m_total),
            metrics, feedback_losses)
