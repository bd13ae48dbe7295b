r"""Homogeneous stacks: one SPMD program per tick, activations rotated by ppermute.

When the middle blocks of a network are identical (Transformer layers cut
evenly, equal MLP blocks), their parameters and optax states are stacked on a
leading block axis and sharded over the mesh axis `block`; one tick of the
`pipelined` schedule is a single `jax.shard_map` program over the whole
`(data, block)` mesh (the MaxText pipeline pattern):

* every device holds `L = stacked blocks / block shards` blocks; their step
  is `jax.vmap`ped over that local axis (forward, local loss, gradient,
  optax update, all on the device), each block keyed by its own index
  (`fold_in(key, 2 k)`, as every other path keys it);
* each shard's loss is its part of the global-batch mean; the parameters
  are invariant over `data`, so differentiating inside `shard_map` sums the
  gradients over `data` (the transpose of the implicit broadcast is a
  `psum`) and the `data` replicas stay equal;
* the stack's outputs move one block up: within a device by a shift of the
  local axis, across devices by `jax.lax.ppermute` along `block`;
* a block with no micro-batch in this tick (pipeline fill or drain) keeps
  its state (`where(valid, new, old)`).

The first and last blocks (embedding, head: heterogeneous) stay MPMD: their
own jitted steps on the sub-meshes of the first and last block shard. The
plan is :func:`bll_jax.parallel.schedule.one_stage_per_block`: block `k`
works on micro-batch `t - k` at tick `t`, and the result equals
:func:`bll_jax.parallel.reference.run` of that plan (tested with dropout and
sampled latents). With `data > 1`, each data shard draws its own dropout
masks and samples (its key folded with its `data` index), so stochastic
blocks then differ from the one-device run in their draws only.

Refused (one line; `--pipeline auto` then takes the MPMD runner): BatchNorm
in the stack (its statistics would not be synchronised over `data`), a loss
recipe other than the principled one, batch decorrelation with `data > 1`
(a batch statistic), a feedback lag, several processes.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bll_jax.engine import BlockLocalLosses
from bll_jax.engine import TrainState
from bll_jax.engine import apply_update
from bll_jax.engine import steps as steps_lib
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import placement
from bll_jax.parallel import schedule as schedule_lib

sg = jax.lax.stop_gradient


def homogeneous_middle(engine) -> tuple[int, ...]:
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


def unsupported(engine, mesh: Mesh, feedback_lag: int = 0) -> str:
  """Why the SPMD stack cannot run `engine` on `mesh` ("" if it can)."""
  middle = homogeneous_middle(engine)
  shards, data = mesh.shape["block"], mesh.shape["data"]
  if not middle:
    return ("the SPMD pipeline needs identical middle blocks (at least 2, "
            "e.g. Transformer layers cut evenly); use the MPMD path for this "
            "network")
  if shards < 2 or len(middle) % shards:
    return (f"the SPMD pipeline needs mesh block >= 2 dividing the "
            f"{len(middle)} stacked middle blocks, got block={shards}")
  if jax.process_count() > 1:
    return ("pipeline 'spmd' runs in one process; with several processes "
            "use 'mpmd' (or 'auto')")
  if feedback_lag:
    return ("feedback_lag needs pipeline 'mpmd' (the SPMD stack updates its "
            "feedback without lag)")
  if engine.feedback_mode == "chained_local":
    return ("feedback 'chained_local' is owned by the stages, each message "
            "sent one stage down per tick: use pipeline 'mpmd' (or 'auto')")
  if not isinstance(engine.recipe, BlockLocalLosses):
    return ("the SPMD pipeline computes the principled losses only; use the "
            "MPMD path for another recipe")
  if engine.objective.decorrelation and data > 1:
    return ("batch decorrelation is a statistic of the whole batch: with "
            "data > 1 use the MPMD path")
  variables = jax.eval_shape(
      engine.network.init, jax.random.key(0),
      jax.ShapeDtypeStruct((2,) + engine.input_shape, engine.input_dtype))[0]
  if any(variables[k].get("batch_stats") for k in middle):
    return ("the SPMD pipeline does not synchronise BatchNorm statistics; "
            "use the MPMD path")
  return ""


class SpmdRunner:
  """The `pipelined` schedule with the middle blocks as one SPMD program.

  Between streams the state lives as the MPMD runner places it (block `k`
  on the stage of `stage_blocks_of(N, block)`), so checkpoints and
  evaluation see one layout.

  Args:
    engine: an engine the stack can run (:func:`unsupported` is empty).
    mesh: a `(data, block)` mesh; `block` must divide the middle blocks.
  """

  name = "spmd"
  fills_and_drains = True

  def __init__(self, engine, mesh: Mesh):
    schedule_lib.check_pipelined(engine)
    reason = unsupported(engine, mesh)
    if reason:
      raise ValueError(reason)
    self.engine, self.mesh = engine, mesh
    self.middle = homogeneous_middle(engine)
    self.shards = mesh.shape["block"]
    self.plan = schedule_lib.one_stage_per_block(engine.num_blocks)
    self.stages = placement.Stages(mesh, schedule_lib.stage_blocks_of(
        engine.num_blocks, self.shards))
    self.first_mesh = mesh_lib.stage_mesh(mesh, 0)
    self.last_mesh = mesh_lib.stage_mesh(mesh, self.shards - 1)
    self._tick = self._make_tick()
    self._fb_forward = engine.compiled_feedback_forward
    # Several CPU devices in one process: each collective finishes before
    # the next is dispatched (placement.drives_several_cpu_devices).
    self.serial = placement.drives_several_cpu_devices(mesh)
    self.timeline: list[tuple[int, int, int]] = []

  # ---------------------------------------------------------- the Runner

  @property
  def data_replicas(self) -> int:
    return int(self.mesh.shape["data"])

  def describe(self) -> dict[str, Any]:
    return {"mesh": mesh_lib.describe(self.mesh), "pipeline": self.name}

  def input_shard(self) -> dict[str, int]:
    return {}

  def place(self, state: TrainState) -> TrainState:
    return self.stages.place(state)

  def to_host(self, tree):
    return placement.to_host(tree, self.mesh)

  def checkpoint_layout(self, state: TrainState):
    return state

  def _finish(self, *trees) -> None:
    """Waits for `trees` where one process drives several CPU devices."""
    if self.serial:
      jax.block_until_ready(trees)

  def warm_up(self, state: TrainState, batch: dict[str, Any],
              key: jax.Array) -> None:
    """Compiles every program of a stream on a discarded copy of `state`."""
    count = self.engine.num_blocks
    jax.block_until_ready(self.run_epoch(state, [batch] * count,
                                         [key] * count))

  def step(self, state, batch, key):
    state, (metrics,) = self.run_epoch(state, [batch], [key])
    return state, metrics

  # ------------------------------------------------------------- layout

  def _stacked_sharding(self):
    return NamedSharding(self.mesh, P("block"))

  def _put(self, x, spec):
    return jax.device_put(x, NamedSharding(self.mesh, spec))

  def stack(self, state: TrainState):
    """`(first, stacked, last, feedback)`: the middle blocks stacked."""
    # Through the host: the blocks may live on different devices.
    middle = jax.device_get([state.blocks[k] for k in self.middle])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *middle)
    stacked = jax.device_put(stacked, self._stacked_sharding())
    first = jax.device_put(state.blocks[0],
                           placement.replicated(self.first_mesh))
    last = jax.device_put(state.blocks[-1],
                          placement.replicated(self.last_mesh))
    feedback = jax.device_put(state.feedback,
                              placement.replicated(self.first_mesh))
    return first, stacked, last, feedback

  def unstack(self, state, first, stacked, last, feedback, num_steps):
    middle = [jax.tree.map(lambda x, j=j: x[j], stacked)
              for j in range(len(self.middle))]
    return self.place(TrainState(state.step + num_steps,
                                 (first, *middle, last), feedback))

  # ------------------------------------------------------------------ tick

  def _make_tick(self):
    engine, k0 = self.engine, self.middle[0]
    shards, tx = self.shards, engine.block_tx
    several_shards = self.mesh.shape["data"] > 1

    def data_mean(values, weights):
      """This shard's part of the global-batch mean (summed by psum)."""
      total = sg(jax.lax.psum(jnp.sum(weights), "data"))
      return jnp.sum(values * weights) / jnp.maximum(total, 1.0)

    def one_block(block, index, h, fb, labels, weights, key_data, valid):
      key = jax.random.wrap_key_data(key_data)
      if several_shards:        # each data shard its own masks and samples
        key = jax.random.fold_in(key, jax.lax.axis_index("data"))

      def loss_fn(params):
        return steps_lib.block_loss(engine, k0, params, {}, h, fb, labels,
                                    weights, key, mean=data_mean,
                                    rng_index=index)

      # The parameters are invariant over `data` and the loss varies over it:
      # shard_map's transpose of that broadcast is a psum over `data`, so
      # these gradients are already those of the global-batch mean.
      grads, (out, metrics) = jax.grad(loss_fn, has_aux=True)(block.params)
      new = apply_update(tx, block, grads, block.batch_stats)
      new = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, block)
      metrics = jax.tree.map(lambda m: jax.lax.psum(m, "data"), metrics)
      return new, out.h_out, out.eta, metrics

    def body(stacked, index, buffer, injected, fb, labels, weights, keys,
             valid):
      first_shard = jax.lax.axis_index("block") == 0
      inputs = buffer.at[0].set(jnp.where(first_shard, injected, buffer[0]))
      stacked, outs, etas, metrics = jax.vmap(one_block)(
          stacked, index, inputs, fb, labels, weights, keys, valid)
      shifted = jax.lax.ppermute(outs[-1], "block",
                                 [(i, (i + 1) % shards) for i in range(shards)])
      buffer = jnp.concatenate([shifted[None], outs[:-1]], 0)
      return stacked, buffer, outs[-1:], etas, metrics

    sharded = P("block", "data")
    tick = jax.shard_map(
        body, mesh=self.mesh,
        in_specs=(P("block"), P("block"), sharded, P("data"), P("block"),
                  sharded, sharded, P("block"), P("block")),
        out_specs=(P("block"), sharded, sharded, sharded, P("block")))
    return jax.jit(tick)

  # -------------------------------------------------------------- schedule

  def run_epoch(self, state: TrainState,
                batches: Iterable[dict[str, Any]], keys: Sequence[jax.Array],
                on_step: Callable[[], None] | None = None):
    """Runs the stream through the pipeline and drains it.

    Returns:
      `(state, metrics)` as :meth:`bll_jax.parallel.mpmd.MpmdRunner.run_epoch`.
    """
    engine, plan, put = self.engine, self.plan, self._put
    last_k = engine.num_blocks - 1
    batches = list(batches)
    m_total = len(batches)
    if on_step:
      for _ in range(m_total):
        on_step()
    if not m_total:
      return state, []
    first, stacked, last, fb_state = self.stack(state)
    mb = batches[0]["labels"].shape[0]
    h_shape = engine.eta_shapes[0][1:]
    buffer = put(jnp.zeros((len(self.middle), mb) + h_shape),
                 P("block", "data"))
    index = put(jnp.asarray(self.middle), P("block"))
    injected_next = None          # output of block 0, for the stack next tick
    ejected = None                # output of the stack, for the last block
    metrics: list[dict] = [dict() for _ in range(m_total)]
    first_sh = placement.batch_sharding(self.first_mesh)
    last_sh = placement.batch_sharding(self.last_mesh)
    zero_labels = jnp.zeros_like(jnp.asarray(batches[0]["labels"]))
    zero_weights = jnp.zeros_like(jnp.asarray(batches[0]["weights"]))
    self.timeline = plan.timeline(m_total)
    for t in range(plan.num_ticks(m_total)):
      work = {s: m for s, m in plan.active(t, m_total)}
      fb = self._fb_forward(fb_state.params, None)
      etas, labels, weights, which = {}, {}, {}, {}
      # Block 0 on its micro-batch.
      injected, injected_next = injected_next, None
      if 0 in work:
        m = work[0]
        b = jax.device_put(batches[m], first_sh)
        first, h0, eta0, met = engine.block_step(0)(
            first, b["inputs"], fb[0], b["labels"], b["weights"],
            jax.device_put(keys[m], placement.replicated(self.first_mesh)))
        metrics[m].update({f"block0/{n}": v for n, v in met.items()})
        etas[0], labels[0], weights[0], which[0] = (eta0, b["labels"],
                                                    b["weights"], m)
        injected_next = h0
      # The stack: every middle block on its micro-batch, or idle.
      valid = np.asarray([k in work for k in self.middle])
      stage_labels = jnp.stack([jnp.asarray(batches[work[k]]["labels"])
                                if k in work else zero_labels
                                for k in self.middle])
      stage_weights = jnp.stack([jnp.asarray(batches[work[k]]["weights"])
                                 if k in work else zero_weights
                                 for k in self.middle])
      stage_keys = jnp.stack([jax.random.key_data(keys[work.get(k, 0)])
                              for k in self.middle])
      fb_mid = jnp.stack([fb[k] for k in self.middle])
      inj = (jnp.zeros((mb,) + h_shape) if injected is None else injected)
      previous_ejected = ejected
      stacked, buffer, out, mid_etas, mid_metrics = self._tick(
          stacked, index, buffer, put(inj, P("data")), put(fb_mid, P("block")),
          put(stage_labels, P("block", "data")),
          put(stage_weights, P("block", "data")), put(stage_keys, P("block")),
          put(valid, P("block")))
      ejected = out[-1]
      self._finish(stacked, buffer, out)
      for j, k in enumerate(self.middle):
        if k in work:
          m = work[k]
          metrics[m].update({f"block{k}/{n}": v[j]
                             for n, v in mid_metrics.items()})
          etas[k] = jax.device_put(mid_etas[j], first_sh)
          labels[k] = jax.device_put(stage_labels[j], first_sh)
          weights[k] = jax.device_put(stage_weights[j], first_sh)
          which[k] = m
      # The last block, on the stack's output of the tick before.
      if last_k in work:
        m = work[last_k]
        b = jax.device_put(batches[m], last_sh)
        self._finish(etas, labels, weights)
        h = jax.device_put(previous_ejected, last_sh)
        self._finish(h)
        last, _, _, met = engine.block_step(last_k)(
            last, h, None, b["labels"], b["weights"],
            jax.device_put(keys[m], placement.replicated(self.last_mesh)))
        metrics[m].update({f"block{last_k}/{n}": v for n, v in met.items()})
      if engine.trains_feedback and etas:
        # Each active block's part of the feedback gradient, then one update
        # (as `reference.run`, feedback lag 0).
        parts = []
        for k in sorted(etas):
          grads, loss = engine.feedback_grad(k)(fb_state.params, etas[k],
                                                labels[k], weights[k])
          parts.append(grads)
          m = which[k]
          metrics[m]["feedback/loss"] = metrics[m].get("feedback/loss",
                                                       0.0) + loss
        total = functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b),
                                 parts)
        fb_state = engine.feedback_apply(fb_state, total)
      self._finish(first, stacked, last, fb_state, etas)
    return (self.unstack(state, first, stacked, last, fb_state, m_total),
            metrics)
