"""Cutting a layer stack into blocks, and the block forward `a_k = f_k(h_{k-1})`.

A block is a run of consecutive units of a :class:`~bll_jax.models.LayerStack`.
A hidden block reads its last unit's output as the natural parameters `a_k`
of its latent (:class:`Latent`) and passes on its mean (or a sample):

    Gaussian latents ("post"):     a_k = act(pre),  h_k = mu(a_k)
    Bernoulli/Categorical ("pre"): a_k = pre,       h_k = act(mu(a_k)),

where `pre` is the unit's pre-activation and `act` its activation. For a
unit-variance Gaussian `mu(a) = a`, so the blocks compose to exactly the
plain network; for Bernoulli the sigmoid takes the place of the activation at
the boundary. The output block returns the logits. See `docs/engine.md`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bll_jax import families as families_lib
from bll_jax import pooling
from bll_jax.models import base

Array = jax.Array

READOUTS = ("identity", "linear", "mlp", "unit")
#: Readouts that are an auxiliary head (the block passes on its features).
HEAD_READOUTS = ("linear", "mlp", "unit")
TRANSMITS = ("mean", "sample")
BOUNDARIES = ("auto", "pre", "post")


@dataclasses.dataclass(frozen=True)
class Latent:
  """How a hidden block's output is read as a distribution and passed on.

  Attributes:
    family: the exponential family of the latent.
    readout: "identity": the last unit's pre-activation is the natural
      parameter (plus a learned precision head for
      `GaussianLearnedVariance`); "linear": an auxiliary head, a dense layer
      on the position-pooled features, gives `readout_features` latent units
      (the block still passes on its features; greedy local classifiers);
      "mlp": a deeper auxiliary head on the same pooled features,
      `Dense(GELU(Dense_{4D}(LayerNorm(h))))` with `D` the features' width
      (as the auxiliary networks of DGL and AugLocal: the block's output
      need only be decodable by a small network, not linearly); "unit":
      a fresh copy of the unit after the block (its own parameters: for a
      Transformer a decoder layer, attention included) on the block's
      features, then `Dense(LayerNorm(.))`, the auxiliary network built
      from the layers that follow, as AugLocal's.
    readout_features: latent units of the head readouts.
    readout_depth: readout "unit" copies this many units after the block
      (fewer where the stack ends sooner): `Dense(LayerNorm(act_{j+d-1}(
      u'_{j+d-1}(... act_j(u'_j(h))))))`, each copy with its own
      parameters. A deeper head asks less of the block's output (it need
      only be decodable by the next `d` layers), as AugLocal's auxiliary
      networks built from more of the layers above.
    transmit: "mean" passes on the mean `E[z]`, "sample" a draw `z` in
      training (and the mean in evaluation).
    boundary: where the natural parameters are read. "post": after the
      unit's activation, `a = act(pre)`, and the block passes on `mu(a)`;
      "pre": before it, `a = pre`, passing on `act(mu(a))`; "auto": "post"
      for the Gaussians (whose mean map is the identity, so the blocks
      compose to the plain network) and "pre" for Bernoulli and Categorical
      (whose mean maps, sigmoid and softmax, are the nonlinearity).
    grid: for a feature map (a unit with positions): 0 keeps the positions,
      scored against one feedback vector per channel shared by all of them
      (for a fixed-variance Gaussian, the nearest-prototype classifier on the
      globally pooled map); `g > 0` averages the natural parameters over
      `g` cells per position axis (adaptive average pooling,
      :func:`bll_jax.pooling.grid_pool`) and flattens them, so the feedback has a vector per
      cell: `g = 1` is global pooling, `g = 2` or `4` keeps where on the map
      the evidence lies. With `readout="linear"`, the auxiliary head reads
      the map pooled to the same grid (0 and 1: global pooling). The block
      passes on the full map either way.
    position_ndim: positions of the natural parameters (set by the engine).
  """

  family: families_lib.Family
  readout: str = "identity"
  readout_features: int = 0
  transmit: str = "mean"
  boundary: str = "auto"
  grid: int = 0
  position_ndim: int = 0
  readout_depth: int = 1

  def reads_activation(self) -> bool:
    """Whether the natural parameters are read after the unit's activation."""
    if self.boundary == "auto":
      return isinstance(self.family, (families_lib.Gaussian,
                                      families_lib.GaussianLearnedVariance))
    return self.boundary == "post"

  def __post_init__(self):
    if self.readout not in READOUTS:
      raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
    if self.transmit not in TRANSMITS:
      raise ValueError(
          f"transmit must be one of {TRANSMITS}, got {self.transmit!r}")
    if self.boundary not in BOUNDARIES:
      raise ValueError(
          f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
    if (isinstance(self.grid, bool) or not isinstance(self.grid, int)
        or self.grid < 0):
      raise ValueError(f"grid must be an integer >= 0, got {self.grid!r}")
    if self.readout in HEAD_READOUTS and self.readout_features < 1:
      raise ValueError(f"readout={self.readout!r} needs readout_features >= "
                       f"1, got {self.readout_features}")
    if (isinstance(self.readout_depth, bool)
        or not isinstance(self.readout_depth, int) or self.readout_depth < 1):
      raise ValueError(f"readout_depth must be an integer >= 1, got "
                       f"{self.readout_depth!r}")
    if self.readout_depth > 1 and self.readout != "unit":
      raise ValueError(f"readout_depth={self.readout_depth} copies units: "
                       f"it needs readout='unit', got {self.readout!r}")


class Block(nn.Module):
  """Units `[i, j)` of a stack; returns `(eta, h_out)`.

  For the output block (`latent=None`), `eta` is the logits and `h_out` the
  same array. With `aux_classes`, a hidden block also sows the logits of an
  auxiliary classifier (`intermediates/aux_logits`).
  """

  units: tuple[nn.Module, ...]
  activations: tuple[Callable[[Array], Array], ...]
  latent: Latent | None = None
  unit_position_ndim: int = 0
  aux_classes: int = 0
  # The units after the block, their activations and the last one's
  # positions: readout "unit".
  next_units: tuple[nn.Module, ...] = ()
  next_activations: tuple[Callable[[Array], Array], ...] = ()
  next_position_ndim: int = 0

  @nn.compact
  def __call__(self, h, train: bool = False):
    for unit, act in zip(self.units[:-1], self.activations[:-1]):
      h = act(unit(h, train=train))
    pre = self.units[-1](h, train=train)
    if self.latent is None:
      return pre, pre
    family, act = self.latent.family, self.activations[-1]
    if self.aux_classes:
      # An auxiliary classifier (average-pool + linear) on the block output,
      # as in the authors' recipe; read with mutable=["intermediates"].
      features = act(pre)
      n = self.unit_position_ndim
      pooled = jnp.mean(features, axis=tuple(
          range(features.ndim - 1 - n, features.ndim - 1))) if n else features
      self.sow("intermediates", "aux_logits",
               nn.Dense(self.aux_classes, name="aux")(pooled))
    n = self.unit_position_ndim
    if self.latent.readout in HEAD_READOUTS:
      features = act(pre)
      head_in, head_n = features, n
      if self.latent.readout == "unit":
        for d, (unit, unit_act) in enumerate(zip(self.next_units,
                                                 self.next_activations)):
          copy = unit.clone(parent=self,
                            name="readout_unit" + (f"_{d}" if d else ""))
          head_in = unit_act(copy(head_in, train=train))
        head_in = nn.LayerNorm(name="readout_norm")(head_in)
        head_n = self.next_position_ndim
      pooled = pooling.flatten_cells(
          pooling.grid_pool(head_in, head_n, max(self.latent.grid, 1)), head_n)
      if self.latent.readout == "mlp":
        pooled = nn.gelu(nn.Dense(4 * pooled.shape[-1], name="readout_hidden")(
            nn.LayerNorm(name="readout_norm")(pooled)))
      raw = nn.Dense(self.latent.readout_features * family.params_per_unit,
                     name="readout")(pooled)
      return family.natural_from_raw(raw), features
    post = self.latent.reads_activation()
    raw = act(pre) if post else pre
    if family.params_per_unit == 2:
      precision = nn.Dense(raw.shape[-1], name="precision")(raw)
      raw = jnp.concatenate([raw, precision], -1)
    eta = family.natural_from_raw(raw)
    if self.latent.transmit == "sample" and train:
      z = jax.lax.stop_gradient(family.sample(self.make_rng("latent"), eta))
    else:                       # evaluation always passes on the mean
      z = family.expectation(eta)
    h_out = z if post else act(z)
    if self.latent.grid and n:
      eta = pooling.flatten_cells(pooling.grid_pool(eta, n, self.latent.grid),
                                  n, family.params_per_unit)
    return eta, h_out


def boundaries(num_units: int, blocks: int | None = None,
               cuts: Sequence[int] | None = None) -> tuple[int, ...]:
  """Block boundaries `(0, c_1, ..., num_units)`.

  Args:
    num_units: units in the stack.
    blocks: cut into this many blocks of (nearly) equal unit counts, the
      earlier blocks taking one unit more when it does not divide.
    cuts: explicit cut points instead: strictly increasing, in
      `[1, num_units - 1]`; block `k` holds units `[c_k, c_{k+1})`.

  Raises:
    ValueError: naming the field and the allowed values.
  """
  if cuts:
    cuts = tuple(int(c) for c in cuts)
    if any(c < 1 or c > num_units - 1 for c in cuts) or any(
        b <= a for a, b in zip(cuts, cuts[1:])):
      raise ValueError(
          f"cuts must be strictly increasing integers in [1, {num_units - 1}] "
          f"(the model has {num_units} units), got {list(cuts)}")
    return (0,) + cuts + (num_units,)
  blocks = 1 if blocks is None else blocks
  if not isinstance(blocks, int) or not 1 <= blocks <= num_units:
    raise ValueError(
        f"blocks must be an integer in [1, {num_units}] (the model has "
        f"{num_units} units), got {blocks!r}")
  size, extra = divmod(num_units, blocks)
  edges, start = [0], 0
  for k in range(blocks):
    start += size + (1 if k < extra else 0)
    edges.append(start)
  return tuple(edges)


def make_blocks(stack: base.LayerStack, edges: Sequence[int],
                latents: Sequence[Latent], aux_classes: int = 0
                ) -> tuple[Block, ...]:
  """One :class:`Block` per pair of edges; `latents` for the hidden blocks."""
  if len(latents) != len(edges) - 2:
    raise ValueError(f"need {len(edges) - 2} latents (one per hidden block), "
                     f"got {len(latents)}")
  blocks = []
  for k, (i, j) in enumerate(zip(edges[:-1], edges[1:])):
    latent = latents[k] if k < len(latents) else None
    depth = (latent.readout_depth
             if latent is not None and latent.readout == "unit" else 0)
    copied = min(j + depth, len(stack))       # units [j, copied) copied
    blocks.append(Block(stack.units[i:j], stack.activations[i:j], latent,
                        stack.position_ndim[j - 1],
                        aux_classes if latent is not None else 0,
                        tuple(stack.units[j:copied]),
                        tuple(stack.activations[j:copied]),
                        stack.position_ndim[copied - 1] if copied > j else 0))
  return tuple(blocks)


def latent_position_ndim(stack: base.LayerStack, edges: Sequence[int],
                         k: int, latent: Latent) -> int:
  """Positions of hidden block `k`'s natural parameters (none when pooled
  by a linear readout or to a grid)."""
  if latent.readout in HEAD_READOUTS or latent.grid:
    return 0
  return stack.position_ndim[edges[k + 1] - 1]


def latent_cells(stack: base.LayerStack, edges: Sequence[int], k: int,
                 latent: Latent) -> int:
  """Grid cells pooled into hidden block `k`'s natural parameters (1 for a
  latent without positions or with `grid = 0`)."""
  n = stack.position_ndim[edges[k + 1] - 1]
  return latent.grid ** n if (latent.grid and latent.readout not in
                              HEAD_READOUTS) else 1
