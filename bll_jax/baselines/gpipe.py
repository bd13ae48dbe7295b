r"""Backprop pipelined over the same stages, GPipe-style: the peer to beat.

One step of `M` micro-batches (Huang et al., 2019, with re-materialisation):

1. forward: at tick `t`, stage `s` runs its blocks on micro-batch `t - s`
   and keeps only the stage's *input* for that micro-batch;
2. backward, in reverse: the last stage computes the loss of each micro-batch
   (scaled by `1/M`) and its cotangent; at backward tick `u`, stage `s`
   recomputes its forward on micro-batch `M - 1 - (u - (S - 1 - s))` and
   pulls the cotangent through it (`jax.vjp`), accumulating its gradients
   and passing the input cotangent to stage `s - 1`;
3. flush: every block applies the accumulated gradient with its own optax
   state, once, and the next step starts with an empty pipeline.

Each stage idles `S - 1` of the `M + S - 1` ticks of each pass, every step:
the bubble is `(S - 1) / (M + S - 1)` *per step*, where the block-local
pipeline fills once per stream. A stage holds `M` stage inputs at once. The
update equals backprop on the whole batch of `M` micro-batches: each
micro-batch's loss is `sum_i w_i l_i / max(sum_all w, 1)`, so micro-batches
of unequal weight (padding) add up to the whole batch's weighted mean
(tested). Networks with BatchNorm are refused: their statistics would be
per micro-batch, not the whole batch's.

The order in which each stage runs its forward (`F`) and backward (`B`)
passes is data, :meth:`GPipe.orders`; :meth:`GPipe.step` runs any such
order tick by tick, each stage starting its next pass as soon as what it
needs was made in an earlier tick (:class:`bll_jax.baselines.OneFOneB`
reorders the same passes).
Stages are those of the block-local runners
(:class:`bll_jax.parallel.placement.Stages`): one jit per stage on its own
devices, the same transfers between stages
(:class:`bll_jax.parallel.transfer.StageTransfer`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bll_jax.engine import TrainState
from bll_jax.engine import apply_update
from bll_jax.engine import task_loss
from bll_jax.parallel import placement
from bll_jax.parallel.transfer import StageTransfer


class GPipe:
  """GPipe backprop of a `bp` engine over the stages of a mesh."""

  def __init__(self, engine, mesh):
    if engine.method != "bp":
      raise ValueError(f"{type(self).__name__} runs backprop: the engine's "
                       f"method must be 'bp', got {engine.method!r}")

    self.engine = engine
    self.stages = placement.Stages.even(mesh, engine.num_blocks)
    self.stage_blocks = self.stages.stage_blocks
    self.transfer = StageTransfer(mesh)
    # Several CPU devices in one process: each tick's transfers and passes
    # finish before the next (placement.drives_several_cpu_devices).
    self.serial = placement.drives_several_cpu_devices(mesh)
    self._programs = {}

  @property
  def num_stages(self) -> int:
    return len(self.stage_blocks)

  # ------------------------------------------------------ stage programs

  def _stage_forward(self, s, params, stats, h, key):
    """The stage's blocks in turn, train mode: `(h_out, new stats)`."""
    new_stats = []
    for i, k in enumerate(self.stage_blocks[s]):
      out = self.engine.block_forward(k, params[i], stats[i], h, True, key)
      h = out.h_out
      new_stats.append(out.batch_stats)
    return h, tuple(new_stats)

  def _program(self, name, s, build):
    """`jax.jit(build())`, once per stage (kept on this object)."""
    if (name, s) not in self._programs:
      self._programs[(name, s)] = jax.jit(build())
    return self._programs[(name, s)]

  def forward(self, s):
    def fwd(blocks, h, key):
      params = tuple(b.params for b in blocks)
      stats = tuple(b.batch_stats for b in blocks)
      return self._stage_forward(s, params, stats, h, key)
    return self._program("forward", s, lambda: fwd)

  def backward(self, s):
    """`(grads, input cotangent, (loss, correct))`; the last stage starts
    from its loss and also counts its weighted correct predictions."""
    last = s == self.num_stages - 1
    engine = self.engine

    def bwd(blocks, h, cotangent, labels, weights, key, scale):
      stats = tuple(b.batch_stats for b in blocks)

      def f(params, h):
        out, _ = self._stage_forward(s, params, stats, h, key)
        if not last:
          return out, jnp.zeros(())
        per_example = task_loss(out, labels, engine.objective.label_smoothing)
        correct = jnp.sum((jnp.argmax(out, -1) == labels) * weights)
        # This micro-batch's share of the whole batch's weighted mean:
        # `scale` is 1 / max(total weight of the batch, 1).
        return scale * jnp.sum(per_example * weights), correct

      params = tuple(b.params for b in blocks)
      if s == 0:     # nothing upstream needs the input's cotangent
        value, pull, correct = jax.vjp(lambda p: f(p, h), params,
                                       has_aux=True)
        seed = jnp.ones_like(value) if last else cotangent
        (grads,), h_cotangent = pull(seed), None
      else:
        value, pull, correct = jax.vjp(f, params, h, has_aux=True)
        seed = jnp.ones_like(value) if last else cotangent
        grads, h_cotangent = pull(seed)
      return grads, h_cotangent, ((value, correct) if last
                                  else (jnp.zeros(()), correct))

    return self._program("backward", s, lambda: bwd)

  def apply(self, s):
    tx = self.engine.tx

    def update(blocks, grads):
      return tuple(apply_update(tx, b, g, b.batch_stats)
                   for b, g in zip(blocks, grads))

    return self._program("apply", s, lambda: update)

  def place(self, state: TrainState) -> TrainState:
    """Every block's state onto its stage."""
    return self.stages.place(state)

  # ---------------------------------------------------------------- step

  def orders(self, num_micro: int) -> list[list[tuple[str, int]]]:
    """Per stage, its passes in order: every forward `("F", m)`, then every
    backward `("B", m)` in reverse micro-batch order."""
    forward = [("F", m) for m in range(num_micro)]
    backward = [("B", m) for m in reversed(range(num_micro))]
    return [forward + backward for _ in range(self.num_stages)]

  def step(self, state: TrainState,
           micro_batches: Sequence[dict[str, Any]], key: jax.Array):
    """One step over `M` micro-batches in the order of :meth:`orders`;
    returns `(state, metrics)`, the output block's `block<K-1>/loss` and
    `block<K-1>/accuracy` over the whole batch (weighted means, as the
    engine's backprop step names them); :attr:`peak_inputs` is then, per
    stage, the most stage inputs it held at once.

    Each tick moves what the stages need first, then runs one pass per
    stage that can start (its input or cotangent was made in an earlier
    tick), so no stage waits behind another's compute.
    """
    if any(jax.tree.leaves(b.batch_stats) for b in state.blocks):
      raise ValueError(f"{type(self).__name__} does not run networks with "
                       "BatchNorm: its statistics would be the micro-batch's, "
                       "not the whole batch's")
    par, num_stages, m_total = self.stages, self.num_stages, len(
        micro_batches)
    orders = self.orders(m_total)
    stages = [tuple(state.blocks[k] for k in blocks)
              for blocks in self.stage_blocks]
    keys = [par.key_on(key, s) for s in range(num_stages)]
    total = max(sum(float(np.sum(b["weights"])) for b in micro_batches), 1.0)
    on = [[None] * num_stages for _ in range(m_total)]
    inputs = [[None] * m_total for _ in range(num_stages)]
    outputs, cotangents, done = {}, {}, set()
    grads, loss, correct = [None] * num_stages, 0.0, 0.0
    position, live = [0] * num_stages, [0] * num_stages
    self.peak_inputs = [0] * num_stages
    while any(position[s] < len(orders[s]) for s in range(num_stages)):
      ready = []
      for s in range(num_stages):
        if position[s] == len(orders[s]):
          continue
        kind, m = orders[s][position[s]]
        needs = (("F", s - 1, m) if kind == "F" and s > 0 else
                 ("B", s + 1, m) if kind == "B" and s < num_stages - 1 else
                 None)
        if needs is None or needs in done:
          ready.append((s, kind, m))
      if not ready:
        raise RuntimeError(f"the orders of {type(self).__name__} deadlock")
      moved = {}
      for s, kind, m in ready:            # transfers first
        if kind == "F":
          on[m][s] = par.batch_on(micro_batches[m], s)
          moved[s] = (on[m][s]["inputs"] if s == 0 else self.transfer.move(
              outputs.pop((s - 1, m)), s - 1, s))
        elif s < num_stages - 1:
          moved[s] = self.transfer.move(cotangents.pop((s + 1, m)), s + 1, s)
        else:
          moved[s] = None
      if self.serial:
        jax.block_until_ready([v for v in moved.values() if v is not None])
      for s, kind, m in ready:            # then one pass per stage
        if kind == "F":
          inputs[s][m] = moved[s]
          live[s] += 1
          self.peak_inputs[s] = max(self.peak_inputs[s], live[s])
          outputs[(s, m)], new_stats = self.forward(s)(stages[s], moved[s],
                                                       keys[s])
          stages[s] = tuple(b._replace(batch_stats=st)
                            for b, st in zip(stages[s], new_stats))
          if s == num_stages - 1:
            del outputs[(s, m)]           # the loss is taken in its backward
        else:
          g, cotangent, (value, right) = self.backward(s)(
              stages[s], inputs[s][m], moved[s], on[m][s]["labels"],
              on[m][s]["weights"], keys[s], 1.0 / total)
          if s > 0:
            cotangents[(s, m)] = cotangent
          inputs[s][m] = None
          live[s] -= 1
          grads[s] = g if grads[s] is None else jax.tree.map(jnp.add,
                                                             grads[s], g)
          if s == num_stages - 1:
            loss, correct = loss + value, correct + right
      if self.serial:
        jax.block_until_ready((stages, outputs, cotangents, grads))
      for s, kind, m in ready:
        done.add((kind, s, m))
        position[s] += 1
    new_blocks = list(state.blocks)
    for s, blocks in enumerate(self.stage_blocks):
      updated = self.apply(s)(stages[s], grads[s])
      for k, b in zip(blocks, updated):
        new_blocks[k] = b
    out = f"block{self.engine.num_blocks - 1}"
    metrics = {f"{out}/loss": loss, f"{out}/accuracy": correct / total}
    return TrainState(state.step + 1, tuple(new_blocks), state.feedback), metrics
