"""Block-local against GPipe backprop on real parallel workers (processes).

    python experiments/process_benchmark.py --out experiments/results/processes

Each worker is a process pinned to its own core (`bll_jax.launch`), talking
through JAX's multi-process runtime (gloo collectives, socket transfers).
For each model, in one run, examples per second of:

1. backprop, one worker (one core);
2. block-local, one worker, all blocks in turn (and its fused step);
3. block-local `pipelined`, B workers (B = 2: the cores of this machine);
4. backprop GPipe, B workers, M = 1, 2, 4, 8 micro-batches per step;
5. the all-cores baseline: one unpinned process, XLA using every core.

For each: time per step (per micro-batch), the share of a tick spent moving
one activation between workers, the bubble fraction, and each worker's peak
resident memory. Models: a 4-block CNN whose block compute dominates its
activation transfer, a 4-block MLP, and a tiny MLP where transfers dominate
(where the method stops paying). A cost model fitted to the one-worker
times and the measured transfer predicts throughput for B = 2 .. 64 workers
for both schedules; the measured B = 2 points are set against it. Writes
`OUT/process_benchmark.json`, `OUT/process_benchmark.md` and
`OUT/throughput.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = {
    # name: (input shape, model factory args, micro-batch)
    "cnn": ((32, 32, 3), ("cnn", (64, 64, 64), (3, 3, 3), (1, 1, 1)), 16),
    "mlp": ((784,), ("mlp", (1024, 1024, 1024)), 64),
    "mlp-tiny": ((32,), ("mlp", (32, 32, 32)), 16),
}
NUM_CLASSES = 10
GPIPE_M = (1, 2, 4, 8)


def build(model: str, method: str):
  """`(engine, micro-batch maker)` for a benchmark model in 4 blocks."""
  import jax.numpy as jnp
  import numpy as np
  import optax

  from bll_jax import blocks
  from bll_jax import families
  from bll_jax import models
  from bll_jax import step

  shape, spec, mb = MODELS[model]
  if spec[0] == "cnn":
    stack = models.cnn(spec[1], spec[2], spec[3], NUM_CLASSES, 2, norm=False,
                       head="pool")
  else:
    stack = models.mlp(spec[1], NUM_CLASSES)
  engine = step.Engine(
      stack, blocks.boundaries(len(stack), 4),
      [blocks.Latent(families.Gaussian())] * 3, method=method,
      feedback_mode="chained", num_classes=NUM_CLASSES, input_shape=shape,
      input_dtype=jnp.float32, tx=optax.adam(1e-3),
      objective=step.Objective(feedback_loss="discriminative"))

  def batch(i):
    rng = np.random.default_rng(i)
    return {"inputs": rng.normal(size=(mb,) + shape).astype(np.float32),
            "labels": rng.integers(0, NUM_CLASSES, mb).astype(np.int32),
            "weights": np.ones(mb, np.float32)}

  return engine, batch


def _timed(fn, repeats):
  import jax
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure_single(model: str, repeats: int) -> dict:
  """One device: bp, bll fused, bll blocks in turn, forward only."""
  import jax

  bll, batch = build(model, "bll")
  bp, _ = build(model, "bp")
  key = jax.random.key(0)
  b = jax.device_put(batch(0))
  s_bll = bll.init(key, b["inputs"])
  s_bp = bp.init(key, b["inputs"])
  forward = jax.jit(lambda s, x: bp.bp_logits(
      tuple(k.params for k in s.blocks), [k.batch_stats for k in s.blocks],
      x, True, None)[0])
  return {
      "bp_step_s": _timed(lambda: bp.train_step(s_bp, b, key)[1], repeats),
      "bp_forward_s": _timed(lambda: forward(s_bp, b["inputs"]), repeats),
      "bll_fused_step_s": _timed(lambda: bll.train_step(s_bll, b, key)[1],
                                 repeats),
      "bll_in_turn_step_s": _timed(
          lambda: bll.train_step_per_block(s_bll, b, key)[1], repeats),
  }


def _barrier(name):
  import jax
  from jax.experimental import multihost_utils
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def worker(argv) -> int:
  """Runs inside each launched process; process 0 writes the result JSON."""
  import resource

  import jax
  from bll_jax.parallel import mesh as mesh_lib
  from bll_jax.parallel import gpipe
  from bll_jax.parallel import mpmd
  from bll_jax.parallel import schedules

  parser = argparse.ArgumentParser()
  parser.add_argument("--model", required=True)
  parser.add_argument("--mode", required=True)   # single | bll | gpipe
  parser.add_argument("--m", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  result = {"model": args.model, "mode": args.mode,
            "processes": jax.process_count()}
  if args.mode == "single":
    result.update(measure_single(args.model, args.repeats))
  else:
    workers = jax.process_count()
    engine, batch = build(args.model, "bll" if args.mode == "bll" else "bp")
    mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(1, workers), engine.num_blocks)
    state = engine.init(jax.random.key(0), batch(0)["inputs"])
    mb = MODELS[args.model][2]
    if args.mode == "bll":
      runner = mpmd.BlockParallel(engine, mesh)
      placed = runner.place(state)

      def run(count):
        keys = [jax.random.key(i) for i in range(count)]
        out, _, _ = runner.pipelined(placed, (batch(i) for i in range(count)),
                                     keys)
        return out

      jax.block_until_ready(run(workers + 1))   # compile every stage program
      times = {}
      for count in (args.m, 2 * args.m):
        _barrier(f"start-{count}")
        start = time.perf_counter()
        jax.block_until_ready(run(count))
        _barrier(f"end-{count}")
        times[count] = time.perf_counter() - start
      ticks = 2 * args.m + workers - 1
      result.update({
          "micro_batches": 2 * args.m, "ticks": ticks,
          "seconds": times[2 * args.m],
          "time_per_tick_s": times[2 * args.m] / ticks,
          # The fill and drain cancel in the difference: the steady tick.
          "steady_tick_s": (times[2 * args.m] - times[args.m]) / args.m,
          "bubble_fraction": schedules.bubble_fraction(2 * args.m, workers),
          "examples_per_second": 2 * args.m * mb / times[2 * args.m],
          "steady_examples_per_second": mb * args.m / (
              times[2 * args.m] - times[args.m]),
      })
      # One activation from the first stage to the next, alone.
      h = jax.jit(lambda s, x: engine._forward(0, s.params, s.batch_stats, x,
                                               True, None)[1])(
          state.blocks[0], batch(0)["inputs"])
      h = runner.batch_on({"h": jax.device_get(h)}, 0)["h"]
      dst = runner._sharded(1)
      jax.block_until_ready(jax.device_put(h, dst))
      _barrier("transfer-start")
      start = time.perf_counter()
      for _ in range(args.repeats * 5):
        moved = jax.device_put(h, dst)
      jax.block_until_ready(moved)
      _barrier("transfer-end")
      result["transfer_s"] = (time.perf_counter() - start) / (args.repeats * 5)
      result["activation_bytes"] = int(h.size * h.dtype.itemsize)
    else:
      pipe = gpipe.GPipe(engine, mesh)
      placed = pipe.parallel.place(state)
      micro = [batch(i) for i in range(args.m)]
      key = jax.random.key(0)
      jax.block_until_ready(pipe.step(placed, micro, key)[0])
      steps = []
      for r in range(args.repeats):
        _barrier(f"gpipe-start-{r}")
        start = time.perf_counter()
        jax.block_until_ready(pipe.step(placed, micro, key)[0])
        _barrier(f"gpipe-end-{r}")
        steps.append(time.perf_counter() - start)
      step_s = statistics.median(steps)
      result.update({
          "micro_batches": args.m, "step_s": step_s,
          "time_per_micro_batch_s": step_s / args.m,
          "bubble_fraction": schedules.bubble_fraction(args.m, workers),
          "examples_per_second": args.m * mb / step_s})
  result["max_rss_mib"] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 1024
  with open(f"{args.out}.{jax.process_index()}", "w") as f:
    json.dump(result, f)
  return 0


def _launch(processes, model, mode, m, repeats, workdir):
  from bll_jax import launch
  out = os.path.join(workdir, f"{model}-{mode}-{m}-{processes}")
  status = launch.launch(
      processes, ["--model", model, "--mode", mode, "--m", str(m),
                  "--repeats", str(repeats), "--out", out],
      entry="experiments.process_benchmark:worker", num_blocks=4,
      workdir=workdir)
  if status:
    raise RuntimeError(f"{model} {mode} M={m} on {processes} workers failed")
  results = []
  for i in range(processes):
    with open(f"{out}.{i}") as f:
      results.append(json.load(f))
  merged = dict(results[0])
  merged["max_rss_mib"] = [r["max_rss_mib"] for r in results]
  return merged


def cost_model(single: dict, transfer_s: float, workers: int, mb: int,
               micro_batches: int = 8) -> dict:
  """Predicted examples/s with `workers` equal stages.

  Block-local: a tick is one stage's share of the block-local step plus one
  transfer, `T_bll / B + x`; the stream amortises the fill. GPipe with `M`
  micro-batches and re-materialisation: `M + B - 1` forward ticks of
  `T_f / B + x` and as many backward ticks of `(T_f + T_bp) / B + x`.
  """
  t_bll, t_bp, t_f = (single["bll_in_turn_step_s"], single["bp_step_s"],
                      single["bp_forward_s"])
  ticks = micro_batches + workers - 1
  gpipe_step = ticks * (t_f / workers + transfer_s) + ticks * (
      (t_f + t_bp) / workers + transfer_s)
  return {"bll": mb / (t_bll / workers + transfer_s),
          "gpipe": micro_batches * mb / gpipe_step}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--micro-batches", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="experiments/results/processes")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  workdir = tempfile.mkdtemp(prefix="bll-processes-")
  report = {"machine": {"cores": len(os.sched_getaffinity(0)),
                        "cpu": _cpu_name()}, "results": {}}
  for model in args.models.split(","):
    print(f"{model}: one worker ...", flush=True)
    r = {"single": _launch(1, model, "single", 1, args.repeats, workdir)}
    print(f"{model}: block-local pipelined on {args.workers} workers ...",
          flush=True)
    r["bll_pipelined"] = _launch(args.workers, model, "bll",
                                 args.micro_batches, args.repeats, workdir)
    for m in GPIPE_M:
      print(f"{model}: GPipe M={m} on {args.workers} workers ...", flush=True)
      r[f"gpipe_m{m}"] = _launch(args.workers, model, "gpipe", m,
                                 args.repeats, workdir)
    print(f"{model}: all cores, one process ...", flush=True)
    r["all_cores"] = measure_single(model, args.repeats)
    mb = MODELS[model][2]
    x = r["bll_pipelined"]["transfer_s"]
    r["cost_model"] = {str(b): cost_model(r["single"], x, b, mb)
                       for b in (1, 2, 4, 8, 16, 32, 64)}
    r["micro_batch"] = mb
    report["results"][model] = r
  with open(os.path.join(args.out, "process_benchmark.json"), "w") as f:
    json.dump(report, f, indent=2)
  text = markdown(report, args.workers)
  with open(os.path.join(args.out, "process_benchmark.md"), "w") as f:
    f.write(text + "\n")
  plot(report, os.path.join(args.out, "throughput.png"))
  print(text)


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown CPU"


def markdown(report: dict, workers: int) -> str:
  m = report["machine"]
  lines = [f"Machine: {m['cpu']}, {m['cores']} cores; each worker a process "
           "pinned to one core.", ""]
  for model, r in report["results"].items():
    mb, single, bll = r["micro_batch"], r["single"], r["bll_pipelined"]
    one_bll = mb / single["bll_in_turn_step_s"]
    rows = [
        ("backprop, 1 worker", mb / single["bp_step_s"],
         single["bp_step_s"], "-", "-"),
        ("block-local, 1 worker, blocks in turn", one_bll,
         single["bll_in_turn_step_s"], "-", "-"),
        ("block-local, 1 worker, fused step", mb / single["bll_fused_step_s"],
         single["bll_fused_step_s"], "-", "-"),
        (f"block-local pipelined, {workers} workers (steady)",
         bll["steady_examples_per_second"], bll["steady_tick_s"],
         f"{bll['transfer_s'] / bll['steady_tick_s']:.2f}",
         f"{bll['bubble_fraction']:.2f} (once per stream)"),
    ]
    for k in GPIPE_M:
      g = r[f"gpipe_m{k}"]
      rows.append((f"backprop GPipe, {workers} workers, M={k}",
                   g["examples_per_second"], g["time_per_micro_batch_s"],
                   f"{2 * bll['transfer_s'] * (k + workers - 1) / g['step_s']:.2f}",
                   f"{g['bubble_fraction']:.2f} (every step)"))
    rows.append(("backprop, 1 process, all cores",
                 mb / r["all_cores"]["bp_step_s"],
                 r["all_cores"]["bp_step_s"], "-", "-"))
    rows.append(("block-local fused, 1 process, all cores",
                 mb / r["all_cores"]["bll_fused_step_s"],
                 r["all_cores"]["bll_fused_step_s"], "-", "-"))
    rss = {"bll": bll["max_rss_mib"], "gpipe": r[f"gpipe_m{GPIPE_M[-1]}"][
        "max_rss_mib"]}
    lines += [f"### {model} (micro-batch {mb}; activation between stages "
              f"{bll['activation_bytes'] / 1024:.0f} KiB, moved in "
              f"{1e3 * bll['transfer_s']:.2f} ms)", "",
              "| run | examples/s | ms per micro-batch | transfer share | "
              "bubble |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {eps:.0f} | {1e3 * t:.2f} | {share} | {bubble} |"
              for name, eps, t, share, bubble in rows]
    pred = r["cost_model"][str(workers)]
    lines += ["",
              f"Block-local pipelined over one worker: "
              f"{bll['steady_examples_per_second'] / one_bll:.2f}x "
              f"(target 1.8x). Peak resident memory per worker (MiB): "
              f"block-local {', '.join(f'{v:.0f}' for v in rss['bll'])}; "
              f"GPipe M={GPIPE_M[-1]} "
              f"{', '.join(f'{v:.0f}' for v in rss['gpipe'])}. Cost model at "
              f"B={workers}: block-local {pred['bll']:.0f}, GPipe (M=8) "
              f"{pred['gpipe']:.0f} examples/s; measured "
              f"{bll['steady_examples_per_second']:.0f} and "
              f"{r['gpipe_m8']['examples_per_second']:.0f}.", "",
              "| workers | " + " | ".join(r["cost_model"]) + " |",
              "| --- |" + " --- |" * len(r["cost_model"]),
              "| block-local (model) | " + " | ".join(
                  f"{v['bll']:.0f}" for v in r["cost_model"].values()) + " |",
              "| GPipe M=8 (model) | " + " | ".join(
                  f"{v['gpipe']:.0f}" for v in r["cost_model"].values()) + " |",
              ""]
  return "\n".join(lines)


def plot(report: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(report["results"]),
                           figsize=(5 * len(report["results"]), 4))
  axes = axes if hasattr(axes, "__len__") else [axes]
  for ax, (model, r) in zip(axes, report["results"].items()):
    workers = [int(b) for b in r["cost_model"]]
    ax.plot(workers, [r["cost_model"][str(b)]["bll"] for b in workers], "-",
            label="block-local pipelined (model)")
    ax.plot(workers, [r["cost_model"][str(b)]["gpipe"] for b in workers], "--",
            label="GPipe M=8 (model)")
    b = r["bll_pipelined"]["processes"]
    ax.plot([b], [r["bll_pipelined"]["steady_examples_per_second"]], "o",
            label=f"block-local, measured (B={b})")
    ax.plot([b], [r["gpipe_m8"]["examples_per_second"]], "s",
            label=f"GPipe M=8, measured (B={b})")
    ax.plot([1], [r["micro_batch"] / r["single"]["bll_in_turn_step_s"]], "^",
            label="block-local, 1 worker")
    ax.set(xscale="log", yscale="log", xlabel="workers (B)",
           ylabel="examples / s", title=model)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
