"""experiments.lib.exits: the block to predict with, chosen on validation,
on fabricated runs (expected numbers written out by hand)."""

import pytest

from experiments import make_table
from experiments.lib import exits
from tests.test_make_table import _write


def _runs(*per_block, accuracy=None):
  return [{"per_block_test_accuracy": list(p),
           "test_accuracy": p[-1] if accuracy is None else accuracy}
          for p in per_block]


def test_choose_exit_takes_the_best_mean_and_ties_go_deeper():
  # Block 2's mean (0.85) beats the output's (0.84) though seed 1 disagrees.
  assert exits.choose_exit(_runs((0.7, 0.86, 0.80), (0.7, 0.84, 0.88))) == 1
  assert exits.choose_exit(_runs((0.7, 0.9, 0.9))) == 2       # a tie: deeper
  # A block without a prediction (bp's hidden blocks) is never chosen.
  assert exits.choose_exit(_runs((None, None, 0.5))) == 2
  with pytest.raises(ValueError, match="at least one"):
    exits.choose_exit([])
  with pytest.raises(ValueError, match="different numbers of blocks"):
    exits.choose_exit(_runs((0.5, 0.6), (0.5, 0.6, 0.7)))


def test_exit_table_reads_the_chosen_block_on_test():
  validation = {"bll": _runs((0.7, 0.86, 0.80), (0.7, 0.84, 0.88)),
                "bp": _runs((None, None, 0.9)),
                "only validation": _runs((0.1, 0.2, 0.3))}
  test = {"bll": _runs((0.6, 0.80, 0.70), (0.6, 0.90, 0.75)),
          "bp": _runs((None, None, 0.85), (None, None, 0.87)),
          "only test": _runs((0.1, 0.2, 0.3))}
  lines = exits.exit_table(test, validation,
                           ["bp", "bll", "only validation", "only test"])
  assert lines[2:] == [
      "| bp | 1, 2 | the output | 0.9000 | 0.8600 ± 0.0141 "
      "| 0.8600 ± 0.0141 |",
      "| bll | 2, 2 | block 2 of 3 | 0.8500 ± 0.0141 | 0.8500 ± 0.0707 "
      "| 0.7250 ± 0.0354 |"]
  with pytest.raises(ValueError, match="different numbers of blocks"):
    exits.exit_table({"bll": _runs((0.5, 0.6))}, validation, ["bll"])


def test_make_table_puts_the_exits_under_the_experiment_that_names_them(
    tmp_path):
  results, out = tmp_path / "results", tmp_path / "RESULTS.md"
  blocks = [0.7] * 6 + [0.86, 0.80]
  _write(results, "ablation_resnet18_depth", "bll K=8", [0.80],
         per_block_test_accuracy=[blocks])
  _write(results, "fashion_mnist_resnet18_blocks", "bll K=8", [0.81],
         per_block_test_accuracy=[[0.7] * 6 + [0.85, 0.81]])

  make_table.main(["--results", str(results), "--out", str(out)])

  text = out.read_text()
  assert ("| bll K=8 | 1, 1 | block 7 of 8 | 0.8600 | 0.8500 | 0.8100 |"
          in text)
  assert text.index("block 7 of 8") > text.index(
      "test accuracy against the number of blocks K")


def _loss_runs(*per_block):
  return [{"per_block_test_loss": list(p), "test_loss": p[-1]}
          for p in per_block]


def test_choose_exit_by_loss_takes_the_lowest_mean():
  # Block 2's mean loss (1.60) beats the output's (1.625) and block 1's.
  runs = _loss_runs((1.62, 1.59, 1.60), (1.63, 1.61, 1.65))
  assert exits.choose_exit(runs, "loss") == 1
  assert exits.choose_exit(_loss_runs((1.6, 1.5, 1.5)), "loss") == 2
  # A run made before its blocks were scored: its output only.
  assert exits.choose_exit([{"blocks": 3, "test_loss": 1.58}], "loss") == 2
  with pytest.raises(ValueError, match="exit metric 'bits'"):
    exits.choose_exit(runs, "bits")


def test_exit_table_by_loss_reads_the_chosen_block_on_test():
  validation = {"bll": _loss_runs((1.62, 1.59, 1.60), (1.63, 1.61, 1.65)),
                "bp": [{"blocks": 3, "test_loss": 1.58}]}
  test = {"bll": _loss_runs((1.70, 1.60, 1.64), (1.70, 1.62, 1.66)),
          "bp": _loss_runs((None, None, 1.57), (None, None, 1.59))}
  lines = exits.exit_table(test, validation, ["bp", "bll"], "loss")
  assert "its test loss (nats)" in lines[0]
  assert lines[2:] == [
      "| bp | 1, 2 | the output | 1.5800 | 1.5800 ± 0.0141 "
      "| 1.5800 ± 0.0141 |",
      "| bll | 2, 2 | block 2 of 3 | 1.6000 ± 0.0141 | 1.6100 ± 0.0141 "
      "| 1.6500 ± 0.0141 |"]


def test_every_exit_config_names_a_known_experiment_and_metric():
  from experiments import configs
  named = [configs.load(n) for n in configs.names()]
  with_exits = [e for e in named if "exits_from" in e]
  assert with_exits, "no experiment chooses an exit"
  for experiment in with_exits:
    assert experiment["exits_from"] in configs.names(), experiment["name"]
    assert experiment.get("exit_metric", "accuracy") in exits.METRICS
