"""Time-to-accuracy: how much sooner N workers reach a test accuracy.

    python -m experiments.time_to_accuracy --out experiments/results/time_to_accuracy
    python -m experiments.time_to_accuracy --models cnn --methods bll-1,bp-dp-2

For each model, every method trains the same network on the same data with
`bll-train` itself, each worker a process pinned to its own core
(`bll_jax.cli.launch`): block-local on 1 worker and pipelined on 2 (with the
chained feedback replicated and all-reduced every tick, and with the
feedback owned by the stages, `chained_local`), and backprop on 1 worker,
data-parallel on 2 (gradients all-reduced every step), GPipe and 1F1B on 2
(`--pipeline gpipe|1f1b`). Every run evaluates the test set after each
epoch; its `train_seconds` exclude compilation, evaluation and checkpoints
(`bll_jax.training.loop`). The time to a target is the training time summed
up to the end of the first epoch whose test accuracy reaches it (a point
measured at an epoch's end, never interpolated). Beside it: examples per
second of training and each worker's peak resident set (the launcher's
record, compilation included). Writes
`OUT/time_to_accuracy.json`, `OUT/time_to_accuracy.md` and one plot per
model of test accuracy against training seconds, `OUT/<model>.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from bll_jax import config as config_lib
from bll_jax.config import flags as flags_lib
from experiments.lib import machine
from experiments.lib import results as results_lib

# name: (what it is, bll-train flags, target test accuracy)
MODELS = {
    # Without BatchNorm: GPipe and 1F1B would see micro-batch statistics.
    # Three 3x3 convolutions (32, 64, 128 channels; strides 1, 2, 2) and a
    # dense head: the two stages get about equal work.
    "cnn": ("Fashion-MNIST (12k training images), 4-block CNN without "
            "BatchNorm",
            ["--dataset.name", "fashion_mnist", "--dataset.train-examples",
             "12000", "--model.name", "cnn", "--model.channels", "32,64,128",
             "--model.kernels", "3,3,3", "--model.strides", "1,2,2",
             "--model.norm", "false", "--blocks", "4", "--batch-size", "128",
             "--epochs", "8"], 0.85),
    "mlp": ("Fashion-MNIST, 4-block MLP 784-512-512-512-10 (preset "
            "fashion_mnist_mlp)",
            ["--preset", "fashion_mnist_mlp", "--epochs", "5"], 0.86),
    # Token accuracy of greedy decoding on the reverse task.
    # 4096 sequences an epoch (32 steps): the curve resolves the
    # first 200 updates, where the methods part (RESULTS.md).
    "transformer": ("reverse (16 tokens), 8-layer Transformer in 4 blocks "
                    "(preset seq_transformer, 4096 sequences an epoch)",
                    ["--preset", "seq_transformer", "--dataset.train-size",
                     "4096", "--epochs", "6"], 0.90),
    # Where the method stops paying: 0.13 s of compute per epoch, a step
    # is mostly dispatch (the target: below every method's final accuracy).
    "cnn-mnist1d": ("MNIST-1D, 4-block CNN without BatchNorm (preset "
                    "mnist1d, a small model)",
                    ["--preset", "mnist1d", "--model.norm", "false",
                     "--epochs", "20"], 0.80),
}
# Where and how a run ran, not what it computed: the launcher sets the
# mesh and the process fields of each worker.
RUN_FIELDS = frozenset({"workdir", "resume", "progress", "mesh", "distributed",
                        "coordinator_address", "num_processes", "process_id"})
# name: (label, workers, flags)
METHODS = {
    "bll-1": ("block-local, 1 worker", 1, []),
    "bll-2": ("block-local pipelined, 2 workers", 2,
              ["--schedule", "pipelined"]),
    "bll-owned-2": ("block-local pipelined, feedback owned by the stages "
                    "(chained_local), 2 workers", 2,
                    ["--schedule", "pipelined", "--feedback",
                     "chained_local"]),
    "bp-1": ("backprop, 1 worker", 1, ["--method", "bp"]),
    "bp-dp-2": ("backprop data-parallel, 2 workers", 2,
                ["--method", "bp", "--mesh", "data=2"]),
    "bp-gpipe-2": ("backprop GPipe (M=4), 2 workers", 2,
                   ["--method", "bp", "--pipeline", "gpipe",
                    "--micro-batches", "4"]),
    "bp-1f1b-2": ("backprop 1F1B (M=4), 2 workers", 2,
                  ["--method", "bp", "--pipeline", "1f1b",
                   "--micro-batches", "4"]),
}


def train(model: str, method: str, workdir: str, extra: list[str]) -> dict:
  """One `bll-train` run in its launched workers; its summary. A run whose
  directory already holds a finished run of the same flags is read, not
  rerun (a measurement resumes where it stopped)."""
  _, workers, flags = METHODS[method]
  run_dir = os.path.join(workdir, f"{model}-{method}")
  train_args = [*MODELS[model][1], *flags, "--progress", "false",
                "--workdir", run_dir, *extra]
  if finished(run_dir, workers, train_args):
    print("  (finished in an earlier call: read, not rerun)", flush=True)
    return read_summary(run_dir, workers)
  argv = [sys.executable, "-m", "bll_jax.cli.launch", "-n", str(workers),
          "--", *train_args]
  out = subprocess.run(argv, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f"{model} {method} failed:\n{out.stderr[-3000:]}")
  return read_summary(run_dir, workers)


def finished(run_dir: str, workers: int, train_args: list[str]) -> bool:
  """Whether `run_dir` holds a finished run, on `workers` processes, of the
  configuration `train_args` gives (the launcher's own additions, the mesh
  and the process fields, and the run's book-keeping aside)."""
  if not os.path.exists(os.path.join(run_dir, "summary.json")):
    return False
  records = {name for name in os.listdir(run_dir)
             if name.startswith("worker-") and name.endswith(".json")}
  if records != {f"worker-{i}.json" for i in range(workers)}:
    return False
  saved = config_lib.saved_config(run_dir)
  wanted, _, _ = flags_lib.config_from_args(train_args)
  if saved is None:
    return False
  as_dict = lambda c: {k: v for k, v in json.loads(
      c.to_json_best_effort()).items() if k not in RUN_FIELDS}
  return as_dict(saved) == as_dict(wanted)


def read_summary(run_dir: str, workers: int) -> dict:
  with open(os.path.join(run_dir, "summary.json")) as f:
    summary = json.load(f)
  summary["max_rss_mib"] = worker_rss(run_dir, workers)
  return summary


def worker_rss(run_dir: str, workers: int) -> list[float]:
  """Each worker's peak resident set (MiB), from the record the launcher
  writes when the worker ends (`worker-<i>.json`)."""
  rss = []
  for i in range(workers):
    with open(os.path.join(run_dir, f"worker-{i}.json")) as f:
      rss.append(json.load(f)["max_rss_mib"])
  return rss


def curve(summary: dict) -> list[tuple[float, float]]:
  """`(training seconds so far, test accuracy)` at every epoch's end."""
  seconds, points = 0.0, []
  for record in summary["history"]:
    seconds += record["train_seconds"]
    points.append((seconds, record["test/accuracy"]))
  return points


def time_to(points: list[tuple[float, float]], target: float
            ) -> float | None:
  """Training seconds to the first epoch end at or above `target`."""
  return next((s for s, accuracy in points if accuracy >= target), None)


def measure(models, methods, workdir: str, extra: list[str]) -> dict:
  report = {"machine": {"cores": len(os.sched_getaffinity(0)),
                        "cpu": machine.cpu_name()}, "results": {}}
  for model in models:
    name, _, target = MODELS[model]
    rows = {}
    for method in methods:
      print(f"{model}: {METHODS[method][0]} ...", flush=True)
      summary = train(model, method, workdir, extra)
      points = curve(summary)
      rows[method] = {
          "label": METHODS[method][0], "workers": METHODS[method][1],
          "curve": points, "time_to_target_s": time_to(points, target),
          "final_test_accuracy": summary["test_accuracy"],
          "train_seconds": points[-1][0],
          "examples_per_second": summary["steps"] * summary["batch_size"]
                                 / points[-1][0],
          "steps": summary["steps"], "batch_size": summary["batch_size"],
          "max_rss_mib": summary["max_rss_mib"]}
    report["results"][model] = {"name": name, "target": target,
                                "methods": rows}
  return report


def markdown(report: dict) -> str:
  m = report["machine"]
  lines = [f"Machine: {m['cpu']}, {m['cores']} cores; each worker a process "
           "pinned to one core (`bll_jax.cli.launch`). Training seconds "
           "exclude compilation and the per-epoch evaluation. Time to target: "
           "the training time up to the end of the first epoch whose test "
           "accuracy reaches it.", ""]
  for model, r in report["results"].items():
    methods = r["methods"]
    base = methods.get("bp-1", {}).get("time_to_target_s")
    dp = methods.get("bp-dp-2", {}).get("time_to_target_s")
    lines += [f"### {model}: {r['name']}; target test accuracy "
              f"{r['target']:.2f}", "",
              "| method | workers | time to target (s) | vs backprop, 1 "
              "worker | vs data-parallel backprop, 2 workers | final test "
              "accuracy | examples/s | peak RSS per worker (MiB) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in methods.values():
      t = row["time_to_target_s"]
      ratio = lambda ref: (f"{ref / t:.2f}x" if t and ref else "-")
      lines.append(
          f"| {row['label']} | {row['workers']} | "
          f"{'not reached' if t is None else f'{t:.1f}'} | {ratio(base)} | "
          f"{ratio(dp)} | {row['final_test_accuracy']:.4f} | "
          f"{row['examples_per_second']:.0f} | "
          + ", ".join(f"{v:.0f}" for v in row.get("max_rss_mib", ())) + " |")
    lines.append("")
  return "\n".join(lines)


def plot(report: dict, out: str) -> None:
  """Per model: test accuracy against training seconds, one line per
  method, the target as a dashed line."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  for model, r in report["results"].items():
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in r["methods"].values():
      seconds, accuracy = zip(*row["curve"])
      ax.plot(seconds, accuracy, "o-" if row["workers"] > 1 else "s--",
              markersize=3, label=row["label"])
    ax.axhline(r["target"], color="gray", linestyle=":", label="target")
    ax.set(xlabel="training seconds (compilation and evaluation excluded)",
           ylabel="test accuracy", title=r["name"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{model}.png"), dpi=110)
    plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m experiments.time_to_accuracy",
      description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--out", default="experiments/results/time_to_accuracy")
  parser.add_argument("--runs", default=None,
                      help="keep every run's directory here, and read the "
                           "runs already finished there instead of rerunning "
                           "them (default: a temporary directory)")
  parser.add_argument("--set", dest="extra", default="",
                      help="bll-train flags added to every run, e.g. "
                           "'--epochs 1 --steps 4' (the short form)")
  args = parser.parse_args(argv)
  models, methods = args.models.split(","), args.methods.split(",")
  for name, known in ((models, MODELS), (methods, METHODS)):
    unknown = sorted(set(name) - set(known))
    if unknown:
      parser.error(f"unknown {unknown}: choose from {sorted(known)}")
  if args.runs:
    os.makedirs(args.runs, exist_ok=True)
    report = measure(models, methods, args.runs, args.extra.split())
  else:
    with tempfile.TemporaryDirectory(prefix="bll-tta-") as workdir:
      report = measure(models, methods, workdir, args.extra.split())
  text = markdown(report)
  results_lib.write_report(args.out, "time_to_accuracy", report, text)
  plot(report, args.out)
  print(text)


if __name__ == "__main__":
  main()
