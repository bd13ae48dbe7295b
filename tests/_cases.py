"""Small networks, batches and comparisons shared by the parallel tests.

The stochastic cases are the point of several tests: an equality between two
paths that only uses deterministic blocks cannot see a runner that draws
the wrong dropout masks or latent samples.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bll_jax import blocks
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax import models
from bll_jax.parallel import mesh as mesh_lib

NUM_CLASSES = 5

MLP = models.mlp((16, 16, 16), NUM_CLASSES)
CNN = models.cnn((4, 8, 8), (3, 3, 3), (1, 2, 1), NUM_CLASSES, 1)  # BatchNorm
# Six blocks, the middle four identical (16 -> 16 dense layers).
STACK = models.mlp((16,) * 5, NUM_CLASSES)
STACK_CUTS = (1, 2, 3, 4, 5)
# Embedding, two decoder layers with dropout, head: four blocks, the middle
# two identical; tokens of length 6. Train it with SGD in equality tests:
# the attention's key bias has an exactly zero gradient (it shifts every
# logit of a query alike), and Adam turns two paths' different round-off
# there into updates of size lr.
TRANSFORMER = models.transformer(2, 16, 2, 32, NUM_CLASSES, 6, dropout=0.3)
TRANSFORMER_CUTS = (1, 2, 3)
SGD = optax.sgd(0.1)
# The stochastic cases (make_engine's arguments): Bernoulli latents passed
# on as samples, every block drawing its own; dropout in every decoder
# layer, token targets.
STOCHASTIC = {
    "sampled": dict(stack=STACK, cuts=STACK_CUTS, family=families.Bernoulli(),
                    transmit="sample"),
    "dropout": dict(stack=TRANSFORMER, cuts=TRANSFORMER_CUTS, shape=(6,),
                    tx=SGD),
}


@functools.cache
def make_engine(stack, cuts=None, num_blocks=4, feedback="chained",
                shape=(12,), family=families.Gaussian(), transmit="mean",
                method="bll", tx=None, recipe=None, **objective):
  """A bll (or bp) engine of `stack`; token inputs for a Transformer.

  One engine per set of arguments in a test process: the tests that use the
  same engine share its compiled programs (an engine holds no state).
  """
  edges = blocks.boundaries(len(stack), num_blocks, cuts)
  objective = {"feedback_loss": "discriminative", **objective}
  return engine_lib.Engine(
      stack, edges,
      [blocks.Latent(family, transmit=transmit)] * (len(edges) - 2),
      method=method, feedback_mode=feedback, num_classes=NUM_CLASSES,
      input_shape=shape,
      input_dtype=jnp.int32 if stack.token_targets else jnp.float32,
      tx=tx or optax.adam(1e-2), objective=engine_lib.Objective(**objective),
      recipe=recipe)


def stochastic_engine(name):
  """`(engine, input shape)` of the stochastic case `name` (`STOCHASTIC`)."""
  kw = STOCHASTIC[name]
  return make_engine(**kw), kw.get("shape", (12,))


def make_batches(n, batch_size=16, shape=(12,), seed=0, tokens=False):
  """`n` host batches (`inputs`, `labels`, `weights`)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    if tokens:
      x = rng.integers(1, NUM_CLASSES, (batch_size,) + shape).astype(np.int32)
      out.append({"inputs": x, "labels": x,
                  "weights": np.ones(x.shape, np.float32)})
    else:
      out.append({
          "inputs": rng.normal(size=(batch_size,) + shape).astype(np.float32),
          "labels": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
          "weights": np.ones(batch_size, np.float32)})
  return out


def make_keys(n, start=100):
  return [jax.random.key(start + i) for i in range(n)]


def max_diff(a, b) -> float:
  """Largest absolute difference between two trees of arrays."""
  a, b = jax.device_get(a), jax.device_get(b)
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def make_mesh(spec, engine):
  return mesh_lib.make_mesh(mesh_lib.MeshSpec.parse(spec), engine.num_blocks)
