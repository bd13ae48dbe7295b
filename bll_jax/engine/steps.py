r"""The training steps, as functions of an engine (the engine jits them).

* :func:`block_step` -- block `k` alone:
  `(state_k, h_in, b_k, labels, weights, key) -> (state_k', h_out, a_k,
  metrics)`. It differentiates only block `k`'s loss with respect to only
  its own parameters: `h_in` and `b_k` are constants to it.
  :func:`blocks_step` runs the steps of consecutive blocks in turn.
* :func:`feedback_step` -- the feedback network from detached `etas`;
  :func:`feedback_grad` is hidden block `k`'s part of its gradient, for
  schedules that compute each part where its block lives.
* :func:`bll_step` -- everything in one program: it differentiates

  .. math::

     \textstyle\sum_k L_k(\theta_k) + \sum_k L^{fb}_k(\phi)

  once; because every block's input, every forward parameter seen by the
  feedback loss and every feedback parameter seen by a block loss is
  stop-gradient'ed, that gradient *is* the tuple of per-block gradients
  (tested against the per-block steps).
* :func:`bp_step` -- end-to-end backprop through the same composed network.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from bll_jax.engine import objective as objective_lib
from bll_jax.engine.state import BlockState
from bll_jax.engine.state import TrainState
from bll_jax.engine.state import apply_update

Array = jax.Array
sg = jax.lax.stop_gradient

NEEDS_FUSED = (
    "accumulate_evidence passes each block the log-posterior of the blocks "
    "below, which only the fused step computes: train on one stage with the "
    "sync schedule and step mode fused")


def block_loss(engine, k: int, params, batch_stats, h_in: Array,
               fb_k: Array | None, labels: Array, weights: Array,
               key: Array | None, mean=objective_lib.weighted_mean,
               rng_index=None):
  """`(loss, (out, metrics))` of block `k` from its (detached) input.

  `mean` reduces over the batch (a sharded program passes one that divides
  by the global batch's weight); `rng_index` as
  :meth:`bll_jax.engine.network.Network.block_forward`.
  """
  def rerun(h):
    return engine.block_forward(k, params, batch_stats, h, True, key,
                                rng_index)

  out = rerun(h_in)
  loss, metrics = engine.recipe.block_objective(
      engine, k, out, None if fb_k is None else sg(fb_k), labels, weights,
      h_in=h_in, key=key, rerun=rerun, mean=mean)
  return loss, (out, metrics)


def block_step(engine, k: int) -> Callable:
  """The update of block `k` alone (see the module docstring)."""

  if engine.objective.accumulate_evidence:
    raise ValueError(NEEDS_FUSED)

  def step(state: BlockState, h_in, fb_k, labels, weights, key):
    def loss_fn(params):
      return block_loss(engine, k, params, state.batch_stats, sg(h_in), fb_k,
                        labels, weights, key)

    grads, (out, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
    return (apply_update(engine.block_tx, state, grads, out.batch_stats),
            sg(out.h_out), sg(out.eta), metrics)

  return step


def blocks_step(engine, blocks, step_of: Callable | None = None) -> Callable:
  """The updates of consecutive `blocks` in turn, as one function (a stage's
  tick: one program instead of one per block):
  `(states, h_in, fb, labels, weights, key) -> (states', h_out, etas,
  metrics)`, `fb` mapping each hidden block to its `b_k`, the tuples one
  entry per block. Block `k + 1` reads block `k`'s output, detached as
  :func:`block_step` detaches every input, so the updates are exactly
  those of :func:`block_step` called in turn. `step_of(k)` is block `k`'s
  step (default: :func:`block_step`; a runner may pass compiled ones).
  """
  hidden = engine.num_blocks - 1
  steps = [(step_of or functools.partial(block_step, engine))(k)
           for k in blocks]

  def step(states, h, fb, labels, weights, key):
    new, etas, metrics = [], [], []
    for k, one, state in zip(blocks, steps, states):
      state, h, eta, met = one(state, h, fb[k] if k < hidden else None,
                               labels, weights, key)
      new.append(state)
      etas.append(eta)
      metrics.append(met)
    return tuple(new), h, tuple(etas), tuple(metrics)

  return step


def feedback_objective(engine, etas, fb, labels, weights,
                       priors=None) -> Array:
  """`sum_k L^fb_k` over the hidden blocks, gradient to the feedback only;
  `priors[k]` the keyword arguments of block `k`'s term (with
  :attr:`~bll_jax.engine.objective.Objective.accumulate_evidence`: the
  posterior below it)."""
  priors = priors or [{}] * engine.num_blocks
  return sum(engine.recipe.feedback_term(engine, k, etas[k], fb[k], labels,
                                         weights, **priors[k])
             for k in range(engine.num_blocks - 1))


def feedback_step(engine) -> Callable:
  """The update of the feedback network from every block's detached `etas`:
  `(state, etas, labels, weights) -> (state', {"loss"})`."""

  if engine.objective.accumulate_evidence:
    raise ValueError(NEEDS_FUSED)

  def step(state: BlockState, etas, labels, weights):
    def loss_fn(fb_params):
      fb = engine.feedback_forward(fb_params, etas)
      return feedback_objective(engine, etas, fb, labels, weights)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return apply_update(engine.feedback_tx, state, grads, {}), {"loss": loss}

  return step


def feedback_grad(engine, k: int) -> Callable:
  """`(grad_phi L^fb_k, L^fb_k)` of hidden block `k` alone:
  `(fb_params, eta_k, labels, weights, etas=None) -> (grads, loss)`.

  The feedback loss is a sum over blocks, so its gradient is the sum of
  these; a pipeline computes each where its block lives (no natural
  parameters travel) and only the small gradients meet. `etas` (every
  block's) are needed by bootstrapped feedback alone.
  """

  if engine.objective.accumulate_evidence:
    raise ValueError(NEEDS_FUSED)

  def grad(fb_params, eta, labels, weights, etas=None):
    def loss_fn(params):
      fb = engine.feedback_forward(params, etas)
      return engine.recipe.feedback_term(engine, k, eta, fb[k], labels,
                                         weights)

    loss, grads = jax.value_and_grad(loss_fn)(fb_params)
    return grads, loss

  return grad


def local_losses(engine, params, fb_params, batch_stats, batch, key):
  """Every block's loss and the feedback loss, from the full parameters.

  Returns `(block_losses, feedback_loss, (stats, metrics))`. Each block's
  loss depends on its own parameters only; the feedback loss on the
  feedback's only (tested on the full parameter tree). With
  :attr:`~bll_jax.engine.objective.Objective.accumulate_evidence` every
  block above the first, and its feedback term, is handed the detached
  posterior of the blocks below
  (:func:`~bll_jax.engine.objective.evidence_chain`), computed here
  because this program holds every block's scores.
  """
  labels, weights = batch["labels"], batch["weights"]
  outs = engine.forward(params, batch_stats, batch["inputs"], True, key,
                        detach=True)
  etas = [out.eta for out in outs]
  fb = engine.feedback_forward(fb_params, etas)
  block_losses, metrics = [], {}
  h_in = batch["inputs"]
  priors = [{}] * len(outs)
  if engine.objective.accumulate_evidence:
    chain = objective_lib.evidence_chain([
        sg(engine.recipe.hidden_logits(engine, k, outs[k], sg(fb[k])))
        for k in range(len(fb))])
    priors = [{}] + [{"prior": p} for p in chain]
  for k, out in enumerate(outs):
    def rerun(h, k=k):
      return engine.block_forward(k, params[k], batch_stats[k], h, True, key)

    fb_k = sg(fb[k]) if k < len(fb) else None
    loss, m = engine.recipe.block_objective(
        engine, k, out, fb_k, labels, weights, h_in=sg(h_in), key=key,
        rerun=rerun, mean=objective_lib.weighted_mean, **priors[k])
    block_losses.append(loss)
    metrics.update({f"block{k}/{n}": v for n, v in m.items()})
    h_in = out.h_out
  fb_loss = jnp.zeros(())
  if engine.trains_feedback:
    fb_loss = feedback_objective(engine, etas, fb, labels, weights, priors)
    metrics["feedback/loss"] = fb_loss
  stats = tuple(out.batch_stats for out in outs)
  return tuple(block_losses), fb_loss, (stats, metrics)


def bll_step(engine) -> Callable:
  """One step of block-local learning in one program:
  `(state, batch, key) -> (state', metrics)`."""

  def step(state: TrainState, batch, key):
    def total(params, fb_params):
      block_losses, fb_loss, aux = local_losses(
          engine, params, fb_params, [b.batch_stats for b in state.blocks],
          batch, key)
      return sum(block_losses) + fb_loss, aux

    params = tuple(b.params for b in state.blocks)
    (grads, fb_grads), (stats, metrics) = jax.grad(
        total, argnums=(0, 1), has_aux=True)(params, state.feedback.params)
    blocks = tuple(apply_update(engine.block_tx, b, g, s)
                   for b, g, s in zip(state.blocks, grads, stats))
    fb_state = state.feedback
    if engine.trains_feedback:
      fb_state = apply_update(engine.feedback_tx, fb_state, fb_grads, {})
    return TrainState(state.step + 1, blocks, fb_state), metrics

  return step


def bp_logits(engine, params, batch_stats, inputs, train: bool,
              key: Array | None) -> tuple[Array, tuple[Any, ...]]:
  """The composed network, differentiable end to end (no stop-gradient):
  `(logits, every block's statistics)`."""
  outs = engine.forward(params, batch_stats, inputs, train, key)
  return outs[-1].eta, tuple(out.batch_stats for out in outs)


def bp_step(engine) -> Callable:
  """One step of end-to-end backprop through the same network:
  `(state, batch, key) -> (state', metrics)`; the output block's metrics."""

  def step(state: TrainState, batch, key):
    def loss_fn(params):
      logits, stats = bp_logits(engine, params,
                                [b.batch_stats for b in state.blocks],
                                batch["inputs"], True, key)
      loss, m = objective_lib.output_objective(
          logits, batch["labels"], batch["weights"],
          engine.objective.label_smoothing)
      k = engine.num_blocks - 1
      return loss, (stats, {f"block{k}/{n}": v for n, v in m.items()})

    params = tuple(b.params for b in state.blocks)
    grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(params)
    blocks = tuple(apply_update(engine.tx, b, g, s)
                   for b, g, s in zip(state.blocks, grads, stats))
    return TrainState(state.step + 1, blocks, state.feedback), metrics

  return step
