"""Run the experiments of `experiments/configs/`: one JSON per run.

    python experiments/sweep.py fashion_mnist_mlp mnist1d_cnn   # named experiments
    python experiments/sweep.py --all                           # everything run here
    python experiments/sweep.py seq_reverse_transformer --methods bp,bll --seeds 0

Each run is `bll-train --preset P <experiment flags> <method flags> --seed S`
in this process; its `summary.json` goes to
`experiments/results/<experiment>/<label>-seed<S>.json`. Runs whose JSON
exists are skipped (a sweep resumes where it stopped; `--force` reruns).
Experiments marked `run_here = False` are refused unless `--force`, or unless
they name the JAX backend they need (`needs = "gpu"`) and this is it.
Then `python experiments/make_table.py` rebuilds `RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from bll_jax import cli  # noqa: E402
from bll_jax import train  # noqa: E402
from experiments import configs  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def slug(label: str) -> str:
  """A file-name form of a run label: `"temperature 0.3"` -> `temperature-0.3`."""
  return re.sub(r"[^a-z0-9.+]+", "-", label.lower()).strip("-")


def result_path(experiment: str, label: str, seed: int,
                root: str = RESULTS) -> str:
  return os.path.join(root, experiment, f"{slug(label)}-seed{seed}.json")


def runs_here(experiment: dict) -> bool:
  """Whether this machine runs `experiment`: everything marked `run_here`,
  and those that need an accelerator where JAX's backend is that one."""
  return experiment["run_here"] or (
      experiment["needs"] is not None
      and jax.default_backend() == experiment["needs"])


def run(experiment: dict, label: str, seed: int, extra: list[str],
        root: str = RESULTS) -> dict:
  """Trains one run and writes its summary (with the label) as JSON."""
  argv = (["--preset", experiment["preset"], *experiment["flags"],
           *experiment["runs"][label], "--seed", str(seed),
           "--progress", "false", *extra])
  config, _ = cli.config_from_args(argv)
  del config.print_config
  workdir = tempfile.mkdtemp(prefix="bll-sweep-")
  try:
    summary = train.train_and_evaluate(config, workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  summary = {"experiment": experiment["name"], "label": label,
             "argv": argv, **summary}
  path = result_path(experiment["name"], label, seed, root)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(train._jsonable(summary), f, indent=2)
  return summary


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("experiments", nargs="*",
                      help=f"any of {configs.names()}")
  parser.add_argument("--all", action="store_true",
                      help="every experiment with run_here")
  parser.add_argument("--methods", default="",
                      help="comma-separated labels, or their file-name forms "
                      "(`slug`) for labels with commas (default: all)")
  parser.add_argument("--seeds", default="", help="e.g. 0,1 (default: all)")
  parser.add_argument("--set", action="append", default=[], metavar="K=V",
                      help="extra bll-train flag for every run, e.g. steps=20")
  parser.add_argument("--results", default=RESULTS)
  parser.add_argument("--force", action="store_true")
  args = parser.parse_args(argv)
  names = configs.names() if args.all else args.experiments
  if not names:
    parser.error("name experiments or pass --all")
  unknown = [n for n in names if n not in configs.names()]
  if unknown:
    parser.error(f"unknown experiment(s) {unknown}; choose from "
                 f"{configs.names()}")
  extra = []
  for item in args.set:
    key, _, value = item.partition("=")
    extra += [f"--{key}", value]
  plan = []                     # every experiment checked before any run
  for name in names:
    experiment = configs.load(name)
    if not runs_here(experiment):
      if args.all:
        continue
      if not args.force:
        parser.error(f"{name} is not run here: {experiment['why_not']} "
                     "(--force to try)")
    by_slug = {slug(label): label for label in experiment["runs"]}
    wanted = [by_slug.get(m, m) for m in args.methods.split(",") if m]
    if args.all and wanted:       # --all: the named runs where they exist
      labels = [m for m in wanted if m in experiment["runs"]]
    else:
      labels = wanted or list(experiment["runs"])
    for label in labels:
      if label not in experiment["runs"]:
        parser.error(f"{name} has no run {label!r}; it has "
                     f"{list(experiment['runs'])}")
    seeds = ([int(s) for s in args.seeds.split(",") if s] or
             list(experiment["seeds"]))
    plan.append((name, experiment, labels, seeds))
  if args.all and args.methods and not any(labels for _, _, labels, _ in plan):
    parser.error(f"no experiment has a run named in --methods {args.methods!r}")
  for name, experiment, labels, seeds in plan:
    for label in labels:
      for seed in seeds:
        path = result_path(name, label, seed, args.results)
        if os.path.exists(path) and not args.force:
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
