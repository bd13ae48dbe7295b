"""bll_jax.baselines.gpipe: backprop pipelined GPipe-style equals backprop."""

import jax
import numpy as np
import pytest

from bll_jax.baselines import GPipe

from tests import _cases


def micro_batches_of(full, micro):
  size = len(full["labels"]) // micro
  return [{k: v[i * size:(i + 1) * size] for k, v in full.items()}
          for i in range(micro)]


def padded_batch():
  """32 examples, 11 of them padding (weight 0), all in the last quarter
  but one: micro-batches of 8 weigh 8, 8, 1 and 4."""
  (full,) = _cases.make_batches(1, 32)
  weights = np.ones(32, np.float32)
  weights[17:24] = 0.0
  weights[28:32] = 0.0
  return {**full, "weights": weights}


def check_equals_backprop(pipeline_class, spec, micro, full):
  """The pipeline's step equals one-device backprop on the whole batch."""
  engine = _cases.make_engine(_cases.MLP, method="bp")
  state0 = engine.init(jax.random.key(0), full["inputs"])
  expected, metrics = engine.train_step(state0, full, jax.random.key(1))
  pipe = pipeline_class(engine, _cases.make_mesh(spec, engine))
  got, got_metrics = pipe.step(pipe.place(state0),
                               micro_batches_of(full, micro),
                               jax.random.key(1))
  # Sums of micro-batch gradients against one sum: float32 round-off
  # (measured below 1e-7 on these states).
  assert _cases.max_diff(got.blocks, expected.blocks) < 1e-6
  assert set(got_metrics) == {"block3/loss", "block3/accuracy"}
  for name in got_metrics:
    np.testing.assert_allclose(got_metrics[name], metrics[name], rtol=1e-6,
                               err_msg=name)
  return pipe


@pytest.mark.parametrize("spec,micro", [("block=4", 1), ("block=4", 4),
                                        ("data=2,block=2", 4)])
def test_gpipe_equals_backprop_on_the_whole_batch(spec, micro):
  (full,) = _cases.make_batches(1, 32)
  pipe = check_equals_backprop(GPipe, spec, micro, full)
  assert pipe.peak_inputs == [micro] * pipe.num_stages


def test_micro_batches_of_unequal_weight_add_up_to_the_whole_batch():
  """Padding makes micro-batches weigh 8, 8, 1, 4: each contributes its
  share of the whole batch's weighted mean, not a quarter of it."""
  check_equals_backprop(GPipe, "block=4", 4, padded_batch())


def test_gpipe_runs_backprop_only():
  engine = _cases.make_engine(_cases.MLP)
  with pytest.raises(ValueError, match="must be 'bp'"):
    GPipe(engine, _cases.make_mesh("block=4", engine))


def test_gpipe_refuses_batchnorm_in_one_line():
  engine = _cases.make_engine(_cases.CNN, shape=(10,), method="bp")
  (full,) = _cases.make_batches(1, 16, (10,))
  state0 = engine.init(jax.random.key(0), full["inputs"])
  pipe = GPipe(engine, _cases.make_mesh("block=4", engine))
  with pytest.raises(ValueError, match="GPipe does not run networks with "
                     "BatchNorm: its statistics would be the micro-batch's"):
    pipe.step(pipe.place(state0), micro_batches_of(full, 2),
              jax.random.key(1))
