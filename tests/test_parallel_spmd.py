"""bll_jax.parallel.spmd: the stacked SPMD pipeline, on 8 fake CPU devices."""

import jax
import numpy as np
import pytest

from bll_jax import parallel
from bll_jax.parallel import reference
from bll_jax.parallel import spmd
from bll_jax.recipes import authors

from tests import _cases


def _run(engine, spec, n=5, shape=(12,)):
  batches = _cases.make_batches(n, shape=shape, tokens=engine.token_targets)
  keys = _cases.make_keys(n)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  runner = spmd.SpmdRunner(engine, _cases.make_mesh(spec, engine))
  want, want_metrics = reference.run(engine, state0, batches, keys,
                                     runner.plan)
  got, metrics = runner.run_epoch(runner.place(state0), batches, keys)
  return runner, got, metrics, want, want_metrics


def _assert_equal(got, metrics, want, want_metrics):
  assert _cases.max_diff(got, want) < 1e-5      # float32 round-off
  for m, r in zip(metrics, want_metrics):
    assert set(m) == set(r)
    for name in r:
      np.testing.assert_allclose(m[name], r[name], rtol=1e-5, atol=1e-6,
                                 err_msg=name)


# One middle block per device, and two (the local shift within a device).
@pytest.mark.parametrize("spec", ["data=2,block=4", "data=4,block=2"])
def test_the_stack_equals_the_reference(spec):
  engine = _cases.make_engine(_cases.STACK, cuts=_cases.STACK_CUTS)
  assert spmd.homogeneous_middle(engine) == (1, 2, 3, 4)
  runner, got, metrics, want, want_metrics = _run(engine, spec)
  _assert_equal(got, metrics, want, want_metrics)
  assert runner.timeline == runner.plan.timeline(5)


@pytest.mark.parametrize("case,spec", [
    ("mlp-sampled", "data=1,block=2"), ("transformer-dropout", "data=1,block=2")])
def test_every_stacked_block_draws_its_own_masks_and_samples(case, spec):
  """Each middle block is keyed by its own index, as on every other path:
  with sampled latents and dropout the stack equals the reference (keying
  them all with the first middle block's key did not). One data shard: with
  several, each shard folds its data index into the key (module docstring)
  and draws its own."""
  engine, shape = _cases.stochastic_engine(
      "sampled" if case == "mlp-sampled" else "dropout")
  assert spmd.homogeneous_middle(engine) == tuple(
      range(1, engine.num_blocks - 1))
  _, got, metrics, want, want_metrics = _run(engine, spec, shape=shape)
  _assert_equal(got, metrics, want, want_metrics)


def test_what_the_stack_cannot_run_is_refused_in_one_line():
  def reason(engine, spec="data=1,block=2", lag=0):
    return spmd.unsupported(engine, _cases.make_mesh(spec, engine), lag)

  stack = dict(stack=_cases.STACK, cuts=_cases.STACK_CUTS)
  assert reason(_cases.make_engine(**stack)) == ""
  assert "identical middle blocks" in reason(
      _cases.make_engine(_cases.CNN, shape=(10,)))
  assert "feedback_lag" in reason(_cases.make_engine(**stack), lag=1)
  assert "whole batch" in reason(
      _cases.make_engine(**stack, decorrelation=0.5), "data=2,block=2")
  assert reason(_cases.make_engine(**stack, decorrelation=0.5)) == ""
  recipe = _cases.make_engine(**stack, feedback="direct",
                              recipe=authors.AuthorsRecipe())
  assert "principled losses" in reason(recipe)
  assert "owned by the stages" in reason(
      _cases.make_engine(**stack, feedback="chained_local"))
  # `auto` falls back to the MPMD runner for all of these.
  runner = parallel.make_runner(recipe, parallel.RunnerSpec(
      mesh="block=2", schedule="pipelined"))
  assert runner.name == "mpmd"


def test_per_block_temperatures_must_agree_on_the_stack():
  """One vmapped loss cannot hold different temperatures: no stack."""
  for temperatures, middle in [((1.0, 2.0, 2.0, 2.0, 2.0), (1, 2, 3, 4)),
                               ((1.0, 0.3, 3.0, 10.0, 0.5), ())]:
    engine = _cases.make_engine(_cases.STACK, cuts=_cases.STACK_CUTS,
                                temperature=temperatures)
    assert spmd.homogeneous_middle(engine) == middle
