"""The exit chosen on validation: which block to predict with.

Every block of a block-local network makes its own prediction
`q(y | alpha_k)` (the output block's is the network's). Where the output
block is not the best of them, a run can stop at an earlier block and
predict there (an early exit: fewer blocks at inference, never more).
Which block is chosen on held-out training data, never on test: for each
run label, the block with the best mean validation score over the
validation experiment's seeds (a tie goes to the deeper block), then that
block's test score is read from the test experiment's runs, which record
every block's (`per_block_test_accuracy`, `per_block_test_loss`).

The score is the accuracy (highest wins) or, for a language model, the
loss `-log q(y | alpha_k)` in nats per token (lowest wins). A run made
before its blocks were scored one by one counts as scoring its output
only (`test_<score>` at the last block), which suits backprop, whose
hidden blocks make no prediction.

An experiment config names its validation experiment with
`"exits_from": "<experiment>"` and the score with `"exit_metric"`
(`"accuracy"`, the default, or `"loss"`); `make_table` puts the table of
:func:`exit_table` under its own.
"""

from __future__ import annotations

import statistics

METRICS = ("accuracy", "loss")


def _check(metric: str) -> None:
  if metric not in METRICS:
    raise ValueError(f"exit metric {metric!r}: expected one of {METRICS}")


def per_block(run: dict, metric: str) -> list[float | None]:
  """Every block's own test `metric` in `run`, `None` where a block makes
  no prediction; a run without per-block scores gives its output's only."""
  _check(metric)
  scores = run.get(f"per_block_test_{metric}")
  if scores is None:
    return [None] * (run["blocks"] - 1) + [run[f"test_{metric}"]]
  return list(scores)


def choose_exit(validation: list[dict], metric: str = "accuracy") -> int:
  """The block (0-based) with the best mean validation `metric` over the
  runs (the seeds of one label): the highest accuracy or the lowest loss;
  a tie goes to the deeper block. Blocks without a prediction of their own
  (`None`) are never chosen."""
  if not validation:
    raise ValueError("choosing an exit needs at least one validation run")
  scores = [per_block(r, metric) for r in validation]
  depth = len(scores[0])
  if any(len(s) != depth for s in scores):
    raise ValueError("the validation runs of one label have different "
                     "numbers of blocks")
  sign = 1.0 if metric == "accuracy" else -1.0
  best, best_mean = depth - 1, -float("inf")
  for k in range(depth):
    values = [s[k] for s in scores]
    if any(v is None for v in values):
      continue
    mean = sign * statistics.mean(values)
    if mean >= best_mean:
      best, best_mean = k, mean
  return best


def _cell(values: list[float]) -> str:
  if len(values) == 1:
    return f"{values[0]:.4f}"
  return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def exit_table(test_runs: dict[str, list[dict]],
               validation_runs: dict[str, list[dict]],
               labels: list[str], metric: str = "accuracy") -> list[str]:
  """Markdown lines: for each label with runs in both experiments, the
  exit chosen on validation, its validation and test `metric`, and the
  output block's test `metric` in the same runs (mean ± standard
  deviation over seeds)."""
  _check(metric)
  name = "loss (nats)" if metric == "loss" else metric
  lines = [f"| run | seeds (validation, test) | exit chosen on validation "
           f"| its validation {name} | its test {name} "
           f"| the output's test {name} |",
           "| --- | --- | --- | --- | --- | --- |"]
  for label in labels:
    validation, test = validation_runs.get(label), test_runs.get(label)
    if not validation or not test:
      continue
    k = choose_exit(validation, metric)
    depth = len(per_block(validation[0], metric))
    tested = [per_block(r, metric) for r in test]
    if any(len(s) != depth for s in tested):
      raise ValueError(f"{label}: the validation and test runs cut the "
                       "network into different numbers of blocks")
    where = "the output" if k == depth - 1 else f"block {k + 1} of {depth}"
    lines.append(
        f"| {label} | {len(validation)}, {len(test)} | {where} | "
        f"{_cell([per_block(r, metric)[k] for r in validation])} | "
        f"{_cell([s[k] for s in tested])} | "
        f"{_cell([r[f'test_{metric}'] for r in test])} |")
  return lines
