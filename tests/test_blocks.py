"""`bll_jax.blocks`: feature maps pooled to a grid of cells (`Latent.grid`)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special

from bll_jax import blocks
from bll_jax import families
from bll_jax import losses
from bll_jax import models
from bll_jax import step

NUM_CLASSES = 5


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
  got = blocks.grid_pool(jnp.asarray(x), 2, grid)
  np.testing.assert_allclose(got, _adaptive_pool_reference(x, grid),
                             rtol=1e-12)


def test_grid_pool_over_one_position_axis_and_errors():
  x = jnp.arange(2 * 7 * 3, dtype=jnp.float32).reshape(2, 7, 3)
  got = blocks.grid_pool(x, 1, 2)                   # cells [0, 4), [3, 7)
  np.testing.assert_allclose(got[:, 0], x[:, 0:4].mean(1), rtol=1e-6)
  np.testing.assert_allclose(got[:, 1], x[:, 3:7].mean(1), rtol=1e-6)
  with pytest.raises(ValueError, match="grid=8 needs position axes of at "
                     "least 8 positions"):
    blocks.grid_pool(x, 1, 8)
  for bad in (-1, 1.5, True):
    with pytest.raises(ValueError, match="grid must be an integer >= 0"):
      blocks.Latent(families.Gaussian(), grid=bad)


def test_feedback_pools_positions_to_one_vector_per_example():
  """`feedback.pool_positions` is the global mean over the position axes
  (any number of leading batch axes), and the identity without positions."""
  from bll_jax import feedback
  x = np.random.default_rng(0).normal(size=(2, 3, 5, 4, 6)).astype(np.float32)
  np.testing.assert_allclose(feedback.pool_positions(jnp.asarray(x), 2),
                             x.mean((2, 3)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(feedback.pool_positions(jnp.asarray(x), 1),
                             x.mean(3), rtol=1e-5, atol=1e-6)
  assert feedback.pool_positions(jnp.asarray(x), 0).shape == x.shape


def test_flatten_cells_keeps_the_family_layout():
  # Learned variance: [eta1 | eta2] per cell -> [eta1 of all cells | eta2 ...].
  family = families.GaussianLearnedVariance()
  x = jnp.arange(2 * 2 * 2 * 6, dtype=jnp.float32).reshape(2, 2, 2, 6)
  flat = blocks.flatten_cells(x, 2, family.params_per_unit)
  cells = np.asarray(x).reshape(2, 4, 6)
  np.testing.assert_array_equal(
      flat, np.concatenate([cells[..., :3].reshape(2, 12),
                            cells[..., 3:].reshape(2, 12)], -1))
  # One parameter per unit: a plain row-major flatten (Categorical groups of
  # the last axis stay contiguous).
  np.testing.assert_array_equal(blocks.flatten_cells(x, 2),
                                np.asarray(x).reshape(2, 24))


def test_a_gaussian_map_pooled_to_cells_is_a_prototype_classifier_per_cell(
    x64):
  """With `grid = g` (and `g` dividing the map), the class scores are the
  full map's scores against a prototype per cell, averaged over positions:

    s_y = (1 / HW) sum_{h,w} log_agreement(a_hw, b_y[cell(h, w)]) / T,

  up to a term that does not depend on `y`. `grid = 1` is the shared
  prototype of `grid = 0`.
  """
  rng = np.random.default_rng(3)
  family, g, h, channels = families.Gaussian(0.7), 2, 4, 3
  eta_map = rng.normal(size=(5, h, h, channels))
  eta_fb = rng.normal(size=(NUM_CLASSES, g, g, channels))
  # Reference: the full map against the upsampled per-cell prototypes.
  upsampled = np.repeat(np.repeat(eta_fb, h // g, 1), h // g, 2)
  agreement = np.stack([
      np.sum(np.asarray(family.log_agreement(
          jnp.asarray(eta_map),
          jnp.asarray(np.broadcast_to(upsampled[y], eta_map.shape)))),
             axis=(1, 2)) for y in range(NUM_CLASSES)], -1) / (h * h)
  pooled = blocks.flatten_cells(blocks.grid_pool(jnp.asarray(eta_map), 2, g),
                                2)
  got = losses.local_logits(family, pooled,
                            jnp.asarray(eta_fb.reshape(NUM_CLASSES, -1)),
                            temperature=g * g)
  np.testing.assert_allclose(jax.nn.log_softmax(got),
                             special.log_softmax(agreement, -1), rtol=1e-10)
  # grid = 1 against grid = 0 (positions kept, one prototype per channel).
  shared = jnp.asarray(eta_fb[:, 0, 0])
  one_cell = blocks.flatten_cells(
      blocks.grid_pool(jnp.asarray(eta_map), 2, 1), 2)
  np.testing.assert_allclose(
      jax.nn.log_softmax(losses.local_logits(family, one_cell, shared)),
      jax.nn.log_softmax(losses.local_logits(
          family, jnp.asarray(eta_map), shared, position_ndim=2,
          temperature=h * h)), rtol=1e-10)


CNN2D = models.cnn((4, 8, 16), (3, 3, 3), (1, 2, 2), NUM_CLASSES, 2)


def test_engine_pools_each_stage_to_the_grid():
  """Three conv blocks on 12 x 12 images (maps of 12, 6 and 3 positions;
  the last grid is uneven). Training with a grid: the
  `cnn-learnedvar-bootstrapped-grid2` case of test_step.py (fused equals
  per-block steps) and `cnn-grid-chained` (gradient locality)."""
  family = families.GaussianLearnedVariance()
  edges = blocks.boundaries(len(CNN2D), 4)
  engine = step.Engine(
      CNN2D, edges, [blocks.Latent(family, grid=2)] * (len(edges) - 2),
      method="bll", feedback_mode="chained", num_classes=NUM_CLASSES,
      input_shape=(12, 12, 1), input_dtype=jnp.float32, tx=optax.adam(1e-2))
  # Natural parameters: 2 x 2 cells of each block's channels (4, 8, 16),
  # times the family's parameters per unit; no positions left.
  assert [s[1:] for s in engine.eta_shapes[:3]] == [(2 * 4 * c,)
                                                    for c in (4, 8, 16)]
  assert all(lat.position_ndim == 0 for lat in engine.latents)
  # Scores are averaged over the 4 cells (position_average) ...
  assert engine._temperature(0, jnp.zeros(engine.eta_shapes[0])) == 4.0
  # ... and the feedback has a vector per cell and class.
  fb = jax.eval_shape(
      lambda: engine.feedback_forward(
          engine.init(jax.random.key(0),
                      jnp.zeros((2, 12, 12, 1))).feedback.params, None))
  assert [f.shape for f in fb] == [(NUM_CLASSES, 2 * 4 * c) for c in (4, 8, 16)]
