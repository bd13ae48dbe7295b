"""A network as a sequence of cuttable units: what the block engine consumes.

Every model in `bll_jax.models` is a :class:`LayerStack`: units `u_1..u_n`
(flax linen modules) and activations `act_1..act_n`, with

    h_i = act_i(u_i(h_{i-1}; train)),   h_0 = x,   logits = u_n(h_{n-1}).

A cut between units is a block boundary. At a boundary the engine reads the
unit's *pre-activation* `u_i(h_{i-1})` as the natural parameters `a_k` of the
block's latent and passes on `act_i(mu(a_k))` (`docs/engine.md`); for a
Gaussian latent of unit variance this is exactly the plain network.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax

Array = jax.Array


def identity(x: Array) -> Array:
  return x


@dataclasses.dataclass(frozen=True)
class LayerStack:
  """A network as units that can be cut into blocks.

  Attributes:
    name: the model's name.
    units: linen modules, each called as `unit(h, train=...)` and returning
      the pre-activation of its output.
    activations: one per unit, applied to its output (`identity` where the
      unit's output is not followed by a nonlinearity, e.g. a residual stream
      or the logits).
    position_ndim: per unit, how many axes between the batch axes and the
      feature axis hold positions (2 for an image feature map, 1 for a 1-D
      signal, 0 for vectors and for token sequences, whose time axis carries
      labels of its own).
    token_targets: True when labels are per token (`[batch, time]`).
  """

  name: str
  units: tuple[nn.Module, ...]
  activations: tuple[Callable[[Array], Array], ...]
  position_ndim: tuple[int, ...]
  token_targets: bool = False

  def __post_init__(self):
    n = len(self.units)
    if not n or len(self.activations) != n or len(self.position_ndim) != n:
      raise ValueError(
          f"LayerStack {self.name!r} needs one activation and one "
          f"position_ndim per unit, got {n} units, {len(self.activations)} "
          f"activations, {len(self.position_ndim)} position_ndim")

  def __len__(self) -> int:
    return len(self.units)
