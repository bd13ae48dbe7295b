"""bll_jax.families against enumeration, quadrature and Monte Carlo (float64)."""

import math

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from bll_jax import families
from tests import _reference as ref

# Logits from tame to extreme; float64 keeps the reference exact enough.
LOGIT = st.floats(-60.0, 60.0, allow_nan=False, allow_infinity=False)

ALL_FAMILIES = [
    families.Bernoulli(),
    families.Categorical(3),
    families.Gaussian(0.7),
    families.GaussianLearnedVariance(),
]


def _random_eta(family, rng, shape, scale=2.0):
  """Valid natural parameters with last axis 4 units."""
  raw = rng.normal(scale=scale, size=shape[:-1] + (
      shape[-1] * family.params_per_unit,))
  if isinstance(family, families.GaussianLearnedVariance):
    d = shape[-1]
    raw[..., d:] = -0.5 * np.exp(rng.normal(size=raw[..., d:].shape))
  return raw


# ------------------------------------------------------------- enumeration


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(st.lists(LOGIT, min_size=6, max_size=6))
def test_bernoulli_log_agreement_matches_enumeration(logits):
  eta = np.array(logits)
  a, b = eta[:3], eta[3:]
  states = ref.bernoulli_states(3)
  expected = special.logsumexp(ref.bernoulli_log_prob(states, a)
                               + ref.bernoulli_log_prob(states, b))
  with jax.enable_x64(True):
    got = families.Bernoulli().log_agreement(jnp.array(a), jnp.array(b))
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(st.lists(LOGIT, min_size=12, max_size=12))
def test_categorical_log_agreement_matches_enumeration(logits):
  eta = np.array(logits)
  a, b = eta[:6], eta[6:]          # two groups of three states each
  states = ref.categorical_states(2, 3)
  expected = special.logsumexp(ref.categorical_log_prob(states, a, 3)
                               + ref.categorical_log_prob(states, b, 3))
  with jax.enable_x64(True):
    got = families.Categorical(3).log_agreement(jnp.array(a), jnp.array(b))
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("family,states,log_prob", [
    (families.Bernoulli(), ref.bernoulli_states(4), ref.bernoulli_log_prob),
    (families.Categorical(2), ref.categorical_states(2, 2),
     lambda s, e: ref.categorical_log_prob(s, e, 2)),
    (families.Categorical(3), ref.categorical_states(2, 3),
     lambda s, e: ref.categorical_log_prob(s, e, 3)),
    (families.Categorical(5), ref.categorical_states(1, 5),
     lambda s, e: ref.categorical_log_prob(s, e, 5)),
], ids=["bernoulli", "categorical2", "categorical3", "categorical5"])
def test_discrete_posterior_entropy_cross_entropy_mean(x64, seed, family,
                                                       states, log_prob):
  rng = np.random.default_rng(seed)
  a, b = rng.normal(scale=3, size=(2, states.shape[1]))
  log_a, log_b = log_prob(states, a), log_prob(states, b)

  # Posterior: alpha * beta normalised over all states is the family at a+b.
  joint = log_a + log_b
  posterior = np.exp(joint - special.logsumexp(joint))
  post_family, post_eta = family.posterior(jnp.array(a), jnp.array(b))
  assert post_family == family
  np.testing.assert_allclose(post_eta, a + b)
  np.testing.assert_allclose(np.exp(log_prob(states, a + b)), posterior,
                             rtol=1e-10)
  got_post = jax.vmap(post_family.log_prob, (0, None))(jnp.array(states),
                                                      post_eta)
  np.testing.assert_allclose(np.exp(got_post), posterior, rtol=1e-10)

  p_a = np.exp(log_a)
  np.testing.assert_allclose(family.entropy(a), -np.sum(p_a * log_a),
                             rtol=1e-10)
  np.testing.assert_allclose(family.cross_entropy(a, b), -np.sum(p_a * log_b),
                             rtol=1e-10)
  np.testing.assert_allclose(family.kl(a, b), np.sum(p_a * (log_a - log_b)),
                             rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(family.mean(a), p_a @ states, rtol=1e-10)


# --------------------------------------------------------------- quadrature


@pytest.mark.parametrize("seed", range(8))
def test_gaussian_fixed_variance_against_quadrature(x64, seed):
  rng = np.random.default_rng(seed)
  v = float(np.exp(rng.normal()))
  sd = math.sqrt(v)
  family = families.Gaussian(v)
  a, b = rng.normal(scale=2 / v, size=(2, 3))
  mu_a, mu_b = v * a, v * b

  agreement = sum(
      math.log(ref.gaussian_integral(
          lambda z, i=i: ref.normal_pdf(z, mu_a[i], sd) * ref.normal_pdf(
              z, mu_b[i], sd), mu_a[i], sd)) for i in range(3))
  np.testing.assert_allclose(family.log_agreement(a, b), agreement, rtol=1e-8)

  # Posterior: normalised alpha * beta has the moments of the posterior family.
  post_family, post_eta = family.posterior(jnp.array(a), jnp.array(b))
  for i in range(3):
    f = lambda z, i=i: ref.normal_pdf(z, mu_a[i], sd) * ref.normal_pdf(
        z, mu_b[i], sd)
    norm = ref.gaussian_integral(f, mu_a[i], sd)
    m1 = ref.gaussian_integral(lambda z: z * f(z), mu_a[i], sd) / norm
    m2 = ref.gaussian_integral(lambda z: z * z * f(z), mu_a[i], sd) / norm
    np.testing.assert_allclose(post_family.mean(post_eta)[i], m1, rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_allclose(post_family.variance, m2 - m1 ** 2, rtol=1e-7)

  ce = sum(ref.gaussian_integral(
      lambda z, i=i: -ref.normal_pdf(z, mu_a[i], sd) * ref.normal_logpdf(
          z, mu_b[i], sd), mu_a[i], sd) for i in range(3))
  np.testing.assert_allclose(family.cross_entropy(a, b), ce, rtol=1e-8)
  np.testing.assert_allclose(family.entropy(a),
                             3 * stats.norm(0, sd).entropy(), rtol=1e-10)
  np.testing.assert_allclose(
      family.log_prob(jnp.array(mu_b), a),
      np.sum(ref.normal_logpdf(mu_b, mu_a, sd)), rtol=1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_gaussian_learned_variance_against_quadrature(x64, seed):
  rng = np.random.default_rng(seed)
  family = families.GaussianLearnedVariance()
  mu = rng.normal(scale=2, size=(2, 3))
  var = np.exp(rng.normal(size=(2, 3)))
  eta = np.concatenate([mu / var, -0.5 / var], -1)        # [2, 6]
  a, b = eta
  sd = np.sqrt(var)

  def alpha_beta(i):
    return lambda z: (ref.normal_pdf(z, mu[0, i], sd[0, i])
                      * ref.normal_pdf(z, mu[1, i], sd[1, i]))

  agreement = sum(math.log(ref.gaussian_integral(alpha_beta(i), mu[0, i],
                                                 sd[0, i])) for i in range(3))
  np.testing.assert_allclose(family.log_agreement(a, b), agreement, rtol=1e-8)
  # The same value through the log-partition (constant base measure).
  via_a = (family.log_partition(a + b) - family.log_partition(a)
           - family.log_partition(b) - 1.5 * math.log(2 * math.pi))
  np.testing.assert_allclose(family.log_agreement(a, b), via_a, rtol=1e-10)

  post_family, post_eta = family.posterior(jnp.array(a), jnp.array(b))
  assert post_family == family
  post_mean = post_family.mean(post_eta)                    # (E z, E z^2)
  for i in range(3):
    f = alpha_beta(i)
    norm = ref.gaussian_integral(f, mu[0, i], sd[0, i])
    m1 = ref.gaussian_integral(lambda z: z * f(z), mu[0, i], sd[0, i]) / norm
    m2 = ref.gaussian_integral(lambda z: z * z * f(z), mu[0, i], sd[0, i]) / norm
    np.testing.assert_allclose(post_mean[i], m1, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(post_mean[3 + i], m2, rtol=1e-8, atol=1e-10)

  ce = sum(ref.gaussian_integral(
      lambda z, i=i: -ref.normal_pdf(z, mu[0, i], sd[0, i]) * ref.normal_logpdf(
          z, mu[1, i], sd[1, i]), mu[0, i], sd[0, i]) for i in range(3))
  np.testing.assert_allclose(family.cross_entropy(a, b), ce, rtol=1e-8)
  np.testing.assert_allclose(family.entropy(a),
                             np.sum(stats.norm(0, sd[0]).entropy()), rtol=1e-10)
  np.testing.assert_allclose(
      family.kl(a, b), family.cross_entropy(a, b) - family.entropy(a),
      rtol=1e-12)
  np.testing.assert_allclose(family.expectation(a), mu[0], rtol=1e-12)


# ------------------------------------------------- mean = grad A, sampling


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_mean_is_gradient_of_log_partition(x64, family):
  rng = np.random.default_rng(0)
  eta = jnp.array(_random_eta(family, rng, (5, 6)))
  grad = jax.grad(lambda e: family.log_partition(e).sum())(eta)
  np.testing.assert_allclose(family.mean(eta), grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_sample_moments_match_expectation(x64, family):
  rng = np.random.default_rng(1)
  eta = jnp.array(_random_eta(family, rng, (6,), scale=1.0))
  n = 200_000
  z = jax.vmap(family.sample, (0, None))(jax.random.split(jax.random.key(0), n),
                                         eta)
  d = family.latent_size(eta.shape[-1])
  assert z.shape == (n, d) and z.dtype == eta.dtype
  expect = np.asarray(family.expectation(eta))
  # Monte Carlo standard error of the mean is below 0.01 for these scales.
  std = np.asarray(z).std(0)
  np.testing.assert_allclose(np.asarray(z).mean(0), expect,
                             atol=float(5 * std.max() / math.sqrt(n)) + 1e-3)
  # And the sample log-likelihood estimates the entropy.
  mc_entropy = -float(jnp.mean(jax.vmap(family.log_prob, (0, None))(z, eta)))
  np.testing.assert_allclose(mc_entropy, family.entropy(eta), atol=0.03)


# --------------------------------------- transforms, dtypes and extremes


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=lambda f: f.name)
def test_jit_vmap_grad_and_leading_shapes(family):
  rng = np.random.default_rng(2)
  a = jnp.asarray(_random_eta(family, rng, (2, 3, 6)), jnp.float32)
  b = jnp.asarray(_random_eta(family, rng, (2, 3, 6)), jnp.float32)
  eager = family.log_agreement(a, b)
  assert eager.shape == (2, 3)
  jitted = jax.jit(family.log_agreement)(a, b)
  mapped = jax.vmap(jax.vmap(family.log_agreement))(a, b)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5)
  np.testing.assert_allclose(mapped, eager, rtol=1e-5)
  # The family is static and hashable: usable as a jit static argument.
  fn = jax.jit(lambda fam, x, y: fam.kl(x, y), static_argnums=0)
  np.testing.assert_allclose(fn(family, a, b), family.kl(a, b), rtol=1e-5)
  g = jax.grad(lambda x: family.log_agreement(x, b).sum())(a)
  assert g.shape == a.shape and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("family", [families.Bernoulli(),
                                    families.Categorical(4)],
                         ids=lambda f: f.name)
def test_extreme_logits_stay_finite(family, dtype):
  big = jnp.array([[1e4, -1e4, 3e4, -3e4], [80.0, -80.0, 0.0, 5.0]], dtype)
  other = jnp.array([[-1e4, -1e4, 3e4, 1e2], [-80.0, 80.0, 1.0, -5.0]], dtype)
  outs = [family.log_partition(big), family.mean(big),
          family.log_agreement(big, other), family.kl(big, other),
          family.cross_entropy(big, other), family.entropy(big),
          jax.grad(lambda x: family.log_agreement(x, other).sum())(big)]
  for out in outs:
    assert out.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(out))), out
  # Agreement is a log-probability: never positive.
  assert bool(jnp.all(family.log_agreement(big, other) <= 1e-2 * abs(
      family.log_partition(big))))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("family", [families.Gaussian(1.0),
                                    families.GaussianLearnedVariance()],
                         ids=lambda f: f.name)
def test_gaussians_in_low_precision(family, dtype):
  rng = np.random.default_rng(3)
  raw = jnp.asarray(rng.normal(scale=30, size=(4, 8)), dtype)
  a = family.natural_from_raw(raw)
  b = family.natural_from_raw(raw[::-1])
  assert a.dtype == dtype
  for out in [family.log_agreement(a, b), family.kl(a, b), family.entropy(a),
              family.mean(a), family.log_partition(a)]:
    assert out.dtype == dtype and bool(jnp.all(jnp.isfinite(out)))
  ref32 = family.log_agreement(a.astype(jnp.float32), b.astype(jnp.float32))
  np.testing.assert_allclose(
      np.asarray(family.log_agreement(a, b), np.float32), ref32, rtol=0.05)


def test_learned_variance_link_gives_negative_eta2():
  family = families.GaussianLearnedVariance(min_precision=0.5)
  raw = jnp.linspace(-50, 50, 20).reshape(2, 10)
  eta = family.natural_from_raw(raw)
  eta2 = eta[..., 5:]
  assert bool(jnp.all(eta2 <= -0.25))          # precision >= min_precision
  # The raw mean is the mean, whatever the precision.
  np.testing.assert_allclose(family.expectation(eta), raw[..., :5], rtol=1e-6)
  zero = family.natural_from_raw(jnp.zeros((1, 2)))
  np.testing.assert_allclose(-2 * zero[0, 1], 1.5, rtol=1e-6)


# --------------------------------------------------------------- bad input


def test_registry_and_constructor_errors():
  assert families.get("bernoulli") == families.Bernoulli()
  assert families.get("categorical", group_size=10) == families.Categorical(10)
  fam = families.Gaussian(2.0)
  assert families.get(fam) is fam
  with pytest.raises(ValueError, match="family must be one of"):
    families.get("poisson")
  with pytest.raises(ValueError, match="takes"):
    families.get("bernoulli", variance=1.0)
  with pytest.raises(ValueError, match="variance"):
    families.Gaussian(0.0)
  with pytest.raises(ValueError, match="variance"):
    families.Gaussian(-1.0)
  with pytest.raises(ValueError, match="variance"):
    families.Gaussian(float("nan"))
  with pytest.raises(ValueError, match="group_size"):
    families.Categorical(0)
  with pytest.raises(ValueError, match="group_size"):
    families.Categorical(2.5)
  with pytest.raises(ValueError, match="min_precision"):
    families.GaussianLearnedVariance(-1.0)
  with pytest.raises(ValueError, match="group_size"):
    families.Categorical(True)


def test_numpy_scalars_are_accepted_as_hyperparameters():
  # A config read from a .npz or computed with numpy hands these over.
  fam = families.Gaussian(np.float32(0.5))
  assert fam == families.Gaussian(0.5) and type(fam.variance) is float
  fam = families.Categorical(np.int64(3))
  assert fam == families.Categorical(3) and type(fam.group_size) is int
  assert hash(fam) == hash(families.Categorical(3))          # a jit static arg
  fam = families.GaussianLearnedVariance(np.float64(0.01))
  assert type(fam.min_precision) is float


def test_learned_variance_refuses_a_non_negative_eta2_when_it_can_see_it():
  fam = families.GaussianLearnedVariance()
  good = jnp.array([[0.3, -0.5]])
  assert np.isfinite(float(fam.log_partition(good)[0]))
  for eta2 in (0.0, 0.5):
    bad = jnp.array([[0.3, eta2]])
    with pytest.raises(ValueError, match="negative second half"):
      fam.log_partition(bad)
    with pytest.raises(ValueError, match="eta_b must have a negative"):
      fam.log_agreement(good, bad)
    # Under jit the values are unknown: NaN, as documented.
    assert np.isnan(float(jax.jit(fam.log_partition)(bad)[0]))
  # natural_from_raw maps any raw output to valid parameters.
  raw = jnp.array([[0.3, -50.0], [0.3, 50.0]])
  assert np.all(np.isfinite(fam.log_partition(fam.natural_from_raw(raw))))


def test_shape_and_dtype_errors_name_the_argument():
  fam = families.Bernoulli()
  with pytest.raises(ValueError, match=r"eta_b must have the shape of eta_a, "
                     r"\(4, 3\), got \(1, 3\)"):
    fam.log_agreement(jnp.zeros((4, 3)), jnp.zeros((1, 3)))
  with pytest.raises(ValueError, match="same dtype"):
    fam.kl(jnp.zeros(3, jnp.float32), jnp.zeros(3, jnp.bfloat16))
  with pytest.raises(ValueError, match="eta must have a floating dtype"):
    fam.mean(jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="scalar"):
    fam.log_partition(jnp.float32(1.0))
  with pytest.raises(ValueError, match=r"multiple of group_size=3"):
    families.Categorical(3).log_partition(jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="multiple of 2"):
    families.GaussianLearnedVariance().mean(jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match=r"z must have shape \(2, 3\)"):
    families.GaussianLearnedVariance().log_prob(jnp.zeros((2, 6)),
                                                jnp.ones((2, 6)) * -1)
  with pytest.raises(ValueError, match=r"eta_classes must have shape"):
    fam.class_scores(jnp.zeros((4, 3)), jnp.zeros((5, 2)))


def _categorical_scores64(a, b, group_size):
  """float64 NumPy: `sum_{s,g} lse(a + b_k) - lse(a) - lse(b_k)`."""
  def lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]
  a = np.asarray(a, np.float64)
  a = a.reshape(a.shape[:-1] + (-1, group_size))             # [N, S, g, G]
  b = np.asarray(b, np.float64)
  b = b.reshape(b.shape[:-1] + (-1, group_size))
  per_class = b[None, None] if b.ndim == 3 else b[:, None]
  return (lse(a[:, :, None] + per_class) - lse(a)[:, :, None]
          - lse(per_class)).sum((1, 3))


@pytest.mark.parametrize("group_size, units", [(84, 84), (4, 12), (2, 8)])
@pytest.mark.parametrize("per_example", [False, True])
def test_categorical_scores_by_products_equal_the_definition(
    group_size, units, per_example):
  """The scores as matrix products equal float64 log-sum-exps of every
  pair, and their gradients equal those of the generic form."""
  family = families.Categorical(group_size)
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(scale=3, size=(6, 3, units)), jnp.float32)
  b = jnp.asarray(rng.normal(scale=3, size=((6,) if per_example else ())
                             + (5, units)), jnp.float32)
  got = family.summed_scores(a, b)
  np.testing.assert_allclose(got, _categorical_scores64(a, b, group_size),
                             rtol=1e-5, atol=1e-4)
  w = jnp.asarray(rng.normal(size=got.shape), jnp.float32)
  grads = jax.grad(lambda x, y: jnp.sum(w * family.summed_scores(x, y)),
                   (0, 1))(a, b)
  generic = jax.grad(lambda x, y: jnp.sum(
      w * families.Family._scores(family, x, y)), (0, 1))(a, b)
  for got_g, want_g in zip(grads, generic):
    np.testing.assert_allclose(got_g, want_g, atol=2e-5)


def test_categorical_scores_fall_back_where_products_underflow():
  """Modes 300 nats apart: the product sum underflows, the batch is scored
  the generic way, values and gradients exact and finite."""
  family = families.Categorical(4)
  a = jnp.asarray([[[300.0, 0, 0, 0]]])
  b = jnp.asarray([[0.0, 0, 0, 300.0], [300.0, 0, 0, 0]])
  got = family.summed_scores(a, b)
  np.testing.assert_allclose(got, _categorical_scores64(a, b, 4), rtol=1e-6)
  assert float(got[0, 0]) < -290
  grads = jax.grad(lambda x, y: family.summed_scores(x, y)[0, 0], (0, 1))(a, b)
  np.testing.assert_allclose(grads[0], [[[-0.5, 0, 0, 0.5]]], atol=1e-6)
  np.testing.assert_allclose(grads[1], [[0.5, 0, 0, -0.5], [0, 0, 0, 0]],
                             atol=1e-6)
