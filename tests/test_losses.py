"""bll_jax.losses against independent float64 computations.

The values are computed under `jax.jit` (the family and the keyword options
static): one compiled program per family and shapes, where eager calls
compile every op of the losses on its own. The argument checks, which act on
concrete values in eager calls, are tested eagerly.
"""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from bll_jax import families
from bll_jax import losses
from tests import _reference as ref

ALL_FAMILIES = [
    families.Bernoulli(),
    families.Categorical(2),
    families.Gaussian(0.5),
    families.GaussianLearnedVariance(),
]

_OPTIONS = ("temperature", "chunk_size", "position_ndim")
# The losses compiled whole: one program instead of dozens of eager ops.
jit_local_loss = jax.jit(losses.local_loss, static_argnums=0,
                         static_argnames=_OPTIONS)
jit_local_logits = jax.jit(losses.local_logits, static_argnums=0,
                           static_argnames=_OPTIONS)
jit_feedback_discriminative_loss = jax.jit(
    losses.feedback_discriminative_loss, static_argnums=0,
    static_argnames=_OPTIONS)
jit_feedback_ml_loss = jax.jit(losses.feedback_ml_loss, static_argnums=0,
                               static_argnames=("position_ndim",))
JITTED = {losses.local_loss: jit_local_loss,
          losses.feedback_ml_loss: jit_feedback_ml_loss,
          losses.feedback_discriminative_loss:
              jit_feedback_discriminative_loss}
# natural_from_raw is several eager ops for GaussianLearnedVariance.
_natural_from_raw = jax.jit(lambda family, raw: family.natural_from_raw(raw),
                            static_argnums=0)


def _params(family, rng, shape, scale=1.5):
  """Valid natural parameters of shape `shape[:-1] + (units * P/unit,)`."""
  raw = rng.normal(scale=scale, size=shape[:-1] + (
      shape[-1] * family.params_per_unit,))
  return _natural_from_raw(family, raw)


def _log_q_reference(family, a, fb):
  """log q(y | alpha) for one example by enumeration / closed-form densities."""
  a, fb = np.asarray(a, np.float64), np.asarray(fb, np.float64)
  if isinstance(family, families.Bernoulli):
    states = ref.bernoulli_states(a.shape[-1])
    scores = [special.logsumexp(ref.bernoulli_log_prob(states, a)
                                + ref.bernoulli_log_prob(states, b)) for b in fb]
  elif isinstance(family, families.Categorical):
    g = family.group_size
    states = ref.categorical_states(a.shape[-1] // g, g)
    scores = [special.logsumexp(ref.categorical_log_prob(states, a, g)
                                + ref.categorical_log_prob(states, b, g))
              for b in fb]
  elif isinstance(family, families.Gaussian):
    v = family.variance  # int N(z; mu_a, v) N(z; mu_b, v) dz = N(mu_a; mu_b, 2v)
    scores = [np.sum(stats.norm.logpdf(v * a, v * b, math.sqrt(2 * v)))
              for b in fb]
  else:
    d = a.shape[-1] // 2
    mu = lambda e: e[:d] / (-2 * e[d:])
    var = lambda e: -0.5 / e[d:]
    scores = [np.sum(stats.norm.logpdf(mu(a), mu(b), np.sqrt(var(a) + var(b))))
              for b in fb]
  scores = np.array(scores)
  return scores - special.logsumexp(scores)


# --------------------------------------------- the loss and its special cases


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_local_loss_matches_bayes_rule_over_targets(x64, family):
  rng = np.random.default_rng(0)
  eta_fwd = _params(family, rng, (6, 4))
  eta_fb = _params(family, rng, (5, 4))
  labels = np.array([0, 1, 2, 3, 4, 2])
  log_q = [_log_q_reference(family, a, eta_fb) for a in np.asarray(eta_fwd)]
  got = jit_local_loss(family, eta_fwd, eta_fb, labels)
  expected = [-log_q[i][labels[i]] for i in range(6)]
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11)
  logits = jit_local_logits(family, eta_fwd, eta_fb)
  np.testing.assert_allclose(special.log_softmax(np.asarray(logits), -1),
                             log_q, rtol=1e-9, atol=1e-11)


def test_categorical_with_scaled_one_hot_feedback_tends_to_cross_entropy(x64):
  rng = np.random.default_rng(1)
  num_classes = 7
  eta_fwd = rng.normal(scale=2, size=(16, num_classes))
  labels = rng.integers(0, num_classes, 16)
  ce = -np.take_along_axis(special.log_softmax(eta_fwd, -1),
                           labels[:, None], -1)[:, 0]
  family = families.Categorical(num_classes)
  errors = []
  for scale in [1.0, 5.0, 20.0, 60.0]:
    got = jit_local_loss(family, eta_fwd, scale * np.eye(num_classes), labels)
    errors.append(float(np.max(np.abs(np.asarray(got) - ce))))
  assert errors == sorted(errors, reverse=True), errors
  assert errors[-1] < 1e-12 and errors[0] > 1e-2
  # The gradient to the block is then exactly softmax(eta) - one_hot(y).
  g = jax.jit(jax.grad(lambda e: losses.local_loss(
      family, e, 60.0 * jnp.eye(num_classes), labels).sum()))(eta_fwd)
  np.testing.assert_allclose(
      g, special.softmax(eta_fwd, -1) - np.eye(num_classes)[labels],
      atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_gaussian_local_loss_is_nearest_prototype_softmax(x64, temperature):
  rng = np.random.default_rng(2)
  v = 0.8
  family = families.Gaussian(v)
  eta_fwd = rng.normal(size=(10, 6))
  eta_fb = rng.normal(size=(4, 6))
  labels = rng.integers(0, 4, 10)
  x, protos = v * eta_fwd, v * eta_fb
  sq_dist = ((x[:, None, :] - protos[None]) ** 2).sum(-1)
  logits = -sq_dist / (4 * v * temperature)
  expected = -special.log_softmax(logits, -1)[np.arange(10), labels]
  got = jit_local_loss(family, eta_fwd, eta_fb, labels,
                       temperature=temperature)
  np.testing.assert_allclose(got, expected, rtol=1e-10)
  # The prediction is the nearest prototype.
  pred = np.argmax(jit_local_logits(family, eta_fwd, eta_fb), -1)
  np.testing.assert_array_equal(pred, sq_dist.argmin(-1))


# ------------------------------------------- chunking and token targets


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_chunked_classes_equal_unchunked_value_and_gradient(family):
  rng = np.random.default_rng(3)
  eta_fwd = _params(family, rng, (3, 5, 4))              # [batch, time, P]
  eta_fb = _params(family, rng, (23, 4))                 # 23 = 4 * 5 + 3
  labels = rng.integers(0, 23, (3, 5))

  def total(fn, chunk):
    return lambda f, b: fn(family, f, b, labels, chunk_size=chunk).sum()

  for fn in [losses.local_loss, losses.feedback_discriminative_loss]:
    full = jax.jit(jax.value_and_grad(total(fn, None), (0, 1)))(eta_fwd,
                                                                 eta_fb)
    chunked = jax.jit(jax.value_and_grad(total(fn, 5), (0, 1)))(eta_fwd,
                                                                eta_fb)
    np.testing.assert_allclose(chunked[0], full[0], rtol=1e-5)
    for g_chunked, g_full in zip(chunked[1], full[1]):
      np.testing.assert_allclose(g_chunked, g_full, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
      jit_local_logits(family, eta_fwd, eta_fb, chunk_size=5),
      jit_local_logits(family, eta_fwd, eta_fb), rtol=1e-5, atol=1e-6)


def test_token_targets_equal_flattened_examples():
  rng = np.random.default_rng(4)
  family = families.Bernoulli()
  eta_fwd = np.asarray(_params(family, rng, (2, 7, 6)))
  eta_fb = _params(family, rng, (11, 6))
  labels = rng.integers(0, 11, (2, 7))
  seq = jit_local_loss(family, eta_fwd, eta_fb, labels)
  flat = jit_local_loss(family, eta_fwd.reshape(14, 6), eta_fb,
                        labels.reshape(14))
  assert seq.shape == (2, 7)
  np.testing.assert_allclose(np.reshape(seq, 14), flat, rtol=1e-6)


def test_large_vocabulary_gradient_never_holds_batch_by_vocab_by_features():
  """Compiled temp memory with chunks stays far below one [N, V, P] array."""
  family = families.Bernoulli()
  n, vocab, p, chunk = 256, 8192, 64, 256
  eta_fwd = jax.ShapeDtypeStruct((n, p), jnp.float32)
  eta_fb = jax.ShapeDtypeStruct((vocab, p), jnp.float32)
  labels = jax.ShapeDtypeStruct((n,), jnp.int32)

  def grad_fn(chunk_size):
    def loss(f, b, y):
      return (losses.local_loss(family, f, b, y, chunk_size=chunk_size).sum()
              + losses.feedback_discriminative_loss(
                  family, f, b, y, chunk_size=chunk_size).sum())
    return jax.jit(jax.grad(loss, (0, 1)))

  full_array = n * vocab * p * 4                                  # 512 MiB
  chunked = grad_fn(chunk).lower(eta_fwd, eta_fb, labels).compile()
  temp = chunked.memory_analysis().temp_size_in_bytes
  assert temp < full_array / 8, (temp, full_array)
  unchunked = grad_fn(None).lower(eta_fwd, eta_fb, labels).compile()
  assert unchunked.memory_analysis().temp_size_in_bytes >= full_array


# ---------------------------------------------------- gradient routing


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_gradients_reach_only_their_arguments(family):
  rng = np.random.default_rng(5)
  eta_fwd = _params(family, rng, (8, 4))
  eta_fb = _params(family, rng, (3, 4))
  labels = rng.integers(0, 3, 8)

  def grads(fn):
    return jax.jit(jax.grad(lambda f, b: fn(family, f, b, labels).sum(),
                            (0, 1)))(eta_fwd, eta_fb)

  g_fwd, g_fb = grads(losses.local_loss)
  assert np.abs(g_fwd).max() > 0 and not np.any(g_fb)
  for fn in [losses.feedback_ml_loss, losses.feedback_discriminative_loss]:
    g_fwd, g_fb = grads(fn)
    assert not np.any(g_fwd) and np.abs(g_fb).max() > 0
  # The logits themselves are stop-gradient free: a random cotangent reaches
  # both arguments.
  w = np.asarray(rng.normal(size=(8, 3)), eta_fwd.dtype)
  g_fwd, g_fb = jax.jit(jax.grad(
      lambda f, b: jnp.sum(w * losses.local_logits(family, f, b)), (0, 1)))(
          eta_fwd, eta_fb)
  assert np.abs(g_fwd).max() > 0 and np.abs(g_fb).max() > 0


# -------------------------------------------------------- feedback ML


@pytest.mark.parametrize("family", [families.Gaussian(0.5), families.Bernoulli(),
                                    families.GaussianLearnedVariance()],
                         ids=lambda f: f.name)
def test_feedback_ml_loss_is_minimised_by_class_moments(x64, family):
  """At the optimum the feedback's mean statistics are the class averages."""
  rng = np.random.default_rng(6)
  eta_fwd = _params(family, rng, (40, 3))
  labels = np.arange(40) % 4
  stats_fwd = np.asarray(jax.jit(family.mean)(eta_fwd))   # E_alpha[T(z)]
  class_stats = np.stack([stats_fwd[labels == c].mean(0)
                          for c in range(4)])
  # Map the class moments back to natural parameters (inverse of grad A).
  if isinstance(family, families.Gaussian):
    eta_star = class_stats / family.variance
  elif isinstance(family, families.Bernoulli):
    eta_star = special.logit(class_stats)
  else:
    d = 3
    mu, second = class_stats[:, :d], class_stats[:, d:]
    var = second - mu ** 2
    eta_star = np.concatenate([mu / var, -0.5 / var], -1)

  def total(b, f):
    return losses.feedback_ml_loss(family, f, b, labels).sum()

  grad = jax.jit(jax.grad(total))(eta_star, eta_fwd)
  np.testing.assert_allclose(grad, 0.0, atol=1e-9)
  # And it is a minimum: perturbing any class increases the loss.
  total = jax.jit(total)
  base = float(total(eta_star, eta_fwd))
  for _ in range(5):
    noise = 0.05 * np.abs(eta_star) * rng.normal(size=eta_star.shape)
    assert float(total(eta_star + noise, eta_fwd)) > base


# ------------------------------------------------------- regularisers


def test_batch_decorrelation_matches_double_loop(x64):
  rng = np.random.default_rng(7)
  x = rng.normal(size=(6, 5))
  xn = x - x.mean(1, keepdims=True)
  xn /= np.linalg.norm(xn, axis=1, keepdims=True)
  expected = np.mean([(xn[i] @ xn[j]) ** 2 for i in range(6) for j in range(6)
                      if i != j])
  decorrelation = jax.jit(losses.batch_decorrelation_loss,
                          static_argnames="eps")
  np.testing.assert_allclose(decorrelation(x, eps=0.0), expected, rtol=1e-12)
  # Orthogonal centred rows have no correlation.
  h = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
  assert float(decorrelation(h)) < 1e-20


def test_denoising_loss_value_and_gradient(x64):
  rng = np.random.default_rng(8)
  noisy, clean = rng.normal(size=(2, 4, 3))
  np.testing.assert_allclose(jax.jit(losses.denoising_loss)(noisy, clean),
                             ((noisy - clean) ** 2).mean(-1), rtol=1e-12)
  g_noisy, g_clean = jax.jit(jax.grad(
      lambda n, c: losses.denoising_loss(n, c).sum(), (0, 1)))(
          noisy, clean)
  np.testing.assert_allclose(g_noisy, 2 * (noisy - clean) / 3, rtol=1e-12)
  assert not np.any(g_clean)


# -------------------------------------------------- composition over blocks


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_vmap_over_block_axis_equals_python_loop(family):
  rng = np.random.default_rng(9)
  num_blocks = 3
  eta_fwd = np.asarray(_params(family, rng, (num_blocks, 8, 4)))
  eta_fb = np.asarray(_params(family, rng, (num_blocks, 5, 4)))
  labels = rng.integers(0, 5, 8)

  def per_block(f, b):
    return (losses.local_loss(family, f, b, labels).mean(),
            losses.feedback_ml_loss(family, f, b, labels).mean(),
            jax.grad(lambda x: losses.local_loss(family, x, b, labels).mean())(f))

  mapped = jax.jit(jax.vmap(per_block))(eta_fwd, eta_fb)
  one_block = jax.jit(per_block)     # compiled once, called for each block
  for k in range(num_blocks):
    looped = one_block(eta_fwd[k], eta_fb[k])
    for m, l in zip(mapped, looped):
      # float32: a fused vmap rounds differently from one block's program,
      # by less than the float32 error of either against float64 (checked by
      # hand).
      np.testing.assert_allclose(m[k], l, rtol=1e-5,
                                 atol=3e-5 * float(np.abs(l).max()))


# ------------------------------------------------------------ bad input


def test_bad_input_raises_value_error_naming_argument():
  fam = families.Gaussian()
  f, b, y = jnp.zeros((4, 3)), jnp.zeros((5, 3)), jnp.array([0, 1, 2, 3])
  with pytest.raises(ValueError, match=r"eta_fb must have shape \[num_classes, 3\]"):
    losses.local_loss(fam, f, jnp.zeros((5, 2)), y)
  with pytest.raises(ValueError, match=r"eta_fb must have shape"):
    losses.local_loss(fam, f, jnp.zeros((2, 5, 3)), y)
  with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
    losses.local_loss(fam, f, b, jnp.array([0, 1]))
  with pytest.raises(ValueError, match="labels must be integer"):
    losses.local_loss(fam, f, b, jnp.zeros(4))
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
    losses.feedback_ml_loss(fam, f, b, jnp.array([0, 1, 5, 2]))
  with pytest.raises(ValueError, match="same dtype"):
    losses.local_loss(fam, f, b.astype(jnp.bfloat16), y)
  with pytest.raises(ValueError, match="family must be one of"):
    losses.local_loss("gamma", f, b, y)
  with pytest.raises(ValueError, match="temperature"):
    losses.local_loss(fam, f, b, y, temperature=0.0)
  with pytest.raises(ValueError, match="chunk_size"):
    losses.local_loss(fam, f, b, y, chunk_size=0)
  with pytest.raises(ValueError, match=r"features must have shape \[batch >= 2"):
    losses.batch_decorrelation_loss(jnp.zeros((1, 3)))
  with pytest.raises(ValueError, match="out_clean must have the shape"):
    losses.denoising_loss(jnp.zeros((2, 3)), jnp.zeros((3,)))
  # The checks are static: the same call works under jit with traced labels.
  out = jax.jit(lambda y: losses.local_loss(fam, f, b, y))(y)
  assert out.shape == (4,)


# ---------------------------------------------------------- lightness


def test_importing_losses_stays_light():
  code = ("import sys, bll_jax.losses; "
          "heavy = [m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_datasets', 'flax', 'optax', 'orbax') "
          "or m.startswith(('bll_jax.train', 'bll_jax.data', "
          "'bll_jax.models', 'bll_jax.engine', 'bll_jax.parallel'))]; "
          "print(heavy); sys.exit(1 if heavy else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------- feature-map positions and per-example feedback


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_positions_share_feedback_and_their_scores_add(x64, family):
  rng = np.random.default_rng(10)
  eta_fwd = _params(family, rng, (3, 2, 2, 4))            # [batch, H, W, P]
  eta_fb = _params(family, rng, (5, 4))
  labels = np.array([0, 3, 4])
  # log_agreement(eta_fwd[n, h, w], eta_fb[c]) for every example n, class c
  # and position (h, w): one compiled call on the pairs, laid out
  # [n, c, h, w, P], instead of 60 eager calls.
  pairs = (3, 5, 2, 2, eta_fwd.shape[-1])
  agreement = jax.jit(family.log_agreement)(
      np.broadcast_to(np.asarray(eta_fwd)[:, None], pairs),
      np.broadcast_to(np.asarray(eta_fb)[None, :, None, None], pairs))
  scores = np.asarray(agreement).sum((2, 3))
  log_q = special.log_softmax(scores, -1)
  got = jit_local_loss(family, eta_fwd, eta_fb, labels, position_ndim=2)
  np.testing.assert_allclose(got, -log_q[np.arange(3), labels], rtol=1e-10)
  logits = jit_local_logits(family, eta_fwd, eta_fb, position_ndim=2)
  np.testing.assert_allclose(special.log_softmax(np.asarray(logits), -1),
                             log_q, rtol=1e-10, atol=1e-12)
  # cross_entropy(eta_fwd[n, h, w], eta_fb[labels[n]]), one call likewise.
  own = np.asarray(eta_fb)[labels][:, None, None]
  ml = np.asarray(jax.jit(family.cross_entropy)(
      eta_fwd, np.broadcast_to(own, eta_fwd.shape))).sum((1, 2))
  np.testing.assert_allclose(
      jit_feedback_ml_loss(family, eta_fwd, eta_fb, labels, position_ndim=2),
      ml, rtol=1e-10)


def test_gaussian_feature_map_is_a_prototype_classifier_on_the_pooled_map(x64):
  rng = np.random.default_rng(11)
  v, positions = 0.5, 6
  family = families.Gaussian(v)
  eta_fwd = rng.normal(size=(4, positions, 3))
  eta_fb = rng.normal(size=(7, 3))
  pooled = v * eta_fwd.mean(1)
  logits = -positions * ((pooled[:, None] - v * eta_fb[None]) ** 2
                         ).sum(-1) / (4 * v)
  got = jit_local_logits(family, eta_fwd, eta_fb, position_ndim=1)
  np.testing.assert_allclose(special.log_softmax(np.asarray(got), -1),
                             special.log_softmax(logits, -1), rtol=1e-10)


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_per_example_feedback_equals_one_call_per_example(x64, family):
  rng = np.random.default_rng(12)
  eta_fwd = _params(family, rng, (4, 3, 4))                # [batch, pos, P]
  eta_fb = _params(family, rng, (4, 6, 4))                 # [batch, C, P]
  labels = np.array([5, 0, 2, 2])
  for fn in [losses.local_loss, losses.feedback_ml_loss,
             losses.feedback_discriminative_loss]:
    got = JITTED[fn](family, eta_fwd, eta_fb, labels, position_ndim=1)

    def one_example(f, b, y, fn=fn):
      return fn(family, f[None], b, y[None], position_ndim=1)[0]

    # One call per example, vmapped: one program instead of four eager calls.
    one_by_one = jax.jit(jax.vmap(one_example))(eta_fwd, eta_fb, labels)
    np.testing.assert_allclose(got, one_by_one, rtol=1e-10)
  chunked = jit_local_loss(family, eta_fwd, eta_fb, labels, position_ndim=1,
                           chunk_size=4)
  np.testing.assert_allclose(
      chunked, jit_local_loss(family, eta_fwd, eta_fb, labels,
                              position_ndim=1), rtol=1e-10)
  # Shared rows given per example change nothing.
  shared = np.asarray(eta_fb)[0]
  np.testing.assert_allclose(
      jit_local_loss(family, eta_fwd, np.broadcast_to(shared, (4, 6, 4 * (
          family.params_per_unit))), labels, position_ndim=1),
      jit_local_loss(family, eta_fwd, shared, labels, position_ndim=1),
      rtol=1e-10)


@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("fn", [losses.local_loss, losses.feedback_ml_loss,
                                losses.feedback_discriminative_loss])
def test_out_of_range_labels_under_jit_give_nan_not_a_clamped_class(
    fn, per_example):
  rng = np.random.default_rng(11)
  fam = families.Gaussian()
  f = rng.normal(size=(4, 3)).astype(np.float32)
  b = rng.normal(size=(4, 5, 3) if per_example else (5, 3)).astype(np.float32)
  y = np.array([0, 5, -1, 4])          # 5 and -1 are out of [0, 5)
  jitted = jax.jit(lambda f, b, y: fn(fam, f, b, y))
  loss = np.asarray(jitted(f, b, y))
  assert np.isnan(loss).tolist() == [False, True, True, False]
  # The same program with the labels in range: the others are unchanged.
  ok = np.asarray(jitted(f, b, np.array([0, 1, 2, 4])))
  np.testing.assert_allclose(loss[[0, 3]], ok[[0, 3]], rtol=1e-6)


def test_position_and_per_example_shape_errors():
  fam = families.Bernoulli()
  with pytest.raises(ValueError, match="position_ndim must be an integer in"):
    losses.local_loss(fam, jnp.zeros((2, 3, 4)), jnp.zeros((5, 4)),
                      jnp.zeros(2, jnp.int32), position_ndim=3)
  with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
    losses.local_loss(fam, jnp.zeros((2, 3, 4)), jnp.zeros((5, 4)),
                      jnp.zeros((2, 3), jnp.int32), position_ndim=1)
  with pytest.raises(ValueError, match=r"or \[2\] \+ \[num_classes, 4\]"):
    losses.local_loss(fam, jnp.zeros((2, 3, 4)), jnp.zeros((3, 5, 4)),
                      jnp.zeros(2, jnp.int32), position_ndim=1)


def test_shifted_targets_move_labels_and_mask_outside_the_window():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 7, (3, 5))
  weights = rng.uniform(0.5, 2.0, size=(3, 5)).astype(np.float32)
  weights[1, 3] = 0.0                                   # a padded token
  offsets = (0, 1, 2, -1, -2)
  got_labels, valid = losses.shifted_targets(labels, weights, offsets)
  assert got_labels.shape == valid.shape == (5, 3, 5)
  for i, o in enumerate(offsets):
    for b in range(3):
      for t in range(5):
        inside = 0 <= t + o < 5
        assert got_labels[i, b, t] == (labels[b, t + o] if inside else 0)
        assert valid[i, b, t] == float(inside and weights[b, t + o] > 0)
  np.testing.assert_array_equal(weights * valid[0], weights)
  with pytest.raises(ValueError, match=r"offsets must be integers in \(-5, 5\)"):
    losses.shifted_targets(labels, weights, (0, 5))
  with pytest.raises(ValueError, match="offsets must be integers"):
    losses.shifted_targets(labels, weights, ())
  with pytest.raises(ValueError, match="weights must have the shape"):
    losses.shifted_targets(labels, weights[:, :4], (0,))
