"""How long a block's local loss takes: the categorical scores by products
against the generic form, beside the Gaussian's.

The language model's `local` blocks (one group of 84 states, one-hot
feedback, 2048 tokens a batch) made its `local` runs 1.2-1.3x as long as
calibrated `bll`'s (experiments/notes/shakespeare_char_blocks.md); this
times `jit(grad(local_loss))` at that shape.

    python -m experiments.score_speed [--tokens 2048] [--repeats 20]
"""

import argparse
import time

import jax
import jax.numpy as jnp

from bll_jax import families
from bll_jax import losses


class _Generic(families.Categorical):
  """The categorical family scored the generic way (`[N, K, P]`)."""

  def _scores(self, eta, eta_classes):
    return families.Family._scores(self, eta, eta_classes)


def _time(family, units, classes, table, tokens, repeats):
  eta = jax.random.normal(jax.random.key(0), (tokens, units))
  labels = jnp.arange(tokens) % classes
  step = jax.jit(jax.grad(lambda e: jnp.mean(
      losses.local_loss(family, e, table, labels))))
  step(eta).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    step(eta).block_until_ready()
  return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tokens", type=int, default=2048)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args(argv)
  c = 84
  onehot = 30.0 * jnp.eye(c)
  rows = {
      "categorical, one-hot feedback, by products": _time(
          families.Categorical(c), c, c, onehot, args.tokens, args.repeats),
      "categorical, one-hot feedback, generic": _time(
          _Generic(c), c, c, onehot, args.tokens, args.repeats),
      "gaussian, 128 units": _time(
          families.Gaussian(), 128, c,
          jax.random.normal(jax.random.key(1), (c, 128)), args.tokens,
          args.repeats),
  }
  print(f"jit(grad(local_loss)), {args.tokens} tokens, {c} classes, "
        f"{jax.devices()[0].platform}:")
  for name, ms in rows.items():
    print(f"  {name:45s} {ms:8.2f} ms")
  return rows


if __name__ == "__main__":
  main()
