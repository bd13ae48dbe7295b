r"""Feedback networks: the backward information `b_k(y)`, with weights `phi_k`.

The feedback network produces, for every hidden block `k` and every class
`y`, the natural parameters `b_k(y)` of the backward message, in the block's
own family. It never uses the forward weights (no weight transport). Modes:

* `direct`: `b_k(y) = B_k onehot(y)`, a learned table per block, all blocks
  in parallel (the authors' code: a bias-free linear map of the label).
* `chained`: `b_top(y) = B onehot(y)`, `b_k = W_k relu(b_{k+1}) + c_k`,
  propagating backwards through the blocks.
* `chained_local`: the same tables, but each layer learns from its own
  block's loss only: `b_k = W_k relu(sg(b_{k+1})) + c_k`, the message from
  above a constant to it (`sg`: stop-gradient). The gradient of `L^fb_k`
  reaches `(W_k, c_k)` and nothing else, so a stage that owns blocks
  `k..k'` owns their feedback layers and needs only the message
  `b_{k'+1}` from the stage above, no all-reduce (docs/parallel.md).
* `bootstrapped`: `b_k(x, y) = W_k relu(LN(a_{k+1}(x) + b_{k+1}(x, y))) + c_k`:
  the posterior of the block above (forward plus feedback natural parameters,
  pooled over positions, detached) replaces `b_{k+1}`; above the top hidden
  block sits the output block, with `a = logits` and `b = s onehot(y)`. The
  result is per example: `[batch, C, P_k]`.
* `random`: `direct` with a fixed random table, never trained (DRTP-like).
* `onehot`: `b_k(y) = s onehot(y)`, fixed: the `[C, C]` matrix `s I`,
  which needs a latent of exactly `C` natural parameters (greedy local
  classifiers: a Categorical latent whose states are the classes, read out
  by a linear head with `C` units, as `--method local` sets up).

The outputs of the learned and random tables pass through the family's
`natural_from_raw` link; the `onehot` table is used as it is.
"""

from __future__ import annotations

import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bll_jax import blocks as blocks_lib

Array = jax.Array

MODES = ("direct", "chained", "chained_local", "bootstrapped", "random",
         "onehot")
TRAINABLE_MODES = ("direct", "chained", "chained_local", "bootstrapped")
#: Modes in which `L^fb_k` reaches block `k`'s own layer alone, so that a
#: stage can own and train its blocks' layers (`bll_jax.parallel.owned`).
LOCAL_MODES = ("direct", "chained_local")
_LAYER = re.compile(r"^(?:table|g)_(\d+)$")


class Feedback(nn.Module):
  """Feedback parameters for every hidden block, bottom to top.

  Attributes:
    mode: one of `MODES`.
    num_classes: `C`.
    latents: the hidden blocks' latents, bottom to top.
    sizes: natural-parameter sizes `P_k` of the hidden blocks.
    init_scale: standard deviation of the tables (`direct`, `random`,
      `chained`, `bootstrapped`).
    onehot_scale: `s` of the `onehot` mode and of the output block's
      feedback in the `bootstrapped` mode.
  """

  mode: str
  num_classes: int
  latents: tuple[blocks_lib.Latent, ...]
  sizes: tuple[int, ...]
  init_scale: float = 1.0
  onehot_scale: float = 30.0

  def __post_init__(self):
    super().__post_init__()
    if self.mode not in MODES:
      raise ValueError(f"feedback must be one of {MODES}, got {self.mode!r}")
    c = self.num_classes
    if self.mode == "onehot" and any(size != c for size in self.sizes):
      raise ValueError(
          f"feedback 'onehot' is s * I over the {c} classes: every hidden "
          f"block needs {c} natural parameters, got {list(self.sizes)} (use "
          "readout 'linear' with readout_features = the classes, as method "
          "local does)")

  @nn.compact
  def __call__(self, above: tuple[Array, ...] | None = None
               ) -> tuple[Array, ...]:
    """Returns `eta_fb` per hidden block: `[C, P_k]`, or `[B, C, P_k]`.

    Args:
      above: `bootstrapped` only: per hidden block `k`, the detached natural
        parameters of block `k + 1` pooled over positions, `[B, P_{k+1}]`
        (the output block's logits for the top hidden block).
    """
    c, n = self.num_classes, len(self.sizes)
    eye = jnp.eye(c)
    table_init = nn.initializers.normal(self.init_scale)
    links = [lat.family.natural_from_raw for lat in self.latents]
    if self.mode == "onehot":
      return tuple(self.onehot_scale * eye for _ in range(n))
    if self.mode in ("direct", "random"):
      return tuple(
          links[k](self.param(f"table_{k}", table_init, (c, self.sizes[k])))
          for k in range(n))
    if self.mode in ("chained", "chained_local"):
      local = self.mode == "chained_local"
      out = [None] * n
      out[-1] = links[-1](self.param(f"table_{n - 1}", table_init,
                                     (c, self.sizes[-1])))
      for k in range(n - 2, -1, -1):
        message = (jax.lax.stop_gradient(out[k + 1]) if local
                   else out[k + 1])
        out[k] = links[k](nn.Dense(self.sizes[k], name=f"g_{k}")(
            nn.relu(message)))
      return tuple(out)
    if self.mode == "bootstrapped":
      if above is None or len(above) != n:
        raise ValueError(f"bootstrapped feedback needs {n} arrays of the "
                         "blocks above")
      out = [None] * n
      b_above = self.onehot_scale * eye                 # output block: s e_y
      for k in range(n - 1, -1, -1):
        posterior = above[k][:, None, :] + b_above      # [B, C, P_{k+1}]
        # LayerNorm: the posterior's scale grows with s and with training.
        posterior = nn.LayerNorm(name=f"norm_{k}")(posterior)
        out[k] = links[k](nn.Dense(self.sizes[k], name=f"g_{k}")(
            nn.relu(posterior)))
        b_above = out[k]
      return tuple(out)
    raise ValueError(f"feedback must be one of {MODES}, got {self.mode!r}")


def layer_of(path) -> int | None:
  """The hidden block whose feedback layer a leaf belongs to, from its key
  path (in the parameters, or in an optax state that mirrors them:
  `table_k` or `g_k`), or `None` for a leaf of no layer (an optax count)."""
  for entry in path:
    match = _LAYER.match(str(getattr(entry, "key", "")))
    if match:
      return int(match.group(1))
  return None


def stage_messages(module: Feedback, params, blocks: Sequence[int],
                   message: Array | None = None) -> dict[int, Array]:
  r"""`b_k` of the hidden `blocks` (contiguous) from their own layers alone.

  `params` needs only the layers of `blocks` (`table_k` or `g_k`). In the
  `direct` mode `b_k = B_k onehot(y)` needs nothing else; in the
  `chained_local` mode the layers chain from the message of the block above
  the highest of `blocks`, a constant to them:

  .. math::

     b_k = \mathrm{link}_k(W_k\,\mathrm{relu}(\mathrm{sg}(b_{k+1})) + c_k),
     \qquad b_{k_{\max}+1} = \texttt{message},

  and the top hidden block's `b = link(B onehot(y))` needs no message. With
  every hidden block and no message this is :class:`Feedback`'s output.
  """
  if module.mode not in LOCAL_MODES:
    raise ValueError(f"feedback {module.mode!r} is not local to its blocks: "
                     f"stage_messages needs one of {LOCAL_MODES}")
  top = len(module.sizes) - 1
  links = [lat.family.natural_from_raw for lat in module.latents]
  out = {}
  for k in sorted(blocks, reverse=True):
    if module.mode == "direct" or k == top:
      out[k] = links[k](params[f"table_{k}"])
      continue
    above = out.get(k + 1, message)
    if above is None:
      raise ValueError(f"block {k}'s chained feedback needs the message of "
                       f"block {k + 1}")
    dense = nn.Dense(module.sizes[k])
    out[k] = links[k](dense.apply({"params": params[f"g_{k}"]},
                                  nn.relu(jax.lax.stop_gradient(above))))
  return out
