"""Independent float64 references: enumeration and quadrature in NumPy/SciPy.

Nothing here imports bll_jax: these are the computations the library is
checked against.
"""

import itertools

import numpy as np
from scipy import integrate
from scipy import special


def bernoulli_states(d):
  """All 2^d binary vectors, shape [2^d, d]."""
  return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def categorical_states(num_groups, group_size):
  """All group_size^num_groups one-hot-per-group vectors, [S, num_groups*G]."""
  eye = np.eye(group_size)
  rows = [np.concatenate([eye[i] for i in idx])
          for idx in itertools.product(range(group_size), repeat=num_groups)]
  return np.array(rows)


def bernoulli_log_prob(states, eta):
  """log p(z | eta) for each state; eta [d] -> [S]."""
  log_p1 = -np.logaddexp(0.0, -eta)     # log sigmoid(eta)
  log_p0 = -np.logaddexp(0.0, eta)      # log sigmoid(-eta)
  return np.sum(states * log_p1 + (1 - states) * log_p0, axis=-1)


def categorical_log_prob(states, eta, group_size):
  groups = eta.reshape(-1, group_size)
  log_probs = (groups - special.logsumexp(groups, -1, keepdims=True)).reshape(-1)
  return states @ log_probs


def normal_logpdf(z, mu, sd):
  """log N(z; mu, sd^2), the textbook formula (scipy.stats.norm.logpdf to
  round-off, without its per-call overhead: quad calls it thousands of
  times)."""
  return -0.5 * ((z - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def normal_pdf(z, mu, sd):
  """N(z; mu, sd^2)."""
  return np.exp(normal_logpdf(z, mu, sd))


def gaussian_integral(fn, mu, sd):
  """int fn(z) dz over a window of +-20 sd around mu (quad, tight tolerance)."""
  value, _ = integrate.quad(fn, mu - 20 * sd, mu + 20 * sd, epsabs=1e-13,
                            epsrel=1e-11, limit=200, points=[mu])
  return value
