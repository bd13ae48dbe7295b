"""Any network on a `(data, block)` mesh: one jitted program per stage per tick.

:class:`MpmdRunner` follows a :class:`~bll_jax.parallel.schedule.TickPlan`
(`sync` or `pipelined`). Block `k` lives on the sub-mesh of its stage, its
parameters and optax state replicated over the stage's `data` devices and
its batch split over them, so XLA averages its gradients over `data` only.
A stage's tick (its blocks' steps and its part of the feedback's work) is
one compiled program, or one per block on CPU, the blocks' states donated
(:class:`~bll_jax.parallel.stage.StageProgram`); the next tick's batches
are put on their devices while the current tick runs. Nothing waits for a block that is not an input: JAX's asynchronous dispatch
runs the stages' programs as soon as their inputs exist, so in the
`pipelined` schedule the stages of one tick overlap.

Everything that crosses stages is a collective that every process
dispatches at the same point of the same loop: activations move with a
`ppermute` (:class:`~bll_jax.parallel.transfer.StageTransfer`), and every
stage holds a replica of the feedback network, updated each tick from one
all-reduce of the stages' feedback gradients
(:class:`~bll_jax.parallel.replicas.FeedbackReplicas`). No natural
parameters leave a stage.

With one stage (`block=1`) and the fused step mode it is plain data
parallelism: the engine's fused step, the batch split over all devices.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from bll_jax.engine import TrainState
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import owned as owned_lib
from bll_jax.parallel import placement
from bll_jax.parallel import schedule as schedule_lib
from bll_jax.parallel import stage as stage_lib
from bll_jax.parallel.replicas import FeedbackReplicas
from bll_jax.parallel.transfer import StageTransfer


class MpmdRunner:
  """Runs an engine's steps on the stages of a mesh, following a tick plan.

  Args:
    engine: the engine.
    mesh: a mesh from :func:`bll_jax.parallel.mesh.make_mesh`.
    schedule: "sync" or "pipelined".
    fused: with one stage, the engine's fused step (else the per-block
      steps, in the order of the plan; with several stages they always are).
    feedback_lag: `L` (see :mod:`bll_jax.parallel.schedule`).
    ticks_in_flight: how many ticks Python may dispatch ahead of the
      devices (0, and each tick's transfers finished before its steps,
      where one process drives several CPU devices: see :attr:`serial`).
    fuse_stages: whether a stage's tick is one compiled program or one per
      block (:mod:`bll_jax.parallel.stage`); `None`: fused except on CPU,
      where the fused program was measured slower.
  """

  name = "mpmd"

  def __init__(self, engine, mesh: Mesh, schedule: str = "sync",
               fused: bool = True, feedback_lag: int = 0,
               ticks_in_flight: int = 2, fuse_stages: bool | None = None):
    num_stages = mesh.shape["block"]
    if num_stages > engine.num_blocks:
      raise ValueError(
          f"mesh block={num_stages} asks for more block shards than the "
          f"{engine.num_blocks} blocks of the network")
    if schedule == "pipelined":
      schedule_lib.check_pipelined(engine)
    if engine.feedback_mode == "bootstrapped" and num_stages > 1:
      raise ValueError("feedback 'bootstrapped' reads every block's output "
                       "before any block steps: it runs on one stage "
                       f"(mesh block=1), got block={num_stages}")
    if feedback_lag < 0:
      raise ValueError(f"feedback_lag must be >= 0, got {feedback_lag}")
    self.engine = engine
    self.mesh = mesh
    self.plan = schedule_lib.plan_for(schedule, engine.num_blocks, num_stages)
    self.stages = placement.Stages(mesh, self.plan.stage_blocks)
    self.fused = fused and num_stages == 1 and schedule == "sync"
    if engine.method != "bll" and not self.fused:
      raise ValueError(f"method {engine.method!r} trains end to end: it runs "
                       "the fused step on one stage (mesh block=1, step "
                       "mode fused)")
    self.feedback_lag = feedback_lag
    # Several CPU devices in one process: every tick finishes its
    # transfers before its steps, and its update before the next tick
    # (placement.drives_several_cpu_devices says why).
    self.serial = (num_stages > 1
                   and placement.drives_several_cpu_devices(mesh))
    self.ticks_in_flight = 0 if self.serial else ticks_in_flight
    # Data parallel across processes: each process reads its own rows.
    self.local = num_stages == 1 and len(
        {d.process_index for d in mesh.devices.flat}) > 1
    self.transfer = StageTransfer(mesh)
    self.replicas = FeedbackReplicas(engine, mesh)
    # A feedback local to its blocks is owned by their stages: no
    # all-reduce per tick (bll_jax.parallel.owned).
    self.owner = (owned_lib.OwnedFeedback(engine, self.plan.stage_blocks,
                                          self.replicas, self.transfer)
                  if owned_lib.applies(engine, feedback_lag) else None)
    self._fb_forward = engine.compiled_feedback_forward
    # One program per stage per tick (bll_jax.parallel.stage).
    self.program = stage_lib.StageProgram(
        engine, self.plan.stage_blocks,
        [("owned" if self.owner and self.owner.ks[s] else
          "replicated" if engine.trains_feedback and not self.owner
          else "given") for s in range(num_stages)],
        fused=(mesh.devices.flat[0].platform != "cpu" if fuse_stages is None
               else fuse_stages))
    #: `(tick, stage, micro-batch)` of the work the last call dispatched.
    self.timeline: list[tuple[int, int, int]] = []

  # ---------------------------------------------------------- the Runner

  @property
  def fills_and_drains(self) -> bool:
    """Whether a call of :meth:`run_epoch` fills and drains a pipeline (the
    loop then hands it whole epochs)."""
    return self.plan.schedule == "pipelined"

  @property
  def data_replicas(self) -> int:
    return self.stages.data_size

  def describe(self) -> dict[str, Any]:
    return {"mesh": mesh_lib.describe(self.mesh),
            "pipeline": self.name if self.fills_and_drains else None}

  def input_shard(self) -> dict[str, int]:
    """How the data loader splits batches over processes (`{}`: every
    process reads whole batches)."""
    if not self.local:
      return {}
    return {"process_index": jax.process_index(),
            "process_count": jax.process_count()}

  def place(self, state: TrainState) -> TrainState:
    """Every block's state onto its stage, the feedback's onto stage 0."""
    return self.stages.place(state)

  def to_host(self, tree):
    """`tree` as host arrays in every process (all must call it)."""
    return placement.to_host(tree, self.mesh)

  def checkpoint_layout(self, state: TrainState):
    """What a checkpoint saves and restores onto: the placed state in one
    process; with several, host arrays (orbax refuses a block that lives on
    one process's devices), which process 0 writes."""
    if jax.process_count() == 1:
      return state
    return self.to_host(state)

  def warm_up(self, state: TrainState, batch: dict[str, Any],
              key: jax.Array) -> None:
    """Compiles every program a stream uses, on a copy of `state` whose
    result is discarded (so timed epochs exclude compilation)."""
    count = self.plan.num_stages
    out, metrics = self.run_epoch(state, [batch] * count, [key] * count)
    jax.block_until_ready(self._local((out, metrics)))

  def step(self, state: TrainState, batch: dict[str, Any], key: jax.Array):
    """One step on one batch: `run_epoch` over a stream of one."""
    state, (metrics,) = self.run_epoch(state, [batch], [key])
    return state, metrics

  def run_epoch(self, state: TrainState,
                batches: Iterable[dict[str, Any]], keys: Sequence[jax.Array],
                on_step: Callable[[], None] | None = None):
    """Runs the plan over a stream of batches (filled and drained).

    Args:
      state: placed (:meth:`place`).
      batches: host batches, consumed as the plan needs them.
      keys: the random key of each batch's step.
      on_step: called each time a batch is taken from the stream.

    Returns:
      `(state, metrics)`: per batch, every block's metrics and
      `feedback/loss` (device arrays, nothing fetched to the host, except
      the feedback losses of a per-block stream).
    """
    if self.fused:
      return self._fused(state, batches, keys, on_step)
    return self._ticks(state, batches, keys, on_step)

  # --------------------------------------------------------------- fused

  def _fused(self, state, batches, keys, on_step):
    engine, stages, metrics = self.engine, self.stages, []
    for i, batch in enumerate(batches):
      if stages.on_default_device:
        # The jitted step places host arrays itself, next to the state:
        # placing them first costs ~0.3 ms of host time per step.
        state, m = engine.train_step(state, batch, keys[i])
      else:
        state, m = engine.train_step(
            state, stages.batch_on(batch, 0, self.local),
            stages.key_on(keys[i], 0))
      metrics.append(m)
      if on_step:
        on_step()
    return state, metrics

  # --------------------------------------------------------------- ticks

  def _ticks(self, state, batches, keys, on_step):
    engine, plan, stages = self.engine, self.plan, self.stages
    last = plan.num_stages - 1
    lag, replicas, program = self.feedback_lag, self.replicas, self.program
    stream = iter(batches)
    # The stage programs donate the blocks' states: the stream works on a
    # copy, so that the caller's `state` stays valid.
    blocks = [b for ks in plan.stage_blocks
              for b in stage_lib.copy(tuple(state.blocks[k] for k in ks))]
    fb_state = state.feedback
    trains = engine.trains_feedback
    bootstrapped = engine.feedback_mode == "bootstrapped"
    # Every stage holds a replica of the feedback: it computes its blocks'
    # feedback and feedback gradients where they live.
    owner = self.owner
    if owner:
      owner.start(fb_state)
      owned_losses: list[tuple[int, int, tuple[int, ...], jax.Array]] = []
    elif trains:
      fb_state = replicas.broadcast(fb_state)
      versions = [replicas.views(fb_state.params)]
    elif engine.feedback is not None:     # fixed: computed once per stage
      fixed = [self._fb_forward(params, None) for params in
               replicas.views(replicas.broadcast(fb_state.params))]
    arrived: dict[int, dict] = {}     # micro-batch -> its host batch
    placed: dict[tuple[int, int], tuple] = {}   # (stage, m) -> batch, key
    outputs: dict[tuple[int, int], jax.Array] = {}   # (stage, m) -> h
    metrics: list[dict] = []
    tick_losses: list[tuple[int, jax.Array]] = []
    in_flight: list[list[jax.Array]] = []
    self.timeline = []
    exhausted = False

    def take(count):
      """Micro-batches from the stream until `count` have arrived."""
      nonlocal exhausted
      while not exhausted and len(metrics) < count:
        batch = next(stream, None)
        if batch is None:
          exhausted = True
          return
        arrived[len(metrics)] = batch
        metrics.append({})
        if on_step:
          on_step()

    def place(t):
      """Tick `t`'s micro-batches and keys onto their stages' devices."""
      for s, m in plan.active(t, len(metrics)):
        if (s, m) not in placed:
          placed[(s, m)] = (stages.batch_on(arrived[m], s, self.local),
                            stages.key_on(keys[m], s))

    t = 0
    take(1)
    while True:
      active = plan.active(t, len(metrics))
      if not active:
        break
      self.timeline += [(t, s, m) for s, m in active]
      place(t)
      # 1. Every transfer whose input exists first: a stage's input must not
      #    wait behind another stage's computation in this loop.
      inputs = {}
      for s, m in active:
        on, key = placed.pop((s, m))
        h = on["inputs"] if s == 0 else None
        if s and (s - 1, m) in outputs:
          h = self.transfer.move(outputs.pop((s - 1, m)), s - 1, s)
        inputs[s] = (on, h, key)
      if self.serial:
        jax.block_until_ready(self._local(
            [h for _, h, _ in inputs.values() if h is not None]))
      phi = (versions[max(0, len(versions) - 1 - lag)]
             if trains and not owner else None)
      etas = None
      if bootstrapped:      # one stage: every block's output first
        on, h, key = inputs[0]
        etas = engine.forward_train(
            TrainState(state.step, tuple(blocks), fb_state), h, key)
      # 2. Every stage's tick: one program (its blocks' steps and its part
      #    of the feedback's work, bll_jax.parallel.stage).
      contributions, produced = {}, []
      for s, m in active:
        on, h, key = inputs[s]
        if h is None:       # sync: the stage before worked in this tick
          h = self.transfer.move(outputs.pop((s - 1, m)), s - 1, s)
          if self.serial:
            jax.block_until_ready(self._local(h))
        ks = plan.stage_blocks[s]
        mine = tuple(blocks[k] for k in ks)
        args = (h, on["labels"], on["weights"], key)
        kind = program.kinds[s]
        if kind == "owned":
          mine, h, met, fb_s, losses, message = program(s)(
              mine, owner.states[s], owner.inbox[s], *args)
          owner.worked(s, fb_s, message)
          owned_losses.append((t, s, owner.ks[s], losses))
        elif kind == "replicated":
          mine, h, met, part = program(s)(mine, phi[s], etas, *args)
          if part is not None:
            contributions[s] = part
        else:
          # A fixed feedback, or none (an owning run's stage without a
          # hidden block).
          fb = fixed[s] if not trains and engine.feedback is not None else ()
          mine, h, met = program(s)(mine, fb, *args)
        for k, block, block_met in zip(ks, mine, met):
          blocks[k] = block
          metrics[m].update({f"block{k}/{n}": v for n, v in block_met.items()})
        produced.append(met)
        if s < last:
          outputs[(s, m)] = h
        else:
          del arrived[m]
      if owner and any(owner.ks[s] for s, _ in active):
        # Every owning stage updates in a tick where any hidden block
        # worked (zero gradients where it idles), then sends its message.
        for s in set(owner.stages) - {s for s, _ in active}:
          owner.update(s, ())
        owner.send()
      # 3. One feedback update on every replica from all stages' parts.
      if contributions:
        fb_state, losses = replicas.apply_parts(fb_state, contributions)
        versions = (versions + [replicas.views(fb_state.params)])[
            -(lag + 1):]
        tick_losses.append((t, losses))
      # The next tick's micro-batches go to their devices while this
      # tick's programs run (a double-buffered prefetch).
      take(t + 2)
      place(t + 1)
      # Python may run ahead of the devices by `ticks_in_flight` ticks (its
      # dispatch overlaps their work), no further: what it queues holds
      # micro-batches and activations. It waits on the tick's metrics and
      # outputs: the states it produced are donated to the next tick.
      in_flight.append(self._local(
          (produced, outputs) if not self.serial
          else (blocks, outputs, fb_state, owner.arrays() if owner else ())))
      if len(in_flight) > self.ticks_in_flight:
        jax.block_until_ready(in_flight.pop(0))
      t += 1
    if tick_losses:
      self._feedback_losses(metrics, tick_losses)
    if owner:
      self._owned_losses(metrics, owned_losses)
      fb_state = owner.finish()                # on stage 0, as `place` keeps it
    elif trains:
      fb_state = replicas.view(fb_state, 0)    # where `place` keeps it
    return TrainState(state.step + len(metrics), tuple(blocks),
                      fb_state), metrics

  def _feedback_losses(self, metrics, tick_losses) -> None:
    """`feedback/loss` of micro-batch `m`: `sum_k L^fb_k`, each block's
    from the tick it worked on `m` in (every process holds every tick's
    losses, replicated by the update's all-reduce)."""
    rows = {t: i for i, (t, _) in enumerate(tick_losses)}
    losses = np.asarray(self.to_host([loss for _, loss in tick_losses]))
    for m, record in enumerate(metrics):
      record["feedback/loss"] = np.float32(sum(
          losses[rows[m + self.plan.offset(self.plan.stage_of(k))], k]
          for k in range(self.engine.num_blocks - 1)))

  def _owned_losses(self, metrics, owned_losses) -> None:
    """`feedback/loss` of micro-batch `m` from the stages' own losses (one
    gather per stream)."""
    host = self.to_host([losses for _, _, _, losses in owned_losses])
    for (t, s, ks, _), losses in zip(owned_losses, host):
      m = t - self.plan.offset(s)
      metrics[m]["feedback/loss"] = np.float32(
          metrics[m].get("feedback/loss", 0.0) + np.sum(losses))

  @staticmethod
  def _local(tree) -> list[jax.Array]:
    """The leaves of `tree` this process holds (what it can wait on)."""
    return [x for x in jax.tree.leaves(tree)
            if isinstance(x, jax.Array) and x.is_fully_addressable]
