"""Blocks on their own devices: one jitted step per block, on its own sub-mesh.

The MPMD path works for any network (heterogeneous blocks such as ResNet
stages): block `k` lives on the sub-mesh of its stage (`mesh.stage_mesh`),
its parameters and optax state replicated over the stage's `data` devices and
its batch sharded over them, so XLA averages its gradients over `data` only.
Nothing waits for a block that is not an input: JAX's asynchronous dispatch
runs the stages' computations as soon as their inputs exist, so in the
`pipelined` schedule the stages of one tick overlap.

In the `sync` schedule activations move with `jax.device_put` and the
feedback network lives on stage 0. In the `pipelined` schedule everything
that crosses stages is a collective every process dispatches at the same
point (`bll_jax.parallel.transfer`, `bll_jax.parallel.replicas`): the
activations move with `ppermute`, and every stage holds a replica of the
feedback network, updated each tick from one all-reduce of the stages'
feedback gradients.

With one stage (`block=1`) it is plain data parallelism: the fused step of the
engine, batch sharded over all devices.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from bll_jax import step as step_lib
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import schedules
from bll_jax.parallel.replicas import FeedbackReplicas
from bll_jax.parallel.transfer import StageTransfer


class BlockParallel:
  """Places an engine's state on a `(data, block)` mesh and runs its steps.

  Args:
    engine: the engine.
    mesh: a mesh from :func:`bll_jax.parallel.mesh.make_mesh`.
    fused: with one stage, use the engine's fused step (else the per-block
      steps in turn; with several stages they always are).
    ticks_in_flight: in the `pipelined` schedule, how many ticks Python may
      dispatch ahead of the devices.
  """

  def __init__(self, engine: step_lib.Engine, mesh: Mesh, fused: bool = True,
               ticks_in_flight: int = 2):
    self.engine = engine
    self.mesh = mesh
    self.fused = fused
    num_stages = mesh.shape["block"]
    if num_stages > engine.num_blocks:
      raise ValueError(
          f"mesh block={num_stages} asks for more block shards than the "
          f"{engine.num_blocks} blocks of the network")
    self.stage_blocks = mesh_lib.stages(engine.num_blocks, num_stages)
    self.stage_of = {k: s for s, blocks in enumerate(self.stage_blocks)
                     for k in blocks}
    self.meshes = [mesh_lib.stage_mesh(mesh, s) for s in range(num_stages)]
    self._fb_forward = jax.jit(
        lambda params: engine.feedback_forward(params, None))
    self.transfer = StageTransfer(mesh)
    self.replicas = FeedbackReplicas(engine, mesh)
    self.ticks_in_flight = ticks_in_flight
    self.timeline: list[tuple[int, int, int]] = []   # of the last `pipelined`

  @property
  def num_stages(self) -> int:
    return len(self.stage_blocks)

  @functools.cached_property
  def _on_default_device(self) -> bool:
    """Whether the whole mesh is this process's default device (one device,
    one process): what a jitted step does with host arrays and with keys
    made on the default device is then already the placement."""
    return (jax.process_count() == 1 and self.mesh.devices.size == 1
            and self.mesh.devices.flat[0] == jax.devices()[0])

  # ------------------------------------------------------------- placement

  def _replicated(self, stage: int):
    return mesh_lib.replicated(self.meshes[stage])

  def _sharded(self, stage: int):
    return mesh_lib.batch_sharding(self.meshes[stage])

  def state_shardings(self, state: step_lib.TrainState):
    """Where each leaf of `state` lives (for placement and restoring)."""
    blocks = tuple(
        jax.tree.map(lambda _, k=k: self._replicated(self.stage_of[k]), b)
        for k, b in enumerate(state.blocks))
    feedback = jax.tree.map(lambda _: self._replicated(0), state.feedback)
    return step_lib.TrainState(self._replicated(0), blocks, feedback)

  def place(self, state: step_lib.TrainState) -> step_lib.TrainState:
    """Moves every block's state to its stage, the feedback's to stage 0."""
    return jax.tree.map(mesh_lib.put, state, self.state_shardings(state))

  def batch_on(self, batch: dict[str, Any], stage: int,
               local: bool = False) -> dict[str, jax.Array]:
    """A batch on a stage's devices, split over `data`.

    Args:
      batch: host arrays: the global batch, or with `local=True` this
        process's rows of it (multi-host: each host reads only its shard).
      stage: the stage.
      local: whether `batch` holds only this process's rows.
    """
    sharding = self._sharded(stage)
    if local:
      return {k: jax.make_array_from_process_local_data(sharding, v)
              for k, v in batch.items()}
    return {k: mesh_lib.put(v, sharding) for k, v in batch.items()}

  def key_on(self, key: jax.Array, stage: int) -> jax.Array:
    if jax.process_count() == 1:
      return jax.device_put(key, self._replicated(stage))
    data = mesh_lib.put(np.asarray(jax.random.key_data(key)),
                  self._replicated(stage))
    return jax.random.wrap_key_data(data)

  # ------------------------------------------------------------- schedules

  def sync_step(self, state: step_lib.TrainState, batch: dict[str, Any],
                key: jax.Array, local: bool = False):
    """One `sync` step: every block on the same batch (see `schedules`)."""
    engine = self.engine
    if self.num_stages == 1:
      step = engine.train_step if self.fused else engine.train_step_per_block
      if self.fused and self._on_default_device:
        # The one jitted step places host arrays itself, next to the state:
        # placing them first costs ~0.3 ms of host time per step. (The
        # per-block form would copy the labels once per block: it places.)
        return step(state, batch, key)
      return step(state, self.batch_on(batch, 0, local), self.key_on(key, 0))
    on = [self.batch_on(batch, s, local) for s in range(self.num_stages)]
    keys = [self.key_on(key, s) for s in range(self.num_stages)]
    fb = self._feedback(state, on, keys)
    h, blocks, etas, metrics = on[0]["inputs"], [], [], {}
    for k in range(engine.num_blocks):
      s = self.stage_of[k]
      h = jax.device_put(h, self._sharded(s))
      fb_k = (jax.device_put(fb[k], self._replicated(s))
              if k < len(fb) else None)
      block, h, eta, m = engine.block_step(k)(
          state.blocks[k], h, fb_k, on[s]["labels"], on[s]["weights"], keys[s])
      blocks.append(block)
      etas.append(jax.device_put(eta, self._sharded(0)))
      metrics.update({f"block{k}/{n}": v for n, v in m.items()})
    fb_state = state.feedback
    if engine.trains_feedback:
      fb_state, m = engine.feedback_step(fb_state, tuple(etas),
                                         on[0]["labels"], on[0]["weights"])
      metrics["feedback/loss"] = m["loss"]
    return step_lib.TrainState(state.step + 1, tuple(blocks), fb_state), metrics

  def _feedback(self, state, on, keys):
    """`eta_fb` of every hidden block for a sync step (on stage 0)."""
    engine = self.engine
    if engine.feedback is None:
      return ()
    if engine.feedback_mode != "bootstrapped":
      return self._fb_forward(state.feedback.params)
    # Bootstrapping needs every block's output for this batch first.
    h, etas = on[0]["inputs"], []
    for k in range(engine.num_blocks):
      s = self.stage_of[k]
      h = jax.device_put(h, self._sharded(s))
      eta, h = self._block_forward(k)(state.blocks[k], h, keys[s])
      etas.append(jax.device_put(eta, self._sharded(0)))
    return jax.jit(engine.feedback_forward)(state.feedback.params, etas)

  def _block_forward(self, k):
    if not hasattr(self, "_forwards"):
      self._forwards = {}
    if k not in self._forwards:
      def forward(block_state, h, key):
        eta, h_out, _ = self.engine._forward(
            k, block_state.params, block_state.batch_stats, h, True, key)
        return eta, h_out
      self._forwards[k] = jax.jit(forward)
    return self._forwards[k]

  def pipelined(self, state: step_lib.TrainState,
                micro_batches: Iterable[dict[str, Any]],
                keys: Sequence[jax.Array], local: bool = False,
                feedback_lag: int = 0):
    """Runs the `pipelined` schedule over a stream of micro-batches.

    The stream is consumed as the pipeline needs it (stage 0 takes
    micro-batch `t` at tick `t`) and fully drained at the end.

    Returns:
      `(state, metrics, feedback_losses)`: `metrics[m]` holds every block's
      metrics for micro-batch `m`; `feedback_losses[t]` the feedback loss of
      tick `t` (device arrays: nothing is fetched to the host here).
      `self.timeline` then lists the `(tick, stage, micro-batch)` of every
      unit of work the call dispatched, in order (for plots and checks:
      it equals :func:`bll_jax.parallel.schedules.timeline`).
    """
    engine = self.engine
    schedules.check_pipelined(engine)
    hidden, num_stages = engine.num_blocks - 1, self.num_stages
    stream = iter(micro_batches)
    blocks, fb_state = list(state.blocks), state.feedback
    trains = engine.trains_feedback
    # Every stage holds a replica of the feedback (`replicas`): it computes
    # its blocks' feedback and feedback gradients where they live, and one
    # all-reduce per tick updates every replica. No natural parameters and
    # no per-block gradients leave a stage.
    replicas = self.replicas
    if trains:
      fb_state = replicas.broadcast(fb_state)
      versions = [replicas.views(fb_state.params)]
    elif engine.feedback is not None:      # fixed: placed once per stage
      fixed = [self._fb_forward(params) for params in
               replicas.views(replicas.broadcast(fb_state.params))]
    in_flight: dict[int, dict] = {}      # micro-batch -> its host batch
    inbox: dict[int, jax.Array] = {}
    in_flight_ticks: list[list[jax.Array]] = []
    metrics: list[dict] = []
    feedback_losses = []
    self.timeline = []
    t = 0
    exhausted = False
    while True:
      if not exhausted:
        batch = next(stream, None)
        if batch is None:
          exhausted = True
        else:
          metrics.append({})
          in_flight[len(metrics) - 1] = batch
      active = [(s, t - s) for s in range(num_stages)
                if t - s in in_flight]
      if not active:
        break
      self.timeline += [(t, s, m) for s, m in active]
      # 1. Every transfer of the tick first: a stage's input must not wait
      #    behind another stage's computation in this loop.
      inputs = {}
      for s, m in active:
        on = self.batch_on(in_flight[m], s, local)
        h = on["inputs"] if s == 0 else self.transfer.move(inbox[s], s - 1, s)
        inputs[s] = (on, h, self.key_on(keys[m], s))
      # 2. Every stage's steps, and its blocks' feedback gradients, taken
      #    at the feedback of `feedback_lag` updates ago.
      phi = versions[max(0, len(versions) - 1 - feedback_lag)] if (
          trains) else None
      contributions, outbox = {}, {}
      for s, m in active:
        on, h, key = inputs[s]
        fb = ()
        if trains:
          fb = self._fb_forward(phi[s])
        elif engine.feedback is not None:
          fb = fixed[s]
        for k in self.stage_blocks[s]:
          blocks[k], h, eta, met = engine.block_step(k)(
              blocks[k], h, fb[k] if k < hidden else None, on["labels"],
              on["weights"], key)
          metrics[m].update({f"block{k}/{n}": v for n, v in met.items()})
          if trains and k < hidden:
            contributions.setdefault(s, []).append(engine.feedback_grad(k)(
                phi[s], eta, on["labels"], on["weights"]))
        outbox[s + 1] = h
        if s == num_stages - 1:
          del in_flight[m]
      inbox = outbox
      # 3. One feedback update on every replica from all stages' parts.
      if contributions:
        fb_state, loss = replicas.update(fb_state, contributions)
        versions = (versions + [replicas.views(fb_state.params)])[
            -(feedback_lag + 1):]
        feedback_losses.append(replicas.view(loss, 0))
      # Python may run ahead of the devices by `ticks_in_flight` ticks (its
      # dispatch overlaps their work), no further: what it queues holds
      # micro-batches and activations.
      in_flight_ticks.append([x for x in jax.tree.leaves((blocks, outbox))
                              if isinstance(x, jax.Array)
                              and x.is_fully_addressable])
      if len(in_flight_ticks) > self.ticks_in_flight:
        jax.block_until_ready(in_flight_ticks.pop(0))
      t += 1
    if trains:
      fb_state = replicas.view(fb_state, 0)    # where `place` keeps it
    new_state = step_lib.TrainState(state.step + len(metrics), tuple(blocks),
                                    fb_state)
    return new_state, metrics, feedback_losses
