"""Evidence accumulation (`Objective.accumulate_evidence`, docs/theory.md
section 8): each block's prediction as a Bayesian update of the one below's.

The chain is checked against Bayes' rule written out in float64 NumPy; the
block losses and predictions against the chain of the same network without
the option (same parameters, same key: dropout masks and sampled latents
included); locality by the gradients; the runners that cannot carry the
posterior up refuse in one line."""

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
from bll_jax import parallel
from bll_jax import training as train

NUM_CLASSES = 5
MLP = models.mlp((16, 16, 16), NUM_CLASSES)
TRANSFORMER_DROPOUT = models.transformer(2, 16, 2, 32, NUM_CLASSES, 6,
                                         dropout=0.3)
# (stack, latent, feedback, input shape, cuts): a deterministic MLP, the
# `local` method's latent (categorical, linear readout, onehot feedback),
# and a Transformer with dropout and latents sampled on the way up.
CASES = {
    "mlp-gaussian-direct": (MLP, blocks.Latent(families.Gaussian()),
                            "direct", (12,), None),
    "mlp-local-onehot": (MLP, blocks.Latent(
        families.Categorical(NUM_CLASSES), "linear", NUM_CLASSES),
                         "onehot", (12,), None),
    "transformer-dropout-sampled": (
        TRANSFORMER_DROPOUT,
        blocks.Latent(families.Bernoulli(), transmit="sample"),
        "chained", (6,), (2, 3)),
}


@functools.cache
def _engine(case: str, accumulate: bool, method: str = "bll",
            feedback_loss: str = "ml"):
  stack, latent, feedback, shape, cuts = CASES[case]
  edges = blocks.boundaries(len(stack), 3, cuts)
  return engine_lib.Engine(
      stack, edges, [latent] * (len(edges) - 2), method=method,
      feedback_mode=feedback, num_classes=NUM_CLASSES, input_shape=shape,
      input_dtype=jnp.int32 if cuts else jnp.float32, tx=optax.adam(1e-2),
      objective=engine_lib.Objective(accumulate_evidence=accumulate,
                                     feedback_loss=feedback_loss))


def _batch(case: str, seed: int = 0):
  rng = np.random.default_rng(seed)
  shape = CASES[case][3]
  if CASES[case][4]:                    # tokens: next-token targets
    x = jnp.asarray(rng.integers(1, NUM_CLASSES, (8,) + shape), jnp.int32)
    labels = x
  else:
    x = jnp.asarray(rng.normal(size=(8,) + shape), jnp.float32)
    labels = jnp.asarray(np.arange(8) % NUM_CLASSES, jnp.int32)
  weights = rng.uniform(0.2, 1.0, size=labels.shape)
  return {"inputs": x, "labels": labels,
          "weights": jnp.asarray(weights, jnp.float32)}


def _log_softmax64(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _bayes64(scores):
  """`log p(y | z_1..z_k)` for every k by Bayes' rule: a uniform prior times
  the likelihoods `exp(s_j(y))` of independent latents, normalised."""
  log_joint = np.cumsum(np.stack([np.asarray(s, np.float64)
                                  for s in scores]), 0)
  return [_log_softmax64(j) for j in log_joint]


def _picked(log_probs, labels):
  return np.take_along_axis(log_probs, np.asarray(labels)[..., None],
                            -1)[..., 0]


def test_evidence_chain_is_bayes_rule():
  rng = np.random.default_rng(0)
  scores = [rng.normal(scale=3.0, size=(4, 3, 7)) for _ in range(4)]
  chain = engine_lib.objective.evidence_chain(
      [jnp.asarray(s, jnp.float32) for s in scores])
  for got, want in zip(chain, _bayes64(scores)):
    np.testing.assert_allclose(got, want, atol=2e-5)
  # The first block is its own softmax; the chain only ever adds evidence.
  np.testing.assert_allclose(chain[0], _log_softmax64(scores[0]), atol=1e-6)


def _plain_scores(case, state, batch, key, train_mode):
  """Every block's own scores from the same network without the option:
  the hidden blocks' `local_logits`, the output's logits."""
  engine = _engine(case, False)
  params = [b.params for b in state.blocks]
  stats = [b.batch_stats for b in state.blocks]
  outs = engine.forward(params, stats, batch["inputs"], train_mode, key,
                        detach=True)
  fb = engine.feedback_forward(state.feedback.params,
                               [o.eta for o in outs])
  return [engine.recipe.hidden_logits(engine, k, outs[k], fb[k])
          for k in range(len(fb))] + [outs[-1].eta]


def _setup(case, engine):
  """The case's batch, a fresh state, the step's key, and `run(other,
  params=state's)`: the local losses of any engine of the case on them."""
  batch = _batch(case)
  state = engine.init(jax.random.key(0), batch["inputs"])
  key = jax.random.key(3)
  stats = [b.batch_stats for b in state.blocks]

  def run(other, params=tuple(b.params for b in state.blocks)):
    return other.local_losses(params, state.feedback.params, stats, batch,
                              key)

  return batch, state, key, run


def _mean_nll64(log_probs, batch):
  """The weighted mean of `-log q(y)` over the batch, float64."""
  weights = np.asarray(batch["weights"], np.float64)
  return -(_picked(log_probs, batch["labels"]) * weights).sum() / weights.sum()


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_losses_are_the_chains_cross_entropies(case):
  """Block `k` learns `-log q_k(y)` of the chain: against float64 Bayes'
  rule on the scores of the network without the option, the same key (the
  dropout masks and the sampled latents are the same draws)."""
  engine = _engine(case, True)
  batch, state, key, run = _setup(case, engine)
  block_losses, _, _ = run(engine)
  chain = _bayes64(_plain_scores(case, state, batch, key, True))
  want = [_mean_nll64(lp, batch) for lp in chain]
  np.testing.assert_allclose(block_losses, want, rtol=2e-5, atol=2e-6)
  # Not the losses without the option (the check above can tell).
  plain, _, _ = run(_engine(case, False))
  assert abs(float(plain[-1]) - want[-1]) > 1e-3


@pytest.mark.parametrize("case", ["mlp-gaussian-direct",
                                  "transformer-dropout-sampled"])
def test_the_discriminative_feedback_scores_the_same_update(case):
  """`L^fb_k = -log q_k(y)` of the chain for each hidden block (`b_k` the
  only thing it trains), so the feedback learns the table under which the
  block's *update* is right, as the block does; `both` adds the maximum
  likelihood terms of the option's absence."""
  engine = _engine(case, True, feedback_loss="discriminative")
  batch, state, key, run = _setup(case, engine)
  _, fb_loss, _ = run(engine)
  chain = _bayes64(_plain_scores(case, state, batch, key, True))
  want = sum(_mean_nll64(lp, batch) for lp in chain[:-1])
  np.testing.assert_allclose(fb_loss, want, rtol=2e-5)
  ml = run(_engine(case, False, feedback_loss="ml"))[1]
  both = run(_engine(case, True, feedback_loss="both"))[1]
  np.testing.assert_allclose(both, want + ml, rtol=2e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_gradient_crosses_a_block_boundary(case):
  """The posterior below is a constant to each block: block `j`'s
  parameters get gradient from block `j`'s loss alone, and the fused
  update is each block's own."""
  engine = _engine(case, True)
  _, state, _, run = _setup(case, engine)
  params = tuple(b.params for b in state.blocks)
  # One program each: d(loss_k)/d(params_j) for every k and j (jacrev of the
  # vector of block losses), and the gradient of their sum (the fused step).
  jacobian = jax.jit(jax.jacrev(lambda p: jnp.stack(run(engine, p)[0])))(
      params)
  total = jax.jit(jax.grad(lambda p: sum(run(engine, p)[0])))(params)
  for k in range(engine.num_blocks):
    grads = jax.tree.map(lambda g: g[k], jacobian)
    for j in range(engine.num_blocks):
      norm = optax.tree.norm(grads[j])
      if j != k:
        assert float(norm) == 0.0, (k, j)
      else:
        assert float(norm) > 0.0, k
        jax.tree.map(lambda a, b: np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=1e-6), grads[j], total[j])


@pytest.mark.parametrize("case", ["mlp-gaussian-direct", "mlp-local-onehot"])
def test_prediction_and_evaluation_follow_the_chain(case):
  """Evaluation scores each block's place in the chain, the output's
  included, as the blocks were trained."""
  engine = _engine(case, True)
  batch = _batch(case)
  state = engine.init(jax.random.key(0), batch["inputs"])
  logits, local = engine.predict(state, batch["inputs"])
  chain = _bayes64(_plain_scores(case, state, batch, None, False))
  for got, want in zip(local + (logits,), chain):
    np.testing.assert_allclose(_log_softmax64(got), want, atol=2e-5)
  sums = jax.device_get(engine.eval_step(state, batch))
  weights = np.asarray(batch["weights"], np.float64)
  np.testing.assert_allclose(
      sums["block_loss"],
      [-(_picked(lp, batch["labels"]) * weights).sum() for lp in chain],
      rtol=1e-5)


def test_what_cannot_carry_the_posterior_refuses_in_one_line():
  engine = _engine("mlp-gaussian-direct", True)
  for build in (lambda: engine.block_step(0), lambda: engine.feedback_step,
                lambda: engine.feedback_grad_fn(0)):
    with pytest.raises(ValueError, match="only the fused step computes"):
      build()
  for spec in (parallel.RunnerSpec(schedule="pipelined", mesh="block=3"),
               parallel.RunnerSpec(step_mode="per_block")):
    with pytest.raises(ValueError, match="sync schedule and step mode fused"):
      parallel.make_runner(engine, spec, devices=jax.devices()[:3])
  with pytest.raises(ValueError, match="method bll without a recipe"):
    _engine("mlp-gaussian-direct", True, method="bp")
  with pytest.raises(ValueError, match="horizon 1 and history 0"):
    engine_lib.Objective(accumulate_evidence=True, horizon=2)
  with pytest.raises(ValueError, match="must be a bool"):
    engine_lib.Objective(accumulate_evidence=1)


def test_a_run_with_the_flag_learns(tmp_path):
  """`--accumulate-evidence true` end to end on MNIST-1D: the summary's
  accuracy is well above chance and every block is scored."""
  config = config_lib.get_config("mnist1d")
  for name, value in {"mesh": "data=1", "model.widths": (32, 32),
                      "blocks": 3, "batch_size": 50, "eval_batch_size": 500,
                      "progress": False, "steps": 60,
                      "accumulate_evidence": True}.items():
    node = config
    *path, leaf = name.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["test_accuracy"] > 0.3, summary["test_accuracy"]
  assert len(summary["per_block_test_loss"]) == 3
  assert all(np.isfinite(summary["per_block_test_loss"]))
