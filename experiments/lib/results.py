"""Where the runs of the experiments go, and how a run or a report is written.

Every run of an experiment is one JSON file,
`experiments/results/<experiment>/<slug(label)>-seed<S>.json`: the summary
of its `bll-train` run with the experiment's name, the run's label and its
overrides. A benchmark writes a report instead: `OUT/<name>.json` and the
markdown tables `OUT/<name>.md`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

from bll_jax import training

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "results")


def slug(label: str) -> str:
  """A run label as a file name: `"temperature 0.3"` -> `temperature-0.3`."""
  return re.sub(r"[^a-z0-9.+]+", "-", label.lower()).strip("-")


def result_path(experiment: str, label: str, seed: int,
                root: str = RESULTS) -> str:
  """The JSON file of one run."""
  return os.path.join(root, experiment, f"{slug(label)}-seed{seed}.json")


def write_run(experiment: str, label: str, seed: int,
              overrides: Mapping[str, Any], summary: Mapping[str, Any],
              root: str = RESULTS) -> dict[str, Any]:
  """Writes a run's summary with its experiment, label and overrides.

  Returns:
    What was written (tuples as lists, arrays as numbers).
  """
  record = training.jsonable({"experiment": experiment, "label": label,
                              "overrides": dict(overrides), **summary})
  path = result_path(experiment, label, seed, root)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(record, f, indent=2)
  return record


def write_report(out: str, name: str, report: Mapping[str, Any],
                 markdown: str) -> None:
  """A benchmark's `OUT/<name>.json` and its tables, `OUT/<name>.md`."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"{name}.json"), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(out, f"{name}.md"), "w") as f:
    f.write(markdown + "\n")
