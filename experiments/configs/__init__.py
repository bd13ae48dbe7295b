"""One config per experiment, for `experiments/sweep.py` and `make_table.py`.

An experiment is a `bll-train` preset, flags shared by its runs, the methods
compared (each a list of extra flags, from `METHODS`; an ablation lists its
own `variants`) and the seeds. Every run writes its `summary.json` to
`experiments/results/<experiment>/<label>-seed<S>.json`. Experiments that need data this workplace cannot download have
`run_here = False` and the reason (`why_not`); those sized for an accelerator
also name the JAX backend that runs them (`needs = "gpu"`). Their configs are smoke-tested on
`tfds.testing.mock_data` (`tests/test_experiments.py`).
"""

from __future__ import annotations

import importlib
import pkgutil

# method label -> bll-train flags (on top of the experiment's).
METHODS = {
    "bp": ["--method", "bp"],
    "bll": [],                                    # Gaussian, chained, discriminative
    "bll-direct": ["--feedback", "direct"],
    # The sorting temperature chosen on validation (ablation_sort_validation).
    "bll-temperature-5": ["--temperature", "5"],
    "bll-bootstrapped": ["--feedback", "bootstrapped"],
    "bll-bernoulli": ["--family", "bernoulli"],
    "bll-categorical": ["--family", "categorical", "--group-size", "4"],
    "bll-learned-variance": ["--family", "gaussian_learned_variance"],
    # Each hidden block's temperature set from its scores' spread at init.
    "bll-calibrated": ["--temperature-calibration", "init"],
    "drtp": ["--method", "drtp"],
    "local": ["--method", "local"],
    "authors": ["--recipe", "authors"],
    "authors+fixes": ["--recipe", "authors", "--authors.similarity-pulls",
                      "true", "--authors.train-auxiliary", "true"],
}

CLASSIFICATION = ("bp", "bll", "bll-direct", "bll-bootstrapped",
                  "bll-bernoulli", "bll-categorical", "bll-learned-variance",
                  "bll-calibrated", "drtp", "local", "authors",
                  "authors+fixes")
# Token targets: no bootstrapping (per example and class), no recipe (its
# feature summary is for images).
SEQUENCE = ("bp", "bll", "bll-direct", "bll-bernoulli", "bll-categorical",
            "bll-calibrated", "drtp", "local")
# The large runs: the main comparison only.
LARGE = ("bp", "bll", "drtp", "local", "authors", "authors+fixes")


def names() -> list[str]:
  """Every experiment config, in a stable order."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_"))


def load(name: str) -> dict:
  """The `EXPERIMENT` dict of `experiments/configs/<name>.py`."""
  if name not in names():
    raise ValueError(f"experiment must be one of {names()}, got {name!r}")
  experiment = dict(importlib.import_module(f"{__name__}.{name}").EXPERIMENT)
  experiment.setdefault("seeds", (0, 1, 2))
  experiment.setdefault("flags", [])
  experiment.setdefault("run_here", True)
  experiment.setdefault("needs", None)     # e.g. "gpu": runs on that backend
  experiment.setdefault("metrics", ("test_accuracy",))
  experiment["name"] = name
  if "variants" in experiment:     # an ablation: its own labelled flags
    experiment["runs"] = dict(experiment["variants"])
  else:
    unknown = set(experiment["methods"]) - set(METHODS)
    if unknown:
      raise ValueError(f"{name}: unknown methods {sorted(unknown)}")
    experiment["runs"] = {m: METHODS[m] for m in experiment["methods"]}
  return experiment
