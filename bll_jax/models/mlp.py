"""Multi-layer perceptron: one unit per dense layer."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from bll_jax.models import base


class Dense(nn.Module):
  """Flattens all but the batch axis, then `W h + b`."""

  features: int

  @nn.compact
  def __call__(self, h, train: bool = False):
    del train
    return nn.Dense(self.features)(h.reshape(h.shape[0], -1))


def mlp(widths: Sequence[int], num_classes: int) -> base.LayerStack:
  """`len(widths) + 1` units: hidden Dense+ReLU layers, then the logits.

  Example: `mlp((512, 512, 512), 10)` is the 784-512-512-512-10 network.
  """
  if not widths or any(w < 1 for w in widths):
    raise ValueError(f"widths must be positive integers, got {tuple(widths)}")
  units = tuple(Dense(w) for w in widths) + (Dense(num_classes),)
  acts = (nn.relu,) * len(widths) + (base.identity,)
  return base.LayerStack("mlp", units, acts, (0,) * len(units))

