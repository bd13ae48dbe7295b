"""A network as a sequence of cuttable units: what the block engine consumes.

Every model in `bll_jax.models` is a :class:`LayerStack`: units `u_1..u_n`
(flax linen modules) and activations `act_1..act_n`, with

    h_i = act_i(u_i(h_{i-1}; train)),   h_0 = x,   logits = u_n(h_{n-1}).

A cut between units is a block boundary. Where the engine reads the natural
parameters `a_k` of the block's latent depends on the latent's family
(:class:`bll_jax.blocks.Latent`, `boundary`; `docs/engine.md`):

* Gaussian latents ("post"): `a_k = act_i(u_i(h_{i-1}))`, the unit's output
  after its activation, and the block passes on `mu(a_k)`; for a
  unit-variance Gaussian `mu(a) = a`, so the blocks compose to exactly the
  plain network;
* Bernoulli and Categorical latents ("pre"): `a_k = u_i(h_{i-1})`, the
  pre-activation, and the block passes on `act_i(mu(a_k))` (the sigmoid or
  softmax mean takes the place of the activation's input).
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
