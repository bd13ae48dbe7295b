"""bll_jax.parallel.reference: the one-device oracle of any tick plan."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bll_jax import blocks
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax.parallel import reference
from bll_jax.parallel import schedule

from tests import _cases


def _sync(engine, state, batches, keys):
  plan = schedule.plan_for("sync", engine.num_blocks, 1)
  return reference.run(engine, state, batches, keys, plan)


@pytest.mark.parametrize("feedback", ["random", "onehot"])
def test_pipelined_with_fixed_feedback_is_sync_over_micro_batches(feedback):
  """The only staleness of the schedule is the feedback's (its docstring):
  with a fixed feedback, pipelined and sync take the very same steps."""
  latent = blocks.Latent(families.Gaussian())
  if feedback == "onehot":   # greedy local classifiers: the classes as units
    latent = blocks.Latent(families.Categorical(_cases.NUM_CLASSES),
                           readout="linear",
                           readout_features=_cases.NUM_CLASSES)
  engine = engine_lib.Engine(
      _cases.MLP, blocks.boundaries(4, 4), [latent] * 3, method="bll",
      feedback_mode=feedback, num_classes=_cases.NUM_CLASSES,
      input_shape=(12,), input_dtype=jnp.float32, tx=optax.adam(1e-2))
  batches, keys = _cases.make_batches(5), _cases.make_keys(5)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  sync, _ = _sync(engine, state0, batches, keys)
  piped, _ = reference.run(engine, state0, batches, keys,
                           schedule.plan_for("pipelined", 4, 4))
  assert _cases.max_diff(piped, sync) == 0


def test_pipelined_with_a_trained_feedback_is_not_sync():
  """The feedback runs ahead of the blocks that read it."""
  engine = _cases.make_engine(_cases.MLP)
  batches, keys = _cases.make_batches(5), _cases.make_keys(5)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  sync, _ = _sync(engine, state0, batches, keys)
  piped, _ = reference.run(engine, state0, batches, keys,
                           schedule.plan_for("pipelined", 4, 4))
  assert _cases.max_diff(piped, sync) > 1e-4


def test_the_feedback_loss_of_a_micro_batch_sums_its_blocks_terms():
  """`feedback/loss` of micro-batch m is sum_k L^fb_k on m, each at the
  feedback its block saw: on one stage, the fused step's value."""
  engine = _cases.make_engine(_cases.MLP)
  batches, keys = _cases.make_batches(3), _cases.make_keys(3)
  state = engine.init(jax.random.key(0), batches[0]["inputs"])
  _, metrics = _sync(engine, state, batches, keys)
  fused = state
  for batch, key, m in zip(batches, keys, metrics):
    fused, fused_metrics = engine.train_step(fused, batch, key)
    np.testing.assert_allclose(m["feedback/loss"],
                               fused_metrics["feedback/loss"], rtol=1e-6)


def test_the_feedback_takes_the_planned_number_of_optimiser_steps():
  engine = _cases.make_engine(_cases.MLP)
  batches, keys = _cases.make_batches(6), _cases.make_keys(6)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  plan = schedule.plan_for("pipelined", 4, 4)
  state, _ = reference.run(engine, state0, batches, keys, plan)
  adam = state.feedback.opt_state[0]
  assert int(adam.count) == plan.feedback_updates(6) == 6 + 3 - 1
  assert int(state.step) == 6


# The feedback owned by the stages (bll_jax.parallel.owned): the replicated
# path of `run` is the independent computation it is held against.
@pytest.mark.parametrize("feedback,stages,plan", [
    ("chained_local", 1, "pipelined"),   # one stage owns the whole chain
    ("chained_local", 2, "sync"),        # two stages: nothing is stale
    ("chained_local", 2, "pipelined"),
    ("direct", 4, "pipelined"),          # no messages: layer by layer Adam
])
def test_owned_feedback_equals_the_replicated_one_where_nothing_is_stale(
    feedback, stages, plan):
  engine = _cases.make_engine(_cases.MLP, feedback=feedback)
  batches, keys = _cases.make_batches(5), _cases.make_keys(5)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  plan = schedule.plan_for(plan, 4, stages)
  owned, m_owned = reference.run(engine, state0, batches, keys, plan,
                                 owned=True)
  shared, m_shared = reference.run(engine, state0, batches, keys, plan,
                                   owned=False)
  assert _cases.max_diff(owned, shared) < 1e-6     # float32 round-off
  assert _cases.max_diff(shared, state0) > 1e-3    # the feedback trained
  for a, b in zip(m_owned, m_shared):
    np.testing.assert_allclose(a["feedback/loss"], b["feedback/loss"],
                               rtol=1e-6)


def test_owned_chained_feedback_over_four_stages_reads_older_layers():
  """Stage s + 2's layers reach stage s a tick late (the module docstring):
  the first tick agrees with the replicated feedback, later ones do not."""
  engine = _cases.make_engine(_cases.MLP, feedback="chained_local")
  batches, keys = _cases.make_batches(3), _cases.make_keys(3)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  plan = schedule.plan_for("sync", 4, 4)
  one = [reference.run(engine, state0, batches[:1], keys[:1], plan,
                       owned=owned)[0] for owned in (True, False)]
  three = [reference.run(engine, state0, batches, keys, plan,
                         owned=owned)[0] for owned in (True, False)]
  assert _cases.max_diff(*one) < 1e-6
  assert _cases.max_diff(*three) > 1e-4


def test_owned_feedback_refuses_a_global_mode_or_a_lag():
  engine = _cases.make_engine(_cases.MLP)        # chained: not local
  batches, keys = _cases.make_batches(1), _cases.make_keys(1)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  with pytest.raises(ValueError, match="cannot be owned by the stages"):
    reference.run(engine, state0, batches, keys,
                  schedule.plan_for("sync", 4, 2), owned=True)
