"""Pooling the position axes of a feature map's natural parameters.

A hidden block whose latent has positions (an image feature map, a 1-D
signal) is scored against feedback vectors per channel; `grid_pool` averages
its natural parameters over cells of the map first (`Latent.grid`), and
`flatten_cells` lays the cells out as one vector per example in a family's
layout. `pool_positions` is the global mean, used where one vector per
example is needed (the block above in bootstrapped feedback, the batch
decorrelation term).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def cell_weights(length: int, cells: int) -> np.ndarray:
  """`[cells, length]`: row `i` averages positions
  `[floor(i L / g), ceil((i + 1) L / g))` (adaptive average pooling)."""
  weights = np.zeros((cells, length))
  for i in range(cells):
    start, stop = (i * length) // cells, -((-(i + 1) * length) // cells)
    weights[i, start:stop] = 1.0 / (stop - start)
  return weights


def grid_pool(x: Array, position_ndim: int, grid: int) -> Array:
  """Adaptive average pooling of the position axes to `grid` cells each.

  `x` is `[B..., S_1, ..., S_n, P]` with `n = position_ndim`; returns
  `[B..., g, ..., g, P]`. A cell averages the positions
  `[floor(i S / g), ceil((i + 1) S / g))` along each axis, so cells overlap
  by one position where `g` does not divide `S` (as PyTorch's
  `AdaptiveAvgPool`). `grid = 1` is the global mean.

  Raises:
    ValueError: `grid` larger than a position axis.
  """
  axes = range(x.ndim - 1 - position_ndim, x.ndim - 1)
  if grid == 1:                  # the global mean, as the engine had before
    return jnp.mean(x, axis=tuple(axes), keepdims=True)
  for axis in axes:
    if x.shape[axis] < grid:
      raise ValueError(f"grid={grid} needs position axes of at least {grid} "
                       f"positions, got shape {x.shape}")
    weights = jnp.asarray(cell_weights(x.shape[axis], grid), x.dtype)
    x = jnp.moveaxis(jnp.tensordot(x, weights, axes=([axis], [1])), -1, axis)
  return x


def flatten_cells(x: Array, position_ndim: int,
                  params_per_unit: int = 1) -> Array:
  """`[B..., cells..., P] -> [B..., params_per_unit * cells * D]`.

  Keeps a family's layout of the last axis: for `params_per_unit = 2`
  (`[eta1 | eta2]`, `P = 2 D`) the result is `[eta1 of every cell | eta2 of
  every cell]`; Categorical groups stay contiguous.
  """
  if not position_ndim:
    return x
  batch = x.shape[:x.ndim - 1 - position_ndim]
  cells = math.prod(x.shape[x.ndim - 1 - position_ndim:x.ndim - 1])
  p = params_per_unit
  x = x.reshape(batch + (cells, p, x.shape[-1] // p))
  return jnp.swapaxes(x, -3, -2).reshape(batch + (-1,))


def pool_positions(eta: Array, position_ndim: int) -> Array:
  """Means natural parameters over their position axes: `[B, ..., P] -> [B, P]`.

  :func:`grid_pool` with one cell, the position axes dropped.
  """
  if not position_ndim:
    return eta
  pooled = grid_pool(eta, position_ndim, 1)
  return pooled.reshape(eta.shape[:eta.ndim - 1 - position_ndim] +
                        eta.shape[-1:])

