"""Compare methods on one preset over seeds: a markdown table and JSON files.

    python experiments/compare.py --preset fashion_mnist_mlp \
        --methods bp,bll --seeds 0,1,2 --out experiments/results/compare

Each run is `bll-train --preset P --method M --seed S [--set ...]` in this
process; its `summary.json` is copied to `OUT/<preset>-<method>-seed<S>.json`
and the table (test accuracy mean and standard deviation over seeds, each
block's own accuracy, time) is printed and written to `OUT/<preset>.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile

from bll_jax import cli
from bll_jax import train


def run(preset: str, method: str, seed: int, overrides: list[str],
        out: str) -> dict:
  argv = ["--preset", preset, "--method", method, "--seed", str(seed),
          "--progress", "false"]
  for item in overrides:
    key, _, value = item.partition("=")
    argv += [f"--{key}", value]
  config, _ = cli.config_from_args(argv)
  del config.print_config
  workdir = tempfile.mkdtemp(prefix="bll-compare-")
  try:
    summary = train.train_and_evaluate(config, workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  path = os.path.join(out, f"{preset}-{method}-seed{seed}.json")
  with open(path, "w") as f:
    json.dump(train._jsonable(summary), f, indent=2)
  return summary


def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  if len(values) == 1:
    return f"{values[0]:.4f}"
  return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(preset: str, results: dict[str, list[dict]]) -> str:
  first = next(iter(results.values()))[0]
  lines = [f"### {preset}: {first['dataset']}, {first['model']}, "
           f"{first['blocks']} blocks, {first['epochs']} epochs",
           "",
           "| method | seeds | test accuracy | per-block test accuracy (mean) "
           "| train s/run |",
           "| --- | --- | --- | --- | --- |"]
  for method, runs in results.items():
    per_block = []
    for k in range(len(runs[0]["per_block_test_accuracy"])):
      vals = [r["per_block_test_accuracy"][k] for r in runs]
      per_block.append("-" if vals[0] is None
                       else f"{statistics.mean(vals):.3f}")
    seconds = statistics.mean(r["train_seconds"] for r in runs)
    lines.append(f"| {method} | {len(runs)} | "
                 f"{_mean_std([r['test_accuracy'] for r in runs])} | "
                 f"{', '.join(per_block)} | {seconds:.1f} |")
  machine = first["machine"]
  lines += ["", f"Machine: {machine['processor']}, {machine['cpu_count']} "
            f"CPUs, {machine['backend']}, jax {machine['jax']} "
            f"({platform.node() or 'unnamed host'})."]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", required=True)
  parser.add_argument("--methods", default="bp,bll")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a bll-train flag without dashes, e.g. epochs=2")
  parser.add_argument("--out", default="experiments/results/compare")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  results = {}
  for method in args.methods.split(","):
    for seed in (int(s) for s in args.seeds.split(",")):
      summary = run(args.preset, method, seed, args.set, args.out)
      print(f"{method} seed {seed}: test accuracy "
            f"{summary['test_accuracy']:.4f}", flush=True)
      results.setdefault(method, []).append(summary)
  text = table(args.preset, results)
  with open(os.path.join(args.out, f"{args.preset}.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
