"""What a block owns, and how an optax update changes it.

Block `k` owns its parameters, its BatchNorm statistics and its optax state
(:class:`BlockState`); so does the feedback network. A :class:`TrainState`
is every block's state, the feedback's and the step count. An update is
always :func:`apply_update`: one optax transformation, one state, one
gradient; nothing else is touched.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax


class BlockState(NamedTuple):
  """What one block (or the feedback network) owns."""

  params: Any
  batch_stats: Any
  opt_state: Any


class TrainState(NamedTuple):
  """The state of a whole run: the step count, every block, the feedback."""

  step: jax.Array
  blocks: tuple[BlockState, ...]
  feedback: BlockState


def apply_update(tx: optax.GradientTransformation, state: BlockState, grads,
                 batch_stats) -> BlockState:
  r"""`state` after one update of `tx` from `grads`, with new statistics.

  .. math::

     (u, s') = \mathrm{tx.update}(g, s, \theta), \qquad
     \theta' = \theta + u.

  Args:
    tx: the block's optax transformation (its own state is `state.opt_state`).
    state: the block's state before the update.
    grads: the gradient of the block's loss, shaped like `state.params`.
    batch_stats: the statistics to keep (those of the step's forward pass).
  """
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return BlockState(optax.apply_updates(state.params, updates), batch_stats,
                    opt_state)
