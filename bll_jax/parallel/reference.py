"""The oracle: any tick plan, run block by block on one device.

:func:`run` follows a :class:`~bll_jax.parallel.schedule.TickPlan` in the
plainest way there is, with the engine's per-block steps on the default
device: every runner (MPMD, SPMD, several processes) is tested against it,
and with the `sync` plan and one stage it is the per-block form of one
training step (tested against the engine's fused step).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from bll_jax.engine import TrainState
from bll_jax.parallel.schedule import TickPlan


def _tree_sum(trees):
  return functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), trees)


def run(engine, state: TrainState, micro_batches: Sequence[dict[str, Any]],
        keys: Sequence[jax.Array], plan: TickPlan, feedback_lag: int = 0
        ) -> tuple[TrainState, list[dict[str, jax.Array]]]:
  """Runs `plan` over the micro-batches; returns the state and their metrics.

  Args:
    engine: the engine (method bll).
    state: the state before micro-batch 0.
    micro_batches: `M` batches (`inputs`, `labels`, `weights`).
    keys: one random key per micro-batch (the key of its step).
    plan: the tick plan.
    feedback_lag: `L`: in tick `t` the blocks see the feedback of `L` steps
      before the latest (`phi_{t-L}`) and take their feedback gradients
      there; the step applies them to the latest.

  Returns:
    `(state, metrics)`: the state after the stream has drained, and per
    micro-batch every block's metrics (`block<k>/loss`, ...) and
    `feedback/loss`, the sum over hidden blocks of `L^fb_k` on that
    micro-batch.
  """
  if engine.method != "bll":
    raise ValueError("the per-block schedules run block-local methods, got "
                     f"method {engine.method!r}")
  bootstrapped = engine.feedback_mode == "bootstrapped"
  if bootstrapped and plan.schedule != "sync":
    raise ValueError("feedback 'bootstrapped' needs every block's output of "
                     "the same micro-batch: schedule 'sync' only")
  hidden, m_total = engine.num_blocks - 1, len(micro_batches)
  blocks, fb_state = list(state.blocks), state.feedback
  versions = [fb_state.params]
  metrics: list[dict[str, Any]] = [dict() for _ in range(m_total)]
  outputs: dict[tuple[int, int], jax.Array] = {}
  for t in range(plan.num_ticks(m_total)):
    phi = versions[max(0, len(versions) - 1 - feedback_lag)]
    active = plan.active(t, m_total)
    etas = None
    if bootstrapped:           # sync: every stage on the same micro-batch
      m = active[0][1]
      etas = engine.forward_train(TrainState(state.step, tuple(blocks),
                                             fb_state),
                                  micro_batches[m]["inputs"], keys[m])
    fb = engine.compiled_feedback_forward(phi, etas)
    grads = []
    for s, m in active:
      batch = micro_batches[m]
      h = batch["inputs"] if s == 0 else outputs.pop((s - 1, m))
      for k in plan.stage_blocks[s]:
        fb_k = fb[k] if k < hidden else None
        blocks[k], h, eta, met = engine.block_step(k)(
            blocks[k], h, fb_k, batch["labels"], batch["weights"], keys[m])
        metrics[m].update({f"block{k}/{n}": v for n, v in met.items()})
        if engine.trains_feedback and k < hidden:
          g, loss = engine.feedback_grad(k)(phi, eta, batch["labels"],
                                            batch["weights"], etas)
          grads.append(g)
          metrics[m]["feedback/loss"] = metrics[m].get("feedback/loss",
                                                       0.0) + loss
      outputs[(s, m)] = h
    if grads:
      fb_state = engine.feedback_apply(fb_state, _tree_sum(grads))
      versions.append(fb_state.params)
  new_state = TrainState(state.step + m_total, tuple(blocks), fb_state)
  return new_state, metrics
