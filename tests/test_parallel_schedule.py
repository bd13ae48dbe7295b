"""bll_jax.parallel.schedule: the one tick plan every runner follows."""

import pytest

from bll_jax.parallel import schedule

from tests import _cases


def test_pipelined_timeline_fills_once_and_its_bubble():
  plan = schedule.plan_for("pipelined", 4, 4)
  work = plan.timeline(6)
  assert len(work) == 6 * 4
  assert work[:3] == [(0, 0, 0), (1, 0, 1), (1, 1, 0)]
  ticks = 6 + 4 - 1
  assert plan.num_ticks(6) == ticks
  idle = ticks * 4 - len(work)
  assert idle / (ticks * 4) == pytest.approx(schedule.bubble_fraction(6, 4))
  assert plan.bubble_fraction(6) == pytest.approx(3 / 9)
  # No flush: after the fill, every stage is busy at every tick.
  for t in range(3, 6):
    assert sorted(s for tt, s, _ in work if tt == t) == [0, 1, 2, 3]
  # Stage s works on micro-batch t - s, each exactly once.
  assert sorted((s, m) for _, s, m in work) == [
      (s, m) for s in range(4) for m in range(6)]
  assert all(m == t - s for t, s, m in work)


def test_sync_plan_runs_every_stage_on_the_same_micro_batch():
  plan = schedule.plan_for("sync", 5, 2)
  assert plan.stage_blocks == ((0, 1, 2), (3, 4))
  assert plan.num_ticks(3) == 3 and plan.bubble_fraction(3) == 0.0
  assert [plan.active(t, 3) for t in range(3)] == [
      ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((0, 2), (1, 2))]


def test_a_stream_still_arriving_is_planned_as_far_as_it_has_come():
  plan = schedule.plan_for("pipelined", 4, 4)
  # Tick 2 with three micro-batches in: stages 0..2 work, stage 3 waits.
  assert plan.active(2, 3) == ((0, 2), (1, 1), (2, 0))
  assert plan.active(0, 0) == ()


@pytest.mark.parametrize("num_blocks,stages,expected", [
    (4, 4, 6 + 3 - 1),     # the output block alone on the last stage
    (4, 2, 6 + 2 - 1),     # both stages hold hidden blocks
    (6, 4, 6 + 3 - 1),     # stages (0, 1), (2, 3), (4,), (5,)
    (4, 1, 6),
])
def test_the_feedback_takes_one_step_per_tick_with_a_hidden_block(
    num_blocks, stages, expected):
  """U = M + S_h - 1 optimiser steps for M micro-batches (S_h: stages with
  hidden blocks); sync takes M."""
  plan = schedule.plan_for("pipelined", num_blocks, stages)
  assert plan.feedback_updates(6) == expected
  assert schedule.plan_for("sync", num_blocks, stages).feedback_updates(6) == 6


def test_the_feedback_version_each_block_sees():
  """Block k on micro-batch m sees max(0, m + s(k) - L) feedback steps."""
  plan = schedule.plan_for("pipelined", 4, 4)
  assert [plan.feedback_version(k, 2) for k in range(4)] == [2, 3, 4, 5]
  assert [plan.feedback_version(k, 0, lag=2) for k in range(4)] == [0, 0, 0, 1]
  sync = schedule.plan_for("sync", 4, 4)
  assert [sync.feedback_version(k, 2) for k in range(4)] == [2, 2, 2, 2]


def test_bad_plans_and_engines_are_refused_in_one_line():
  with pytest.raises(ValueError, match="schedule must be one of"):
    schedule.TickPlan("async", ((0,), (1,)))
  with pytest.raises(ValueError, match="consecutive stages"):
    schedule.TickPlan("sync", ((0, 2), (1,)))
  with pytest.raises(ValueError, match="does not support feedback "
                     "'bootstrapped'"):
    schedule.check_pipelined(_cases.make_engine(_cases.MLP,
                                                feedback="bootstrapped"))
  with pytest.raises(ValueError, match="needs method bll"):
    schedule.check_pipelined(_cases.make_engine(_cases.MLP, method="bp"))
