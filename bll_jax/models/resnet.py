"""ResNet-18/34/50 as units: the stem, every residual block, the head.

Follows the Flax ImageNet example: BatchNorm (momentum 0.9, eps 1e-5), the
last BatchNorm of each residual branch initialised to zero, a projection
shortcut where the shape changes. `stem="cifar"` is a 3x3 convolution for
32x32 inputs; `stem="imagenet"` the 7x7/2 convolution and 3x3/2 max-pool.
A residual unit returns `branch(h) + shortcut(h)` (its pre-activation); the
ReLU after it is the unit's activation.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from bll_jax.models import base

_BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
_Conv = functools.partial(nn.Conv, use_bias=False)


class Stem(nn.Module):
  kind: str = "cifar"
  width: int = 64

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim == 3:                                # [B, H, W]: one channel
      x = x[..., None]
    if self.kind == "cifar":
      x = _Conv(self.width, (3, 3))(x)
      return _BatchNorm(use_running_average=not train)(x)
    x = _Conv(self.width, (7, 7), strides=(2, 2), padding=[(3, 3), (3, 3)])(x)
    x = _BatchNorm(use_running_average=not train)(x)
    # max-pool commutes with the ReLU that follows, so it can come first.
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")


class BasicBlock(nn.Module):
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = functools.partial(_BatchNorm, use_running_average=not train)
    s = (self.strides, self.strides)
    y = nn.relu(norm()(_Conv(self.filters, (3, 3), s)(x)))
    y = norm(scale_init=nn.initializers.zeros)(_Conv(self.filters, (3, 3))(y))
    if x.shape != y.shape:
      x = norm()(_Conv(self.filters, (1, 1), s)(x))
    return x + y


class Bottleneck(nn.Module):
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = functools.partial(_BatchNorm, use_running_average=not train)
    s = (self.strides, self.strides)
    y = nn.relu(norm()(_Conv(self.filters, (1, 1))(x)))
    y = nn.relu(norm()(_Conv(self.filters, (3, 3), s)(y)))
    y = norm(scale_init=nn.initializers.zeros)(
        _Conv(4 * self.filters, (1, 1))(y))
    if x.shape != y.shape:
      x = norm()(_Conv(4 * self.filters, (1, 1), s)(x))
    return x + y


class PoolHead(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


_STAGES = {18: ((2, 2, 2, 2), BasicBlock), 34: ((3, 4, 6, 3), BasicBlock),
           50: ((3, 4, 6, 3), Bottleneck)}


def resnet(depth: int, num_classes: int, stem: str = "cifar",
           width: int = 64) -> base.LayerStack:
  """`1 + sum(stage sizes) + 1` units (10 for ResNet-18, 18 for ResNet-50).

  `width` is the channel count of the stem and the first stage (64 in the
  standard networks; the stages double it).
  """
  if depth not in _STAGES:
    raise ValueError(f"depth must be one of {sorted(_STAGES)}, got {depth!r}")
  if stem not in ("cifar", "imagenet"):
    raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
  if width < 1:
    raise ValueError(f"width must be a positive integer, got {width!r}")
  sizes, block = _STAGES[depth]
  units = [Stem(stem, width)]
  for i, size in enumerate(sizes):
    for j in range(size):
      units.append(block(width * 2**i, strides=2 if i > 0 and j == 0 else 1))
  units.append(PoolHead(num_classes))
  acts = (nn.relu,) * (len(units) - 1) + (base.identity,)
  positions = (2,) * (len(units) - 1) + (0,)
  return base.LayerStack(f"resnet{depth}", tuple(units), acts, positions)


def stage_cuts(depth: int) -> tuple[int, ...]:
  """Cut points at the stage boundaries: 4 blocks, the last with the head."""
  sizes, _ = _STAGES[depth]
  cuts, total = [], 1
  for size in sizes[:-1]:
    total += size
    cuts.append(total)
  return tuple(cuts)
