"""Predictions: the network's logits and every hidden block's own.

Block `k`'s own prediction is `argmax_y q(y | alpha_k)`, the logits its
recipe gives (:meth:`~bll_jax.engine.objective.LossRecipe.hidden_logits`:
:func:`bll_jax.losses.local_logits` for the principled losses, the
auxiliary classifier's for the authors' recipe, none for backprop); with
:attr:`~bll_jax.engine.objective.Objective.accumulate_evidence`, every
block's (the output's included) is its place in
:func:`~bll_jax.engine.objective.evidence_chain`, as it was trained.
Evaluation also scores each block's prediction (its cross-entropy) and the
blocks' mixture, :func:`mixture_log_probs` (`docs/theory.md`, section 8).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
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
    if engine.objective.accumulate_evidence:
      *local, logits = objective_lib.evidence_chain(local + (outs[-1].eta,))
      return logits, tuple(local)
    return outs[-1].eta, local

  return fn


def mixture_log_probs(logits: Sequence[jax.Array]) -> jax.Array:
  r"""The log-probabilities of the blocks' mixture, an equal-weight average
  of their predictive distributions:

  .. math::

     \log q_{\mathrm{mix}}(y \mid x) = \log \frac{1}{|S|}
        \sum_{k \in S} q(y \mid \alpha_k),
     \qquad q(\cdot \mid \alpha_k) = \mathrm{softmax}(\mathrm{logits}_k),

  over the blocks `S` handed in (each `[*batch, C]`, unnormalised).
  Evaluation only: nothing is trained through it.
  """
  if not logits:
    raise ValueError("the mixture needs at least one block's logits")
  log_probs = jnp.stack([jax.nn.log_softmax(l, -1) for l in logits])
  return jax.nn.logsumexp(log_probs, 0) - jnp.log(len(logits))


def eval_step(engine) -> Callable:
  """Sums over a batch: `(state, batch) -> {"loss", "correct",
  "block_loss", "mixture_loss", "mixture_correct", "weight"}`: the output's
  summed loss; every block's count of correct predictions and summed
  cross-entropy `-log q(y | alpha_k)` (NaN for a block without a
  prediction; the last entry is the output's); the same two for the
  mixture of every block with a prediction (:func:`mixture_log_probs`)."""

  def fn(state: TrainState, batch):
    logits, local = engine.predict(state, batch["inputs"])
    labels, weights = batch["labels"], batch["weights"]
    every = local + (logits,)

    def summed_loss(l):
      return jnp.sum(objective_lib.task_loss(l, labels, 0.0) * weights)

    def summed_correct(l):
      return jnp.sum((jnp.argmax(l, -1) == labels) * weights)

    none = jnp.full((), jnp.nan)
    mixture = mixture_log_probs([l for l in every if l is not None])
    return {"loss": summed_loss(logits),
            "correct": jnp.stack([summed_correct(l) if l is not None
                                  else none for l in every]),
            "block_loss": jnp.stack([summed_loss(l) if l is not None
                                     else none for l in every]),
            "mixture_loss": summed_loss(mixture),
            "mixture_correct": summed_correct(mixture),
            "weight": jnp.sum(weights)}

  return fn
