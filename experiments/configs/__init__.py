"""One config per experiment, for `experiments.sweep` and `make_table`.

An experiment is a `bll-train` preset, overrides of config fields shared by
its runs (`{dotted field: value}`, as `bll_jax.config.from_overrides` takes
them), the runs compared (each an overrides dict too: a method of `METHODS`,
or an ablation's own `variants`) and the seeds. Every run writes its
`summary.json` to `experiments/results/<experiment>/<label>-seed<S>.json`;
what the runs show is prose in `experiments/notes/<experiment>.md` (after
new runs, rebuild `RESULTS.md` and check that it still holds).
Experiments that need data this workplace cannot download have
`run_here = False` and the reason (`why_not`); those sized for an accelerator
also name the JAX backend that runs them (`needs = "gpu"`). Their configs are
checked against the config schema by `tests/test_make_table.py`.
"""

from __future__ import annotations

import importlib
import pkgutil

# Method label -> overrides (on top of the experiment's).
METHODS = {
    "bp": {"method": "bp"},
    "bll": {},                      # Gaussian, chained, discriminative
    "bll-direct": {"feedback": "direct"},
    # The sorting temperature chosen on validation (ablation_sort_validation).
    "bll-temperature-5": {"temperature": 5.0},
    "bll-bootstrapped": {"feedback": "bootstrapped"},
    "bll-bernoulli": {"family": "bernoulli"},
    "bll-categorical": {"family": "categorical", "group_size": 4},
    "bll-learned-variance": {"family": "gaussian_learned_variance"},
    # Each hidden block's temperature set from its scores' spread at init.
    "bll-calibrated": {"temperature_calibration": "init"},
    "drtp": {"method": "drtp"},
    "local": {"method": "local"},
    "authors": {"recipe": "authors"},
    "authors+fixes": {"recipe": "authors", "authors.similarity_pulls": True,
                      "authors.train_auxiliary": True},
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


def blocks_sweep(methods, blocks) -> dict[str, dict]:
  """The runs of a sweep over the number of blocks: `"bp"` once (it does not
  depend on the cut) and `"<method> K=<k>"`, the method cut evenly into
  `k` blocks, for every method and `k`."""
  runs = {"bp": METHODS["bp"]}
  for method in methods:
    for k in blocks:
      runs[f"{method} K={k}"] = {**METHODS[method], "blocks": k}
  return runs


def by_blocks(runs) -> dict[str, tuple[str, int]]:
  """`label -> (method, K)` of the labels `"<method> K=<k>"` among `runs`:
  the lines of the plot against K (`make_table`)."""
  return {label: (label.split(" K=")[0], int(label.split(" K=")[1]))
          for label in runs if " K=" in label}


def names() -> list[str]:
  """Every experiment config, in a stable order."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_"))


def load(name: str) -> dict:
  """The `EXPERIMENT` dict of `experiments/configs/<name>.py`, completed.

  Adds the defaults (`seeds`, `overrides`, `run_here`, `needs`, `metrics`),
  the `name`, and `runs`: label -> that run's overrides.

  Raises:
    ValueError: an unknown experiment, or a method not in `METHODS`.
  """
  if name not in names():
    raise ValueError(f"experiment must be one of {names()}, got {name!r}")
  experiment = dict(importlib.import_module(f"{__name__}.{name}").EXPERIMENT)
  experiment.setdefault("seeds", (0, 1, 2))
  experiment.setdefault("overrides", {})
  experiment.setdefault("run_here", True)
  experiment.setdefault("needs", None)     # e.g. "gpu": runs on that backend
  experiment.setdefault("metrics", ("test_accuracy",))
  experiment["name"] = name
  if "variants" in experiment:     # an ablation: its own labelled overrides
    experiment["runs"] = dict(experiment["variants"])
  else:
    unknown = set(experiment["methods"]) - set(METHODS)
    if unknown:
      raise ValueError(f"{name}: unknown methods {sorted(unknown)}")
    experiment["runs"] = {m: METHODS[m] for m in experiment["methods"]}
  return experiment
