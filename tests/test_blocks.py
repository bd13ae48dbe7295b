"""bll_jax.blocks: latents of feature maps pooled to a grid of cells
(`Latent.grid`), and the engine's blocks built from them."""

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
from bll_jax import engine as engine_lib
from bll_jax import pooling

NUM_CLASSES = 5


def test_a_grid_must_be_a_non_negative_integer():
  for bad in (-1, 1.5, True):
    with pytest.raises(ValueError, match="grid must be an integer >= 0"):
      blocks.Latent(families.Gaussian(), grid=bad)


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
  pooled = pooling.flatten_cells(
      pooling.grid_pool(jnp.asarray(eta_map), 2, g), 2)
  got = losses.local_logits(family, pooled,
                            jnp.asarray(eta_fb.reshape(NUM_CLASSES, -1)),
                            temperature=g * g)
  np.testing.assert_allclose(jax.nn.log_softmax(got),
                             special.log_softmax(agreement, -1), rtol=1e-10)
  # grid = 1 against grid = 0 (positions kept, one prototype per channel).
  shared = jnp.asarray(eta_fb[:, 0, 0])
  one_cell = pooling.flatten_cells(
      pooling.grid_pool(jnp.asarray(eta_map), 2, 1), 2)
  np.testing.assert_allclose(
      jax.nn.log_softmax(losses.local_logits(family, one_cell, shared)),
      jax.nn.log_softmax(losses.local_logits(
          family, jnp.asarray(eta_map), shared, position_ndim=2,
          temperature=h * h)), rtol=1e-10)


CNN2D = models.cnn((4, 8, 16), (3, 3, 3), (1, 2, 2), NUM_CLASSES, 2)


def test_engine_pools_each_stage_to_the_grid():
  """Three conv blocks on 12 x 12 images (maps of 12, 6 and 3 positions;
  the last grid is uneven). Training with a grid: the
  `cnn-learnedvar-bootstrapped-grid2` case of test_engine.py (fused equals
  per-block steps) and `cnn-grid-chained` (gradient locality)."""
  family = families.GaussianLearnedVariance()
  edges = blocks.boundaries(len(CNN2D), 4)
  engine = engine_lib.Engine(
      CNN2D, edges, [blocks.Latent(family, grid=2)] * (len(edges) - 2),
      method="bll", feedback_mode="chained", num_classes=NUM_CLASSES,
      input_shape=(12, 12, 1), input_dtype=jnp.float32, tx=optax.adam(1e-2))
  # Natural parameters: 2 x 2 cells of each block's channels (4, 8, 16),
  # times the family's parameters per unit; no positions left.
  assert [s[1:] for s in engine.eta_shapes[:3]] == [(2 * 4 * c,)
                                                    for c in (4, 8, 16)]
  assert all(lat.position_ndim == 0 for lat in engine.latents)
  # Scores are averaged over the 4 cells (position_average) ...
  assert engine.score_temperature(0, jnp.zeros(engine.eta_shapes[0])) == 4.0
  # ... and the feedback has a vector per cell and class.
  fb = jax.eval_shape(
      lambda: engine.feedback_forward(
          engine.init(jax.random.key(0),
                      jnp.zeros((2, 12, 12, 1))).feedback.params, None))
  assert [f.shape for f in fb] == [(NUM_CLASSES, 2 * 4 * c) for c in (4, 8, 16)]


def _layer_norm(x, p):
  """`LayerNorm` (epsilon 1e-6) of `x` under the parameters `p`."""
  return ((x - x.mean(-1, keepdims=True))
          / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * p["scale"] + p["bias"])


def test_mlp_readout_is_a_small_network_on_the_features_it_passes_on():
  """`readout='mlp'`: `eta = W2 gelu(W1 LN(h) + c1) + c2` from the block's
  features `h`, computed here from the parameters; the block passes `h` on."""
  import flax.linen as nn
  stack = models.mlp((8, 8), 3)
  latent = blocks.Latent(families.Gaussian(), readout="mlp", readout_features=5)
  block = blocks.make_blocks(stack, (0, 1, 3), [latent])[0]
  x = jax.random.normal(jax.random.key(0), (4, 12))
  variables = block.init(jax.random.key(1), x)
  eta, h = block.apply(variables, x)
  p = variables["params"]
  assert set(p) >= {"readout_norm", "readout_hidden", "readout"}
  features = jax.nn.relu(x @ p["units_0"]["Dense_0"]["kernel"]
                         + p["units_0"]["Dense_0"]["bias"])
  np.testing.assert_allclose(h, features, rtol=1e-5, atol=1e-6)
  normed = _layer_norm(features, p["readout_norm"])
  hidden = nn.gelu(normed @ p["readout_hidden"]["kernel"]
                   + p["readout_hidden"]["bias"])
  assert p["readout_hidden"]["kernel"].shape == (8, 32)
  np.testing.assert_allclose(
      eta, hidden @ p["readout"]["kernel"] + p["readout"]["bias"],
      rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="readout='mlp' needs readout_features"):
    blocks.Latent(families.Gaussian(), readout="mlp")


def test_unit_readout_is_a_fresh_copy_of_the_next_unit_then_a_linear_head():
  """`readout='unit'`: `eta = Dense(LN(act'(u'(h))))` with `u'` the unit
  after the block under the block's own parameters, computed here by
  applying that unit with them; the block passes `h` on."""
  stack = models.mlp((8, 8, 8), 3)
  latent = blocks.Latent(families.Gaussian(), readout="unit",
                         readout_features=5)
  block, above, _ = blocks.make_blocks(stack, (0, 1, 2, 4), [latent] * 2)
  x = jax.random.normal(jax.random.key(0), (4, 12))
  variables = block.init(jax.random.key(1), x)
  eta, h = block.apply(variables, x)
  p = variables["params"]
  above_params = above.init(jax.random.key(2), h)["params"]
  assert (jax.tree_util.tree_map(jnp.shape, p["readout_unit"])
          == jax.tree_util.tree_map(jnp.shape, above_params["units_0"]))
  copy = jax.nn.relu(stack.units[1].apply({"params": p["readout_unit"]}, h))
  normed = _layer_norm(copy, p["readout_norm"])
  np.testing.assert_allclose(
      eta, normed @ p["readout"]["kernel"] + p["readout"]["bias"],
      rtol=1e-4, atol=1e-5)


def test_deeper_unit_readout_copies_the_next_units_in_order():
  """`readout_depth=2`: `eta = Dense(LN(act_2(u'_2(act_1(u'_1(h))))))`,
  both copies with the block's own parameters, computed here by applying
  the stack's next two units with them; at the top of the stack the head
  copies only the units that are left."""
  stack = models.mlp((8, 6, 8), 3)
  latent = blocks.Latent(families.Gaussian(), readout="unit",
                         readout_features=5, readout_depth=2)
  block, top, _ = blocks.make_blocks(stack, (0, 1, 3, 4), [latent] * 2)
  x = jax.random.normal(jax.random.key(0), (4, 12))
  variables = block.init(jax.random.key(1), x)
  eta, h = block.apply(variables, x)
  p = variables["params"]
  first = jax.nn.relu(stack.units[1].apply({"params": p["readout_unit"]}, h))
  second = jax.nn.relu(
      stack.units[2].apply({"params": p["readout_unit_1"]}, first))
  assert second.shape == (4, 8)
  normed = _layer_norm(second, p["readout_norm"])
  np.testing.assert_allclose(
      eta, normed @ p["readout"]["kernel"] + p["readout"]["bias"],
      rtol=1e-4, atol=1e-5)
  top_params = top.init(jax.random.key(2), h)["params"]
  assert "readout_unit" in top_params and "readout_unit_1" not in top_params
  with pytest.raises(ValueError, match="readout_depth=2 copies units"):
    blocks.Latent(families.Gaussian(), readout="mlp", readout_features=5,
                  readout_depth=2)
  with pytest.raises(ValueError, match="readout_depth must be an integer"):
    blocks.Latent(families.Gaussian(), readout="unit", readout_features=5,
                  readout_depth=0)


def test_unit_readout_fits_every_cut_of_a_cnn():
  """The copied unit may stride, hold BatchNorm, or be the flattening head:
  the head pools what the copy returns, with the copy's own positions."""
  stack = models.cnn((4, 8, 8), (3, 3, 3), (1, 2, 1), NUM_CLASSES, 1)
  latent = blocks.Latent(families.Gaussian(), readout="unit",
                         readout_features=6)
  h = jnp.ones((2, 12, 1))
  for block in blocks.make_blocks(stack, (0, 1, 3, len(stack)), [latent] * 2):
    variables = block.init(jax.random.key(0), h, train=True)
    (eta, h), _ = block.apply(variables, h, train=True,
                              mutable=["batch_stats"])
    assert eta.shape[0] == 2 and bool(jnp.all(jnp.isfinite(eta)))
  assert h.shape == (2, NUM_CLASSES)
