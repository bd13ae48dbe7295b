"""bll_jax.feedback: the feedback network's modes and their shapes."""

import jax
import jax.numpy as jnp
import pytest

from bll_jax import blocks
from bll_jax import families
from bll_jax import feedback

LATENTS = (blocks.Latent(families.Gaussian()),) * 2


@pytest.mark.parametrize("mode", ["direct", "chained", "chained_local",
                                  "random"])
def test_each_mode_gives_a_row_per_class_for_every_hidden_block(mode):
  net = feedback.Feedback(mode, 5, LATENTS, (8, 6))
  params = net.init(jax.random.key(0))
  out = net.apply(params)
  assert [o.shape for o in out] == [(5, 8), (5, 6)]


def test_onehot_is_a_scaled_identity_and_needs_a_unit_per_class():
  net = feedback.Feedback("onehot", 5, LATENTS, (5, 5), onehot_scale=3.0)
  out = net.apply(net.init(jax.random.key(0)))
  assert all(bool(jnp.all(o == 3.0 * jnp.eye(5))) for o in out)
  with pytest.raises(ValueError, match="every hidden block needs 5 natural "
                     "parameters, got \\[8, 5\\]"):
    feedback.Feedback("onehot", 5, LATENTS, (8, 5))


THREE = (blocks.Latent(families.Gaussian()),) * 3


def _grads_of_each_block(mode):
  """Per hidden block k, the gradient of a loss of its table b_k alone
  with respect to every feedback parameter (a sum of squares of b_k)."""
  net = feedback.Feedback(mode, 4, THREE, (6, 5, 3))
  params = net.init(jax.random.key(0))
  out = []
  for k in range(3):
    grads = jax.grad(lambda p: jnp.sum(net.apply(p)[k] ** 2))(params)
    out.append({name: float(sum(jnp.abs(g).sum()
                                for g in jax.tree.leaves(tree)))
                for name, tree in grads["params"].items()})
  return out, params


def test_chained_local_layers_learn_from_their_own_block_only():
  """The locality that frees a stage from the all-reduce: block k's loss
  reaches layer k (g_k, or the top table) and no layer above it."""
  local, _ = _grads_of_each_block("chained_local")
  owner = {0: "g_0", 1: "g_1", 2: "table_2"}
  for k, grads in enumerate(local):
    assert grads[owner[k]] > 0
    assert all(v == 0.0 for name, v in grads.items() if name != owner[k]), (
        k, grads)
  # The chained mode sends block 0's loss up through g_1 and the table.
  chained, _ = _grads_of_each_block("chained")
  assert chained[0]["g_1"] > 0 and chained[0]["table_2"] > 0


def test_chained_local_computes_the_same_tables_as_chained():
  net = feedback.Feedback("chained", 4, THREE, (6, 5, 3))
  local = feedback.Feedback("chained_local", 4, THREE, (6, 5, 3))
  params = net.init(jax.random.key(0))
  for a, b in zip(net.apply(params), local.apply(params)):
    assert bool(jnp.all(a == b))

