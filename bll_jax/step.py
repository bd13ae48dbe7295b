r"""Training steps: one jitted update per block, the feedback update, the fused
step, and end-to-end backprop on the very same network.

Block `k` owns its parameters, its BatchNorm statistics and its optax state
(:class:`BlockState`). Its step

    block_step(k)(state_k, h_in, fb_k, labels, weights, key)
        -> (state_k', h_out, eta_k, metrics)

differentiates only its own loss with respect to only its own parameters:
`h_in` (the previous block's output) and `fb_k` (its feedback parameters) are
constants to it, so it touches no other block. The feedback network is
updated by :meth:`Engine.feedback_step` from the detached forward parameters.
:meth:`Engine.train_step` runs all of it in one jit: it differentiates

    sum_k L_k(theta_k) + sum_k L^fb_k(phi)

once; because every block's input, every forward parameter seen by the
feedback loss and every feedback parameter seen by a block loss is
stop-gradient'ed, that gradient *is* the tuple of per-block gradients (tested).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from bll_jax import blocks as blocks_lib
from bll_jax import feedback as feedback_lib
from bll_jax import losses
from bll_jax.models import base

Array = jax.Array
sg = jax.lax.stop_gradient

METHODS = ("bll", "bp")
FEEDBACK_LOSSES = ("ml", "discriminative", "both")


class BlockState(NamedTuple):
  """What one block (or the feedback network) owns."""

  params: Any
  batch_stats: Any
  opt_state: Any


class TrainState(NamedTuple):
  step: Array
  blocks: tuple[BlockState, ...]
  feedback: BlockState


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
  """

  temperature: float | tuple[float, ...] = 1.0
  feedback_loss: str = "ml"
  label_smoothing: float = 0.0
  chunk_size: int | None = None
  decorrelation: float = 0.0
  position_average: bool = True

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


def weighted_mean(values: Array, weights: Array) -> Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def task_loss(logits: Array, labels: Array, smoothing: float) -> Array:
  """Cross-entropy of the output block per example (or token)."""
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  if smoothing:
    targets = optax.smooth_labels(targets, smoothing)
  return optax.softmax_cross_entropy(logits, targets)


class Engine:
  """A network cut into blocks, its feedback network and their updates.

  Args:
    stack: the network as units.
    edges: block boundaries, see :func:`bll_jax.blocks.boundaries`.
    latents: one :class:`~bll_jax.blocks.Latent` per hidden block (their
      `position_ndim` is filled in here).
    method: "bll" (block-local) or "bp" (end-to-end backprop through the
      same composed network).
    feedback_mode: one of :data:`bll_jax.feedback.MODES`.
    num_classes: classes (or vocabulary size).
    input_shape, input_dtype: one example's input.
    tx: the optax transformation each block (and the feedback) is updated
      with; every block holds its own state.
    feedback_tx: the feedback network's transformation (default `tx`).
    objective: loss settings.
    feedback_init_scale, onehot_scale: see :class:`~bll_jax.feedback.Feedback`.
    recipe: `None` (the principled losses) or a
      :class:`bll_jax.authors.AuthorsRecipe`, whose losses replace them.
  """

  def __init__(self, stack: base.LayerStack, edges: Sequence[int],
               latents: Sequence[blocks_lib.Latent], *, method: str,
               feedback_mode: str, num_classes: int,
               input_shape: tuple[int, ...], input_dtype: Any,
               tx: optax.GradientTransformation,
               feedback_tx: optax.GradientTransformation | None = None,
               objective: Objective = Objective(),
               feedback_init_scale: float = 1.0,
               onehot_scale: float = 30.0,
               recipe: Any = None):
    if method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if feedback_mode not in feedback_lib.MODES:
      raise ValueError(f"feedback must be one of {feedback_lib.MODES}, got "
                       f"{feedback_mode!r}")
    self.method = method
    self.feedback_mode = feedback_mode
    self.num_classes = num_classes
    self.token_targets = stack.token_targets
    self.tx = tx
    self.feedback_tx = feedback_tx or tx
    self.objective = objective
    self.recipe = recipe
    if recipe is not None and feedback_mode != "direct":
      raise ValueError("the authors' recipe uses feedback 'direct' (a linear "
                       f"map of the label), got {feedback_mode!r}")
    self.mean_fn = weighted_mean
    self.latents = tuple(
        dataclasses.replace(lat, position_ndim=blocks_lib.latent_position_ndim(
            stack, edges, k, lat)) for k, lat in enumerate(latents))
    self._cells = tuple(blocks_lib.latent_cells(stack, edges, k, lat)
                        for k, lat in enumerate(latents))
    if (isinstance(objective.temperature, tuple)
        and len(objective.temperature) != len(self.latents)):
      raise ValueError(f"temperature has {len(objective.temperature)} "
                       f"values; give one per hidden block "
                       f"({len(self.latents)})")
    self.blocks = blocks_lib.make_blocks(
        stack, edges, self.latents,
        aux_classes=num_classes if recipe is not None else 0)
    self.input_shape, self.input_dtype = tuple(input_shape), input_dtype
    self.eta_shapes = self._eta_shapes()
    hidden = len(self.blocks) - 1
    self.feedback = None
    if method == "bll" and hidden:
      sizes = tuple(s[-1] for s in self.eta_shapes[:hidden])
      self.feedback = feedback_lib.Feedback(
          feedback_mode, num_classes, self.latents, sizes,
          feedback_init_scale, onehot_scale)

  # ------------------------------------------------------------- structure

  @property
  def num_blocks(self) -> int:
    return len(self.blocks)

  @property
  def trains_feedback(self) -> bool:
    return (self.feedback is not None
            and self.feedback_mode in feedback_lib.TRAINABLE_MODES)

  def _eta_shapes(self):
    def forward(x):
      h, etas = x, []
      for block in self.blocks:
        variables = block.init({"params": jax.random.key(0),
                                "latent": jax.random.key(0)}, h)
        eta, h = block.apply(variables, h, rngs={"latent": jax.random.key(0)})
        etas.append(eta)
      return etas
    x = jax.ShapeDtypeStruct((2,) + self.input_shape, self.input_dtype)
    return tuple(e.shape for e in jax.eval_shape(forward, x))

  def init(self, key: Array, sample_inputs: Array) -> TrainState:
    """Parameters, BatchNorm statistics and optimiser states of every block."""
    keys = jax.random.split(key, self.num_blocks + 1)
    h, block_states, etas = sample_inputs, [], []
    for k, block in enumerate(self.blocks):
      variables = block.init({"params": keys[k], "latent": keys[k]}, h)
      eta, h = block.apply(variables, h, rngs={"latent": keys[k]})
      etas.append(eta)
      params = variables["params"]
      block_states.append(BlockState(params, variables.get("batch_stats", {}),
                                     self.tx.init(params)))
    fb_params = {}
    if self.feedback is not None:
      fb_params = self.feedback.init(keys[-1], self._above(etas)).get(
          "params", {})
    fb_state = BlockState(fb_params, {}, self.feedback_tx.init(fb_params))
    return TrainState(jnp.zeros((), jnp.int32), tuple(block_states), fb_state)

  # ------------------------------------------------------ pure pieces

  def _forward(self, k, params, batch_stats, h, train, key):
    """`(eta_k, h_out, batch_stats')` of block `k`."""
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    rngs = {}
    if key is not None:
      rngs = {"dropout": jax.random.fold_in(key, 2 * k),
              "latent": jax.random.fold_in(key, 2 * k + 1)}
    if train and batch_stats:
      (eta, h_out), mutated = self.blocks[k].apply(
          variables, h, train=True, mutable=["batch_stats"], rngs=rngs)
      return eta, h_out, mutated["batch_stats"]
    eta, h_out = self.blocks[k].apply(variables, h, train=train, rngs=rngs)
    return eta, h_out, batch_stats

  def forward_with_aux(self, k, params, batch_stats, h, train, key):
    """`(eta, h_out, batch_stats', aux_logits)`: `_forward` plus the sown
    auxiliary classifier (blocks built with `aux_classes`)."""
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    rngs = {}
    if key is not None:
      rngs = {"dropout": jax.random.fold_in(key, 2 * k),
              "latent": jax.random.fold_in(key, 2 * k + 1)}
    mutable = ["intermediates"] + (["batch_stats"] if train and batch_stats
                                   else [])
    (eta, h_out), mutated = self.blocks[k].apply(
        variables, h, train=train, mutable=mutable, rngs=rngs)
    aux = mutated.get("intermediates", {}).get("aux_logits", (None,))[0]
    return eta, h_out, mutated.get("batch_stats", batch_stats), aux

  def _block_loss(self, k, params, batch_stats, h_in, fb_k, labels, weights,
                  key):
    """`(loss, (eta, h_out, stats, metrics))` of block `k` from its input."""
    if self.recipe is not None:
      from bll_jax import authors
      return authors.block_loss(self.recipe, self, k, params, batch_stats,
                                h_in, fb_k, labels, weights, key)
    eta, h_out, stats = self._forward(k, params, batch_stats, h_in, True, key)
    loss, metrics = self._block_objective(k, eta, fb_k, labels, weights)
    return loss, (eta, h_out, stats, metrics)

  def _mask(self, tree):
    """The authors' recipe as published freezes the auxiliary heads."""
    if self.recipe is None:
      return tree
    from bll_jax import authors
    return authors.freeze_auxiliary(self.recipe, tree)

  def _block_update(self, state: BlockState, grads, batch_stats) -> BlockState:
    """A block's optax update; frozen parameters get neither gradient nor
    update (so weight decay or momentum cannot move them either)."""
    updates, opt_state = self.tx.update(self._mask(grads), state.opt_state,
                                        state.params)
    return BlockState(optax.apply_updates(state.params, self._mask(updates)),
                      batch_stats, opt_state)

  def _above(self, etas):
    """For bootstrapping: block `k + 1`'s pooled natural parameters."""
    hidden = self.num_blocks - 1
    out = []
    for k in range(hidden):
      above = etas[k + 1]
      if k + 1 < hidden:
        above = feedback_lib.pool_positions(above,
                                            self.latents[k + 1].position_ndim)
      out.append(sg(above))
    return tuple(out)

  def feedback_forward(self, fb_params, etas) -> tuple[Array, ...]:
    """`eta_fb` of every hidden block (empty without hidden blocks)."""
    if self.feedback is None:
      return ()
    above = self._above(etas) if self.feedback_mode == "bootstrapped" else None
    return self.feedback.apply({"params": fb_params}, above)

  def _block_objective(self, k, eta, fb_k, labels, weights,
                       mean=weighted_mean):
    """Block `k`'s loss (gradient to `eta` only) and its metrics.

    `mean(values, weights)` reduces over the batch; the SPMD pipeline passes
    one that divides by the weight of the global batch.
    """
    if k == self.num_blocks - 1:
      per_example = task_loss(eta, labels, self.objective.label_smoothing)
      correct = (jnp.argmax(eta, -1) == labels).astype(jnp.float32)
      loss = mean(per_example, weights)
      return loss, {"loss": loss, "accuracy": mean(correct, weights)}
    latent = self.latents[k]
    per_example = losses.local_loss(
        latent.family, eta, sg(fb_k), labels,
        temperature=self._temperature(k, eta),
        chunk_size=self.objective.chunk_size,
        position_ndim=latent.position_ndim)
    loss = mean(per_example, weights)
    metrics = {"loss": loss}
    if self.objective.decorrelation:
      features = feedback_lib.pool_positions(eta, latent.position_ndim)
      decor = losses.batch_decorrelation_loss(
          features.reshape(-1, features.shape[-1]))
      metrics["decorrelation"] = decor
      loss = loss + self.objective.decorrelation * decor
    return loss, metrics

  def block_temperature(self, k) -> float:
    """Hidden block `k`'s `T`: the objective's one value or its `k`th."""
    temperature = self.objective.temperature
    return temperature[k] if isinstance(temperature, tuple) else temperature

  def _temperature(self, k, eta):
    """Block `k`'s score temperature: its `T` (times its positions, or its
    grid cells, if averaged)."""
    return self.block_temperature(k) * self.position_scale(k, eta)

  def position_scale(self, k, eta) -> int:
    """What block `k`'s summed scores are divided by besides `T`: its
    positions (or grid cells) when they are averaged, else 1."""
    if not self.objective.position_average:
      return 1
    n = self.latents[k].position_ndim
    positions = math.prod(eta.shape[eta.ndim - 1 - n:eta.ndim - 1])
    return positions * self._cells[k]

  def _feedback_objective(self, etas, fb, labels, weights):
    """`sum_k L^fb_k`, gradient to the feedback parameters only.

    `labels` and `weights` are one array for all blocks, or (in a pipelined
    schedule, where blocks work on different micro-batches) a tuple with one
    per hidden block; a block whose weights are all zero adds nothing.
    """
    if self.recipe is not None:
      from bll_jax import authors
      return authors.feedback_loss(self, etas, fb, labels, weights)
    per_block = isinstance(labels, (tuple, list))
    return sum(self._feedback_term(k, etas[k], fb[k],
                                   labels[k] if per_block else labels,
                                   weights[k] if per_block else weights)
               for k in range(len(self.latents)))

  def _feedback_term(self, k, eta, fb_k, labels, weights):
    """`L^fb_k`: hidden block `k`'s part of the feedback loss."""
    latent = self.latents[k]
    kw = dict(position_ndim=latent.position_ndim)
    eta = sg(eta)
    total = 0.0
    if self.objective.feedback_loss in ("ml", "both"):
      total += weighted_mean(
          losses.feedback_ml_loss(latent.family, eta, fb_k, labels, **kw),
          weights)
    if self.objective.feedback_loss in ("discriminative", "both"):
      total += weighted_mean(
          losses.feedback_discriminative_loss(
              latent.family, eta, fb_k, labels,
              temperature=self._temperature(k, eta),
              chunk_size=self.objective.chunk_size, **kw), weights)
    return total

  @functools.cache
  def feedback_grad(self, k: int):
    """Jitted `(grad_phi L^fb_k, L^fb_k)` of hidden block `k` alone.

    The feedback loss is a sum over blocks, so its gradient is the sum of
    these; a pipeline computes each where its block lives (no natural
    parameters travel) and only the small gradients meet.
    """
    if self.recipe is not None or self.feedback_mode == "bootstrapped":
      raise ValueError("per-block feedback gradients need the principled "
                       "losses and a feedback that is not bootstrapped")

    def grad(fb_params, eta, labels, weights):
      def loss_fn(params):
        fb = self.feedback_forward(params, None)
        return self._feedback_term(k, eta, fb[k], labels, weights)
      loss, grads = jax.value_and_grad(loss_fn)(fb_params)
      return grads, loss

    return jax.jit(grad)

  @functools.cached_property
  def feedback_apply(self):
    """Jitted optax update of the feedback from summed gradients."""
    return jax.jit(
        lambda state, grads: self._update(self.feedback_tx, state, grads, {}))

  def _update(self, tx, state: BlockState, grads, batch_stats) -> BlockState:
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return BlockState(optax.apply_updates(state.params, updates), batch_stats,
                      opt_state)

  # ------------------------------------------------------- per-block steps

  @functools.cache
  def block_step(self, k: int):
    """The jitted update of block `k` alone (see the module docstring)."""

    def step(state: BlockState, h_in, fb_k, labels, weights, key):
      def loss_fn(params):
        return self._block_loss(k, params, state.batch_stats, sg(h_in),
                                None if fb_k is None else sg(fb_k), labels,
                                weights, key)

      grads, (eta, h_out, stats, metrics) = jax.grad(
          loss_fn, has_aux=True)(state.params)
      return (self._block_update(state, grads, stats), sg(h_out), sg(eta),
              metrics)

    return jax.jit(step)

  @functools.cached_property
  def feedback_step(self):
    """The jitted update of the feedback network from detached `etas`.

    `labels`, `weights`: one array, or a tuple with one per hidden block.
    """

    def step(state: BlockState, etas, labels, weights):
      def loss_fn(fb_params):
        fb = self.feedback_forward(fb_params, etas)
        return self._feedback_objective(etas, fb, labels, weights)

      loss, grads = jax.value_and_grad(loss_fn)(state.params)
      return self._update(self.feedback_tx, state, grads, {}), {"loss": loss}

    return jax.jit(step)

  @functools.cached_property
  def forward_train(self):
    """Train-mode forward of all blocks (statistics not updated): the `etas`."""

    def forward(state: TrainState, inputs, key):
      h, etas = inputs, []
      for k, bs in enumerate(state.blocks):
        eta, h, _ = self._forward(k, bs.params, bs.batch_stats, h, True, key)
        etas.append(eta)
      return tuple(etas)

    return jax.jit(forward)

  def train_step_per_block(self, state: TrainState, batch, key):
    """One step as separate jitted calls: feedback, then blocks in turn.

    The same update as :meth:`train_step` (tested); this is the form whose
    calls can run on different devices.
    """
    labels, weights = batch["labels"], batch["weights"]
    fb = ()
    if self.feedback is not None:
      etas = None
      if self.feedback_mode == "bootstrapped":
        etas = self.forward_train(state, batch["inputs"], key)
      fb = self.feedback_forward(state.feedback.params, etas)
    h, new_blocks, etas, metrics = batch["inputs"], [], [], {}
    for k in range(self.num_blocks):
      fb_k = fb[k] if k < len(fb) else None
      block_state, h, eta, m = self.block_step(k)(state.blocks[k], h, fb_k,
                                                  labels, weights, key)
      new_blocks.append(block_state)
      etas.append(eta)
      metrics.update({f"block{k}/{n}": v for n, v in m.items()})
    fb_state = state.feedback
    if self.trains_feedback:
      fb_state, m = self.feedback_step(state.feedback, tuple(etas), labels,
                                       weights)
      metrics["feedback/loss"] = m["loss"]
    return TrainState(state.step + 1, tuple(new_blocks), fb_state), metrics

  # ---------------------------------------------------------- fused steps

  def local_losses(self, params, fb_params, batch_stats, batch, key):
    """Every block's loss and the feedback loss, from the full parameters.

    Returns `(block_losses, feedback_loss, aux)`. Each block's loss depends
    on its own parameters only; the feedback loss on the feedback's only.
    """
    labels, weights = batch["labels"], batch["weights"]
    if self.recipe is not None:
      return self._recipe_losses(params, fb_params, batch_stats, batch, key)
    h, etas, stats = batch["inputs"], [], []
    for k in range(self.num_blocks):
      eta, h, st = self._forward(k, params[k], batch_stats[k], sg(h), True, key)
      etas.append(eta)
      stats.append(st)
    fb = self.feedback_forward(fb_params, etas)
    block_losses, metrics = [], {}
    for k in range(self.num_blocks):
      fb_k = fb[k] if k < len(fb) else None
      loss, m = self._block_objective(k, etas[k], fb_k, labels, weights)
      block_losses.append(loss)
      metrics.update({f"block{k}/{n}": v for n, v in m.items()})
    fb_loss = jnp.zeros(())
    if self.trains_feedback:
      fb_loss = self._feedback_objective(etas, fb, labels, weights)
      metrics["feedback/loss"] = fb_loss
    return tuple(block_losses), fb_loss, (tuple(stats), metrics)

  def _recipe_losses(self, params, fb_params, batch_stats, batch, key):
    """`local_losses` for a recipe: each block's loss from its input."""
    labels, weights = batch["labels"], batch["weights"]
    fb = self.feedback_forward(fb_params, None)
    h, etas, stats, block_losses, metrics = batch["inputs"], [], [], [], {}
    for k in range(self.num_blocks):
      fb_k = sg(fb[k]) if k < len(fb) else None
      loss, (eta, h, st, m) = self._block_loss(
          k, params[k], batch_stats[k], sg(h), fb_k, labels, weights, key)
      etas.append(eta)
      stats.append(st)
      block_losses.append(loss)
      metrics.update({f"block{k}/{n}": v for n, v in m.items()})
    fb_loss = self._feedback_objective(etas, fb, labels, weights)
    metrics["feedback/loss"] = fb_loss
    return tuple(block_losses), fb_loss, (tuple(stats), metrics)

  @functools.cached_property
  def train_step(self):
    """One jitted step of the whole method (`bll` or `bp`)."""
    return jax.jit(self._bll_step if self.method == "bll" else self._bp_step)

  def _bll_step(self, state: TrainState, batch, key):
    def total(params, fb_params):
      block_losses, fb_loss, aux = self.local_losses(
          params, fb_params, [b.batch_stats for b in state.blocks], batch, key)
      return sum(block_losses) + fb_loss, aux

    params = tuple(b.params for b in state.blocks)
    (grads, fb_grads), (stats, metrics) = jax.grad(
        total, argnums=(0, 1), has_aux=True)(params, state.feedback.params)
    blocks = tuple(self._block_update(b, g, s)
                   for b, g, s in zip(state.blocks, grads, stats))
    fb_state = state.feedback
    if self.trains_feedback:
      fb_state = self._update(self.feedback_tx, fb_state, fb_grads, {})
    return TrainState(state.step + 1, blocks, fb_state), metrics

  def bp_logits(self, params, batch_stats, inputs, train, key):
    """The composed network, differentiable end to end (no stop-gradient)."""
    h, stats = inputs, []
    for k in range(self.num_blocks):
      eta, h, st = self._forward(k, params[k], batch_stats[k], h, train, key)
      stats.append(st)
    return eta, tuple(stats)

  def _bp_step(self, state: TrainState, batch, key):
    def loss_fn(params):
      logits, stats = self.bp_logits(params,
                                     [b.batch_stats for b in state.blocks],
                                     batch["inputs"], True, key)
      per_example = task_loss(logits, batch["labels"],
                              self.objective.label_smoothing)
      loss = weighted_mean(per_example, batch["weights"])
      correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
      k = self.num_blocks - 1
      return loss, (stats, {f"block{k}/loss": loss,
                            f"block{k}/accuracy": weighted_mean(
                                correct, batch["weights"])})

    params = tuple(b.params for b in state.blocks)
    grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(params)
    blocks = tuple(self._update(self.tx, b, g, s)
                   for b, g, s in zip(state.blocks, grads, stats))
    return TrainState(state.step + 1, blocks, state.feedback), metrics

  # ----------------------------------------------------------- evaluation

  @functools.cached_property
  def predict(self):
    """Jitted eval-mode forward: `(logits, per-block local logits)`.

    Hidden blocks' local logits are those of `q(y | alpha_k)`; they are
    `None` for `bp` (no feedback network).
    """

    def predict(state: TrainState, inputs):
      h, etas = inputs, []
      for k, bs in enumerate(state.blocks):
        eta, h, _ = self._forward(k, bs.params, bs.batch_stats, h, False, None)
        etas.append(eta)
      local = [None] * (self.num_blocks - 1)
      if self.recipe is not None:       # the auxiliary classifiers
        h, local = inputs, []
        for k, bs in enumerate(state.blocks[:-1]):
          _, h, _, aux = self.forward_with_aux(k, bs.params, bs.batch_stats,
                                               h, False, None)
          local.append(aux)
      elif self.feedback is not None:
        fb = self.feedback_forward(state.feedback.params, etas)
        local = [losses.local_logits(
            lat.family, etas[k], fb[k], temperature=self._temperature(k, etas[k]),
            chunk_size=self.objective.chunk_size,
            position_ndim=lat.position_ndim)
                 for k, lat in enumerate(self.latents)]
      return etas[-1], tuple(local)

    return jax.jit(predict)

  @functools.cached_property
  def eval_step(self):
    """Jitted sums over a batch: output loss, correct counts per block."""

    def evaluate(state: TrainState, batch):
      logits, local = self.predict(state, batch["inputs"])
      labels, weights = batch["labels"], batch["weights"]
      per_example = task_loss(logits, labels, 0.0)
      correct = [jnp.sum((jnp.argmax(l, -1) == labels) * weights)
                 if l is not None else jnp.full((), jnp.nan)
                 for l in local + (logits,)]
      return {"loss": jnp.sum(per_example * weights),
              "correct": jnp.stack(correct),
              "weight": jnp.sum(weights)}

    return jax.jit(evaluate)
