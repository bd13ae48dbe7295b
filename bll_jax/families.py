r"""Exponential-family latents: the distributions a block's activations define.

A block's output `eta` (shape `[..., P]`) holds the natural parameters of a
factorised exponential family over the latent units `z` (shape `[..., D]`):

.. math::

   p(z \mid \eta) = \prod_j h(z_j) \exp(\langle \eta_j, T(z_j) \rangle - A(\eta_j)),

with log-partition `A`, sufficient statistic `T` and base measure `h`. Every
reduction is over the last axis only; all leading axes are batch axes, so each
method works on any leading shape, under `jit`, `vmap` and `grad`.

The families:

* :class:`Bernoulli` -- `z_j in {0, 1}`, `A = softplus(eta)`, `P = D`.
* :class:`Categorical` -- groups of `G` one-hot states, `A = logsumexp` over a
  group, `P = D` (a multiple of `G`).
* :class:`Gaussian` -- fixed variance `s2`, `T(z) = z`, `h(z) = N(z; 0, s2)`,
  `A = s2 eta^2 / 2`, mean `s2 * eta`, `P = D`.
* :class:`GaussianLearnedVariance` -- `T(z) = (z, z^2)`, `eta = [eta1 | eta2]`
  on the last axis (`P = 2 D`), `eta2 < 0`, precision `-2 eta2`.

The agreement of a forward message `alpha = p(. | eta_a)` with a backward
message `beta~ = p(. | eta_b)` (`beta` normalised over `z`) is
:meth:`Family.log_agreement`, `log sum_z alpha(z) beta~(z)`; the posterior
`rho ∝ alpha beta~` has natural parameters `eta_a + eta_b`
(:meth:`Family.posterior`). See `docs/theory.md`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp

from bll_jax import _checks

Array = jax.Array

_LOG_2PI = math.log(2.0 * math.pi)


class Family(abc.ABC):
  """A factorised exponential family; natural parameters on the last axis.

  Subclasses are frozen dataclasses: hashable, so they can be passed to
  `jax.jit` as static arguments, and free of arrays.
  """

  name: ClassVar[str]
  #: Natural parameters per latent unit (`P = params_per_unit * D`).
  params_per_unit: ClassVar[int] = 1

  # ---------------------------------------------------------------- shapes

  def latent_size(self, num_params: int) -> int:
    """The number of latent units `D` described by `num_params` parameters."""
    return num_params // self.params_per_unit

  def check(self, name: str, eta) -> Array:
    """Returns `eta` as an array; raises `ValueError` for a bad dtype/shape."""
    eta = _checks.floating(name, eta)
    _checks.at_least_1d(name, eta, "[..., num_params]")
    p = self.params_per_unit
    if eta.shape[-1] % p:
      raise ValueError(
          f"{name} must have a last axis that is a multiple of {p} for "
          f"{self!r}, got shape {eta.shape}")
    return eta

  def _check_pair(self, names, eta_a, eta_b) -> tuple[Array, Array]:
    eta_a = self.check(names[0], eta_a)
    eta_b = self.check(names[1], eta_b)
    _checks.same_dtype(names, eta_a, eta_b)
    _checks.same_shape(names, eta_a, eta_b)
    return eta_a, eta_b

  # ------------------------------------------- per-family maths (unchecked)

  @abc.abstractmethod
  def _log_partition(self, eta: Array) -> Array:
    """A(eta) summed over the last axis; broadcasts over leading axes."""

  @abc.abstractmethod
  def _mean(self, eta: Array) -> Array:
    """grad A(eta) = E[T(z)], same shape as eta."""

  def _expectation(self, eta: Array) -> Array:
    return self._mean(eta)

  @abc.abstractmethod
  def _sample(self, key: Array, eta: Array) -> Array:
    """z ~ p(. | eta), shape [..., D]."""

  @abc.abstractmethod
  def _log_prob(self, z: Array, eta: Array) -> Array:
    """log p(z | eta) summed over units."""

  def _log_agreement(self, eta_a: Array, eta_b: Array) -> Array:
    # Base measure 1: sum_z exp(<a+b, T> - A(a) - A(b)) = exp(A(a+b)-A(a)-A(b)).
    return (self._log_partition(eta_a + eta_b) - self._log_partition(eta_a)
            - self._log_partition(eta_b))

  def _cross_entropy(self, eta_p: Array, eta_q: Array) -> Array:
    # Base measure 1: -E_p[log q(z)] = A(q) - <E_p[T], q>.
    return self._log_partition(eta_q) - jnp.sum(self._mean(eta_p) * eta_q, -1)

  def _entropy(self, eta: Array) -> Array:
    return self._cross_entropy(eta, eta)

  def _posterior_family(self) -> "Family":
    return self

  # -------------------------------------------------------- public methods

  def log_partition(self, eta) -> Array:
    r"""`A(eta) = sum_j A(eta_j)`, shape `eta.shape[:-1]`."""
    return self._log_partition(self.check("eta", eta))

  def mean(self, eta) -> Array:
    r"""The mean parameters `grad A(eta) = E[T(z)]`, shape of `eta`."""
    return self._mean(self.check("eta", eta))

  def expectation(self, eta) -> Array:
    r"""`E[z]`, shape `[..., D]`: what a block passes on as mean parameters.

    Equals :meth:`mean` except for :class:`GaussianLearnedVariance`, where
    `T(z) = (z, z^2)` and this returns the first half.
    """
    return self._expectation(self.check("eta", eta))

  def sample(self, key: Array, eta) -> Array:
    """A sample `z ~ p(. | eta)` of shape `[..., D]` in the dtype of `eta`."""
    return self._sample(key, self.check("eta", eta))

  def log_prob(self, z, eta) -> Array:
    r"""`log p(z | eta)`, summed over the latent units; shape `[...]`."""
    eta = self.check("eta", eta)
    z = jnp.asarray(z, eta.dtype)
    expected = eta.shape[:-1] + (self.latent_size(eta.shape[-1]),)
    if z.shape != expected:
      raise ValueError(f"z must have shape {expected}, got {z.shape}")
    return self._log_prob(z, eta)

  def log_agreement(self, eta_a, eta_b) -> Array:
    r"""`log sum_z alpha(z) beta~(z)`, summed over units; shape `[...]`.

    `alpha = p(. | eta_a)` is the forward message and `beta~ = p(. | eta_b)`
    the backward message normalised over `z`. For base measure 1 (Bernoulli,
    Categorical) this is `A(eta_a + eta_b) - A(eta_a) - A(eta_b)`; for
    Gaussians it is `log N(mu_a; mu_b, s_a^2 + s_b^2)`.
    """
    return self._log_agreement(*self._check_pair(("eta_a", "eta_b"), eta_a,
                                                 eta_b))

  def posterior(self, eta_a, eta_b) -> tuple["Family", Array]:
    r"""The posterior `rho ∝ alpha beta~` as `(family, natural parameters)`.

    The natural parameters are always `eta_a + eta_b`. The family is `self`,
    except for the fixed-variance :class:`Gaussian`, whose base measure is
    not constant: the product of two `N(., s2)` densities has variance `s2/2`.
    """
    eta_a, eta_b = self._check_pair(("eta_a", "eta_b"), eta_a, eta_b)
    return self._posterior_family(), eta_a + eta_b

  def cross_entropy(self, eta_p, eta_q) -> Array:
    r"""`H(p, q) = -E_{z~p}[log q(z)]`, summed over units; shape `[...]`."""
    return self._cross_entropy(*self._check_pair(("eta_p", "eta_q"), eta_p,
                                                 eta_q))

  def entropy(self, eta) -> Array:
    r"""`H(p) = -E_p[log p(z)]`, summed over units; shape `[...]`."""
    return self._entropy(self.check("eta", eta))

  def kl(self, eta_p, eta_q) -> Array:
    r"""`KL(p || q) = H(p, q) - H(p)`, summed over units; shape `[...]`."""
    eta_p, eta_q = self._check_pair(("eta_p", "eta_q"), eta_p, eta_q)
    return self._cross_entropy(eta_p, eta_q) - self._entropy(eta_p)

  def class_scores(self, eta, eta_classes) -> Array:
    r"""`log_agreement(eta, eta_classes[c])` for every class `c`.

    Args:
      eta: forward natural parameters, shape `[..., P]`.
      eta_classes: one row of backward natural parameters per class, `[C, P]`.

    Returns:
      Scores of shape `[..., C]`. The generic form materialises
      `[..., C, P]`; :class:`Gaussian` uses matrix products instead.
    """
    eta = self.check("eta", eta)
    eta_classes = self.check("eta_classes", eta_classes)
    _checks.same_dtype(("eta", "eta_classes"), eta, eta_classes)
    if eta_classes.ndim != 2 or eta_classes.shape[1] != eta.shape[-1]:
      raise ValueError(
          f"eta_classes must have shape [num_classes, {eta.shape[-1]}], got "
          f"{eta_classes.shape}")
    flat = eta.reshape(-1, 1, eta.shape[-1])
    return self._scores(flat, eta_classes).reshape(eta.shape[:-1] +
                                                   eta_classes.shape[:1])

  def _scores(self, eta: Array, eta_classes: Array) -> Array:
    """Class scores summed over positions (unchecked).

    Args:
      eta: `[N, S, P]`: `N` examples, `S` positions per example whose units
        share a class's parameters (1 for a plain vector).
      eta_classes: `[K, P]` shared by all examples, or `[N, K, P]` per example.

    Returns:
      `[N, K]`: `sum_s log_agreement(eta[n, s], eta_classes[(n,) k])`. The
      generic form materialises `[N, S, K, P]`.
    """
    per_class = (eta_classes[None, None] if eta_classes.ndim == 2
                 else eta_classes[:, None])
    return jnp.sum(self._log_agreement(eta[:, :, None, :], per_class), 1)

  # ---------------------------- unchecked forms, for bll_jax.losses

  def summed_scores(self, eta: Array, eta_classes: Array) -> Array:
    """Class scores summed over positions, without argument checks.

    The scoring core of :func:`bll_jax.losses.local_logits` and
    :func:`bll_jax.losses.local_loss`, which check and flatten their
    arguments first (:meth:`class_scores` is the checked form).

    Args:
      eta: `[N, S, P]`: `N` examples, `S` positions per example whose units
        share a class's parameters (1 for a plain vector).
      eta_classes: `[K, P]` shared by all examples, or `[N, K, P]` per
        example.

    Returns:
      `[N, K]`: `sum_s log_agreement(eta[n, s], eta_classes[(n,) k])`.
    """
    return self._scores(eta, eta_classes)

  def raw_log_agreement(self, eta_a: Array, eta_b: Array) -> Array:
    """:meth:`log_agreement` without argument checks (broadcasting)."""
    return self._log_agreement(eta_a, eta_b)

  def raw_cross_entropy(self, eta_p: Array, eta_q: Array) -> Array:
    """:meth:`cross_entropy` without argument checks (broadcasting)."""
    return self._cross_entropy(eta_p, eta_q)

  def natural_from_raw(self, raw) -> Array:
    """Maps unconstrained network outputs to valid natural parameters.

    The identity, except for :class:`GaussianLearnedVariance` (whose second
    natural parameter must be negative).
    """
    return self.check("raw", raw)


# ------------------------------------------------------------------ families


@dataclasses.dataclass(frozen=True)
class Bernoulli(Family):
  r"""Independent binary units: `p(z_j = 1) = sigmoid(eta_j)`.

  `A(eta) = softplus(eta)`, `mean = sigmoid(eta)`, base measure 1, so
  `log_agreement = softplus(a + b) - softplus(a) - softplus(b)`.
  """

  name: ClassVar[str] = "bernoulli"

  def _log_partition(self, eta):
    return jnp.sum(jax.nn.softplus(eta), -1)

  def _mean(self, eta):
    return jax.nn.sigmoid(eta)

  def _sample(self, key, eta):
    return jax.random.bernoulli(key, jax.nn.sigmoid(eta)).astype(eta.dtype)

  def _log_prob(self, z, eta):
    return jnp.sum(z * eta - jax.nn.softplus(eta), -1)


@dataclasses.dataclass(frozen=True)
class Categorical(Family):
  r"""Groups of `group_size` mutually exclusive states (one-hot per group).

  `eta` of shape `[..., D]` is read as `[..., D // G, G]` logits;
  `A = sum_groups logsumexp_G(eta)`, `mean = softmax` per group, base
  measure 1. With one group of `G = num_classes` states this is a classifier.
  The agreement of two messages is, per group `g`,

  .. math::

     \log \sum_i \alpha_{gi} \tilde\beta_{gi}
       = \operatorname{logsumexp}_i(a_{gi} + b_{gi})
         - \operatorname{logsumexp}_i a_{gi} - \operatorname{logsumexp}_i b_{gi},

  summed over groups (:meth:`Family.log_agreement` with base measure 1).
  """

  group_size: int = 2
  name: ClassVar[str] = "categorical"

  def __post_init__(self):
    g = self.group_size
    if (not isinstance(g, numbers.Integral) or isinstance(g, bool) or g < 1):
      raise ValueError(f"group_size must be a positive integer, got {g!r}")
    object.__setattr__(self, "group_size", int(g))  # np.int64 -> int

  def check(self, name, eta):
    eta = super().check(name, eta)
    if eta.shape[-1] % self.group_size:
      raise ValueError(
          f"{name} must have a last axis that is a multiple of group_size="
          f"{self.group_size} (shape [..., num_groups * {self.group_size}]), "
          f"got shape {eta.shape}")
    return eta

  def _groups(self, x):
    return x.reshape(x.shape[:-1] + (x.shape[-1] // self.group_size,
                                     self.group_size))

  def _log_partition(self, eta):
    return jnp.sum(jax.nn.logsumexp(self._groups(eta), -1), -1)

  def _mean(self, eta):
    return jax.nn.softmax(self._groups(eta), -1).reshape(eta.shape)

  def _sample(self, key, eta):
    idx = jax.random.categorical(key, self._groups(eta), axis=-1)
    return jax.nn.one_hot(idx, self.group_size, dtype=eta.dtype).reshape(
        eta.shape)

  def _log_prob(self, z, eta):
    return jnp.sum(z * eta, -1) - self._log_partition(eta)

  def _scores(self, eta, eta_classes):
    r"""The generic scores through one matrix product per group
    (:func:`_categorical_scores`): `N + K` exponentials per state instead
    of `N K`, and exact (`python -m experiments.score_speed` times both
    forms)."""
    return _categorical_scores(self._groups(eta), self._groups(eta_classes))


def _scores_by_products(a, b):
  """`(scores, ok, residuals)` of :func:`_categorical_scores` by products:
  `log sum_i e^{a_i - m_a} e^{b_i - m_b} - log sum_i e^{a_i - m_a}
  - log sum_i e^{b_i - m_b}` (the maxima cancel); `ok` where no product
  sum fell below `tiny / eps`."""
  shared = b.ndim == 3
  ea = jnp.exp(a - jnp.max(a, -1, keepdims=True))             # [N, S, g, G]
  eb = jnp.exp(b - jnp.max(b, -1, keepdims=True))         # [(N,) K, g, G]
  inner = jnp.einsum("nsgi,kgi->nskg" if shared else "nsgi,nkgi->nskg",
                     ea, eb)                                   # [N, S, K, g]
  log_za = jnp.log(jnp.sum(ea, -1))[:, :, None]                # [N, S, 1, g]
  log_zb = jnp.log(jnp.sum(eb, -1))
  log_zb = log_zb[None, None] if shared else log_zb[:, None]
  scores = jnp.sum(jnp.log(inner) - log_za - log_zb, (1, 3))
  finfo = jnp.finfo(inner.dtype)
  return scores, jnp.all(inner >= finfo.tiny / finfo.eps), (ea, eb, inner)


def _scores_generic(a, b):
  """:func:`_categorical_scores` the generic way (`[N, S, K, g, G]`)."""
  per_class = b[None, None] if b.ndim == 3 else b[:, None]
  lse_ab = jax.nn.logsumexp(a[:, :, None] + per_class, -1)    # [N, S, K, g]
  lse_a = jax.nn.logsumexp(a, -1)[:, :, None]
  lse_b = jax.nn.logsumexp(per_class, -1)
  return jnp.sum(lse_ab - lse_a - lse_b, (1, 3))


@jax.custom_vjp
def _categorical_scores(a, b):
  r"""`[N, K]` scores of grouped categorical messages, summed over
  positions and groups:

  .. math::

     s_{nk} = \sum_{s, g} \operatorname{logsumexp}_i(a_{nsgi} + b_{kgi})
              - \operatorname{logsumexp}_i a_{nsgi}
              - \operatorname{logsumexp}_i b_{kgi},

  `a` `[N, S, g, G]`, `b` `[K, g, G]` (or per example `[N, K, g, G]`). Per
  group, with `m_a = max_i a_i` and `m_b = max_i b_i`,
  `logsumexp_i(a_i + b_i) = m_a + m_b + log sum_i e^{a_i - m_a} e^{b_i - m_b}`:
  one matrix product. That sum is at least its term at `a`'s mode,
  `e^{b_{i*} - m_b}`, so it can underflow only where `b` at `a`'s mode lies
  about 70 nats (float32) below `b`'s own mode; if any entry falls below
  `tiny / eps`, the batch is scored the generic way, in the forward and the
  backward pass (a `cond`: only the branch taken runs).
  The gradient is the softmax difference, in products as well:
  `ds/da_i = e^{a_i - m_a} e^{b_i - m_b} / sum - softmax(a)_i`.
  """
  scores, ok, _ = _scores_by_products(a, b)
  return jax.lax.cond(ok, lambda: scores, lambda: _scores_generic(a, b))


def _categorical_scores_fwd(a, b):
  scores, ok, residuals = _scores_by_products(a, b)
  scores = jax.lax.cond(ok, lambda: scores, lambda: _scores_generic(a, b))
  return scores, (a, b, ok, residuals)


def _categorical_scores_bwd(saved, g):
  a, b, ok, (ea, eb, inner) = saved
  shared = b.ndim == 3

  def by_products():
    w = g[:, None, :, None] / inner                            # [N, S, K, g]
    sa = ea / jnp.sum(ea, -1, keepdims=True)                   # softmax(a)
    sb = eb / jnp.sum(eb, -1, keepdims=True)
    grad_a = (ea * jnp.einsum("nskg,kgi->nsgi" if shared
                              else "nskg,nkgi->nsgi", w, eb)
              - sa * jnp.sum(g, -1)[:, None, None, None])
    positions = a.shape[1]
    if shared:
      grad_b = (eb * jnp.einsum("nskg,nsgi->kgi", w, ea)
                - sb * positions * jnp.sum(g, 0)[:, None, None])
    else:
      grad_b = (eb * jnp.einsum("nskg,nsgi->nkgi", w, ea)
                - sb * positions * g[..., None, None])
    return grad_a, grad_b

  def generic():
    return jax.vjp(_scores_generic, a, b)[1](g)

  return jax.lax.cond(ok, by_products, generic)


_categorical_scores.defvjp(_categorical_scores_fwd, _categorical_scores_bwd)


@dataclasses.dataclass(frozen=True)
class Gaussian(Family):
  r"""Gaussian units of fixed variance `s2`: `z_j ~ N(s2 eta_j, s2)`.

  Natural parameter `eta = mu / s2`, `T(z) = z`, base measure
  `h(z) = N(z; 0, s2)`, `A(eta) = s2 eta^2 / 2`, `mean = s2 eta`.
  The agreement is `log N(mu_a; mu_b, 2 s2)`; the posterior has natural
  parameter `eta_a + eta_b` under variance `s2 / 2` (the base measure is not
  constant, so the product of two such densities doubles the precision).
  """

  variance: float = 1.0
  name: ClassVar[str] = "gaussian"

  def __post_init__(self):
    v = self.variance
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
        v > 0 and math.isfinite(v)):
      raise ValueError(f"variance must be a positive finite float, got {v!r}")
    object.__setattr__(self, "variance", float(v))  # np.float32 -> float

  def _log_partition(self, eta):
    return jnp.sum(0.5 * self.variance * jnp.square(eta), -1)

  def _mean(self, eta):
    return self.variance * eta

  def _sample(self, key, eta):
    noise = jax.random.normal(key, eta.shape, eta.dtype)
    return self.variance * eta + math.sqrt(self.variance) * noise

  def _log_prob(self, z, eta):
    v = self.variance
    return jnp.sum(-0.5 * (_LOG_2PI + math.log(v))
                   - jnp.square(z - v * eta) / (2 * v), -1)

  def _log_agreement(self, eta_a, eta_b):
    v = self.variance
    d = v * (eta_a - eta_b)
    return jnp.sum(-0.5 * (_LOG_2PI + math.log(2 * v))
                   - jnp.square(d) / (4 * v), -1)

  def _cross_entropy(self, eta_p, eta_q):
    v = self.variance
    d = v * (eta_p - eta_q)
    return jnp.sum(0.5 * (_LOG_2PI + math.log(v)) + (jnp.square(d) + v) / (2 * v),
                   -1)

  def _posterior_family(self):
    return Gaussian(self.variance / 2)

  def _scores(self, eta, eta_classes):
    # sum_s -|mu_s - mu_c|^2 / (4 v) expanded into matrix products, so no
    # [N, S, K, P] array is formed.
    v = self.variance
    num_positions, num_units = eta.shape[1], eta.shape[2]
    mu, mu_c = v * eta, v * eta_classes
    sq = jnp.sum(jnp.square(mu), (1, 2))[:, None]             # [N, 1]
    mu_sum = jnp.sum(mu, 1)                                    # [N, P]
    if eta_classes.ndim == 2:
      cross = mu_sum @ mu_c.T                                  # [N, K]
      sq_c = jnp.sum(jnp.square(mu_c), -1)[None]               # [1, K]
    else:
      cross = jnp.einsum("np,nkp->nk", mu_sum, mu_c)
      sq_c = jnp.sum(jnp.square(mu_c), -1)                     # [N, K]
    const = -0.5 * num_positions * num_units * (_LOG_2PI + math.log(2 * v))
    return const - (sq - 2 * cross + num_positions * sq_c) / (4 * v)


@dataclasses.dataclass(frozen=True)
class GaussianLearnedVariance(Family):
  r"""Gaussian units with a mean and a precision per unit, in natural form.

  `eta = [eta1 | eta2]` along the last axis (`P = 2 D`) with `eta2 < 0`:
  precision `lam = -2 eta2`, mean `mu = eta1 / lam`, `T(z) = (z, z^2)`,
  constant base measure `(2 pi)^{-1/2}`, and
  `A(eta) = -eta1^2 / (4 eta2) - log(-2 eta2) / 2`.
  Natural parameters add under products, so the posterior stays in the
  family. :meth:`natural_from_raw` maps an unconstrained mean and precision
  to natural parameters; a non-negative `eta2` passed directly is refused
  with `ValueError` when concrete, and gives NaN under `jit`.

  Attributes:
    min_precision: lower bound on the precision produced by
      :meth:`natural_from_raw` (not enforced on `eta` given directly).
  """

  min_precision: float = 1e-3
  name: ClassVar[str] = "gaussian_learned_variance"
  params_per_unit: ClassVar[int] = 2

  def __post_init__(self):
    p = self.min_precision
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (
        p >= 0 and math.isfinite(p)):
      raise ValueError(f"min_precision must be a finite float >= 0, got {p!r}")
    object.__setattr__(self, "min_precision", float(p))

  def check(self, name, eta):
    """Also refuses a concrete `eta` whose second half is not negative.

    Under `jit` the values are unknown and a non-negative `eta2` gives NaN;
    :meth:`natural_from_raw` never produces one.
    """
    eta = super().check(name, eta)
    if not isinstance(eta, jax.core.Tracer):
      eta2 = self._split(eta)[1]
      if eta2.size and not bool(jnp.all(eta2 < 0)):
        raise ValueError(
            f"{name} must have a negative second half (eta2 = -precision / 2 "
            f"< 0) for {self!r}; map network outputs with natural_from_raw")
    return eta

  @staticmethod
  def _split(eta):
    d = eta.shape[-1] // 2
    return eta[..., :d], eta[..., d:]

  def _moments(self, eta):
    """(mean, variance) per unit."""
    eta1, eta2 = self._split(eta)
    var = -0.5 / eta2
    return eta1 * var, var

  def _log_partition(self, eta):
    eta1, eta2 = self._split(eta)
    return jnp.sum(-jnp.square(eta1) / (4 * eta2) - 0.5 * jnp.log(-2 * eta2),
                   -1)

  def _mean(self, eta):
    mu, var = self._moments(eta)
    return jnp.concatenate([mu, jnp.square(mu) + var], -1)

  def _expectation(self, eta):
    return self._moments(eta)[0]

  def _sample(self, key, eta):
    mu, var = self._moments(eta)
    return mu + jnp.sqrt(var) * jax.random.normal(key, mu.shape, eta.dtype)

  def _log_prob(self, z, eta):
    mu, var = self._moments(eta)
    return jnp.sum(-0.5 * (_LOG_2PI + jnp.log(var))
                   - jnp.square(z - mu) / (2 * var), -1)

  def _log_agreement(self, eta_a, eta_b):
    mu_a, var_a = self._moments(eta_a)
    mu_b, var_b = self._moments(eta_b)
    var = var_a + var_b
    return jnp.sum(-0.5 * (_LOG_2PI + jnp.log(var))
                   - jnp.square(mu_a - mu_b) / (2 * var), -1)

  def _cross_entropy(self, eta_p, eta_q):
    mu_p, var_p = self._moments(eta_p)
    mu_q, var_q = self._moments(eta_q)
    return jnp.sum(0.5 * (_LOG_2PI + jnp.log(var_q))
                   + (var_p + jnp.square(mu_p - mu_q)) / (2 * var_q), -1)

  def _entropy(self, eta):
    _, var = self._moments(eta)
    return jnp.sum(0.5 * (_LOG_2PI + 1.0 + jnp.log(var)), -1)

  def natural_from_raw(self, raw):
    """Mean-precision outputs to natural parameters: `[m | r] -> [m lam | -lam/2]`.

    `lam = min_precision + softplus(r) / log 2`, so a raw zero gives precision
    `1 + min_precision`, and the mean `E[z] = m` is the raw output itself
    (bounded as the plain network's activation, whatever the precision).
    """
    raw = Family.check(self, "raw", raw)   # any real values: not yet natural
    m, r = self._split(raw)
    lam = (self.min_precision + jax.nn.softplus(r) / math.log(2.0)).astype(
        raw.dtype)
    return jnp.concatenate([m * lam, -0.5 * lam], -1)


# ------------------------------------------------------------------ registry

FAMILIES: dict[str, type[Family]] = {
    cls.name: cls
    for cls in (Bernoulli, Categorical, Gaussian, GaussianLearnedVariance)
}


def get(name: str | Family, **kwargs) -> Family:
  """Returns the family called `name` (see `FAMILIES`), built with `kwargs`.

  A `Family` instance is returned unchanged (no `kwargs` allowed then).

  Raises:
    ValueError: for an unknown name or invalid arguments.
  """
  if isinstance(name, Family):
    if kwargs:
      raise ValueError(f"got a Family instance {name!r} and extra kwargs "
                       f"{sorted(kwargs)}")
    return name
  if name not in FAMILIES:
    raise ValueError(
        f"family must be one of {sorted(FAMILIES)}, got {name!r}")
  cls = FAMILIES[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = set(kwargs) - fields
  if unknown:
    raise ValueError(
        f"family {name!r} takes {sorted(fields) or 'no arguments'}, got "
        f"{sorted(unknown)}")
  return cls(**kwargs)
