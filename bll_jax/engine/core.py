"""The engine: a network cut into blocks, its losses and its updates.

:class:`Engine` composes a :class:`~bll_jax.engine.network.Network` (the
blocks and the feedback network), an
:class:`~bll_jax.engine.objective.Objective` (loss settings), a loss recipe
(:class:`~bll_jax.engine.objective.BlockLocalLosses` unless another is
handed in) and the optax transformations, and compiles the steps of
:mod:`bll_jax.engine.steps` and :mod:`bll_jax.engine.predict` on first use.
Compiled programs are kept on the engine itself: they go when it goes.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from bll_jax import blocks as blocks_lib
from bll_jax import feedback as feedback_lib
from bll_jax.engine import objective as objective_lib
from bll_jax.engine import predict as predict_lib
from bll_jax.engine import steps as steps_lib
from bll_jax.engine.network import BlockOutput
from bll_jax.engine.network import Network
from bll_jax.engine.state import BlockState
from bll_jax.engine.state import TrainState
from bll_jax.engine.state import apply_update
from bll_jax.models import base

Array = jax.Array

METHODS = ("bll", "bp")


class Engine:
  """A network cut into blocks, its feedback network and their updates.

  Args:
    stack: the network as units.
    edges: block boundaries, see :func:`bll_jax.blocks.boundaries`.
    latents: one :class:`~bll_jax.blocks.Latent` per hidden block.
    method: "bll" (block-local) or "bp" (end-to-end backprop through the
      same composed network).
    feedback_mode: one of :data:`bll_jax.feedback.MODES`.
    num_classes: classes (or vocabulary size).
    input_shape, input_dtype: one example's input.
    tx: the optax transformation each block is updated with; every block
      holds its own state.
    feedback_tx: the feedback network's transformation (default `tx`).
    objective: loss settings.
    feedback_init_scale, onehot_scale: see :class:`~bll_jax.feedback.Feedback`.
    recipe: the losses (a :class:`~bll_jax.engine.objective.LossRecipe`;
      default :class:`~bll_jax.engine.objective.BlockLocalLosses`).
  """

  def __init__(self, stack: base.LayerStack, edges: Sequence[int],
               latents: Sequence[blocks_lib.Latent], *, method: str,
               feedback_mode: str, num_classes: int,
               input_shape: tuple[int, ...], input_dtype: Any,
               tx: optax.GradientTransformation,
               feedback_tx: optax.GradientTransformation | None = None,
               objective: objective_lib.Objective = objective_lib.Objective(),
               feedback_init_scale: float = 1.0,
               onehot_scale: float = 30.0,
               recipe: objective_lib.LossRecipe | None = None):
    if method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if feedback_mode not in feedback_lib.MODES:
      raise ValueError(f"feedback must be one of {feedback_lib.MODES}, got "
                       f"{feedback_mode!r}")
    self.method = method
    self.feedback_mode = feedback_mode
    self.num_classes = num_classes
    self.objective = objective
    self.recipe = recipe if recipe is not None else (
        objective_lib.BlockLocalLosses())
    self.network = Network(
        stack, edges, latents, num_classes=num_classes,
        input_shape=input_shape, input_dtype=input_dtype,
        feedback_mode=feedback_mode if method == "bll" else None,
        feedback_init_scale=feedback_init_scale, onehot_scale=onehot_scale,
        aux_classes=self.recipe.auxiliary_classes(num_classes),
        targets=len(objective.target_offsets))
    if (isinstance(objective.temperature, tuple)
        and len(objective.temperature) != len(self.latents)):
      raise ValueError(f"temperature has {len(objective.temperature)} "
                       f"values; give one per hidden block "
                       f"({len(self.latents)})")
    self.recipe.check(self)
    if objective.accumulate_evidence and (
        method != "bll"
        or not isinstance(self.recipe, objective_lib.BlockLocalLosses)):
      raise ValueError("accumulate_evidence chains the block-local "
                       "predictions of the principled losses: method bll "
                       "without a recipe")
    self.tx = tx
    self.block_tx = self.recipe.block_tx(tx)
    self.feedback_tx = feedback_tx or tx
    self._compiled: dict[Any, Callable] = {}

  # ------------------------------------------------------------- structure

  @property
  def num_blocks(self) -> int:
    return self.network.num_blocks

  @property
  def blocks(self):
    return self.network.blocks

  @property
  def latents(self) -> tuple[blocks_lib.Latent, ...]:
    return self.network.latents

  @property
  def eta_shapes(self) -> tuple[tuple[int, ...], ...]:
    return self.network.eta_shapes

  @property
  def edges(self) -> tuple[int, ...]:
    return self.network.edges

  @property
  def feedback(self):
    """The feedback network (a flax module), or `None` (backprop, or a
    network of one block)."""
    return self.network.feedback

  @property
  def token_targets(self) -> bool:
    return self.network.token_targets

  @property
  def input_shape(self) -> tuple[int, ...]:
    return self.network.input_shape

  @property
  def input_dtype(self):
    return self.network.input_dtype

  @property
  def trains_feedback(self) -> bool:
    return (self.feedback is not None
            and self.feedback_mode in feedback_lib.TRAINABLE_MODES)

  def init(self, key: Array, sample_inputs: Array) -> TrainState:
    """Parameters, BatchNorm statistics and optimiser states of every block."""
    variables, fb_params = self.network.init(key, sample_inputs)
    blocks = tuple(BlockState(v["params"], v.get("batch_stats", {}),
                              self.block_tx.init(v["params"]))
                   for v in variables)
    feedback = BlockState(fb_params, {}, self.feedback_tx.init(fb_params))
    return TrainState(jnp.zeros((), jnp.int32), blocks, feedback)

  # ------------------------------------------------------ pure pieces

  def block_forward(self, k: int, params, batch_stats, h: Array, train: bool,
                    key: Array | None, rng_index=None) -> BlockOutput:
    """Block `k` on `h`: :meth:`bll_jax.engine.network.Network.block_forward`."""
    return self.network.block_forward(k, params, batch_stats, h, train, key,
                                      rng_index)

  def forward(self, params, batch_stats, inputs: Array, train: bool,
              key: Array | None, *, detach: bool = False,
              blocks: Sequence[int] | None = None
              ) -> tuple[BlockOutput, ...]:
    """Blocks in turn: :meth:`bll_jax.engine.network.Network.forward`."""
    return self.network.forward(params, batch_stats, inputs, train, key,
                                detach=detach, blocks=blocks)

  def feedback_forward(self, fb_params, etas) -> tuple[Array, ...]:
    """`b_k` of every hidden block (empty without a feedback network)."""
    return self.network.feedback_forward(fb_params, etas)

  def next_token_feedback(self, fb_k: Array) -> Array:
    """The rows of `b_k` scoring the next target: the first of its tables
    (one per :attr:`~bll_jax.engine.objective.Objective.target_offsets`),
    `fb_k` itself when there is one."""
    return fb_k[..., :self.num_classes, :]

  def block_temperature(self, k: int) -> float:
    """Hidden block `k`'s `T`: the objective's one value or its `k`th."""
    temperature = self.objective.temperature
    return temperature[k] if isinstance(temperature, tuple) else temperature

  def position_scale(self, k: int, eta: Array) -> int:
    """What block `k`'s summed scores are divided by besides `T`: its
    positions (or grid cells) when they are averaged, else 1."""
    if not self.objective.position_average:
      return 1
    return self.network.positions(k, eta)

  def score_temperature(self, k: int, eta: Array) -> float:
    """Block `k`'s score temperature: its `T` times its position scale."""
    return self.block_temperature(k) * self.position_scale(k, eta)

  def local_losses(self, params, fb_params, batch_stats, batch, key):
    """:func:`bll_jax.engine.steps.local_losses` of this engine."""
    return steps_lib.local_losses(self, params, fb_params, batch_stats, batch,
                                  key)

  def bp_logits(self, params, batch_stats, inputs, train, key):
    """:func:`bll_jax.engine.steps.bp_logits` of this engine."""
    return steps_lib.bp_logits(self, params, batch_stats, inputs, train, key)

  # ----------------------------------------------------- compiled steps

  def jit(self, name, build: Callable[[], Callable], **jit_kwargs
          ) -> Callable:
    """`jax.jit(build(), **jit_kwargs)`, built once per `name` and kept on
    the engine, so that compiled programs go when the engine goes (programs
    built on the engine elsewhere, e.g. evaluation's greedy decoder, use it
    too)."""
    if name not in self._compiled:
      self._compiled[name] = jax.jit(build(), **jit_kwargs)
    return self._compiled[name]

  def block_step(self, k: int, donate: bool = False) -> Callable:
    """Jitted :func:`bll_jax.engine.steps.block_step` of block `k`; with
    `donate`, the block's state is donated (its buffers become the new
    state's: the caller must not read it again)."""
    return self.jit(("block_step", k, donate),
                    lambda: steps_lib.block_step(self, k),
                    donate_argnums=0 if donate else ())

  def blocks_step(self, blocks: Sequence[int],
                  step_of: Callable | None = None) -> Callable:
    """:func:`bll_jax.engine.steps.blocks_step` of consecutive `blocks`,
    not jitted: a runner jits it together with its part of the feedback
    (one program per stage per tick) and chooses what it donates."""
    return steps_lib.blocks_step(self, tuple(blocks), step_of)

  def feedback_grad_fn(self, k: int) -> Callable:
    """:func:`bll_jax.engine.steps.feedback_grad` of hidden block `k`, not
    jitted (to compose into a stage's program)."""
    return steps_lib.feedback_grad(self, k)

  @property
  def feedback_step(self) -> Callable:
    """Jitted :func:`bll_jax.engine.steps.feedback_step`."""
    return self.jit("feedback_step", lambda: steps_lib.feedback_step(self))

  def feedback_grad(self, k: int) -> Callable:
    """Jitted :func:`bll_jax.engine.steps.feedback_grad` of hidden block `k`."""
    return self.jit(("feedback_grad", k),
                     lambda: steps_lib.feedback_grad(self, k))

  @property
  def compiled_feedback_forward(self) -> Callable:
    """Jitted :meth:`feedback_forward`: `(fb_params, etas) -> b_k`s."""
    return self.jit("feedback_forward", lambda: self.feedback_forward)

  @property
  def feedback_apply(self) -> Callable:
    """Jitted optax update of the feedback from summed gradients."""
    return self.jit("feedback_apply", lambda: (
        lambda state, grads: apply_update(self.feedback_tx, state, grads, {})))

  @property
  def forward_train(self) -> Callable:
    """Jitted train-mode forward of all blocks (statistics not kept):
    `(state, inputs, key) -> etas`."""
    def build():
      def forward(state: TrainState, inputs, key):
        outs = self.forward([b.params for b in state.blocks],
                            [b.batch_stats for b in state.blocks], inputs,
                            True, key)
        return tuple(out.eta for out in outs)
      return forward
    return self.jit("forward_train", build)

  @property
  def train_step(self) -> Callable:
    """One jitted step of the whole method (`bll` or `bp`)."""
    return self.jit("train_step", lambda: (
        steps_lib.bll_step(self) if self.method == "bll"
        else steps_lib.bp_step(self)))

  @property
  def predict(self) -> Callable:
    """Jitted :func:`bll_jax.engine.predict.predict`."""
    return self.jit("predict", lambda: predict_lib.predict(self))

  @property
  def eval_step(self) -> Callable:
    """Jitted :func:`bll_jax.engine.predict.eval_step`."""
    return self.jit("eval_step", lambda: predict_lib.eval_step(self))
