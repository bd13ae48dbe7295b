"""Run the experiments of `experiments/configs/`: one JSON per run.

    python -m experiments.sweep fashion_mnist_mlp mnist1d_cnn   # named ones
    python -m experiments.sweep --all                           # all run here
    python -m experiments.sweep seq_reverse_transformer --methods bp,bll
    python -m experiments.sweep mnist1d_mlp --methods bp --seeds 0 --set steps=5

Each run is the experiment's preset with its overrides, the run's (the
method's or variant's), the seed and any `--set field=value` applied
(`bll_jax.config.from_overrides`), trained in this process by
`bll_jax.training.train_and_evaluate`; its summary goes to
`experiments/results/<experiment>/<label>-seed<S>.json`. Runs whose JSON
exists are skipped (a sweep resumes where it stopped; `--force` reruns).
Experiments marked `run_here = False` are refused unless `--force`, or unless
they name the JAX backend they need (`needs = "gpu"`) and this is it.
Then `python -m experiments.make_table` rebuilds `RESULTS.md`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any, Mapping

import jax

from bll_jax import config as config_lib
from bll_jax import training
from experiments import configs
from experiments.lib import overrides as overrides_lib
from experiments.lib import results


def runs_here(experiment: dict) -> bool:
  """Whether this machine runs `experiment`: everything marked `run_here`,
  and those that need an accelerator where JAX's backend is that one."""
  return experiment["run_here"] or (
      experiment["needs"] is not None
      and jax.default_backend() == experiment["needs"])


def run_overrides(experiment: dict, label: str, seed: int,
                  extra: Mapping[str, Any]) -> dict[str, Any]:
  """Everything one run sets on top of the experiment's preset."""
  return {**experiment["overrides"], **experiment["runs"][label],
          "seed": seed, "progress": False, **extra}


def run(experiment: dict, label: str, seed: int, extra: Mapping[str, Any],
        root: str = results.RESULTS) -> dict:
  """Trains one run and writes its summary (with label and overrides)."""
  overrides = run_overrides(experiment, label, seed, extra)
  config = config_lib.from_overrides(experiment["preset"], overrides)
  with tempfile.TemporaryDirectory(prefix="bll-sweep-",
                                   ignore_cleanup_errors=True) as workdir:
    summary = training.train_and_evaluate(config, workdir)
  return results.write_run(experiment["name"], label, seed, overrides,
                           summary, root)


def plan(parser: argparse.ArgumentParser, args: argparse.Namespace,
         extra: Mapping[str, Any]) -> list[tuple[dict, list[str], list[int]]]:
  """`(experiment, labels, seeds)` of every experiment asked for, each
  checked before any run starts."""
  names = configs.names() if args.all else args.experiments
  if not names:
    parser.error("name experiments or pass --all")
  unknown = [n for n in names if n not in configs.names()]
  if unknown:
    parser.error(f"unknown experiment(s) {unknown}; choose from "
                 f"{configs.names()}")
  out = []
  for name in names:
    experiment = configs.load(name)
    if not runs_here(experiment):
      if args.all:
        continue
      if not args.force:
        parser.error(f"{name} is not run here: {experiment['why_not']} "
                     "(--force to try)")
    by_slug = {results.slug(label): label for label in experiment["runs"]}
    wanted = [by_slug.get(m, m) for m in args.methods.split(",") if m]
    if args.all and wanted:       # --all: the named runs where they exist
      labels = [m for m in wanted if m in experiment["runs"]]
    else:
      labels = wanted or list(experiment["runs"])
    seeds = ([int(s) for s in args.seeds.split(",") if s] or
             list(experiment["seeds"]))
    for label in labels:
      if label not in experiment["runs"]:
        parser.error(f"{name} has no run {label!r}; it has "
                     f"{list(experiment['runs'])}")
      try:                 # the overrides fit together (nothing is read)
        config_lib.from_overrides(experiment["preset"], run_overrides(
            experiment, label, seeds[0] if seeds else 0, extra))
      except config_lib.ConfigError as e:
        parser.error(f"{name} | {label}: {e}")
    out.append((experiment, labels, seeds))
  if args.all and args.methods and not any(labels for _, labels, _ in out):
    parser.error(f"no experiment has a run named in --methods {args.methods!r}")
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m experiments.sweep",
      description=__doc__.splitlines()[0])
  parser.add_argument("experiments", nargs="*",
                      help=f"any of {configs.names()}")
  parser.add_argument("--all", action="store_true",
                      help="every experiment with run_here")
  parser.add_argument("--methods", default="",
                      help="comma-separated labels, or their file-name forms "
                      "(`slug`) for labels with commas (default: all)")
  parser.add_argument("--seeds", default="", help="e.g. 0,1 (default: all)")
  parser.add_argument("--set", action="append", default=[],
                      metavar="FIELD=VALUE",
                      help="a config field for every run, e.g. steps=20 or "
                      "model.widths=8,8 (bll-train --help lists them)")
  parser.add_argument("--results", default=results.RESULTS)
  parser.add_argument("--force", action="store_true")
  args = parser.parse_args(argv)
  try:
    extra = overrides_lib.parse(args.set)
  except config_lib.ConfigError as e:
    parser.error(f"--set: {e}")
  for experiment, labels, seeds in plan(parser, args, extra):
    name = experiment["name"]
    for label in labels:
      for seed in seeds:
        if os.path.exists(results.result_path(name, label, seed,
                                              args.results)) and not args.force:
          continue
        start = time.perf_counter()
        summary = run(experiment, label, seed, extra, args.results)
        extra_metric = (f", exact match {summary['test_exact_match']:.4f}"
                        if "test_exact_match" in summary else "")
        print(f"{name} | {label} | seed {seed}: test accuracy "
              f"{summary['test_accuracy']:.4f}{extra_metric} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
  main()
