"""A small convolutional network for 1-D signals (MNIST-1D) and images."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from bll_jax.models import base


class ConvUnit(nn.Module):
  """`BatchNorm(Conv(h))` (pre-activation); adds a channel axis if missing."""

  features: int
  kernel: int
  stride: int
  spatial_ndim: int
  norm: bool = True

  @nn.compact
  def __call__(self, h, train: bool = False):
    if h.ndim == self.spatial_ndim + 1:          # [B, *spatial]: one channel
      h = h[..., None]
    h = nn.Conv(self.features, (self.kernel,) * self.spatial_ndim,
                strides=(self.stride,) * self.spatial_ndim, padding="SAME",
                use_bias=not self.norm)(h)
    if self.norm:
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return h


class ConvHead(nn.Module):
  """Logits from a feature map: flattened (keeps position) or average-pooled."""

  num_classes: int
  spatial_ndim: int
  pool: str = "flatten"

  @nn.compact
  def __call__(self, h, train: bool = False):
    del train
    if self.pool == "flatten":
      h = h.reshape(h.shape[0], -1)
    else:
      h = jnp.mean(h, axis=tuple(range(1, 1 + self.spatial_ndim)))
    return nn.Dense(self.num_classes)(h)


def cnn(channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
        num_classes: int, spatial_ndim: int, *, norm: bool = True,
        head: str = "flatten") -> base.LayerStack:
  """Conv units (Conv, BatchNorm, ReLU) and a dense head; one unit each.

  Args:
    channels, kernels, strides: one entry per convolution.
    num_classes: outputs of the head.
    spatial_ndim: 1 for signals `[B, L]` or `[B, L, C]`, 2 for images.
    norm: BatchNorm after each convolution.
    head: "flatten" or "pool" (global average) before the dense head.
  """
  if not (len(channels) == len(kernels) == len(strides)) or not channels:
    raise ValueError(
        f"channels, kernels and strides need one entry per convolution, got "
        f"{tuple(channels)}, {tuple(kernels)}, {tuple(strides)}")
  if head not in ("flatten", "pool"):
    raise ValueError(f"head must be 'flatten' or 'pool', got {head!r}")
  units = tuple(ConvUnit(c, k, s, spatial_ndim, norm)
                for c, k, s in zip(channels, kernels, strides))
  units += (ConvHead(num_classes, spatial_ndim, head),)
  acts = (nn.relu,) * len(channels) + (base.identity,)
  positions = (spatial_ndim,) * len(channels) + (0,)
  return base.LayerStack("cnn", units, acts, positions)
