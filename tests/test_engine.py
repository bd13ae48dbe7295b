"""bll_jax.engine: per-block steps, fused step, locality, bp, special cases."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bll_jax import blocks
from bll_jax import families
from bll_jax import losses
from bll_jax import models
from bll_jax import engine as engine_lib
from bll_jax.parallel import reference
from bll_jax.parallel import schedule
from tests._cases import max_diff

NUM_CLASSES = 5


def _batch(shape, n=16, tokens=False, seed=0):
  rng = np.random.default_rng(seed)
  if tokens:
    x = jnp.asarray(rng.integers(1, NUM_CLASSES, (n,) + shape), jnp.int32)
    return {"inputs": x, "labels": x, "weights": jnp.ones(x.shape)}
  x = jnp.asarray(rng.normal(size=(n,) + shape), jnp.float32)
  y = jnp.asarray(np.arange(n) % NUM_CLASSES, jnp.int32)
  return {"inputs": x, "labels": y, "weights": jnp.ones(n)}


@functools.cache       # tests with the same engine share its compiled steps
def _engine(stack, latent, feedback="direct", method="bll", shape=(12,),
            num_blocks=3, cuts=None, dtype=jnp.float32, tx=None, **objective):
  edges = blocks.boundaries(len(stack), num_blocks, cuts)
  return engine_lib.Engine(
      stack, edges, [latent] * (len(edges) - 2), method=method,
      feedback_mode=feedback, num_classes=NUM_CLASSES, input_shape=shape,
      input_dtype=dtype, tx=tx or optax.adam(1e-2),
      objective=engine_lib.Objective(**objective))


def _per_block_step(engine, state, batch, key):
  """One step as the per-block steps of the sync plan on one stage."""
  plan = schedule.plan_for("sync", engine.num_blocks, 1)
  state, (metrics,) = reference.run(engine, state, [batch], [key], plan)
  return state, metrics


MLP = models.mlp((16, 16, 16), NUM_CLASSES)
CNN = models.cnn((4, 8), (3, 3), (1, 2), NUM_CLASSES, 1)   # with BatchNorm
TRANSFORMER = models.transformer(2, 16, 2, 32, NUM_CLASSES, 6)
TRANSFORMER_DROPOUT = models.transformer(2, 16, 2, 32, NUM_CLASSES, 6,
                                         dropout=0.3)
# ImageNet stem (strided conv + max-pool), bottlenecks at ResNet-50's depth:
# the network of the imagenet_resnet50 preset, narrow and on small images.
RESNET50 = models.resnet(50, NUM_CLASSES, stem="imagenet", width=2)
RESNET18 = models.resnet(18, NUM_CLASSES, stem="imagenet", width=4)

CASES = {
    "mlp-gaussian-direct": (MLP, families.Gaussian(), "direct", (12,), None),
    "mlp-bernoulli-chained": (MLP, families.Bernoulli(), "chained", (12,), None),
    "mlp-learnedvar-bootstrapped": (MLP, families.GaussianLearnedVariance(),
                                    "bootstrapped", (12,), None),
    "mlp-categorical-random": (MLP, families.Categorical(4), "random", (12,),
                               None),
    # Feature maps pooled to 2 cells (uneven: 10 and 5 positions), two
    # parameters per unit, feedback bootstrapped from the pooled block above.
    "cnn-learnedvar-bootstrapped-grid2": (CNN, families.GaussianLearnedVariance(),
                                          "bootstrapped", (10,), None, 2),
    # Token targets; dropout masks come from each block's own key, the same
    # in both paths.
    "transformer-dropout-chained": (TRANSFORMER_DROPOUT, families.Gaussian(),
                                    "chained", (6,), (2, 3)),
    # Cut at the stage boundaries, as the presets do.
    "resnet18-imagenet-chained": (RESNET18, families.Gaussian(), "chained",
                                  (32, 32, 3), models.stage_cuts(18)),
    "resnet50-imagenet-chained": pytest.param(
        (RESNET50, families.Gaussian(), "chained", (32, 32, 3),
         models.stage_cuts(50)), marks=pytest.mark.slow),
}


def _cases():
  """CASES as parameters; a slow one runs with BLL_FULL=1, and resnet18
  (same stem, same cut at the stage boundaries) is its short form."""
  for name in sorted(CASES):
    case = CASES[name]
    if hasattr(case, "marks"):             # a pytest.param (itself a tuple)
      yield pytest.param(*case.values, marks=case.marks, id=name)
    else:
      yield pytest.param(case, id=name)


@pytest.mark.parametrize("case", list(_cases()))
def test_per_block_steps_in_turn_equal_the_fused_step(case):
  stack, family, mode, shape, cuts, *grid = case
  # Both feedback losses where the feedback has most structure.
  feedback_loss = "both" if mode in ("chained", "bootstrapped") else "ml"
  tokens = stack.token_targets
  # The attention key bias has an exactly zero gradient (a key bias shifts
  # every logit of a query alike): Adam would turn the two paths' different
  # round-off into updates of size lr. With dropout that shows; SGD does not
  # amplify it.
  # The same holds for ResNet kernels whose gradient entries are near zero
  # (measured: 4e-5 after 3 Adam steps under the tests' fast-compile flags,
  # 1.4e-6 with SGD).
  tx = (optax.sgd(0.1) if stack is TRANSFORMER_DROPOUT
        else optax.sgd(0.01) if stack is RESNET18 or stack is RESNET50
        else None)
  engine = _engine(stack, blocks.Latent(family, grid=grid[0] if grid else 0),
                   mode, shape=shape,
                   cuts=cuts, dtype=jnp.int32 if tokens else jnp.float32,
                   feedback_loss=feedback_loss, tx=tx)
  batch = _batch(shape, tokens=tokens)
  state = engine.init(jax.random.key(0), batch["inputs"])
  fused = per_block = state
  for i in range(3):
    key = jax.random.key(10 + i)
    fused, m_fused = engine.train_step(fused, batch, key)
    per_block, m_block = _per_block_step(engine, per_block, batch, key)
  assert set(m_fused) == set(m_block)
  # The two paths differ by float32 round-off only (measured: metrics to
  # 4e-7 relative, states to 2.2e-6 after 3 steps, resnet18 the largest).
  for name in m_fused:
    np.testing.assert_allclose(m_fused[name], m_block[name], rtol=2e-6,
                               atol=1e-7, err_msg=name)
  assert max_diff(fused, per_block) < 1e-5
  assert int(fused.step) == int(per_block.step) == 3
  # and something was learned: every block's parameters moved.
  for b0, b1 in zip(state.blocks, fused.blocks):
    assert max_diff(b0.params, b1.params) > 0


@pytest.mark.parametrize("mode", ["chained", "bootstrapped"])
def test_a_block_update_depends_on_nothing_above_it_but_the_feedback(mode):
  """The fused step's update of block `k` is a function of blocks `<= k`
  and the feedback: changing the parameters of a later block leaves it
  bit-identical. Bootstrapped feedback reads the outputs of the blocks
  above: there (and only there) every block below sees the change, through
  its `b_k`."""
  engine = _engine(CNN, blocks.Latent(families.Gaussian()), mode,
                   shape=(10,), num_blocks=3)
  batch = _batch((10,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  later = state.blocks[2]._replace(params=jax.tree.map(
      lambda x: x + 0.5, state.blocks[2].params))
  changed = state._replace(blocks=state.blocks[:2] + (later,))
  new, _ = engine.train_step(state, batch, jax.random.key(1))
  new_changed, _ = engine.train_step(changed, batch, jax.random.key(1))
  for k in (0, 1):
    diff = max_diff(new.blocks[k], new_changed.blocks[k])
    assert (diff > 0) == (mode == "bootstrapped"), (k, diff)
  # The block itself and, through its loss, the feedback did change.
  assert max_diff(new.blocks[2], new_changed.blocks[2]) > 0


def test_each_block_step_updates_exactly_its_own_state():
  """A block's step changes its parameters, statistics and optimiser state,
  and equals the fused step's update of that block (same inputs)."""
  engine = _engine(CNN, blocks.Latent(families.Gaussian()), shape=(10,))
  batch = _batch((10,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  key = jax.random.key(1)
  fused, _ = engine.train_step(state, batch, key)
  fb = engine.feedback_forward(state.feedback.params, None)
  h = batch["inputs"]
  for k in range(engine.num_blocks):
    fb_k = fb[k] if k < len(fb) else None
    new_k, h, _, _ = engine.block_step(k)(
        state.blocks[k], h, fb_k, batch["labels"], batch["weights"], key)
    assert max_diff(new_k.params, state.blocks[k].params) > 0
    if state.blocks[k].batch_stats:
      assert max_diff(new_k.batch_stats, state.blocks[k].batch_stats) > 0
    assert max_diff(new_k.opt_state, state.blocks[k].opt_state) > 0
    assert max_diff(new_k, fused.blocks[k]) < 1e-6     # float32 round-off


def test_compiled_steps_go_with_their_engine():
  """Compiled programs are kept on the engine, not in a global cache: a
  sweep that builds engines one after another does not keep them all."""
  import gc
  import weakref
  engine = _engine.__wrapped__(MLP, blocks.Latent(families.Gaussian()))
  batch = _batch((12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  engine.train_step(state, batch, jax.random.key(1))
  engine.block_step(0)(state.blocks[0], batch["inputs"],
                       engine.feedback_forward(state.feedback.params,
                                               None)[0],
                       batch["labels"], batch["weights"], jax.random.key(1))
  engine.eval_step(state, batch)
  ref = weakref.ref(engine)
  del engine
  gc.collect()
  assert ref() is None


def test_dropout_is_on_in_training_keyed_per_block_and_off_in_evaluation():
  engine = _engine(TRANSFORMER_DROPOUT, blocks.Latent(families.Gaussian()),
                   "chained", shape=(6,), cuts=(2, 3), dtype=jnp.int32)
  batch = _batch((6,), tokens=True)
  state = engine.init(jax.random.key(0), batch["inputs"])
  h = batch["inputs"]
  for k in range(engine.num_blocks - 1):     # the head has no dropout
    params = state.blocks[k].params

    def run(train, key, k=k, params=params, h=h):
      return engine.block_forward(k, params, {}, h, train, key).eta

    a, b = run(True, jax.random.key(1)), run(True, jax.random.key(2))
    assert max_diff(a, run(True, jax.random.key(1))) == 0     # keyed
    assert max_diff(a, b) > 0                                  # masks differ
    assert max_diff(run(False, jax.random.key(1)),
                     run(False, jax.random.key(2))) == 0        # eval: none
    h = engine.block_forward(k, params, {}, h, False, None).h_out


@pytest.mark.parametrize("stack,mode,shape,tokens,grid", [
    (MLP, "direct", (12,), False, 0),
    (MLP, "chained", (12,), False, 0),
    (MLP, "bootstrapped", (12,), False, 0),
    (CNN, "chained", (10,), False, 0),               # feature maps, BatchNorm
    (CNN, "chained", (10,), False, 2),               # maps pooled to 2 cells
    (TRANSFORMER_DROPOUT, "chained", (6,), True, 0),  # token targets, dropout
], ids=["mlp-direct", "mlp-chained", "mlp-bootstrapped", "cnn-chained",
        "cnn-grid-chained", "transformer-chained"])
def test_gradient_locality_on_the_full_parameter_tree(stack, mode, shape,
                                                      tokens, grid):
  """d L_k / d theta_j = 0 exactly for j != k, and d L_k / d phi = 0."""
  engine = _engine(stack, blocks.Latent(families.Gaussian(), grid=grid), mode,
                   num_blocks=min(4, len(stack)), feedback_loss="both",
                   shape=shape, dtype=jnp.int32 if tokens else jnp.float32)
  batch = _batch(shape, tokens=tokens)
  state = engine.init(jax.random.key(0), batch["inputs"])
  params = tuple(b.params for b in state.blocks)
  stats = [b.batch_stats for b in state.blocks]

  def all_losses(params, fb_params):
    block_losses, fb_loss, _ = engine.local_losses(
        params, fb_params, stats, batch, jax.random.key(1))
    return jnp.stack(block_losses + (fb_loss,))

  # Row r of the Jacobian: the gradient of loss r (the blocks', then the
  # feedback's) with respect to every block and the feedback, in one program.
  jac, fb_jac = jax.jit(jax.jacrev(all_losses, argnums=(0, 1)))(
      params, state.feedback.params)

  def norms(tree):      # per loss: sum |d loss / d leaf| over the tree
    return np.sum([np.abs(np.asarray(x)).reshape(x.shape[0], -1).sum(1)
                   for x in jax.tree.leaves(tree)], axis=0)

  feedback = engine.num_blocks
  for k in range(engine.num_blocks + 1):
    for j, block_jac in enumerate(jac):
      norm = norms(block_jac)[k]
      assert (norm > 0) == (j == k), (k, j, norm)
    fb_norm = norms(fb_jac)[k]
    assert (fb_norm > 0) == (k == feedback), (k, fb_norm)


@pytest.mark.parametrize("stack,shape", [(MLP, (12,)), (CNN, (10,))],
                         ids=["mlp", "cnn-batchnorm"])
def test_one_block_bll_gives_the_backprop_update(stack, shape):
  batch = _batch(shape)
  tx = optax.sgd(0.1, momentum=0.9)
  bll = _engine(stack, blocks.Latent(families.Gaussian()), num_blocks=1,
                shape=shape, tx=tx)
  bp = _engine(stack, blocks.Latent(families.Gaussian()), method="bp",
               num_blocks=1, shape=shape, tx=tx)
  s_bll = s_bp = bll.init(jax.random.key(0), batch["inputs"])
  for i in range(3):
    s_bll, m_bll = bll.train_step(s_bll, batch, jax.random.key(i))
    s_bp, m_bp = bp.train_step(s_bp, batch, jax.random.key(i))
    np.testing.assert_allclose(m_bll["block0/loss"], m_bp["block0/loss"],
                               rtol=1e-6)
  assert max_diff(s_bll.blocks, s_bp.blocks) < 1e-6


def test_bp_differentiates_end_to_end_through_the_same_network():
  engine = _engine(MLP, blocks.Latent(families.Gaussian()), method="bp",
                   num_blocks=4)
  batch = _batch((12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  params = tuple(b.params for b in state.blocks)
  # The blocks compose to the plain network: Dense-ReLU x3, Dense.
  h = batch["inputs"]
  for k, p in enumerate(params):
    dense = p["units_0"]["Dense_0"]
    h = h @ dense["kernel"] + dense["bias"]
    h = jax.nn.relu(h) if k < 3 else h
  logits, _ = engine.bp_logits(params, [{}] * 4, batch["inputs"], False, None)
  np.testing.assert_allclose(logits, h, rtol=1e-5, atol=1e-6)
  # Its gradient reaches the first block (a local loss would not, from the
  # output): one bp step moves every block.
  new, _ = engine.train_step(state, batch, jax.random.key(1))
  for b0, b1 in zip(state.blocks, new.blocks):
    assert max_diff(b0.params, b1.params) > 0


def test_drtp_feedback_is_fixed_and_local_is_cross_entropy_of_a_readout():
  batch = _batch((12,))
  drtp = _engine(MLP, blocks.Latent(families.Gaussian()), "random")
  state = drtp.init(jax.random.key(0), batch["inputs"])
  new, metrics = drtp.train_step(state, batch, jax.random.key(1))
  assert "feedback/loss" not in metrics and not drtp.trains_feedback
  assert max_diff(new.feedback.params, state.feedback.params) == 0

  latent = blocks.Latent(families.Categorical(NUM_CLASSES), readout="linear",
                         readout_features=NUM_CLASSES)
  local = _engine(MLP, latent, "onehot")
  state = local.init(jax.random.key(0), batch["inputs"])
  _, metrics = local.train_step(state, batch, jax.random.key(1))
  # The hidden block's local loss is the cross-entropy of its readout head.
  eta = local.block_forward(0, state.blocks[0].params, {}, batch["inputs"],
                            True, jax.random.key(1)).eta
  ce = optax.softmax_cross_entropy_with_integer_labels(eta, batch["labels"])
  np.testing.assert_allclose(metrics["block0/loss"], ce.mean(), rtol=1e-5)


def test_gaussian_post_boundary_blocks_compose_to_the_plain_network():
  engine = _engine(MLP, blocks.Latent(families.Gaussian()), num_blocks=4)
  batch = _batch((12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  logits, local = engine.predict(state, batch["inputs"])
  bp_logits, _ = engine.bp_logits(tuple(b.params for b in state.blocks),
                                  [{}] * 4, batch["inputs"], False, None)
  np.testing.assert_allclose(logits, bp_logits, rtol=1e-6)
  # Block 0's natural parameters are its post-ReLU features.
  eta, h, _, _ = engine.block_forward(0, state.blocks[0].params, {},
                                      batch["inputs"], False, None)
  assert bool(jnp.all(eta >= 0)) and bool(jnp.all(h == eta))
  fb = engine.feedback_forward(state.feedback.params, None)
  np.testing.assert_allclose(
      local[0], losses.local_logits(families.Gaussian(), eta, fb[0]),
      rtol=1e-5)


def test_bernoulli_pre_boundary_passes_on_the_sigmoid_mean():
  engine = _engine(MLP, blocks.Latent(families.Bernoulli()), num_blocks=4)
  batch = _batch((12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  eta, h, _, _ = engine.block_forward(0, state.blocks[0].params, {},
                                      batch["inputs"], False, None)
  assert bool(jnp.any(eta < 0))
  np.testing.assert_allclose(h, jax.nn.sigmoid(eta), rtol=1e-6)


def test_sampled_transmission_in_training_and_mean_in_evaluation():
  latent = blocks.Latent(families.Bernoulli(), transmit="sample")
  engine = _engine(MLP, latent, num_blocks=4)
  batch = _batch((12,))
  state = engine.init(jax.random.key(0), batch["inputs"])
  p = state.blocks[0].params
  h_train = engine.block_forward(0, p, {}, batch["inputs"], True,
                                 jax.random.key(1)).h_out
  h_eval = engine.block_forward(0, p, {}, batch["inputs"], False, None).h_out
  assert set(np.unique(np.asarray(h_train))) <= {0.0, 1.0}
  assert bool(jnp.all((h_eval > 0) & (h_eval < 1)))


def test_feature_map_latents_share_feedback_across_positions():
  engine = _engine(CNN, blocks.Latent(families.Gaussian()), shape=(10,))
  assert engine.latents[0].position_ndim == 1
  assert engine.eta_shapes[0] == (2, 10, 4)
  state = engine.init(jax.random.key(0), _batch((10,))["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)
  assert fb[0].shape == (NUM_CLASSES, 4)    # one channel vector per class


def test_token_targets_train_per_token():
  engine = _engine(TRANSFORMER, blocks.Latent(families.Gaussian()), "chained",
                   shape=(6,), cuts=(2, 3), dtype=jnp.int32)
  batch = _batch((6,), tokens=True)
  state = engine.init(jax.random.key(0), batch["inputs"])
  logits, local = engine.predict(state, batch["inputs"])
  assert logits.shape == (16, 6, NUM_CLASSES)
  assert all(l.shape == (16, 6, NUM_CLASSES) for l in local)
  sums = engine.eval_step(state, batch)
  assert float(sums["weight"]) == 16 * 6


def _log_softmax64(logits):
  x = np.asarray(logits, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("tokens", [False, True])
def test_eval_step_scores_every_block_and_their_mixture(tokens):
  """Each block's summed cross-entropy and the mixture's, against float64
  NumPy on the logits `predict` returns; the mixture's loss lies between
  the best block's plus `log |S|` and the blocks' mean (Jensen)."""
  if tokens:
    engine = _engine(TRANSFORMER, blocks.Latent(families.Gaussian()),
                     "chained", shape=(6,), cuts=(2, 3), dtype=jnp.int32)
    batch = _batch((6,), tokens=True)
  else:
    engine = _engine(MLP, blocks.Latent(families.Gaussian()))
    batch = _batch((12,))
  batch["weights"] = jnp.asarray(
      np.random.default_rng(1).uniform(size=batch["weights"].shape))
  state = engine.init(jax.random.key(0), batch["inputs"])
  logits, local = engine.predict(state, batch["inputs"])
  sums = jax.device_get(engine.eval_step(state, batch))

  labels = np.asarray(batch["labels"])
  weights = np.asarray(batch["weights"], np.float64)
  log_probs = [_log_softmax64(l) for l in local + (logits,)]
  picked = [np.take_along_axis(lp, labels[..., None], -1)[..., 0]
            for lp in log_probs]
  block_loss = [-(p * weights).sum() for p in picked]
  np.testing.assert_allclose(sums["block_loss"], block_loss, rtol=1e-5)
  np.testing.assert_allclose(sums["loss"], block_loss[-1], rtol=1e-5)

  mixture = np.log(np.mean([np.exp(p) for p in picked], 0))
  mixture_loss = -(mixture * weights).sum()
  np.testing.assert_allclose(sums["mixture_loss"], mixture_loss, rtol=1e-5)
  assert mixture_loss <= np.mean(block_loss) + 1e-9
  assert mixture_loss <= min(block_loss) + np.log(len(picked)) * weights.sum()
  predicted = np.argmax(np.mean([np.exp(lp) for lp in log_probs], 0), -1)
  np.testing.assert_allclose(sums["mixture_correct"],
                             ((predicted == labels) * weights).sum(),
                             rtol=1e-5)


def test_mixture_of_one_block_is_its_log_softmax_and_none_is_refused():
  logits = jnp.asarray([[1.0, 2.0, -3.0]])
  np.testing.assert_allclose(engine_lib.predict.mixture_log_probs([logits]),
                             jax.nn.log_softmax(logits), rtol=1e-6)
  with pytest.raises(ValueError, match="at least one"):
    engine_lib.predict.mixture_log_probs([])


def test_boundaries_even_and_explicit_cuts_and_errors():
  assert blocks.boundaries(4, 4) == (0, 1, 2, 3, 4)
  assert blocks.boundaries(10, 4) == (0, 3, 6, 8, 10)
  assert blocks.boundaries(10, None, (3, 5, 7)) == (0, 3, 5, 7, 10)
  assert blocks.boundaries(5, 1) == (0, 5)
  with pytest.raises(ValueError, match=r"blocks must be an integer in \[1, 4\]"):
    blocks.boundaries(4, 5)
  with pytest.raises(ValueError, match=r"cuts must be strictly increasing"):
    blocks.boundaries(10, None, (0, 5))
  with pytest.raises(ValueError, match=r"cuts must be strictly increasing"):
    blocks.boundaries(10, None, (5, 5))
  with pytest.raises(ValueError, match=r"in \[1, 9\]"):
    blocks.boundaries(10, None, (3, 10))
  with pytest.raises(ValueError, match="readout"):
    blocks.Latent(families.Gaussian(), readout="pool")
  with pytest.raises(ValueError, match="readout_features"):
    blocks.Latent(families.Gaussian(), readout="linear")
  with pytest.raises(ValueError, match="boundary"):
    blocks.Latent(families.Gaussian(), boundary="middle")


def test_models_have_the_documented_units():
  assert len(models.resnet(18, 10)) == 10 and len(models.resnet(50, 10)) == 18
  assert models.stage_cuts(18) == (3, 5, 7)
  assert models.stage_cuts(50) == (4, 8, 14)
  assert len(models.transformer(8, 32, 4, 64, 10, 12)) == 10
  assert len(models.mlp((512, 512, 512), 10)) == 4
  x = jnp.zeros((2, 32, 32, 3))
  for depth, stem, pooled in [(18, "cifar", 32), (50, "imagenet", 8)]:
    stack = models.resnet(depth, 10, stem)
    variables = nn.Sequential([stack.units[0]]).init(jax.random.key(0), x)
    out = stack.units[0].apply({"params": variables["params"]["layers_0"],
                                "batch_stats": variables["batch_stats"][
                                    "layers_0"]}, x)
    assert out.shape == (2, pooled, pooled, 64)


def test_horizon_and_history_score_each_position_against_its_targets():
  """A hidden block's loss with horizon H and history R: at every position
  t, the sum over the targets o in (0, .., H-1, -1, .., -R) of
  -log q_o(labels[t + o]), each q_o a nearest-prototype softmax over its own
  table (rows i*C .. (i+1)*C of the feedback for the i-th offset), computed
  here by a float64 loop over positions and targets; and the feedback's
  discriminative loss, each table's weighted mean over its targets."""
  from bll_jax.engine import steps
  from tests import _cases
  c = _cases.NUM_CLASSES
  engine = _cases.make_engine(_cases.TRANSFORMER, _cases.TRANSFORMER_CUTS,
                              shape=(6,), horizon=2, history=1)
  offsets = engine.objective.target_offsets
  assert offsets == (0, 1, -1)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(0, c, (4, 6)), jnp.int32)
  labels = rng.integers(0, c, (4, 6))
  weights = rng.uniform(0.5, 2.0, (4, 6)).astype(np.float32)
  weights[3] = 0.0                                   # a padded window
  weights[2, 4] = 0.0                                # a padded token
  state = engine.init(jax.random.key(0), inputs)
  fb = engine.feedback_forward(state.feedback.params, None)
  assert fb[0].shape == (len(offsets) * c, 16)
  h_in = jnp.asarray(rng.normal(size=(4, 6, 16)), jnp.float32)
  k = 1
  loss, (out, _) = steps.block_loss(
      engine, k, state.blocks[k].params, {}, h_in, fb[k],
      jnp.asarray(labels), jnp.asarray(weights), jax.random.key(1))
  eta, table = np.float64(out.eta), np.float64(fb[k])
  variance = engine.latents[k].family.variance
  total = 0.0
  per_table, table_weight = np.zeros(len(offsets)), np.zeros(len(offsets))
  for b in range(4):
    for t in range(6):
      for i, o in enumerate(offsets):
        if not 0 <= t + o < 6 or weights[b, t + o] == 0:
          continue
        rows = table[i * c:(i + 1) * c]
        scores = -np.sum(np.square(variance * eta[b, t] - variance * rows),
                         -1) / (4 * variance)
        log_q = scores - scores.max() - np.log(
            np.sum(np.exp(scores - scores.max())))
        nll = -log_q[labels[b, t + o]]
        total += weights[b, t] * nll
        per_table[i] += weights[b, t] * nll
        table_weight[i] += weights[b, t]
  np.testing.assert_allclose(float(loss), total / weights.sum(), rtol=1e-5)
  np.testing.assert_allclose(
      float(engine.recipe.feedback_term(engine, k, out.eta, fb[k],
                                        jnp.asarray(labels),
                                        jnp.asarray(weights))),
      np.sum(per_table / table_weight), rtol=1e-5)
  # The block's own prediction in evaluation is the next token's.
  logits = engine.recipe.hidden_logits(engine, k, out, fb[k])
  np.testing.assert_allclose(
      logits, losses.local_logits(engine.latents[k].family, out.eta,
                                  fb[k][:c]), rtol=1e-6)


def test_more_targets_than_the_next_need_token_targets():
  from tests import _cases
  with pytest.raises(ValueError, match="2 targets per position .* need "
                     "token targets"):
    _cases.make_engine(_cases.MLP, history=1)
