"""bll_jax.feedback: the feedback network's modes and their shapes."""

import jax
import jax.numpy as jnp
import pytest

from bll_jax import blocks
from bll_jax import families
from bll_jax import feedback

LATENTS = (blocks.Latent(families.Gaussian()),) * 2


@pytest.mark.parametrize("mode", ["direct", "chained", "random"])
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
