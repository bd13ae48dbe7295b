"""bll_jax.pooling: feature maps pooled to a grid of cells, and to one vector."""

import jax.numpy as jnp
import numpy as np
import pytest

from bll_jax import families
from bll_jax import pooling


def _adaptive_pool_reference(x, grid):
  """Loops over cells of `[B, H, W, P]` in float64 (PyTorch's
  AdaptiveAvgPool2d cell bounds, written out)."""
  b, h, w, p = x.shape
  out = np.zeros((b, grid, grid, p))
  for i in range(grid):
    r0, r1 = (i * h) // grid, int(np.ceil((i + 1) * h / grid))
    for j in range(grid):
      c0, c1 = (j * w) // grid, int(np.ceil((j + 1) * w / grid))
      out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return out


@pytest.mark.parametrize("shape,grid", [((7, 7), 2), ((7, 5), 3), ((8, 8), 4),
                                        ((6, 6), 1), ((5, 5), 5)])
def test_grid_pool_is_adaptive_average_pooling(x64, shape, grid):
  x = np.random.default_rng(0).normal(size=(3,) + shape + (4,))
  got = pooling.grid_pool(jnp.asarray(x), 2, grid)
  np.testing.assert_allclose(got, _adaptive_pool_reference(x, grid),
                             rtol=1e-12)


def test_grid_pool_over_one_position_axis_and_errors():
  x = jnp.arange(2 * 7 * 3, dtype=jnp.float32).reshape(2, 7, 3)
  got = pooling.grid_pool(x, 1, 2)                   # cells [0, 4), [3, 7)
  np.testing.assert_allclose(got[:, 0], x[:, 0:4].mean(1), rtol=1e-6)
  np.testing.assert_allclose(got[:, 1], x[:, 3:7].mean(1), rtol=1e-6)
  with pytest.raises(ValueError, match="grid=8 needs position axes of at "
                     "least 8 positions"):
    pooling.grid_pool(x, 1, 8)


def test_pool_positions_gives_one_vector_per_example():
  """`pool_positions` is the global mean over the position axes (any number
  of leading batch axes), and the identity without positions."""
  x = np.random.default_rng(0).normal(size=(2, 3, 5, 4, 6)).astype(np.float32)
  np.testing.assert_allclose(pooling.pool_positions(jnp.asarray(x), 2),
                             x.mean((2, 3)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pooling.pool_positions(jnp.asarray(x), 1),
                             x.mean(3), rtol=1e-5, atol=1e-6)
  assert pooling.pool_positions(jnp.asarray(x), 0).shape == x.shape


def test_flatten_cells_keeps_the_family_layout():
  # Learned variance: [eta1 | eta2] per cell -> [eta1 of all cells | eta2 ...].
  family = families.GaussianLearnedVariance()
  x = jnp.arange(2 * 2 * 2 * 6, dtype=jnp.float32).reshape(2, 2, 2, 6)
  flat = pooling.flatten_cells(x, 2, family.params_per_unit)
  cells = np.asarray(x).reshape(2, 4, 6)
  np.testing.assert_array_equal(
      flat, np.concatenate([cells[..., :3].reshape(2, 12),
                            cells[..., 3:].reshape(2, 12)], -1))
  # One parameter per unit: a plain row-major flatten (Categorical groups of
  # the last axis stay contiguous).
  np.testing.assert_array_equal(pooling.flatten_cells(x, 2),
                                np.asarray(x).reshape(2, 24))
