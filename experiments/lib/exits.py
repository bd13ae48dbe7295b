"""The exit chosen on validation: which block to predict with.

Every block of a block-local network makes its own prediction
`argmax_y q(y | alpha_k)` (the output block's is the network's). Where the
output block is not the best of them, a run can stop at an earlier block
and predict there (an early exit: fewer blocks at inference, never more).
Which block is chosen on held-out training data, never on test: for each
run label, the block with the highest mean validation accuracy over the
validation experiment's seeds (a tie goes to the deeper block), then that
block's test accuracy is read from the test experiment's runs, which
record every block's (`per_block_test_accuracy`).

An experiment config names its validation experiment with
`"exits_from": "<experiment>"`; `make_table` puts the table of
:func:`exit_table` under its own.
"""

from __future__ import annotations

import statistics


def choose_exit(validation: list[dict]) -> int:
  """The block (0-based) with the highest mean validation accuracy over
  the runs (the seeds of one label); a tie goes to the deeper block.
  Blocks without a prediction of their own (`None`) are never chosen."""
  if not validation:
    raise ValueError("choosing an exit needs at least one validation run")
  depth = len(validation[0]["per_block_test_accuracy"])
  if any(len(r["per_block_test_accuracy"]) != depth for r in validation):
    raise ValueError("the validation runs of one label have different "
                     "numbers of blocks")
  best, best_mean = depth - 1, -1.0
  for k in range(depth):
    values = [r["per_block_test_accuracy"][k] for r in validation]
    if any(v is None for v in values):
      continue
    mean = statistics.mean(values)
    if mean >= best_mean:
      best, best_mean = k, mean
  return best


def _cell(values: list[float]) -> str:
  if len(values) == 1:
    return f"{values[0]:.4f}"
  return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def exit_table(test_runs: dict[str, list[dict]],
               validation_runs: dict[str, list[dict]],
               labels: list[str]) -> list[str]:
  """Markdown lines: for each label with runs in both experiments, the
  exit chosen on validation, its validation and test accuracy, and the
  output block's test accuracy in the same runs (mean ± standard
  deviation over seeds)."""
  lines = ["| run | seeds (validation, test) | exit chosen on validation "
           "| its validation accuracy | its test accuracy "
           "| the output's test accuracy |",
           "| --- | --- | --- | --- | --- | --- |"]
  for label in labels:
    validation, test = validation_runs.get(label), test_runs.get(label)
    if not validation or not test:
      continue
    k = choose_exit(validation)
    depth = len(validation[0]["per_block_test_accuracy"])
    if any(len(r["per_block_test_accuracy"]) != depth for r in test):
      raise ValueError(f"{label}: the validation and test runs cut the "
                       "network into different numbers of blocks")
    name = "the output" if k == depth - 1 else f"block {k + 1} of {depth}"
    lines.append(
        f"| {label} | {len(validation)}, {len(test)} | {name} | "
        f"{_cell([r['per_block_test_accuracy'][k] for r in validation])} | "
        f"{_cell([r['per_block_test_accuracy'][k] for r in test])} | "
        f"{_cell([r['test_accuracy'] for r in test])} |")
  return lines
