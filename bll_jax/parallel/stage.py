r"""A stage's tick: its blocks' steps and its part of the feedback's work,
as one program or as one program per block, its states donated.

In a tick, stage `s` runs the steps of its blocks `B_s` in turn
(:meth:`bll_jax.engine.Engine.blocks_step`) and its part of the feedback's
work, which depends on who holds the feedback (the stage's *kind*):

* ``"owned"`` (:mod:`bll_jax.parallel.owned`): the stage's messages `b_k`
  from its own layers and inbox, its blocks' steps, then the update of its
  layers from its hidden blocks' losses and the message it sends down:
  `(states, fb_state, inbox, h, labels, weights, key) -> (states', h_out,
  metrics, fb_state', losses, message)`;
* ``"replicated"`` (:mod:`bll_jax.parallel.replicas`): the messages from
  the stage's replica `phi` of the whole feedback, the steps, then each
  hidden block's part `grad_phi L^fb_k` of the feedback's gradient, summed
  into the stage's row of the all-reduce
  (:func:`bll_jax.parallel.replicas.stage_part`):
  `(states, phi, etas, h, labels, weights, key) -> (states', h_out,
  metrics, part)` (`part` is `None` for a stage without hidden blocks;
  `etas`: every block's, bootstrapped feedback only, else `None`);
* ``"given"``: the messages are an input (a fixed feedback, or none):
  `(states, fb, h, labels, weights, key) -> (states', h_out, metrics)`.

Two forms compute the same numbers (tested):

* ``fused=True``: the whole tick is one compiled program, one dispatch a
  tick whatever the stage's number of blocks;
* ``fused=False``: every block's step is its own compiled program, and the
  feedback's work before and after them one each.

Which is faster is the compiler's business and was measured
(`python -m experiments.stage_program`, `docs/benchmarks.md`): on XLA:CPU
the fused program of two convolutional blocks runs 17% slower than the
blocks' own programs (its concurrency-oriented scheduler interleaves the
blocks' work), and saves nothing measurable on an MLP, whose gain comes
from donation alone; so :class:`MpmdRunner` fuses only off the CPU.

Either way the blocks' states (and an owning stage's feedback state) are
donated: the new states take their buffers, so a stage holds one copy of its
parameters and optimiser state, not two, and allocates none per tick. A
runner therefore must not read a state it has passed in
(:class:`~bll_jax.parallel.mpmd.MpmdRunner` copies the caller's state once
per stream, so that a call never consumes it).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from bll_jax.parallel import owned as owned_lib
from bll_jax.parallel import replicas as replicas_lib

KINDS = ("owned", "replicated", "given")


def _check(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def program(engine, s: int, blocks: Sequence[int], kind: str,
            fused: bool = True) -> Callable:
  """Stage `s`'s tick of `kind` (module docstring): with `fused`, one
  function to jit whole; else a Python function of compiled pieces, each
  block's step donating its state."""
  _check(kind)
  blocks = tuple(blocks)
  hidden = tuple(k for k in blocks if k < engine.num_blocks - 1)
  if fused:
    run = engine.blocks_step(blocks)
  else:
    run = engine.blocks_step(
        blocks, step_of=lambda k: engine.block_step(k, donate=True))

  def piece(f, donate=()):
    """A part of the tick: inlined in the fused program, else compiled."""
    return f if fused else jax.jit(f, donate_argnums=donate)

  if kind == "owned":
    messages = piece(lambda params, inbox: owned_lib.messages(
        engine, params, hidden, inbox))
    update = piece(lambda fb_state, inbox, etas, labels, weights:
                   owned_lib.update(engine, s, hidden, hidden, fb_state,
                                    inbox, etas, labels, weights),
                   donate=(0,))

    def tick(states, fb_state, inbox, h, labels, weights, key):
      fb = dict(zip(hidden, messages(fb_state.params, inbox)))
      states, h, etas, metrics = run(states, h, fb, labels, weights, key)
      fb_state, losses, message = update(fb_state, inbox, etas[:len(hidden)],
                                         labels, weights)
      return states, h, metrics, fb_state, losses, message
    return tick

  if kind == "replicated":
    forward = piece(engine.feedback_forward)

    def stage_part(phi, mine, labels, weights, etas):
      pairs = [engine.feedback_grad_fn(k)(phi, eta, labels, weights, etas)
               for k, eta in zip(hidden, mine)]
      return replicas_lib.stage_part(engine, hidden, pairs)
    stage_part = piece(stage_part)

    def tick(states, phi, etas, h, labels, weights, key):
      fb = forward(phi, etas)
      states, h, mine, metrics = run(states, h, fb, labels, weights, key)
      part = (stage_part(phi, mine[:len(hidden)], labels, weights, etas)
              if hidden else None)
      return states, h, metrics, part
    return tick

  def tick(states, fb, h, labels, weights, key):
    states, h, _, metrics = run(states, h, fb, labels, weights, key)
    return states, h, metrics
  return tick


class StageProgram:
  """The compiled :func:`program` of every stage of a plan, built on first
  use.

  Args:
    engine: the engine.
    stage_blocks: the blocks of every stage.
    kinds: every stage's kind, each one of :data:`KINDS`.
    fused: whether a stage's tick is one program (else one per block).
  """

  def __init__(self, engine, stage_blocks: Sequence[Sequence[int]],
               kinds: Sequence[str], fused: bool = True):
    if len(kinds) != len(stage_blocks):
      raise ValueError(f"{len(stage_blocks)} stages, {len(kinds)} kinds")
    for kind in kinds:
      _check(kind)
    self.engine, self.kinds, self.fused = engine, tuple(kinds), fused
    self.stage_blocks = [tuple(b) for b in stage_blocks]
    self._built: dict[int, Callable] = {}

  def __call__(self, s: int) -> Callable:
    """Stage `s`'s tick (its states, and an owning stage's feedback state,
    donated)."""
    if s not in self._built:
      kind = self.kinds[s]
      tick = program(self.engine, s, self.stage_blocks[s], kind, self.fused)
      self._built[s] = (jax.jit(tick, donate_argnums=(
          (0, 1) if kind == "owned" else (0,))) if self.fused else tick)
    return self._built[s]


@jax.jit
def copy(tree):
  """`tree` (one stage's arrays) copied where it lives: what a stream
  donates, so that the caller's arrays stay valid."""
  return jax.tree.map(jnp.copy, tree)
