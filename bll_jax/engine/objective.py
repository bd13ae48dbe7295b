r"""What each block learns from: the loss settings and the loss recipes.

A block's loss is computed by a *recipe* (:class:`LossRecipe`), an object
handed to the engine. :class:`BlockLocalLosses`, the default, is the
formulation of `docs/theory.md`:

* hidden block `k` (gradient to its own parameters only):

  .. math::

     L_k = -\log q(y \mid \alpha_k)
         = -\log \operatorname{softmax}_y \tfrac{1}{T_k}
           \big[A(a_k + b_k(y)) - A(b_k(y))\big]
           \;(+\ \lambda\, L^{decor}_k),

  :func:`bll_jax.losses.local_loss`, with `T_k` the block's temperature
  times its positions when their scores are averaged; for token targets
  with more than the next token (`horizon`, `history`), position `t` is
  scored against each target `o` of :attr:`Objective.target_offsets`, each
  with its own feedback table `b_k^{(o)}`:
  `L_{k,t} = -sum_o m_{t,o} log q_o(labels_{t+o} | alpha_{k,t})`, `m`
  masking targets outside the window
  (:func:`bll_jax.losses.shifted_targets`, `docs/theory.md` section 6);
* the output block: the task's cross-entropy;
* with :attr:`Objective.accumulate_evidence`, each block's prediction is a
  Bayesian update of the block below's (:func:`evidence_chain`): block `k`
  is scored on `softmax_y[sg(log q_{k-1}(y)) + s_k(y)]`, its own scores
  `s_k` (the bracket above over `T_k`, or the output's logits) added to
  the detached log-posterior of the blocks below (`docs/theory.md`,
  section 8);
* the feedback (gradient to `phi` only): `sum_k L^fb_k`, each term the
  maximum likelihood of `q(z_k | y)` (:func:`~bll_jax.losses.feedback_ml_loss`),
  the discriminative form (:func:`~bll_jax.losses.feedback_discriminative_loss`),
  or both.

The authors' recipe (:mod:`bll_jax.recipes.authors`) is another
:class:`LossRecipe`; the engine never asks which one it holds.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax

from bll_jax import losses
from bll_jax import pooling

Array = jax.Array
sg = jax.lax.stop_gradient

FEEDBACK_LOSSES = ("ml", "discriminative", "both")


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss settings shared by all blocks.

  Attributes:
    temperature: `T` of the local loss: one for every block, or a tuple
      with one per hidden block (e.g. from
      :func:`bll_jax.calibration.calibrated_temperatures`).
    feedback_loss: "ml" (:func:`~bll_jax.losses.feedback_ml_loss`),
      "discriminative" or "both".
    label_smoothing: of the output block's cross-entropy.
    chunk_size: classes scored at a time in the local losses.
    decorrelation: weight of
      :func:`~bll_jax.losses.batch_decorrelation_loss` on each hidden
      block's position-pooled natural parameters (0: off).
    position_average: for latents with positions (feature maps), divide the
      summed scores by the number of positions `S` (temperature `T * S`),
      or of grid cells for a latent pooled to a grid (`Latent.grid`): the
      map's evidence is averaged, not counted `S` times.
    horizon: token targets only: how many of the next tokens each
      position's hidden latent is scored against (1: the next token alone).
    history: token targets only: how many of the tokens each position has
      read it is also scored against (1: the current token; 0: none), an
      information-keeping term (`docs/theory.md`, section 6).
    accumulate_evidence: each block's prediction is the posterior of the
      block below updated by its own scores (:func:`evidence_chain`), and
      each block learns on it: block `k` learns the evidence its latent
      adds, not a prediction from scratch. The next target alone
      (`horizon` 1, `history` 0); the principled losses only.

  The feedback holds one table of `C` rows per target,
  `[len(target_offsets) * C, P]`, in the order of :attr:`target_offsets`:
  the next token's table first.
  """

  temperature: float | tuple[float, ...] = 1.0
  feedback_loss: str = "ml"
  label_smoothing: float = 0.0
  chunk_size: int | None = None
  decorrelation: float = 0.0
  position_average: bool = True
  horizon: int = 1
  history: int = 0
  accumulate_evidence: bool = False

  @property
  def target_offsets(self) -> tuple[int, ...]:
    """The targets of a position `t`, as shifts of its label `y_{t+1}`:
    `0, 1, ..., horizon - 1` (tokens ahead), then `-1, ..., -history` (the
    tokens read: `x_t, x_{t-1}`, ...)."""
    return (tuple(range(self.horizon))
            + tuple(-(i + 1) for i in range(self.history)))

  def __post_init__(self):
    temperatures = (self.temperature if isinstance(self.temperature, tuple)
                    else (self.temperature,))
    if not all(isinstance(t, (int, float)) and math.isfinite(t) and t > 0
               for t in temperatures):
      raise ValueError("temperature must be a positive float or a tuple of "
                       f"them, got {self.temperature!r}")
    if self.feedback_loss not in FEEDBACK_LOSSES:
      raise ValueError(f"feedback_loss must be one of {FEEDBACK_LOSSES}, got "
                       f"{self.feedback_loss!r}")
    if not isinstance(self.horizon, int) or self.horizon < 1:
      raise ValueError(f"horizon must be an integer >= 1, got "
                       f"{self.horizon!r}")
    if not isinstance(self.history, int) or self.history < 0:
      raise ValueError(f"history must be an integer >= 0, got "
                       f"{self.history!r}")
    if not isinstance(self.accumulate_evidence, bool):
      raise ValueError(f"accumulate_evidence must be a bool, got "
                       f"{self.accumulate_evidence!r}")
    if self.accumulate_evidence and self.target_offsets != (0,):
      raise ValueError("accumulate_evidence chains the predictions of the "
                       "next target only: use horizon 1 and history 0, got "
                       f"horizon {self.horizon}, history {self.history}")


def weighted_mean(values: Array, weights: Array) -> Array:
  """`sum_i w_i v_i / max(sum_i w_i, 1)`: the mean over real examples."""
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def task_loss(logits: Array, labels: Array, smoothing: float) -> Array:
  """Cross-entropy of the output block per example (or token)."""
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  if smoothing:
    targets = optax.smooth_labels(targets, smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def updated_logits(prior: Array | None, scores: Array) -> Array:
  """`sg(prior) + scores`: a block's scores as an update of the detached
  log-posterior below it (`scores` itself for the first block, `prior`
  `None`). Unnormalised; the loss and the chain normalise."""
  return scores if prior is None else sg(prior) + scores


def evidence_chain(scores) -> list[Array]:
  r"""Every block's log-posterior when each updates the one below:

  .. math::

     \log q_1(y) = \mathrm{log\_softmax}_y\, s_1(y), \qquad
     \log q_k(y) = \mathrm{log\_softmax}_y \big[
        \mathrm{sg}(\log q_{k-1}(y)) + s_k(y) \big],

  `scores[k]` (`[*batch, C]`) block `k`'s own scores: a hidden block's
  `(1/T_k)[A(a_k + b_k(y)) - A(b_k(y))]`, the output's logits. Unrolled,
  `log q_k = log_softmax(s_1 + ... + s_k)`: a uniform prior over targets
  times each block's likelihood of its latent, the latents taken as
  independent given the target (`docs/theory.md`, section 8).
  """
  chain, prior = [], None
  for s in scores:
    prior = jax.nn.log_softmax(updated_logits(prior, s), -1)
    chain.append(prior)
  return chain


def output_objective(logits: Array, labels: Array, weights: Array,
                     smoothing: float, mean=weighted_mean
                     ) -> tuple[Array, dict[str, Array]]:
  """The output block's task loss and accuracy (weighted means)."""
  loss = mean(task_loss(logits, labels, smoothing), weights)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return loss, {"loss": loss, "accuracy": mean(correct, weights)}


class LossRecipe(Protocol):
  """The losses of a block-local method, handed to the engine.

  Every method receives the engine (its network, objective and
  temperatures) and the block index `k`; the engine calls nothing else.
  """

  def auxiliary_classes(self, num_classes: int) -> int:
    """Width of an auxiliary classifier on every hidden block (0: none)."""

  def check(self, engine) -> None:
    """Raises `ValueError` (one line) for an engine it cannot train."""

  def block_tx(self, tx: optax.GradientTransformation
               ) -> optax.GradientTransformation:
    """The transformation each block is updated with, from the run's `tx`."""

  def block_objective(self, engine, k: int, out, fb_k: Array | None,
                      labels: Array, weights: Array, *, h_in: Array,
                      key: Array | None,
                      rerun: Callable[[Array], Any],
                      mean: Callable[[Array, Array], Array]
                      ) -> tuple[Array, dict[str, Array]]:
    """Block `k`'s loss (gradient to its own parameters only) and metrics.

    Args:
      engine: the engine.
      k: the block.
      out: its :class:`~bll_jax.engine.network.BlockOutput` on `h_in`.
      fb_k: its detached feedback `b_k` (`None` for the output block).
      labels, weights: the batch's targets and example weights.
      h_in: the block's (detached) input.
      key: the step's key.
      rerun: the block's forward on another input, same parameters and key.
      mean: the batch reduction, `mean(values, weights)`.
    """

  def feedback_term(self, engine, k: int, eta: Array, fb_k: Array,
                    labels: Array, weights: Array) -> Array:
    """`L^fb_k`: hidden block `k`'s part of the feedback loss (gradient to
    `fb_k` only)."""

  def hidden_logits(self, engine, k: int, out, fb_k: Array | None
                    ) -> Array | None:
    """Hidden block `k`'s own class logits in evaluation (`None`: none)."""


def target_terms(fb_k: Array, labels: Array, weights: Array,
                 offsets: tuple[int, ...]):
  """`[(table_o, labels_o, valid_o)]`, one per target offset `o`: the rows
  of `fb_k` of that target (table `i` of `offsets[i]`: rows `i * C ..
  (i + 1) * C`), its labels, and 1 where it exists
  (:func:`bll_jax.losses.shifted_targets`). For the next token alone
  (`offsets == (0,)`): `fb_k`, the labels, and `None` (every target
  exists)."""
  if offsets == (0,):
    return [(fb_k, labels, None)]
  c = fb_k.shape[-2] // len(offsets)
  shifted, valid = losses.shifted_targets(labels, weights, offsets)
  return [(fb_k[..., i * c:(i + 1) * c, :], shifted[i], valid[i])
          for i in range(len(offsets))]


@dataclasses.dataclass(frozen=True)
class BlockLocalLosses:
  """The principled losses of `docs/theory.md` (see the module docstring),
  with the settings of the engine's :class:`Objective`."""

  def auxiliary_classes(self, num_classes: int) -> int:
    del num_classes
    return 0

  def check(self, engine) -> None:
    del engine

  def block_tx(self, tx):
    return tx

  def block_objective(self, engine, k, out, fb_k, labels, weights, *, h_in,
                      key, rerun, mean=weighted_mean, prior=None):
    """As :meth:`LossRecipe.block_objective`; `prior` (with
    :attr:`Objective.accumulate_evidence`, every block but the first) is
    the log-posterior of the blocks below, the block scored on
    :func:`updated_logits` of it and its own scores."""
    del h_in, key, rerun
    objective = engine.objective
    if k == engine.num_blocks - 1:
      return output_objective(updated_logits(prior, out.eta), labels,
                              weights, objective.label_smoothing, mean)
    latent = engine.latents[k]
    temperature = engine.score_temperature(k, out.eta)
    if prior is not None:
      per_example = task_loss(
          updated_logits(prior, self.hidden_logits(engine, k, out, sg(fb_k))),
          labels, 0.0)
    else:
      per_example = 0.0
      for table, targets, valid in target_terms(
          fb_k, labels, weights, objective.target_offsets):
        term = losses.local_loss(
            latent.family, out.eta, sg(table), targets,
            temperature=temperature, chunk_size=objective.chunk_size,
            position_ndim=latent.position_ndim)
        per_example = per_example + (term if valid is None else valid * term)
    loss = mean(per_example, weights)
    metrics = {"loss": loss}
    if objective.decorrelation:
      features = pooling.pool_positions(out.eta, latent.position_ndim)
      decor = losses.batch_decorrelation_loss(
          features.reshape(-1, features.shape[-1]))
      metrics["decorrelation"] = decor
      loss = loss + objective.decorrelation * decor
    return loss, metrics

  def feedback_term(self, engine, k, eta, fb_k, labels, weights, prior=None):
    """As :meth:`LossRecipe.feedback_term`; with `prior` (the posterior
    below block `k`, :attr:`Objective.accumulate_evidence`) the
    discriminative term scores the same update the block learns on,
    `-log softmax_y[sg(prior) + s_k(y)]`, its gradient to `b_k` only."""
    latent, objective = engine.latents[k], engine.objective
    kw = dict(position_ndim=latent.position_ndim)
    eta = sg(eta)
    total = 0.0
    for table, targets, valid in target_terms(
        fb_k, labels, weights, objective.target_offsets):
      target_weights = weights if valid is None else weights * valid
      if objective.feedback_loss in ("ml", "both"):
        total += weighted_mean(
            losses.feedback_ml_loss(latent.family, eta, table, targets, **kw),
            target_weights)
      if objective.feedback_loss in ("discriminative", "both") and (
          prior is not None):
        scores = losses.local_logits(
            latent.family, eta, table,
            temperature=engine.score_temperature(k, eta),
            chunk_size=objective.chunk_size, **kw)
        total += weighted_mean(
            task_loss(updated_logits(prior, scores), targets, 0.0),
            target_weights)
      elif objective.feedback_loss in ("discriminative", "both"):
        total += weighted_mean(
            losses.feedback_discriminative_loss(
                latent.family, eta, table, targets,
                temperature=engine.score_temperature(k, eta),
                chunk_size=objective.chunk_size, **kw), target_weights)
    return total

  def hidden_logits(self, engine, k, out, fb_k):
    if fb_k is None:
      return None
    latent = engine.latents[k]
    return losses.local_logits(
        latent.family, out.eta, engine.next_token_feedback(fb_k),
        temperature=engine.score_temperature(k, out.eta),
        chunk_size=engine.objective.chunk_size,
        position_ndim=latent.position_ndim)
