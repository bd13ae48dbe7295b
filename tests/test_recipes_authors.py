"""bll_jax.recipes.authors: its pieces, its two switches, its preset, and the
schedules it runs under (a recipe is an object handed to the engine)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bll_jax import blocks
from bll_jax import config as config_lib
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax import models
from bll_jax import training
from bll_jax.engine import steps
from bll_jax.parallel import reference
from bll_jax.parallel import schedule
from bll_jax.recipes import authors
from bll_jax.training import build
from tests import conftest

NUM_CLASSES = 5


def _engine(recipe, stack=None, shape=(12,), tx=None, label_smoothing=0.0):
  stack = stack or models.mlp((16, 16, 16), NUM_CLASSES)
  edges = blocks.boundaries(len(stack), 4)
  return engine_lib.Engine(
      stack, edges, [blocks.Latent(families.Gaussian(), boundary="post")] * 3,
      method="bll", feedback_mode="direct", num_classes=NUM_CLASSES,
      input_shape=shape, input_dtype=jnp.float32, tx=tx or optax.sgd(0.1),
      recipe=recipe, feedback_init_scale=0.3,
      objective=engine_lib.Objective(label_smoothing=label_smoothing))


def _batch(n=20, shape=(12,), seed=0):
  rng = np.random.default_rng(seed)
  return {"inputs": jnp.asarray(rng.normal(size=(n,) + shape), jnp.float32),
          "labels": jnp.asarray(np.arange(n) % NUM_CLASSES, jnp.int32),
          "weights": jnp.ones(n)}


def _terms(recipe, engine, k, params, h_in, fb_k, labels, weights, key):
  """Block `k`'s unweighted terms, and its forward output."""
  def rerun(h):
    return engine.block_forward(k, params, {}, h, True, key)

  out = rerun(h_in)
  return recipe.block_terms(engine, k, out, fb_k, labels, weights, h_in=h_in,
                            key=key, rerun=rerun), out


def _per_block_step(engine, state, batch, key):
  plan = schedule.plan_for("sync", engine.num_blocks, 1)
  state, (metrics,) = reference.run(engine, state, [batch], [key], plan)
  return state, metrics


# ------------------------------------------------------------------ pieces


def test_feature_summary_is_maxpool_centre_normalise(x64):
  rng = np.random.default_rng(0)
  h = rng.normal(size=(3, 4, 5, 6))                       # [N, H, W, C]
  pooled = h.max(axis=(1, 2))
  centred = pooled - pooled.mean(-1, keepdims=True)
  expected = centred / np.linalg.norm(centred, axis=-1, keepdims=True)
  got = authors.feature_summary(jnp.asarray(h), 2, eps=0.0)
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-12)


def test_prototype_loss_is_distance_to_class_means_and_trains_only_fb(x64):
  rng = np.random.default_rng(1)
  xn = rng.normal(size=(9, 4))
  fb = rng.normal(size=(5, 4))
  labels = np.array([0, 0, 1, 1, 1, 3, 3, 3, 3])          # classes 2, 4 absent
  expected = np.mean([np.sum((fb[c] - xn[labels == c].mean(0)) ** 2)
                      for c in (0, 1, 3)])
  got = authors.prototype_loss(jnp.asarray(xn), jnp.asarray(fb),
                               jnp.asarray(labels), jnp.ones(9))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  g_xn, g_fb = jax.grad(authors.prototype_loss, (0, 1))(
      jnp.asarray(xn), jnp.asarray(fb), jnp.asarray(labels), jnp.ones(9))
  assert not bool(jnp.any(g_xn)) and bool(jnp.any(g_fb))
  assert not bool(jnp.any(g_fb[2])) and not bool(jnp.any(g_fb[4]))


def test_loss_is_the_weighted_sum_of_its_terms():
  recipe = authors.AuthorsRecipe(output=0.3, decorrelation=0.2, similarity=0.5,
                                 auxiliary=0.7, denoising=1.5)
  engine = _engine(recipe)
  batch = _batch()
  state = engine.init(jax.random.key(0), batch["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)
  key = jax.random.key(3)
  for k, sign in [(0, 1.0), (3, 1.0)]:
    fb_k = fb[k] if k < 3 else None
    h_in = batch["inputs"] if k == 0 else jnp.ones((20, 16))
    terms, _ = _terms(recipe, engine, k, state.blocks[k].params, h_in, fb_k,
                      batch["labels"], batch["weights"], key)
    loss, (_, metrics) = steps.block_loss(
        engine, k, state.blocks[k].params, {}, h_in, fb_k, batch["labels"],
        batch["weights"], key)
    expected = sum(getattr(recipe, n) * v for n, v in terms.items())
    np.testing.assert_allclose(loss, sign * expected, rtol=1e-6)
    assert set(terms) == ({"output"} if k == 3 else
                          {"decorrelation", "similarity", "auxiliary",
                           "denoising"})
    assert float(metrics["loss"]) == pytest.approx(float(loss))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_output_and_auxiliary_cross_entropies_use_the_label_smoothing(
    smoothing):
  recipe = authors.AuthorsRecipe()
  engine = _engine(recipe, label_smoothing=smoothing)
  batch = _batch()
  state = engine.init(jax.random.key(0), batch["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)
  key = jax.random.key(3)
  labels = batch["labels"]

  def smoothed_ce(logits):   # independent: the smoothed targets by hand
    targets = (1 - smoothing) * np.eye(NUM_CLASSES)[np.asarray(labels)] + (
        smoothing / NUM_CLASSES)
    logp = jax.nn.log_softmax(np.asarray(logits, np.float64), -1)
    return float(np.mean(-np.sum(targets * logp, -1)))

  h = jnp.ones((20, 16))
  terms, out = _terms(recipe, engine, 3, state.blocks[3].params, h, None,
                      labels, batch["weights"], key)
  assert float(terms["output"]) == pytest.approx(smoothed_ce(out.eta),
                                                 rel=1e-5)
  terms, out = _terms(recipe, engine, 0, state.blocks[0].params,
                      batch["inputs"], fb[0], labels, batch["weights"], key)
  assert float(terms["auxiliary"]) == pytest.approx(smoothed_ce(out.aux),
                                                    rel=1e-5)


# ---------------------------------------------------------------- switches


@pytest.mark.parametrize("pulls", [False, True])
def test_similarity_switch_sets_the_direction_of_the_gradient(pulls):
  """As published the term pushes features away from the prototype."""
  only_similarity = authors.AuthorsRecipe(
      output=1.0, decorrelation=0.0, similarity=1.0, auxiliary=0.0,
      denoising=0.0, similarity_pulls=pulls)
  engine = _engine(only_similarity, tx=optax.sgd(0.5))
  batch = _batch()
  state = engine.init(jax.random.key(0), batch["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)

  def mean_cosine(params):
    h = engine.block_forward(0, params, {}, batch["inputs"], True, None).h_out
    xn = authors.feature_summary(h, 0)
    return float(jnp.mean(authors.similarity(xn, fb[0], batch["labels"])))

  before = mean_cosine(state.blocks[0].params)
  new, _, _, _ = engine.block_step(0)(state.blocks[0], batch["inputs"], fb[0],
                                      batch["labels"], batch["weights"],
                                      jax.random.key(1))
  after = mean_cosine(new.params)
  assert (after > before) if pulls else (after < before), (before, after)


@pytest.mark.parametrize("train_aux", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_auxiliary_switch_trains_the_auxiliary_heads_or_not(train_aux, fused):
  # With weight decay and momentum a zero gradient alone would still move the
  # heads: as published they must not move at all.
  tx = optax.chain(optax.add_decayed_weights(0.05),
                   optax.sgd(0.1, momentum=0.9))
  recipe = authors.AuthorsRecipe(train_auxiliary=train_aux)
  engine = _engine(recipe, tx=tx)
  batch = _batch()
  state = engine.init(jax.random.key(0), batch["inputs"])
  step_fn = engine.train_step if fused else functools.partial(
      _per_block_step, engine)
  new, metrics = step_fn(state, batch, jax.random.key(1))
  for k in range(3):
    old_p, new_p = state.blocks[k].params, new.blocks[k].params
    aux_moved = any(bool(jnp.any(a != b)) for a, b in zip(
        jax.tree.leaves(old_p["aux"]), jax.tree.leaves(new_p["aux"])))
    body_moved = any(bool(jnp.any(a != b)) for a, b in zip(
        jax.tree.leaves(old_p["units_0"]), jax.tree.leaves(new_p["units_0"])))
    assert aux_moved == train_aux
    assert body_moved          # the block learns through its heads either way
    assert f"block{k}/term/auxiliary" in metrics
  # The feedback learns its prototypes.
  assert any(bool(jnp.any(a != b)) for a, b in zip(
      jax.tree.leaves(state.feedback.params),
      jax.tree.leaves(new.feedback.params)))


def test_per_block_and_fused_steps_agree_for_the_recipe():
  engine = _engine(authors.AuthorsRecipe(similarity_pulls=True,
                                         train_auxiliary=True),
                   tx=optax.adam(1e-2))
  batch = _batch()
  state = engine.init(jax.random.key(0), batch["inputs"])
  a = b = state
  for i in range(2):
    a, _ = engine.train_step(a, batch, jax.random.key(i))
    b, _ = _per_block_step(engine, b, batch, jax.random.key(i))
  diff = max(float(jnp.max(jnp.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert diff < 1e-6         # float32 round-off (measured 1e-7)


def test_the_frozen_heads_are_an_optax_partition():
  """As published, the auxiliary heads are `multi_transform`'s "frozen"
  partition (`set_to_zero`); fixed, the block's transformation is the run's."""
  tx = optax.adam(1e-2)
  frozen = authors.AuthorsRecipe().block_tx(tx)
  params = {"units_0": {"w": jnp.ones(3)}, "aux": {"w": jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = frozen.update(grads, frozen.init(params), params)
  assert not bool(jnp.any(updates["aux"]["w"]))
  assert bool(jnp.all(updates["units_0"]["w"] != 0))
  assert authors.AuthorsRecipe(train_auxiliary=True).block_tx(tx) is tx


@pytest.mark.parametrize("mesh", ["data=4,block=2"])
def test_the_recipe_trains_pipelined_and_equals_the_reference(mesh):
  """`--recipe authors --schedule pipelined`: each hidden block's feedback
  term is its own (the prototypes of its block), so the pipeline computes it
  where the block lives; the run equals the one-device reference."""
  from bll_jax import parallel
  engine = _engine(authors.AuthorsRecipe(), tx=optax.adam(1e-2))
  batches = [_batch(seed=i) for i in range(5)]
  keys = [jax.random.key(100 + i) for i in range(5)]
  state = engine.init(jax.random.key(0), batches[0]["inputs"])
  runner = parallel.make_runner(engine, parallel.RunnerSpec(
      mesh=mesh, schedule="pipelined"))
  got, metrics = runner.run_epoch(runner.place(state), batches, keys)
  want, want_metrics = reference.run(engine, state, batches, keys,
                                     runner.plan)
  diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(jax.device_get(got)),
                             jax.tree.leaves(want)))
  assert diff < 1e-6         # float32 round-off
  for m, w in zip(metrics, want_metrics):
    np.testing.assert_allclose(float(m["feedback/loss"]),
                               float(w["feedback/loss"]), rtol=1e-6)


# ------------------------------------------------------------------ config


def test_recipe_fields_and_errors():
  config = config_lib.get_config("mnist1d")
  config.recipe = "authors"
  resolved = build.resolve(config, 10)
  assert (resolved.family, resolved.feedback, resolved.boundary) == (
      "gaussian", "direct", "post")
  assert resolved.feedback_init_scale == pytest.approx(30 ** -0.5)
  config.method = "bp"
  with pytest.raises(ValueError, match="form of method 'bll'"):
    config_lib.check(config)
  config.method, config.recipe = "bll", "theirs"
  with pytest.raises(ValueError, match="recipe must be one of"):
    config_lib.check(config)


def test_triangular_schedule_peaks_at_its_epoch_and_ends_at_zero():
  config = config_lib.get_config("imagenet_resnet50_authors")
  lr = build.learning_rate(config, steps_per_epoch=10, total_steps=320)
  lrs = np.asarray([float(lr(i)) for i in range(321)])
  assert int(np.argmax(lrs)) == 20               # epoch 2 of 10 steps each
  assert lrs.max() == pytest.approx(1.7)
  assert lrs[0] == 0.0 and lrs[-1] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(lrs[10], 0.85, rtol=1e-6)       # linear rise
  np.testing.assert_allclose(lrs[170], 0.85, rtol=1e-6)      # linear fall


def test_progressive_resolution_ramps_in_multiples_of_32():
  from bll_jax.data import tfds as tfds_source
  sizes = [tfds_source.progressive_resolution(e, 160, 192, 23, 27)
           for e in range(32)]
  assert sizes[:24] == [160] * 24 and sizes[27:] == [192] * 5
  assert all(s % 32 == 0 for s in sizes)
  assert sizes == sorted(sizes)


def test_pod_preset_is_the_single_host_recipe_on_a_4x4_mesh():
  from bll_jax.parallel import mesh as mesh_lib
  single = config_lib.get_config("imagenet_resnet50_authors")
  pod = config_lib.get_config("imagenet_resnet50_authors_pod")
  differ = {k for k in single.to_dict()
            if single.to_dict()[k] != pod.to_dict()[k]}
  assert differ == {"preset", "mesh", "distributed"}
  assert pod.distributed is True
  spec = mesh_lib.MeshSpec.parse(pod.mesh).resolve(16)       # a v4-32: 16 chips
  assert (spec.data, spec.block) == (4, 4)
  assert spec.block == len(pod.cuts) + 1                     # a stage per block
  assert pod.batch_size // spec.data == 256                  # per chip
  assert (pod.lr, pod.batch_size) == (1.7, 1024)


def _mock_imagenet_config(tmp_path, model, preset="imagenet_resnet50_authors"):
  config = config_lib.get_config(preset)
  config.dataset.data_dir = str(tmp_path)
  config.dataset.image_size = 64
  config.dataset.progressive = (32, 64, 0, 1)   # 32 pixels, then 64
  config.batch_size, config.eval_batch_size = 8, 8
  config.epochs, config.progress = 2, False
  if preset.endswith("_pod"):
    # The pod form on 8 fake devices: one process (no jax.distributed), the
    # 4 blocks on their own stages, the batch split over 2 data replicas;
    # one resolution and one epoch (progressive resizing is tested above).
    config.mesh, config.distributed = "data=2,block=4", False
    config.dataset.image_size, config.dataset.progressive = 32, ()
    config.epochs = 1
  else:
    config.mesh = "data=1"
  if model == "resnet18":                       # the CI form: smaller network
    config.model.name, config.cuts = "resnet18", (3, 5, 7)
    config.model.width = 4
  return config


@pytest.mark.parametrize("preset,model", [
    ("imagenet_resnet50_authors", "resnet18"),
    # The pod form on its mesh; its short form is the single-host run above
    # plus the config check of test_pod_preset_is_the_single_host_recipe...
    pytest.param("imagenet_resnet50_authors_pod", "resnet18",
                 marks=pytest.mark.slow),
    pytest.param("imagenet_resnet50_authors", "resnet50",
                 marks=pytest.mark.slow)])
def test_imagenet_authors_preset_runs_on_mock_data(tmp_path, preset, model):
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    conftest.skip_unless_required(
        "BLL_REQUIRE_TFDS", f"tensorflow_datasets is not importable: {e}")
  config = _mock_imagenet_config(tmp_path, model, preset)
  pod = preset.endswith("_pod")
  with tfds.testing.mock_data(num_examples=16):
    dataset = build.load_dataset(config)
    if not pod:
      # Progressive resolution: epoch 0 trains at 32 pixels, epoch 1 at 64.
      for epoch, size in [(0, 32), (1, 64)]:
        first = next(dataset.train_batches(8, seed=0, epoch=epoch))
        assert first["inputs"].shape == (8, size, size, 3)
      assert next(dataset.test_batches(8))["inputs"].shape == (8, 64, 64, 3)
    summary = training.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["steps"] == (2 if pod else 4) and summary["blocks"] == 4
  assert summary["config"]["recipe"] == "authors"
  assert summary["config"]["lr_schedule"] == "triangular"
  assert np.isfinite(summary["final_train_loss"])
  assert len(summary["per_block_test_accuracy"]) == 4
  if pod:
    assert summary["mesh"]["axes"] == {"data": 2, "block": 4}
