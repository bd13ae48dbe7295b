"""bll_jax.baselines.one_f_one_b: the 1F1B order equals backprop and holds
fewer stage inputs than GPipe."""

import pytest

from bll_jax.baselines import OneFOneB

from tests import _cases
from tests.test_baselines_gpipe import check_equals_backprop
from tests.test_baselines_gpipe import padded_batch


def test_the_order_warms_up_alternates_and_drains():
  engine = _cases.make_engine(_cases.MLP, method="bp")
  pipe = OneFOneB(engine, _cases.make_mesh("block=4", engine))
  orders = pipe.orders(6)
  assert orders[3] == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2),
                       ("B", 2), ("F", 3), ("B", 3), ("F", 4), ("B", 4),
                       ("F", 5), ("B", 5)]
  assert orders[0] == [("F", 0), ("F", 1), ("F", 2), ("F", 3), ("B", 0),
                       ("F", 4), ("B", 1), ("F", 5), ("B", 2), ("B", 3),
                       ("B", 4), ("B", 5)]
  # Fewer micro-batches than stages: the warm-up is cut short.
  assert pipe.orders(2)[0] == [("F", 0), ("F", 1), ("B", 0), ("B", 1)]
  for order in orders:                   # every pass once
    assert sorted(order) == sorted([("F", m) for m in range(6)]
                                   + [("B", m) for m in range(6)])


@pytest.mark.parametrize("spec,micro", [("block=4", 1), ("block=4", 8),
                                        ("data=2,block=2", 4)])
def test_1f1b_equals_backprop_and_holds_at_most_s_minus_s_inputs(spec,
                                                                 micro):
  (full,) = _cases.make_batches(1, 32)
  pipe = check_equals_backprop(OneFOneB, spec, micro, full)
  stages = pipe.num_stages
  assert pipe.peak_inputs == [min(stages - s, micro) for s in range(stages)]


def test_1f1b_micro_batches_of_unequal_weight():
  check_equals_backprop(OneFOneB, "block=4", 4, padded_batch())


def test_1f1b_runs_backprop_only():
  engine = _cases.make_engine(_cases.MLP)
  with pytest.raises(ValueError, match="OneFOneB runs backprop"):
    OneFOneB(engine, _cases.make_mesh("block=4", engine))
