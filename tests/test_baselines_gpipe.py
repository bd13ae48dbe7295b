"""bll_jax.baselines.gpipe: backprop pipelined GPipe-style equals backprop."""

import jax
import numpy as np
import pytest

from bll_jax.baselines import GPipe

from tests import _cases


@pytest.mark.parametrize("spec,micro", [("block=4", 1), ("block=4", 4),
                                        ("data=2,block=2", 4)])
def test_gpipe_equals_backprop_on_the_whole_batch(spec, micro):
  engine = _cases.make_engine(_cases.MLP, method="bp")
  (full,) = _cases.make_batches(1, 32)
  state0 = engine.init(jax.random.key(0), full["inputs"])
  expected, metrics = engine.train_step(state0, full, jax.random.key(1))
  pipe = GPipe(engine, _cases.make_mesh(spec, engine))
  size = 32 // micro
  micro_batches = [{k: v[i * size:(i + 1) * size] for k, v in full.items()}
                   for i in range(micro)]
  got, loss = pipe.step(pipe.place(state0), micro_batches, jax.random.key(1))
  assert _cases.max_diff(got.blocks, expected.blocks) < 1e-6
  np.testing.assert_allclose(loss, metrics["block3/loss"], rtol=1e-6)


def test_gpipe_runs_backprop_only():
  engine = _cases.make_engine(_cases.MLP)
  with pytest.raises(ValueError, match="must be 'bp'"):
    GPipe(engine, _cases.make_mesh("block=4", engine))
