"""bll_jax.feedback: the feedback network's modes and their shapes."""

import jax
import jax.numpy as jnp
import numpy as np
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



@pytest.mark.parametrize("mode", ["direct", "chained_local"])
def test_stage_messages_of_every_cut_are_the_networks_tables(mode):
  """A stage computes its blocks' tables from its own layers and the
  message of the block above: for any contiguous range, the module's."""
  net = feedback.Feedback(mode, 4, THREE, (6, 5, 3))
  params = net.init(jax.random.key(0))["params"]
  whole = net.apply({"params": params})
  for ks in [(0, 1, 2), (0,), (1,), (2,), (0, 1), (1, 2)]:
    own = {name: v for name, v in params.items()
           if feedback.layer_of([jax.tree_util.DictKey(name)]) in ks}
    above = max(ks) + 1
    message = whole[above] if above < 3 and mode == "chained_local" else None
    out = feedback.stage_messages(net, own, ks, message)
    assert sorted(out) == sorted(ks)
    for k in ks:
      np.testing.assert_array_equal(out[k], whole[k])


def test_stage_messages_refuse_a_global_mode_and_a_missing_message():
  net = feedback.Feedback("chained_local", 4, THREE, (6, 5, 3))
  params = net.init(jax.random.key(0))["params"]
  with pytest.raises(ValueError, match="block 0's chained feedback needs the "
                     "message of block 1"):
    feedback.stage_messages(net, params, (0,))
  chained = feedback.Feedback("chained", 4, THREE, (6, 5, 3))
  with pytest.raises(ValueError, match="not local to its blocks"):
    feedback.stage_messages(chained, params, (2,))
