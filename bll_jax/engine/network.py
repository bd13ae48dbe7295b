r"""The block walker: a network cut into blocks, and its feedback network.

A :class:`Network` is the structure of a run and nothing else (no losses, no
optimiser): the blocks `f_k` of a :class:`~bll_jax.models.LayerStack` cut at
`edges`, the latent of every hidden block, and the feedback network `g`.
Every walk over the blocks in the library goes through it:

* :meth:`Network.block_forward` -- one block, `a_k = f_k(h_{k-1}; theta_k)`;
* :meth:`Network.forward` -- blocks in turn, `h_k` of one the input of the
  next, with their inputs detached (block-local) or not (backprop);
* :meth:`Network.feedback_forward` -- `b_k` of every hidden block.

A block's random streams (dropout, sampled latents) are
`fold_in(key, 2 k)` and `fold_in(key, 2 k + 1)` of the step's key, whichever
path runs the block, so every path draws the same masks and samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Sequence

import jax

from bll_jax import blocks as blocks_lib
from bll_jax import feedback as feedback_lib
from bll_jax import pooling
from bll_jax.models import base

Array = jax.Array
sg = jax.lax.stop_gradient


class BlockOutput(NamedTuple):
  """What one block's forward pass gives.

  Attributes:
    eta: the natural parameters `a_k` of its latent (the logits for the
      output block).
    h_out: what the next block receives (`mu(a_k)`, or a sample).
    batch_stats: its BatchNorm statistics after the pass (updated in
      training, the given ones otherwise).
    aux: the logits of its auxiliary classifier, for blocks built with one
      (`aux_classes`), else `None`.
  """

  eta: Array
  h_out: Array
  batch_stats: Any
  aux: Array | None


def block_keys(key: Array, index) -> dict[str, Array]:
  """The random streams of block `index` (a Python or traced integer)."""
  return {"dropout": jax.random.fold_in(key, 2 * index),
          "latent": jax.random.fold_in(key, 2 * index + 1)}


class Network:
  """A layer stack cut into blocks, with the feedback network of its method.

  Args:
    stack: the network as units.
    edges: block boundaries (:func:`bll_jax.blocks.boundaries`).
    latents: one :class:`~bll_jax.blocks.Latent` per hidden block (their
      `position_ndim` is filled in here).
    num_classes: classes (or vocabulary size).
    input_shape, input_dtype: one example's input.
    feedback_mode: one of :data:`bll_jax.feedback.MODES`, or `None` for no
      feedback network (backprop).
    feedback_init_scale, onehot_scale: see :class:`~bll_jax.feedback.Feedback`.
    aux_classes: give every hidden block an auxiliary classifier with this
      many classes (0: none).
    targets: targets per position (token targets): the feedback holds one
      table of `num_classes` rows per target, `[targets * num_classes, P]`
      (:attr:`~bll_jax.engine.objective.Objective.target_offsets`).
  """

  def __init__(self, stack: base.LayerStack, edges: Sequence[int],
               latents: Sequence[blocks_lib.Latent], *, num_classes: int,
               input_shape: Sequence[int], input_dtype: Any,
               feedback_mode: str | None = None,
               feedback_init_scale: float = 1.0, onehot_scale: float = 30.0,
               aux_classes: int = 0, targets: int = 1):
    if feedback_mode is not None and feedback_mode not in feedback_lib.MODES:
      raise ValueError(f"feedback must be one of {feedback_lib.MODES}, got "
                       f"{feedback_mode!r}")
    self.stack = stack
    self.edges = tuple(edges)
    self.num_classes = num_classes
    self.token_targets = stack.token_targets
    if targets > 1 and not self.token_targets:
      raise ValueError(f"{targets} targets per position (horizon, history) "
                       "score a position against the tokens around it: "
                       "they need token targets (a Transformer on "
                       "sequences); use horizon 1 and history 0")
    self.input_shape, self.input_dtype = tuple(input_shape), input_dtype
    self.latents = tuple(
        dataclasses.replace(lat, position_ndim=blocks_lib.latent_position_ndim(
            stack, edges, k, lat)) for k, lat in enumerate(latents))
    self.cells = tuple(blocks_lib.latent_cells(stack, edges, k, lat)
                       for k, lat in enumerate(latents))
    self.blocks = blocks_lib.make_blocks(stack, edges, self.latents,
                                         aux_classes=aux_classes)
    self.has_aux = bool(aux_classes) and len(self.blocks) > 1
    self.eta_shapes = self._eta_shapes()
    hidden = len(self.blocks) - 1
    self.feedback_mode = feedback_mode
    self.feedback = None
    if feedback_mode is not None and hidden:
      sizes = tuple(s[-1] for s in self.eta_shapes[:hidden])
      self.feedback = feedback_lib.Feedback(
          feedback_mode, num_classes * targets, self.latents, sizes,
          feedback_init_scale, onehot_scale)

  @property
  def num_blocks(self) -> int:
    return len(self.blocks)

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

  # ------------------------------------------------------------ the walk

  def init(self, key: Array, sample_inputs: Array
           ) -> tuple[tuple[dict, ...], Any]:
    """Every block's variables and the feedback's parameters.

    Block `k` is initialised from `split(key, K + 1)[k]` on the output of
    the blocks before it, the feedback from the last key.

    Returns:
      `(variables, feedback_params)`: one flax variable dict per block
      (`params`, and `batch_stats` where it has BatchNorm).
    """
    keys = jax.random.split(key, self.num_blocks + 1)
    h, variables, etas = sample_inputs, [], []
    for k, block in enumerate(self.blocks):
      v = block.init({"params": keys[k], "latent": keys[k]}, h)
      eta, h = block.apply(v, h, rngs={"latent": keys[k]})
      etas.append(eta)
      variables.append(v)
    fb_params = {}
    if self.feedback is not None:
      fb_params = self.feedback.init(keys[-1], self.above(etas)).get(
          "params", {})
    return tuple(variables), fb_params

  def block_forward(self, k: int, params, batch_stats, h: Array, train: bool,
                    key: Array | None, rng_index=None) -> BlockOutput:
    """Block `k` on its input `h`.

    Args:
      k: the block.
      params, batch_stats: its parameters and BatchNorm statistics.
      h: its input (the caller detaches it where no gradient may cross).
      train: training mode (dropout, sampled latents, BatchNorm batch
        statistics, which are then returned updated).
      key: the step's key, or `None` (evaluation).
      rng_index: the index its random streams are folded from (default `k`;
        a traced index where one program runs several identical blocks).
    """
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    rngs = {} if key is None else block_keys(
        key, k if rng_index is None else rng_index)
    aux = self.has_aux and k < self.num_blocks - 1
    mutable = (["intermediates"] if aux else []) + (
        ["batch_stats"] if train and batch_stats else [])
    if not mutable:
      eta, h_out = self.blocks[k].apply(variables, h, train=train, rngs=rngs)
      return BlockOutput(eta, h_out, batch_stats, None)
    (eta, h_out), mutated = self.blocks[k].apply(
        variables, h, train=train, mutable=mutable, rngs=rngs)
    logits = (mutated["intermediates"]["aux_logits"][0] if aux else None)
    return BlockOutput(eta, h_out, mutated.get("batch_stats", batch_stats),
                       logits)

  def forward(self, params: Sequence[Any], batch_stats: Sequence[Any],
              inputs: Array, train: bool, key: Array | None, *,
              detach: bool = False, blocks: Sequence[int] | None = None
              ) -> tuple[BlockOutput, ...]:
    """Blocks in turn, each on the output of the one before.

    Args:
      params, batch_stats: per block of `blocks`, in order.
      inputs: the input of the first block of `blocks`.
      train, key: as :meth:`block_forward`.
      detach: stop the gradient at every block's input (block-local
        learning); `False` composes the blocks into one differentiable
        network (backprop).
      blocks: the blocks to run, consecutive (default: all).

    Returns:
      One :class:`BlockOutput` per block run.
    """
    blocks = range(self.num_blocks) if blocks is None else blocks
    h, outs = inputs, []
    for i, k in enumerate(blocks):
      out = self.block_forward(k, params[i], batch_stats[i],
                               sg(h) if detach else h, train, key)
      outs.append(out)
      h = out.h_out
    return tuple(outs)

  # ------------------------------------------------------------- feedback

  def above(self, etas: Sequence[Array]) -> tuple[Array, ...]:
    """For bootstrapping: block `k + 1`'s natural parameters, pooled over
    positions and detached, for every hidden block `k`."""
    hidden = self.num_blocks - 1
    out = []
    for k in range(hidden):
      above = etas[k + 1]
      if k + 1 < hidden:
        above = pooling.pool_positions(above,
                                       self.latents[k + 1].position_ndim)
      out.append(sg(above))
    return tuple(out)

  def feedback_forward(self, fb_params, etas: Sequence[Array] | None
                       ) -> tuple[Array, ...]:
    """`b_k` of every hidden block (empty without a feedback network).

    `etas` (every block's natural parameters) are read by bootstrapped
    feedback only; the other modes take `None`.
    """
    if self.feedback is None:
      return ()
    above = self.above(etas) if self.feedback_mode == "bootstrapped" else None
    return self.feedback.apply({"params": fb_params}, above)

  # ---------------------------------------------------------- positions

  def positions(self, k: int, eta: Array) -> int:
    """How many terms hidden block `k`'s summed scores add up: its positions
    times the grid cells pooled into its natural parameters."""
    n = self.latents[k].position_ndim
    return math.prod(eta.shape[eta.ndim - 1 - n:eta.ndim - 1]) * self.cells[k]
