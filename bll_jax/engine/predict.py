"""Predictions: the network's logits and every hidden block's own.

Block `k`'s own prediction is `argmax_y q(y | alpha_k)`, the logits its
recipe gives (:meth:`~bll_jax.engine.objective.LossRecipe.hidden_logits`:
:func:`bll_jax.losses.local_logits` for the principled losses, the
auxiliary classifier's for the authors' recipe, none for backprop).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from bll_jax.engine import objective as objective_lib
from bll_jax.engine.state import TrainState


def predict(engine) -> Callable:
  """Eval-mode forward: `(state, inputs) -> (logits, per-hidden-block
  logits)`, an entry `None` where a block has no prediction of its own."""

  def fn(state: TrainState, inputs):
    outs = engine.forward([b.params for b in state.blocks],
                          [b.batch_stats for b in state.blocks], inputs,
                          False, None)
    fb = engine.feedback_forward(state.feedback.params,
                                 [out.eta for out in outs])
    local = tuple(
        engine.recipe.hidden_logits(engine, k, outs[k],
                                    fb[k] if k < len(fb) else None)
        for k in range(engine.num_blocks - 1))
    return outs[-1].eta, local

  return fn


def eval_step(engine) -> Callable:
  """Sums over a batch: `(state, batch) -> {"loss", "correct", "weight"}`,
  the output's summed loss and every block's count of correct predictions
  (NaN for a block without one)."""

  def fn(state: TrainState, batch):
    logits, local = engine.predict(state, batch["inputs"])
    labels, weights = batch["labels"], batch["weights"]
    per_example = objective_lib.task_loss(logits, labels, 0.0)
    correct = [jnp.sum((jnp.argmax(l, -1) == labels) * weights)
               if l is not None else jnp.full((), jnp.nan)
               for l in local + (logits,)]
    return {"loss": jnp.sum(per_example * weights),
            "correct": jnp.stack(correct),
            "weight": jnp.sum(weights)}

  return fn
