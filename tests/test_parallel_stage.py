"""bll_jax.parallel.stage: a stage's tick as one program, its states donated
(the runner's equality with the reference, dropout and sampled latents
included, is in tests/test_parallel_mpmd.py)."""

import jax
import pytest

from bll_jax import parallel
from bll_jax.parallel import owned as owned_lib
from bll_jax.parallel import reference
from bll_jax.parallel import stage as stage_lib

from tests import _cases


@pytest.mark.parametrize("case", ["sampled", "dropout"])
def test_blocks_step_equals_the_block_steps_in_turn(case):
  """`Engine.blocks_step` (one function) is `block_step` called block by
  block, with Bernoulli samples passed on, or dropout in every layer."""
  engine, shape = _cases.stochastic_engine(case)
  (batch,) = _cases.make_batches(1, shape=shape,
                                 tokens=engine.token_targets)
  (key,) = _cases.make_keys(1)
  state = engine.init(jax.random.key(0), batch["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)
  ks = tuple(range(1, engine.num_blocks))        # every block but the first
  h = engine.block_step(0)(state.blocks[0], batch["inputs"], fb[0],
                           batch["labels"], batch["weights"], key)[1]
  got = jax.jit(engine.blocks_step(ks))(
      tuple(state.blocks[k] for k in ks), h, fb, batch["labels"],
      batch["weights"], key)
  want_states, want_metrics = [], []
  for k in ks:
    new, h, _, met = engine.block_step(k)(
        state.blocks[k], h, fb[k] if k < engine.num_blocks - 1 else None,
        batch["labels"], batch["weights"], key)
    want_states.append(new)
    want_metrics.append(met)
  assert _cases.max_diff(got[0], tuple(want_states)) < 1e-6
  assert _cases.max_diff(got[1], h) < 1e-6
  assert _cases.max_diff(got[3], tuple(want_metrics)) < 1e-6


@pytest.mark.parametrize("feedback,spec,fused", [
    ("chained", "data=2,block=4", True), ("chained", "data=1,block=2", False),
    ("chained_local", "data=1,block=4", True),
    ("chained_local", "data=2,block=2", False),
    ("random", "data=1,block=2", False)])
def test_stage_ticks_equal_the_reference_and_spare_the_callers_state(
    monkeypatch, feedback, spec, fused):
  """Whoever holds the feedback (replicas, the stages, a fixed one), a
  stage's tick as one program or one per block equals the reference; fused,
  it is one dispatch per stage per tick and no per-block step. The stream
  donates its own copy of the state, never the caller's."""
  engine = _cases.make_engine(_cases.MLP, feedback=feedback)
  runner = parallel.MpmdRunner(engine, _cases.make_mesh(spec, engine),
                               "pipelined", fuse_stages=fused)
  kinds = {"chained": "replicated", "chained_local": "owned",
           "random": "given"}
  assert kinds[feedback] in runner.program.kinds
  assert runner.program.fused is fused
  dispatched = []
  real = stage_lib.StageProgram.__call__

  def counted(self, s):
    tick = real(self, s)
    return lambda *args: (dispatched.append(s), tick(*args))[1]

  monkeypatch.setattr(stage_lib.StageProgram, "__call__", counted)
  if fused:
    monkeypatch.setattr(engine, "block_step", lambda *a, **k: pytest.fail(
        "a per-block step was dispatched"))
  batches, keys = _cases.make_batches(5), _cases.make_keys(5)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  placed = runner.place(state0)
  before = jax.device_get(placed)
  got, _ = runner.run_epoch(placed, batches, keys)
  assert sorted(dispatched) == sorted(s for _, s, _ in runner.timeline)
  monkeypatch.undo()
  want, _ = reference.run(engine, state0, batches, keys, runner.plan)
  assert _cases.max_diff(got, want) < 1e-5
  assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(placed))
  assert _cases.max_diff(placed, before) == 0
  again, _ = runner.run_epoch(placed, batches, keys)   # the same state again
  assert _cases.max_diff(again, got) < 1e-6


@pytest.mark.parametrize("fused", [True, False])
def test_a_stage_program_donates_its_states(fused):
  """The blocks' states (and an owning stage's feedback state) are donated,
  as one program or one per block; the inbox and the input are not."""
  engine = _cases.make_engine(_cases.MLP, feedback="chained_local")
  (batch,) = _cases.make_batches(1)
  (key,) = _cases.make_keys(1)
  state = engine.init(jax.random.key(0), batch["inputs"])
  ks = (1, 2)                      # blocks 1 and 2: stage 1 of 2
  program = stage_lib.StageProgram(engine, [(0,), ks, (3,)],
                                   ["owned", "owned", "given"], fused)
  fb_state, inbox = owned_lib.split(engine, state.feedback, ks)
  mine = stage_lib.copy(tuple(state.blocks[k] for k in ks))
  h = jax.numpy.ones((16, 16))
  out = program(1)(mine, fb_state, inbox, h, batch["labels"],
                   batch["weights"], key)
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves((mine, fb_state)))
  assert not any(leaf.is_deleted() for leaf in jax.tree.leaves((inbox, h)))
  assert len(out[0]) == 2 and out[4].shape == (2,)   # two blocks' losses
  with pytest.raises(ValueError, match="kind must be one of"):
    stage_lib.StageProgram(engine, [(0,)], ["shared"])
