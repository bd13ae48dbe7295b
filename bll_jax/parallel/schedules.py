r"""The two schedules, and a plain sequential simulation of the pipelined one.

`sync`: every block sees the same batch in a step; the step is exactly
:meth:`bll_jax.step.Engine.train_step_per_block`, on any mesh.

`pipelined`: the stream of batches is a stream of micro-batches
`m = 0, 1, ..., M - 1`; the blocks are grouped into stages `s = 0..S-1`
(:func:`bll_jax.parallel.mesh.stages`). At tick `t = 0, ..., M + S - 2`:

* stage `s` processes micro-batch `m = t - s` (if `0 <= m < M`): each of its
  blocks, in order, takes its input (for the stage's first block, the output
  of stage `s - 1` from tick `t - 1`; for stage 0, the micro-batch), runs its
  own step and updates itself at once; the stage's output goes to stage
  `s + 1` for tick `t + 1`;
* the feedback network, with parameters `phi_t`, gives every block its
  `eta_fb` at the start of the tick; every active block computes its part of
  the feedback gradient (`Engine.feedback_grad`, from its own `eta_k` and
  labels, where the block lives) and one update from their sum gives
  `phi_{t+1}` (`Engine.feedback_apply`). With `feedback_lag = L`, the blocks
  of tick `t` see `phi_{t-L}` instead, and take their feedback gradients
  there: the update of tick `t - 1` then no longer holds up tick `t`.

There is no flush between micro-batches: the pipeline fills once, at the
start of the stream (the bubble: stage `s` idles for its first `s` ticks, a
fraction `(S - 1) / (M + S - 1)` of all stage-ticks), and drains at its end.

Staleness, exactly. Block `k` in stage `s(k)` processes micro-batch `m` with
its own parameters after exactly `m` updates, and with an input computed by
block `k - 1` with *its* parameters after exactly `m` updates: the forward
parameters see the same versions as in a `sync` run over micro-batches. The
only difference is the feedback: block `k` sees `phi_{m + s(k) - L}`, the
feedback after `m + s(k) - L` updates (in `sync`, `phi_m`), and the update
`phi_t -> phi_{t+1}` mixes micro-batches `t - s(k)` of the blocks, with
gradients taken at `phi_{t-L}`. With a fixed feedback (`random`, `onehot`),
`pipelined` equals `sync` exactly.
Bootstrapped feedback needs the block above's output for the same
micro-batch, which arrives one tick late; it is not supported here.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from bll_jax import step as step_lib

SCHEDULES = ("sync", "pipelined")


def check_pipelined(engine: step_lib.Engine) -> None:
  if engine.method != "bll":
    raise ValueError("schedule 'pipelined' needs method bll, local or drtp "
                     f"(block-local updates), got {engine.method!r}")
  if engine.feedback_mode == "bootstrapped":
    raise ValueError("schedule 'pipelined' does not support feedback "
                     "'bootstrapped' (the block above's output for the same "
                     "micro-batch arrives a tick late); use direct or chained")


def timeline(num_micro_batches: int, num_stages: int
             ) -> list[tuple[int, int, int]]:
  """`(tick, stage, micro-batch)` of every unit of work, in tick order."""
  return [(t, s, t - s)
          for t in range(num_micro_batches + num_stages - 1)
          for s in range(num_stages) if 0 <= t - s < num_micro_batches]


def bubble_fraction(num_micro_batches: int, num_stages: int) -> float:
  """Idle stage-ticks over all stage-ticks, from fill to drain.

  `(S - 1) / (M + S - 1)`: each stage idles `S - 1` of the `M + S - 1` ticks
  (while the pipeline fills, or drains).
  """
  ticks = num_micro_batches + num_stages - 1
  return (num_stages - 1) / ticks


def pipelined_reference(engine: step_lib.Engine, state: step_lib.TrainState,
                        micro_batches: Sequence[dict[str, Any]],
                        keys: Sequence[jax.Array],
                        stage_blocks: Sequence[Sequence[int]],
                        feedback_lag: int = 0):
  """The pipelined schedule, simulated block by block on one device.

  Args:
    engine: the engine (method bll; feedback not bootstrapped).
    state: the state before micro-batch 0.
    micro_batches: `M` batches (`inputs`, `labels`, `weights`).
    keys: one random key per micro-batch (the key of its `sync` step).
    stage_blocks: the blocks of each stage.
    feedback_lag: `L`: at tick `t` the blocks see the feedback parameters of
      `L` updates before the latest (`phi_{t-L}`), and their feedback
      gradients are taken there; the update applies them to the latest.

  Returns:
    `(state, metrics, feedback_losses)`: the state after the stream has
    drained, the metrics of every micro-batch (`metrics[m]["block<k>/loss"]`,
    ...) and the feedback loss of every tick with a feedback update.
  """
  check_pipelined(engine)
  num_stages, m_total = len(stage_blocks), len(micro_batches)
  hidden = engine.num_blocks - 1
  blocks = list(state.blocks)
  fb_state = state.feedback
  versions = [fb_state.params]
  metrics = [dict() for _ in range(m_total)]
  feedback_losses = []
  inbox: dict[int, jax.Array] = {}
  for t in range(m_total + num_stages - 1):
    phi = versions[max(0, len(versions) - 1 - feedback_lag)]
    fb = engine.feedback_forward(phi, None)
    grads, losses, outbox = [], [], {}
    for s, stage in enumerate(stage_blocks):
      m = t - s
      if not 0 <= m < m_total:
        continue
      batch = micro_batches[m]
      h = batch["inputs"] if s == 0 else inbox[s]
      for k in stage:
        fb_k = fb[k] if k < hidden else None
        blocks[k], h, eta, met = engine.block_step(k)(
            blocks[k], h, fb_k, batch["labels"], batch["weights"], keys[m])
        metrics[m].update({f"block{k}/{n}": v for n, v in met.items()})
        if engine.trains_feedback and k < hidden:
          g, loss = engine.feedback_grad(k)(phi, eta, batch["labels"],
                                            batch["weights"])
          grads.append(g)
          losses.append(loss)
      outbox[s + 1] = h
    inbox = outbox
    if grads:
      total = functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b),
                               grads)
      fb_state = engine.feedback_apply(fb_state, total)
      versions.append(fb_state.params)
      feedback_losses.append(sum(losses))
  new_state = step_lib.TrainState(state.step + m_total, tuple(blocks),
                                  fb_state)
  return new_state, metrics, feedback_losses
