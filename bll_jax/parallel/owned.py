r"""The feedback network owned by the stages: no all-reduce, no replica.

In the feedback modes whose layers each learn from their own block's loss
alone (`direct` and `chained_local`, :data:`bll_jax.feedback.LOCAL_MODES`),
the gradient of `L^fb_k` reaches block `k`'s layer (`table_k` or `g_k`) and
nothing else. So stage `s` owns the layers of its hidden blocks `K_s`, their
optax state and its *inbox* `m_s`: the message `b_{max K_s + 1}` of the
first hidden block of the stage above (`chained_local` only; the stage of
the top hidden block needs none). At tick `t`:

.. math::

   b_k &= g_k(\phi_s^t;\ \ldots g_{\max K_s}(\phi_s^t; m_s^t))
          \quad k \in K_s \qquad\text{(`feedback.stage_messages`)} \\
   \phi_s^{t+1} &= \phi_s^t + \mathrm{tx.update}\Big(\textstyle
          \sum_{k \in K_s \text{ active at } t} \nabla_{\phi_s} L^{fb}_k\Big)
          \quad\text{(zero gradient while the stage idles)} \\
   m_{s-1}^{t+1} &= b_{\min K_s}(\phi_s^{t+1};\ m_s^t)
          \quad\text{(sent one stage down)}

Per tick a stage sends its activations up and one `[classes, P]` table
down, and nothing else crosses stages.

Staleness, exactly: block `k` of stage `s` sees the layers of its own stage
and of stage `s + 1` as they are at tick `t` (after `t` updates), and the
layers of stage `s + j` as they were `j - 1` ticks earlier. With two stages
nothing is stale, and the run equals the replicated feedback's (lag 0)
whenever the feedback's optax transformation acts leaf by leaf (Adam, SGD;
not a global-norm clipping, which would see only the stage's own leaves).
In every tick in which some hidden block works, every stage that owns
layers applies its update, also where it idles (the pipeline's fill and
drain): the optax step count is the same on every stage and the same as
the replicated feedback's (which updates in exactly those ticks).

At the start of a stream every stage takes its layers from the feedback's
state (one broadcast) and its inbox from the whole chain at that state; at
the end the stages' layers are summed back into one state (one all-reduce,
per stream, not per tick). Leaves of no layer (an optax step count) are
kept by every stage and taken from stage 0's.

The pure functions (:func:`split`, :func:`messages`, :func:`update`,
:func:`merge`) act on one stage's trees wherever they are; the reference
(:mod:`bll_jax.parallel.reference`) runs them on one device, and
:class:`OwnedFeedback` on the stages of a mesh.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from bll_jax import feedback as feedback_lib
from bll_jax.engine import BlockState
from bll_jax.engine import apply_update


def applies(engine, feedback_lag: int = 0) -> bool:
  """Whether the stages own the feedback: a trained feedback of a local
  mode, without a lag (a lag reads old versions of the whole network)."""
  return (engine.trains_feedback and feedback_lag == 0
          and engine.feedback_mode in feedback_lib.LOCAL_MODES)


def hidden_blocks(engine, stage_blocks: Sequence[Sequence[int]]
                  ) -> list[tuple[int, ...]]:
  """`K_s`: the hidden blocks of every stage."""
  hidden = engine.num_blocks - 1
  return [tuple(k for k in blocks if k < hidden) for blocks in stage_blocks]


def needs_inbox(engine, ks: Sequence[int]) -> bool:
  """Whether a stage with hidden blocks `ks` chains from a message."""
  return (engine.feedback_mode == "chained_local" and bool(ks)
          and max(ks) < engine.num_blocks - 2)


def sends_message(engine, s: int, ks: Sequence[int]) -> bool:
  """Whether stage `s` sends `b_{min K_s}` to the stage below."""
  return engine.feedback_mode == "chained_local" and s > 0 and bool(ks)


def _owned(path, ks, shared: bool) -> bool:
  layer = feedback_lib.layer_of(path)
  return shared if layer is None else layer in ks


def _restrict(tree, ks, shared: bool):
  """`tree` with every leaf not owned by `ks` replaced by `None`."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x if _owned(path, ks, shared) else None, tree)


def split(engine, state: BlockState, ks: Sequence[int]):
  """`(stage state, inbox)` of the stage owning `ks`, from the whole
  feedback's state: its layers and their optax state (the other leaves
  `None`), and the message it chains from (`None` where it needs none)."""
  inbox = None
  if needs_inbox(engine, ks):
    inbox = engine.feedback_forward(state.params, None)[max(ks) + 1]
  return BlockState(_restrict(state.params, ks, True), {},
                    _restrict(state.opt_state, ks, True)), inbox


def messages(engine, params, ks: Sequence[int], inbox) -> tuple:
  """`b_k` of every `k` in `ks`, in order (see the module docstring)."""
  out = feedback_lib.stage_messages(engine.feedback, params, ks, inbox)
  return tuple(out[k] for k in ks)


def update(engine, s: int, ks: Sequence[int], active: Sequence[int],
           state: BlockState, inbox, etas, labels, weights):
  """One tick's update of stage `s`'s layers.

  Args:
    engine: the engine.
    s, ks: the stage and its hidden blocks.
    active: the hidden blocks that worked in this tick (empty while the
      stage idles: the update then applies a zero gradient).
    state, inbox: the stage's state and inbox.
    etas: the natural parameters of each of `active`, detached.
    labels, weights: the micro-batch the stage worked on (ignored idle).

  Returns:
    `(state, losses, message)`: the updated state, `L^fb_k` of each of
    `active` (`[len(active)]`) and the message sent down (`None` where the
    stage sends none).
  """

  def loss_fn(params):
    fb = feedback_lib.stage_messages(engine.feedback, params, ks, inbox)
    terms = [engine.recipe.feedback_term(engine, k, eta, fb[k], labels,
                                         weights)
             for k, eta in zip(active, etas)]
    return sum(terms), jnp.stack(terms)

  if active:
    grads, losses = jax.grad(loss_fn, has_aux=True)(state.params)
  else:
    grads = jax.tree.map(jnp.zeros_like, state.params)
    losses = jnp.zeros((0,), jnp.float32)
  state = apply_update(engine.feedback_tx, state, grads, {})
  message = None
  if sends_message(engine, s, ks):
    message = messages(engine, state.params, ks, inbox)[0]
  return state, losses, message


def merge(template, state: BlockState, ks: Sequence[int], shared: bool):
  """Stage state -> the whole feedback's state shaped like `template`, with
  zeros in every leaf the stage does not own (and in the shared leaves
  unless `shared`): summing every stage's gives the whole state."""
  owned = {jax.tree_util.keystr(path): leaf for path, leaf in
           jax.tree_util.tree_flatten_with_path(state)[0]}

  def leaf(path, like):
    if _owned(path, ks, shared):
      return owned[jax.tree_util.keystr(path)]
    return jnp.zeros(like.shape, like.dtype)

  return jax.tree_util.tree_map_with_path(leaf, template)


class OwnedFeedback:
  """The feedback's layers on their stages of a mesh (see module docstring).

  Args:
    engine: the engine (a trained feedback of a local mode).
    stage_blocks: the blocks of every stage.
    replicas: the mesh's :class:`~bll_jax.parallel.replicas.FeedbackReplicas`
      (its broadcast and stage sum start and end a stream).
    transfer: the mesh's :class:`~bll_jax.parallel.transfer.StageTransfer`.
  """

  def __init__(self, engine, stage_blocks, replicas, transfer):
    self.engine = engine
    self.ks = hidden_blocks(engine, stage_blocks)
    self.replicas = replicas
    self.transfer = transfer
    self.states: dict[int, BlockState] = {}
    self.inbox: dict[int, Any] = {}
    self._outbox: dict[int, jax.Array] = {}
    self._template = None

  @property
  def stages(self) -> list[int]:
    """The stages that own layers."""
    return [s for s, ks in enumerate(self.ks) if ks]

  @functools.cache
  def _split(self, s: int):
    return jax.jit(functools.partial(split, self.engine, ks=self.ks[s]))

  @functools.cache
  def _messages(self, s: int):
    return jax.jit(functools.partial(messages, self.engine, ks=self.ks[s]))

  @functools.cache
  def _update(self, s: int, active: tuple[int, ...]):
    return jax.jit(functools.partial(update, self.engine, s, self.ks[s],
                                     active))

  @functools.cache
  def _merge(self, s: int):
    def part(state):
      whole = merge(self._template, state, self.ks[s], shared=s == 0)
      return jax.tree.map(lambda x: x[None], whole)
    return jax.jit(part)

  def start(self, state: BlockState) -> None:
    """Every stage takes its layers and inbox from the feedback's `state`
    (replicated on stage 0); every process calls it."""
    self._template = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    whole = self.replicas.broadcast(state)
    for s in self.stages:
      self.states[s], self.inbox[s] = self._split(s)(
          self.replicas.view(whole, s))

  def messages(self, s: int) -> dict[int, jax.Array]:
    """`b_k` of stage `s`'s hidden blocks, on its devices."""
    out = self._messages(s)(self.states[s].params, inbox=self.inbox[s])
    return dict(zip(self.ks[s], out))

  def update(self, s: int, active: Sequence[int], etas=(), labels=None,
             weights=None) -> jax.Array:
    """Stage `s`'s update of this tick (`active` empty while it idles);
    returns the `[len(active)]` losses, on its devices."""
    state, losses, message = self._update(s, tuple(active))(
        self.states[s], self.inbox[s], tuple(etas), labels, weights)
    self.worked(s, state, message)
    return losses

  def worked(self, s: int, state: BlockState, message) -> None:
    """Keeps stage `s`'s updated state and the message it sends down, from
    :meth:`update` or from the stage's own program
    (:mod:`bll_jax.parallel.stage`)."""
    self.states[s] = state
    if message is not None:
      self._outbox[s] = message

  def send(self) -> None:
    """Every message of the tick one stage down (every process calls it,
    after every stage's update)."""
    for s in sorted(self._outbox):
      self.inbox[s - 1] = self.transfer.move_replicated(
          self._outbox.pop(s), s, s - 1)

  def arrays(self) -> list:
    """What a tick leaves behind (for waiting on it)."""
    return [self.states, self.inbox]

  def finish(self) -> BlockState:
    """The whole feedback's state, replicated on stage 0's devices."""
    parts = []
    for s in range(len(self.ks)):
      if self.ks[s]:
        parts.append(self._merge(s)(self.states[s]))
      else:
        parts.append(self.replicas.zeros(s, self._template))
    whole = self.replicas.sum(parts)
    self.states, self.inbox = {}, {}
    return self.replicas.view(whole, 0)
