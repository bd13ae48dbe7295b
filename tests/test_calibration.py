"""Per-block temperatures calibrated at init (bll_jax.calibration)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bll_jax import blocks
from bll_jax import calibration
from bll_jax import config as config_lib
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax import losses
from bll_jax import models
from bll_jax import training

NUM_CLASSES = 5
MLP = models.mlp((16, 16, 16), NUM_CLASSES)
# Feature maps of 10 and 5 positions: the scores are position-averaged.
CNN = models.cnn((4, 8), (3, 3), (1, 2), NUM_CLASSES, 1)


def _engine(stack, shape, family=families.Gaussian(), feedback="chained",
            method="bll", **objective):
  edges = blocks.boundaries(len(stack), 3)
  return engine_lib.Engine(
      stack, edges, [blocks.Latent(family)] * (len(edges) - 2),
      method=method, feedback_mode=feedback, num_classes=NUM_CLASSES,
      input_shape=shape, input_dtype=jnp.float32, tx=optax.adam(1e-3),
      objective=engine_lib.Objective(**objective))


def _batch(shape, n=32, seed=0):
  rng = np.random.default_rng(seed)
  weights = np.ones(n, np.float32)
  weights[-4:] = 0.0                          # padding rows count for nothing
  return {"inputs": rng.normal(size=(n,) + shape).astype(np.float32),
          "labels": np.arange(n) % NUM_CLASSES, "weights": weights}


def _spreads_by_hand(engine, state, batch, key):
  """sigma_k in float64 numpy from the T = 1 scores of local_logits."""
  etas = engine.forward_train(state, batch["inputs"], key)
  fb = engine.feedback_forward(state.feedback.params, etas)
  w = np.asarray(batch["weights"], np.float64)
  out = []
  for k, latent in enumerate(engine.latents):
    logits = np.asarray(losses.local_logits(
        latent.family, etas[k], fb[k], position_ndim=latent.position_ndim),
        np.float64)
    positions = int(np.prod(etas[k].shape[1:-1]))   # averaged, as the loss
    logits = logits / positions
    centred = logits - logits.mean(-1, keepdims=True)
    out.append(np.sqrt(np.sum(w * np.mean(centred ** 2, -1)) / np.sum(w)))
  return out


@pytest.mark.parametrize("stack,shape,family,feedback", [
    (MLP, (12,), families.Gaussian(), "chained"),
    (MLP, (12,), families.Bernoulli(), "direct"),
    (CNN, (10,), families.GaussianLearnedVariance(), "bootstrapped"),
], ids=["mlp-gaussian-chained", "mlp-bernoulli-direct",
        "cnn-learnedvar-bootstrapped"])
def test_spreads_are_the_weighted_rms_of_the_class_std(stack, shape, family,
                                                       feedback):
  engine = _engine(stack, shape, family, feedback)
  batch, key = _batch(shape), jax.random.key(1)
  state = engine.init(jax.random.key(0), batch["inputs"])
  spreads = calibration.score_spreads(engine, state, batch, key)
  assert len(spreads) == len(engine.latents) == 2
  np.testing.assert_allclose(spreads,
                             _spreads_by_hand(engine, state, batch, key),
                             rtol=1e-5)


def test_calibrated_scores_have_std_one_over_t_whatever_the_scale():
  """The point of it: the Gaussian scores are quadratic in the means, so
  scaling the activations and the feedback by 10 scales sigma by 100, and
  the calibrated log q(y | alpha) stays the same, with scores of standard
  deviation 1 / T over classes (weighted over examples)."""
  batch = _batch((12,))
  engine = _engine(MLP, (12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  etas = engine.forward_train(state, batch["inputs"], jax.random.key(1))
  fb = engine.feedback_forward(state.feedback.params, etas)
  eta, w, t = etas[1], batch["weights"], 2.0
  calibrated = []
  for scale in (1.0, 10.0):
    sigma = calibration.score_spread("gaussian", scale * eta, scale * fb[1], w)
    z = losses.local_logits("gaussian", scale * eta, scale * fb[1],
                            temperature=t * sigma)
    np.testing.assert_allclose(
        np.sqrt(np.sum(w * np.var(np.asarray(z), -1)) / np.sum(w)), 1 / t,
        rtol=1e-4)
    calibrated.append((sigma, np.asarray(jax.nn.log_softmax(z))))
  (s1, q1), (s10, q10) = calibrated
  np.testing.assert_allclose(s10, 100 * s1, rtol=1e-4)
  np.testing.assert_allclose(q1, q10, rtol=1e-4, atol=1e-4)


def test_scores_that_do_not_vary_have_no_scale():
  with pytest.raises(ValueError, match="do not vary"):
    calibration.score_spread("gaussian", jnp.ones((4, 8)), jnp.ones((3, 8)),
                             jnp.ones(4))


def test_an_engine_with_block_temperatures_uses_each_in_its_loss():
  """Each hidden block's step scores with its own temperature."""
  batch, key = _batch((12,)), jax.random.key(1)
  temperatures = (0.5, 3.0)
  engine = _engine(MLP, (12,), temperature=temperatures)
  shared = _engine(MLP, (12,), temperature=0.5)
  state = engine.init(jax.random.key(0), batch["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)
  h = batch["inputs"]
  for k, t in enumerate(temperatures):
    args = (fb[k], batch["labels"], batch["weights"], key)
    _, h_next, eta, metrics = engine.block_step(k)(state.blocks[k], h, *args)
    expected = engine_lib.weighted_mean(
        losses.local_loss("gaussian", eta, fb[k], batch["labels"],
                          temperature=t), batch["weights"])
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    # and the two blocks really differ from one shared temperature
    _, _, _, shared_metrics = shared.block_step(k)(state.blocks[k], h, *args)
    assert np.isclose(shared_metrics["loss"], metrics["loss"]) == (t == 0.5)
    h = h_next


@pytest.mark.parametrize("temperature,match", [
    ((1.0,), "one per hidden block"),
    ((1.0, -2.0), "positive"),
    (float("nan"), "positive"),
])
def test_bad_block_temperatures_are_refused(temperature, match):
  with pytest.raises(ValueError, match=match):
    _engine(MLP, (12,), temperature=temperature)


def test_backprop_has_nothing_to_calibrate():
  engine = _engine(MLP, (12,), method="bp")
  batch = _batch((12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  with pytest.raises(ValueError, match="needs hidden blocks with feedback; "
                     "this engine \\('bp'\\) has 2 hidden blocks and no "
                     "feedback"):
    calibration.score_spreads(engine, state, batch, jax.random.key(1))


@pytest.mark.parametrize("fields,match", [
    ({"method": "bp"}, "needs method bll, local or drtp"),
    ({"recipe": "authors"}, "no recipe"),
    ({"temperature_calibration": "always"}, "must be one of"),
])
def test_the_config_refuses_calibration_it_cannot_do(fields, match):
  config = config_lib.get_config("mnist1d")
  config.temperature_calibration = "init"
  config.update(fields)
  with pytest.raises(training.ConfigError, match=match):
    training.prepare(config)


def test_a_calibrated_run_records_its_block_temperatures(tmp_path):
  config = config_lib.get_config("mnist1d")
  config.update({"mesh": "data=1", "blocks": 3, "batch_size": 50,
                 "steps": 3, "progress": False, "temperature": 2.0,
                 "temperature_calibration": "init"})
  config.model.name, config.model.widths = "mlp", (32, 32)
  run = training.prepare(config)
  summary = training.train_and_evaluate(config, str(tmp_path))
  # Recomputed independently: the training run's own init (from a zeros
  # sample, as train_and_evaluate does), its step-0 key, its first batch.
  batch = calibration.first_batch(run.dataset, 50, 0)
  engine = run.engine
  state = engine.init(jax.random.key(0), np.zeros((50, 40), np.float32))
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 1), 0)
  spreads = calibration.score_spreads(engine, state, batch, key)
  assert len(spreads) == 2
  np.testing.assert_allclose(engine.objective.temperature,
                             2.0 * np.asarray(spreads), rtol=1e-6)
  assert summary["temperature"] == engine.objective.temperature
