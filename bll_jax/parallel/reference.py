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
from bll_jax.parallel import owned as owned_lib
from bll_jax.parallel.schedule import TickPlan


def _tree_sum(trees):
  return functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), trees)


def run(engine, state: TrainState, micro_batches: Sequence[dict[str, Any]],
        keys: Sequence[jax.Array], plan: TickPlan, feedback_lag: int = 0,
        owned: bool | None = None
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
    owned: whether the stages own the feedback (below); `None`: wherever
      they can, as the runners do (`False` replicates it, lag 0 included).

  A feedback whose layers are local to their blocks (`direct`,
  `chained_local`, lag 0: `owned.applies`) is owned by the stages, as the
  runners hold it: each stage updates its own layers every tick and sends
  its message one stage down (:mod:`bll_jax.parallel.owned`).

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
  if owned is None:
    owned = owned_lib.applies(engine, feedback_lag)
  if owned:
    if not owned_lib.applies(engine, feedback_lag):
      raise ValueError(
          f"feedback {engine.feedback_mode!r} with lag {feedback_lag} cannot "
          "be owned by the stages: a local mode (direct, chained_local) "
          "without lag")
    return _run_owned(engine, state, micro_batches, keys, plan)
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


@functools.cache
def _owned_programs(engine, ks):
  """The jitted split, messages and merge of a stage owning `ks`."""
  return (jax.jit(functools.partial(owned_lib.split, engine, ks=ks)),
          jax.jit(functools.partial(owned_lib.messages, engine, ks=ks)))


@functools.cache
def _owned_update(engine, s, ks, active):
  return jax.jit(functools.partial(owned_lib.update, engine, s, ks, active))


def _run_owned(engine, state, micro_batches, keys, plan):
  """:func:`run` with the feedback owned by the stages, on one device."""
  hidden, m_total = engine.num_blocks - 1, len(micro_batches)
  ks = owned_lib.hidden_blocks(engine, plan.stage_blocks)
  stages = [s for s in range(plan.num_stages) if ks[s]]
  blocks = list(state.blocks)
  fb, inbox = {}, {}
  for s in stages:
    fb[s], inbox[s] = _owned_programs(engine, ks[s])[0](state.feedback)
  metrics: list[dict[str, Any]] = [dict() for _ in range(m_total)]
  outputs: dict[tuple[int, int], jax.Array] = {}
  for t in range(plan.num_ticks(m_total)):
    active = dict(plan.active(t, m_total))
    # A tick in which no hidden block works updates no feedback layer.
    updates = any(ks[s] for s in active)
    outbox = {}
    for s in range(plan.num_stages):
      etas, m = [], active.get(s)
      if m is not None:
        batch = micro_batches[m]
        b = dict(zip(ks[s], _owned_programs(engine, ks[s])[1](
            fb[s].params, inbox=inbox.get(s)))) if ks[s] else {}
        h = batch["inputs"] if s == 0 else outputs.pop((s - 1, m))
        for k in plan.stage_blocks[s]:
          blocks[k], h, eta, met = engine.block_step(k)(
              blocks[k], h, b.get(k), batch["labels"], batch["weights"],
              keys[m])
          metrics[m].update({f"block{k}/{n}": v for n, v in met.items()})
          if k < hidden:
            etas.append(eta)
        outputs[(s, m)] = h
      if not (ks[s] and updates):
        continue
      used = ks[s] if m is not None else ()
      labels = micro_batches[m]["labels"] if m is not None else None
      weights = micro_batches[m]["weights"] if m is not None else None
      fb[s], losses, message = _owned_update(engine, s, ks[s], used)(
          fb[s], inbox.get(s), tuple(etas), labels, weights)
      if used:
        metrics[m]["feedback/loss"] = metrics[m].get(
            "feedback/loss", 0.0) + losses.sum()
      if message is not None:
        outbox[s - 1] = message
    inbox.update(outbox)
  template = state.feedback
  fb_state = _tree_sum([owned_lib.merge(template, fb[s], ks[s], s == 0)
                        for s in stages])
  return TrainState(state.step + m_total, tuple(blocks), fb_state), metrics
