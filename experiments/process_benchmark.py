"""Block-local against GPipe backprop on real parallel workers (processes).

    python -m experiments.process_benchmark --out experiments/results/processes

Run from the repository root: each worker is a process pinned to its own
core (`bll_jax.cli.launch`, which imports `experiments.process_benchmark`
there and runs its `worker`), talking through JAX's multi-process runtime
(gloo collectives, socket transfers). For each model, in one run, examples
(for the Transformer: sequences) per second of:

1. backprop, one worker (one core);
2. block-local, one worker, all blocks in turn (and its fused step);
3. block-local `pipelined`, B workers (B = 2: the cores of this machine);
4. backprop GPipe, B workers, M = 1, 2, 4, 8 micro-batches per step, and
   backprop 1F1B at the largest M (the same passes, fewer stage inputs
   held: `peak_stage_inputs`);
5. the all-cores baseline: one unpinned process, XLA using every core;
6. the machine's ceiling: B workers each training its own copy of the
   network (backprop, and block-local's fused step) at the same time,
   nothing exchanged. No B-worker method can beat it; where it is below
   B x one worker, the cores share something (memory bandwidth, caches, a
   host's physical core) that no schedule can give back.

For each: time per step (per micro-batch), the share of a tick spent moving
one activation between workers, the bubble fraction, and each worker's peak
resident memory. Models: a 4-block CNN whose block compute dominates its
activation transfer, a 4-block MLP, a 4-block decoder-only Transformer
(next-token labels on random tokens), and a tiny MLP where transfers
dominate (where the method stops paying). A cost model fitted to the one-worker
times and the measured transfer predicts throughput for B = 2 .. 64 workers
for both schedules; the measured B = 2 points are set against it. Writes
`OUT/process_benchmark.json`, `OUT/process_benchmark.md` and
`OUT/throughput.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from bll_jax import models
from bll_jax.baselines import GPipe
from bll_jax.baselines import OneFOneB
from bll_jax.cli import launch
from bll_jax.parallel import MpmdRunner
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import schedule
from experiments.lib import machine
from experiments.lib import memory
from experiments.lib import results as results_lib
from experiments.lib.models import benchmark_engine
from experiments.lib.models import random_batch
from experiments.lib.models import random_tokens
from experiments.lib.timing import timed

MODELS = {
    # name: (input shape, model factory args, micro-batch, cut points)
    # The CNN: five 64-channel 3x3 convolutions at 32x32 and a pooled head,
    # cut (2, 3, 4) so that two workers get equal work: the first
    # convolution (3 input channels) costs a twentieth of the others.
    "cnn": ((32, 32, 3), ("cnn", (64,) * 5, (3,) * 5, (1,) * 5), 16,
            (2, 3, 4)),
    "mlp": ((784,), ("mlp", (1024, 1024, 1024)), 64, None),
    "mlp-tiny": ((32,), ("mlp", (32, 32, 32)), 16, None),
    # A decoder-only Transformer on 64-token sequences of a 256-token
    # vocabulary (every position labelled with the next token): 4 layers,
    # 256 wide, 8 heads, MLP 1024; a block per layer, the embedding with
    # the first and the output head with the last. Its micro-batch counts
    # sequences.
    "transformer": ((64,), ("transformer", 4, 256, 8, 1024, 256), 8,
                    (2, 3, 4)),
}
NUM_CLASSES = 10
GPIPE_M = (1, 2, 4, 8)


def build(model: str, method: str, feedback: str = "chained"):
  """`(engine, micro-batch maker)` for a benchmark model in 4 blocks."""
  shape, spec, mb, cuts = MODELS[model]
  if spec[0] == "transformer":
    layers, width, heads, mlp, vocab = spec[1:]
    stack = models.transformer(layers, width, heads, mlp, vocab, shape[0])
    engine = benchmark_engine(stack, method, vocab, shape, jnp.int32,
                              cuts=cuts, feedback=feedback)
    return engine, lambda i: random_tokens(i, mb, shape[0], vocab)
  if spec[0] == "cnn":
    stack = models.cnn(spec[1], spec[2], spec[3], NUM_CLASSES, 2, norm=False,
                       head="pool")
  else:
    stack = models.mlp(spec[1], NUM_CLASSES)
  engine = benchmark_engine(stack, method, NUM_CLASSES, shape, cuts=cuts,
                            feedback=feedback)
  return engine, lambda i: random_batch(i, mb, shape, NUM_CLASSES)


def first_device_mesh(num_blocks: int):
  """A mesh of the first device alone (worker 0's, with several)."""
  return mesh_lib.make_mesh(mesh_lib.MeshSpec(1, 1), num_blocks,
                            jax.devices()[:1])


def measure_single(model: str, repeats: int) -> dict:
  """One device: bp, bll fused, bll blocks in turn, forward only (seconds,
  best of `repeats`)."""
  bll, batch = build(model, "bll")
  bp, _ = build(model, "bp")
  key = jax.random.key(0)
  b = jax.device_put(batch(0))
  s_bll = bll.init(key, b["inputs"])
  s_bp = bp.init(key, b["inputs"])
  forward = jax.jit(lambda s, x: bp.bp_logits(
      tuple(k.params for k in s.blocks), [k.batch_stats for k in s.blocks],
      x, True, None)[0])
  # The per-block form of one step on one device: the blocks' own programs
  # in turn, each block's feedback gradient where it is, one feedback update.
  in_turn = MpmdRunner(bll, first_device_mesh(bll.num_blocks), "sync",
                       fused=False)
  s_in_turn = in_turn.place(s_bll)
  return {
      "bp_step_s": timed(lambda: bp.train_step(s_bp, b, key)[1], repeats),
      "bp_forward_s": timed(lambda: forward(s_bp, b["inputs"]), repeats),
      "bll_fused_step_s": timed(lambda: bll.train_step(s_bll, b, key)[1],
                                repeats),
      "bll_in_turn_step_s": timed(
          lambda: in_turn.step(s_in_turn, b, key)[0], repeats),
  }


def measure_independent(model: str, repeats: int,
                        window_s: float = 2.0) -> dict:
  """Every worker trains its own copy of `model` (its own device, nothing
  exchanged) for the same `window_s` seconds, all at once: seconds per
  backprop step and per block-local fused step (the best window of
  `repeats`)."""
  device = jax.local_devices()[0]
  result = {}
  for method in ("bp", "bll"):
    engine, batch = build(model, method)
    key = jax.device_put(jax.random.key(0), device)
    b = jax.device_put(batch(0), device)
    state = jax.device_put(engine.init(key, b["inputs"]), device)
    step = lambda: engine.train_step(state, b, key)[1]
    jax.block_until_ready(step())                  # compile
    best = float("inf")
    for r in range(repeats):
      barrier(f"independent-{method}-{r}")
      calls, start = 0, time.perf_counter()
      while time.perf_counter() - start < window_s:
        jax.block_until_ready(step())
        calls += 1
      best = min(best, (time.perf_counter() - start) / calls)
      barrier(f"independent-{method}-{r}-end")
    result["bp_step_s" if method == "bp" else "bll_fused_step_s"] = best
  return result


def barrier(name: str) -> None:
  """Every worker waits here for the others (nothing with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def local(tree) -> list[jax.Array]:
  """The arrays of `tree` this process holds (what it can wait on)."""
  return [x for x in jax.tree.leaves(tree) if x.is_fully_addressable]


def measure_pipelined(engine, batch, state, m: int, repeats: int) -> dict:
  """Block-local `pipelined` over every worker and, in the same processes,
  the same program on worker 0's core alone (the others idle): timed in
  turn, so that a slow spell of the machine hits both."""
  workers = jax.process_count()
  mb = batch(0)["labels"].shape[0]
  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(1, workers), engine.num_blocks)
  runners = {workers: MpmdRunner(engine, mesh, "pipelined")}
  if workers > 1:
    runners[1] = MpmdRunner(engine, first_device_mesh(engine.num_blocks),
                            "pipelined")
  placed = {b: r.place(state) for b, r in runners.items()}

  def run(b, count):
    """`count` micro-batches through runner `b`; a process that holds none
    of its devices takes no part (the one-worker runner's others idle)."""
    if jax.process_index() not in {d.process_index
                                   for d in runners[b].mesh.devices.flat}:
      return []
    keys = [jax.random.key(i) for i in range(count)]
    out, _ = runners[b].run_epoch(placed[b], (batch(i) for i in range(count)),
                                  keys)
    return local(out)

  for b in runners:                          # compile every program
    jax.block_until_ready(run(b, b + 1))
  times = {(b, c): [] for b in runners for c in (m, 2 * m)}
  for r in range(repeats):             # interleaved, best of `repeats`
    for b, count in times:
      barrier(f"start-{b}-{count}-{r}")
      start = time.perf_counter()
      jax.block_until_ready(run(b, count))
      barrier(f"end-{b}-{count}-{r}")
      times[(b, count)].append(time.perf_counter() - start)
  times = {key: min(t) for key, t in times.items()}
  result = {}
  for b in sorted(runners):
    # Only this runner's state alive: the memory of one configuration.
    placed.clear()
    placed[b] = runners[b].place(state)
    memory.reset_peak_rss()
    with memory.LiveBytes() as live:
      jax.block_until_ready(run(b, m))
    steady, resolved = steady_tick(times[(b, m)], times[(b, 2 * m)], m, b)
    record = {
        "micro_batches": 2 * m, "ticks": 2 * m + b - 1,
        "seconds": times[(b, 2 * m)],
        "steady_tick_s": steady,
        "steady_resolved": resolved,
        "bubble_fraction": schedule.bubble_fraction(2 * m, b),
        "examples_per_second": 2 * m * mb / times[(b, 2 * m)],
        "steady_examples_per_second": mb / steady,
        "max_rss_mib": memory.peak_rss_mib(),
        "live_mib": live.peak_mib,
    }
    if b == workers:
      result.update(record)
    else:
      result["one_worker"] = record
  result.update(measure_transfer(runners[workers], engine, state, batch(0),
                                 repeats))
  return result


def steady_tick(t_m: float, t_2m: float, m: int, stages: int
                ) -> tuple[float, bool]:
  """Seconds per tick once the pipeline is full, and whether the timing
  resolved it.

  A stream of `n` micro-batches takes `n + stages - 1` ticks, so the fill
  and drain cancel in `(t_2m - t_m) / m`. Where the two times are within
  the machine's noise (a tiny model, one repeat) that difference can be
  zero or negative; then the whole run's `t_2m / (2m + stages - 1)` (fill
  and drain included: an upper bound) is reported, flagged unresolved.
  """
  steady = (t_2m - t_m) / m
  if steady > 0:
    return steady, True
  return t_2m / (2 * m + stages - 1), False


def measure_transfer(runner, engine, state, batch, repeats: int) -> dict:
  """The bytes of block 0's output and the seconds to move it from the
  first stage to the next, alone (the same collective move the pipeline
  makes; every process takes part)."""
  h = jax.jit(lambda s, x: engine.block_forward(
      0, s.params, s.batch_stats, x, True, None).h_out)(
          state.blocks[0], batch["inputs"])
  result = {"activation_bytes": int(h.size * h.dtype.itemsize),
            "transfer_s": 0.0}
  if jax.process_count() > 1:
    h = runner.stages.batch_on({"h": jax.device_get(h)}, 0)["h"]
    jax.block_until_ready(local(runner.transfer.move(h, 0, 1)))
    barrier("transfer-start")
    start = time.perf_counter()
    for _ in range(repeats * 5):
      jax.block_until_ready(local(runner.transfer.move(h, 0, 1)))
    barrier("transfer-end")
    result["transfer_s"] = (time.perf_counter() - start) / (repeats * 5)
  return result


def measure_gpipe(engine, batch, state, m: int, repeats: int,
                  pipeline=GPipe) -> dict:
  """One pipelined backprop step (GPipe, or `pipeline=OneFOneB`) of `m`
  micro-batches over every worker."""
  workers = jax.process_count()
  mb = batch(0)["labels"].shape[0]
  pipe = pipeline(engine, mesh_lib.make_mesh(mesh_lib.MeshSpec(1, workers),
                                             engine.num_blocks))
  placed = pipe.place(state)
  micro = [batch(i) for i in range(m)]
  key = jax.random.key(0)
  jax.block_until_ready(pipe.step(placed, micro, key)[0])
  memory.reset_peak_rss()
  steps = []
  for r in range(repeats):
    barrier(f"gpipe-start-{r}")
    start = time.perf_counter()
    jax.block_until_ready(pipe.step(placed, micro, key)[0])
    barrier(f"gpipe-end-{r}")
    steps.append(time.perf_counter() - start)
  step_s = min(steps)
  with memory.LiveBytes() as live:
    jax.block_until_ready(pipe.step(placed, micro, key)[0])
  return {"live_mib": live.peak_mib, "micro_batches": m, "step_s": step_s,
          "peak_stage_inputs": pipe.peak_inputs,
          "time_per_micro_batch_s": step_s / m,
          "bubble_fraction": schedule.bubble_fraction(m, workers),
          "examples_per_second": m * mb / step_s}


def worker(argv) -> int:
  """Runs inside each launched process; each writes its result JSON."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", required=True)
  parser.add_argument("--mode", required=True,
                      choices=("single", "independent", "bll", "bll_owned",
                               "gpipe", "1f1b"))
  parser.add_argument("--m", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--window", type=float, default=2.0)
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  result = {"model": args.model, "mode": args.mode,
            "processes": jax.process_count()}
  if args.mode == "single":
    result.update(measure_single(args.model, args.repeats))
  elif args.mode == "independent":
    result.update(measure_independent(args.model, args.repeats, args.window))
  else:
    # bll: the chained feedback replicated on every stage, all-reduced every
    # tick; bll_owned: chained_local, each stage owning its blocks' layers.
    engine, batch = build(
        args.model, "bp" if args.mode in ("gpipe", "1f1b") else "bll",
        "chained_local" if args.mode == "bll_owned" else "chained")
    # On the host: only what a runner places counts on its devices.
    state = jax.device_get(engine.init(jax.random.key(0), batch(0)["inputs"]))
    if args.mode in ("bll", "bll_owned"):
      result.update(measure_pipelined(engine, batch, state, args.m,
                                      args.repeats))
    else:
      result.update(measure_gpipe(
          engine, batch, state, args.m, args.repeats,
          GPipe if args.mode == "gpipe" else OneFOneB))
  # Peak resident memory of the timed runs (after compilation).
  result.setdefault("max_rss_mib", memory.peak_rss_mib())
  with open(f"{args.out}.{jax.process_index()}", "w") as f:
    json.dump(result, f)
  return 0


def run_workers(processes: int, model: str, mode: str, m: int, repeats: int,
                workdir: str, window_s: float = 2.0) -> dict:
  """`worker` in `processes` launched processes; their results merged
  (memory: a list with one value per worker)."""
  out = os.path.join(workdir, f"{model}-{mode}-{m}-{processes}")
  status = launch.launch(
      processes, ["--model", model, "--mode", mode, "--m", str(m),
                  "--repeats", str(repeats), "--window", str(window_s),
                  "--out", out],
      entry="experiments.process_benchmark:worker", num_blocks=4,
      workdir=workdir)
  if status:
    raise RuntimeError(f"{model} {mode} M={m} on {processes} workers failed")
  results = []
  for i in range(processes):
    with open(f"{out}.{i}") as f:
      results.append(json.load(f))
  merged = dict(results[0])
  for name in ("max_rss_mib", "live_mib"):
    merged[name] = [r.get(name) for r in results]
    if "one_worker" in merged:      # its work is all on worker 0
      merged["one_worker"][name] = [results[0]["one_worker"].get(name)]
  return merged


def cost_model(single: dict, t_bll: float, transfer_s: float, workers: int,
               mb: int, micro_batches: int = 8) -> dict:
  """Predicted examples/s with `workers` equal stages.

  Block-local: a tick is one stage's share of the one-worker pipelined
  step plus one transfer, `T_bll / B + x`; the stream amortises the fill.
  GPipe with `M` micro-batches and re-materialisation: `M + B - 1` forward
  ticks of `T_f / B + x`, then as many backward ticks, each re-running the
  stage's forward and its backward, `T_bp / B + x` (`T_bp`, one worker's
  backprop step, is one forward and one backward).
  """
  t_bp, t_f = single["bp_step_s"], single["bp_forward_s"]
  ticks = micro_batches + workers - 1
  gpipe_step = ticks * (t_f / workers + transfer_s) + ticks * (
      t_bp / workers + transfer_s)
  return {"bll": mb / (t_bll / workers + transfer_s),
          "gpipe": micro_batches * mb / gpipe_step}


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m experiments.process_benchmark",
      description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--micro-batches", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--gpipe-m", default=",".join(map(str, GPIPE_M)),
                      help="GPipe micro-batches per step to try")
  parser.add_argument("--window", type=float, default=2.0,
                      help="seconds each independent copy trains per "
                      "repetition (the ceiling)")
  parser.add_argument("--out", default="experiments/results/processes")
  args = parser.parse_args(argv)
  gpipe_m = [int(m) for m in args.gpipe_m.split(",")]
  workdir = tempfile.mkdtemp(prefix="bll-processes-")
  report = {"machine": {"cores": len(os.sched_getaffinity(0)),
                        "cpu": machine.cpu_name()}, "results": {}}
  for model in args.models.split(","):
    print(f"{model}: one worker ...", flush=True)
    r = {"single": run_workers(1, model, "single", 1, args.repeats, workdir)}
    print(f"{model}: {args.workers} independent copies ...", flush=True)
    r["independent"] = run_workers(args.workers, model, "independent", 1,
                                   args.repeats, workdir, args.window)
    print(f"{model}: block-local pipelined on {args.workers} workers and on "
          "one ...", flush=True)
    r["bll_pipelined"] = run_workers(args.workers, model, "bll",
                                     args.micro_batches, args.repeats, workdir)
    # The same program on one worker, timed in the same processes.
    r["bll_pipelined_1"] = r["bll_pipelined"].get("one_worker",
                                                  r["bll_pipelined"])
    print(f"{model}: block-local pipelined, feedback owned by the stages, "
          f"on {args.workers} workers and on one ...", flush=True)
    r["bll_owned_pipelined"] = run_workers(args.workers, model, "bll_owned",
                                           args.micro_batches, args.repeats,
                                           workdir)
    r["bll_owned_pipelined_1"] = r["bll_owned_pipelined"].get(
        "one_worker", r["bll_owned_pipelined"])
    for m in gpipe_m:
      print(f"{model}: GPipe M={m} on {args.workers} workers ...", flush=True)
      r[f"gpipe_m{m}"] = run_workers(args.workers, model, "gpipe", m,
                                     args.repeats, workdir)
    m = max(gpipe_m)
    print(f"{model}: 1F1B M={m} on {args.workers} workers ...", flush=True)
    r[f"one_f_one_b_m{m}"] = run_workers(args.workers, model, "1f1b", m,
                                         args.repeats, workdir)
    print(f"{model}: all cores, one process ...", flush=True)
    r["all_cores"] = measure_single(model, args.repeats)
    mb = MODELS[model][2]
    x = r["bll_pipelined"]["transfer_s"]
    t_bll = r["bll_pipelined_1"]["steady_tick_s"]
    r["cost_model"] = {str(b): cost_model(r["single"], t_bll, x, b, mb,
                                          max(gpipe_m))
                       for b in (1, 2, 4, 8, 16, 32, 64)}
    r["micro_batch"] = mb
    report["results"][model] = r
  text = markdown(report, args.workers)
  results_lib.write_report(args.out, "process_benchmark", report, text)
  plot(report, os.path.join(args.out, "throughput.png"))
  print(text)


def gpipe_tried(r: dict) -> list[int]:
  """The GPipe micro-batch counts measured for one model, ascending."""
  return sorted(int(k[len("gpipe_m"):]) for k in r if k.startswith("gpipe_m"))


def markdown(report: dict, workers: int) -> str:
  """Per model: every run's throughput, transfer share, bubble and memory;
  the measured speed-up; the cost model's predictions."""
  m = report["machine"]
  lines = [f"Machine: {m['cpu']}, {m['cores']} cores; each worker a process "
           "pinned to one core. Memory per worker: the peak bytes of the "
           "arrays alive on its device during one timed run (parameters, "
           "optimiser states, activations held between programs; sampled "
           "every 2 ms), and its peak resident set during the timed runs "
           "(after compilation; mostly the runtime and compiled code).", ""]
  mib = lambda v: ", ".join(f"{x:.0f}" for x in v)
  # A steady tick the timing could not resolve: the whole run's mean tick.
  noisy = lambda r: ("" if r.get("steady_resolved", True) else
                     " (unresolved: mean tick, fill and drain included)")
  both = lambda r: f"{', '.join(f'{x:.1f}' for x in r['live_mib'])} | " + mib(
      r["max_rss_mib"])
  for model, r in report["results"].items():
    mb, single, bll = r["micro_batch"], r["single"], r["bll_pipelined"]
    one = r["bll_pipelined_1"]
    rows = [
        ("backprop, 1 worker", mb / single["bp_step_s"],
         single["bp_step_s"], "-", "-", "- | -"),
        ("block-local, 1 worker, blocks in turn",
         mb / single["bll_in_turn_step_s"], single["bll_in_turn_step_s"],
         "-", "-", "- | -"),
        ("block-local, 1 worker, fused step", mb / single["bll_fused_step_s"],
         single["bll_fused_step_s"], "-", "-", "- | -"),
        ("block-local pipelined, 1 worker (same program)" + noisy(one),
         one["steady_examples_per_second"], one["steady_tick_s"], "-", "-",
         both(one)),
        (f"block-local pipelined, {workers} workers (steady)" + noisy(bll),
         bll["steady_examples_per_second"], bll["steady_tick_s"],
         f"{bll['transfer_s'] / bll['steady_tick_s']:.2f}",
         f"{bll['bubble_fraction']:.2f} (once per stream)", both(bll)),
    ]
    owned = r.get("bll_owned_pipelined")
    if owned:
      one_owned = r["bll_owned_pipelined_1"]
      rows += [
          ("block-local pipelined, owned feedback, 1 worker (same program)"
           + noisy(one_owned),
           one_owned["steady_examples_per_second"],
           one_owned["steady_tick_s"], "-", "-", both(one_owned)),
          (f"block-local pipelined, owned feedback, {workers} workers "
           "(steady)" + noisy(owned), owned["steady_examples_per_second"],
           owned["steady_tick_s"],
           f"{owned['transfer_s'] / owned['steady_tick_s']:.2f}",
           f"{owned['bubble_fraction']:.2f} (once per stream)", both(owned)),
      ]
    tried = gpipe_tried(r)
    for k in tried:
      g = r[f"gpipe_m{k}"]
      share = 2 * bll["transfer_s"] * (k + workers - 1) / g["step_s"]
      rows.append((f"backprop GPipe, {workers} workers, M={k}",
                   g["examples_per_second"], g["time_per_micro_batch_s"],
                   f"{share:.2f}", f"{g['bubble_fraction']:.2f} (every step)",
                   both(g)))
    for k in tried:
      if f"one_f_one_b_m{k}" in r:
        g = r[f"one_f_one_b_m{k}"]
        share = 2 * bll["transfer_s"] * (k + workers - 1) / g["step_s"]
        rows.append((f"backprop 1F1B, {workers} workers, M={k}",
                     g["examples_per_second"], g["time_per_micro_batch_s"],
                     f"{share:.2f}", f"{g['bubble_fraction']:.2f} (every "
                     "step)", both(g)))
    ceiling = r.get("independent")
    if ceiling:
      for name, label in (("bp_step_s", "backprop"),
                          ("bll_fused_step_s", "block-local fused")):
        rows.append((f"{label}, {workers} independent copies at once "
                     "(the machine's ceiling)",
                     workers * mb / ceiling[name], ceiling[name] / workers,
                     "-", "-", "- | " + mib(ceiling["max_rss_mib"])))
    rows.append(("backprop, 1 process, all cores",
                 mb / r["all_cores"]["bp_step_s"],
                 r["all_cores"]["bp_step_s"], "-", "-", "- | -"))
    rows.append(("block-local fused, 1 process, all cores",
                 mb / r["all_cores"]["bll_fused_step_s"],
                 r["all_cores"]["bll_fused_step_s"], "-", "-", "- | -"))
    lines += [f"### {model} (micro-batch {mb}; activation between stages "
              f"{bll['activation_bytes'] / 1024:.0f} KiB, moved in "
              f"{1e3 * bll['transfer_s']:.2f} ms)", "",
              "| run | examples/s | ms per micro-batch | transfer share | "
              "bubble | live arrays per worker (MiB) | peak RSS per worker "
              "(MiB) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {eps:.0f} | {1e3 * t:.2f} | {share} | {bubble} | "
              f"{memory} |" for name, eps, t, share, bubble, memory in rows]
    pred = r["cost_model"][str(workers)]
    best_gpipe = max(tried, key=lambda k: r[f"gpipe_m{k}"][
        "examples_per_second"])
    speedup = bll["steady_examples_per_second"] / one[
        "steady_examples_per_second"]
    in_turn = bll["steady_examples_per_second"] * single[
        "bll_in_turn_step_s"] / mb
    all_cores = max(mb / r["all_cores"]["bll_fused_step_s"],
                    mb / r["all_cores"]["bp_step_s"])
    owned_line = ""
    if owned:
      owned_line = (
          f" With the feedback owned by the stages (chained_local, no "
          f"all-reduce): "
          f"{owned['steady_examples_per_second'] / one_owned['steady_examples_per_second']:.2f}x "
          f"its own program on one worker (target 1.9x), "
          f"{owned['steady_examples_per_second'] / all_cores:.2f}x the best "
          f"one-process run using every core (target 1.8x).")
    ceiling_line = ""
    if ceiling:
      ceiling_line = (
          f" The machine's ceiling for {workers} workers ({workers} "
          "independent copies, nothing exchanged, over one alone): "
          f"{workers * single['bp_step_s'] / ceiling['bp_step_s']:.2f}x "
          "for backprop's step, "
          f"{workers * single['bll_fused_step_s'] / ceiling['bll_fused_step_s']:.2f}x "
          "for block-local's fused step.")
    lines += ["",
              f"Block-local pipelined, {workers} workers over 1 worker: "
              f"{speedup:.2f}x the same program ({in_turn:.2f}x the blocks in "
              f"turn; target 1.8x); "
              f"{bll['steady_examples_per_second'] / all_cores:.2f}x the best "
              f"one-process run using every core.{owned_line} Best GPipe: M={best_gpipe}, "
              f"{r[f'gpipe_m{best_gpipe}']['examples_per_second']:.0f} "
              f"examples/s. Cost model at B={workers}: block-local "
              f"{pred['bll']:.0f}, GPipe (M={tried[-1]}) {pred['gpipe']:.0f} "
              f"examples/s; "
              f"measured {bll['steady_examples_per_second']:.0f} and "
              f"{r[f'gpipe_m{tried[-1]}']['examples_per_second']:.0f}."
              f"{ceiling_line}", "",
              "| workers | " + " | ".join(r["cost_model"]) + " |",
              "| --- |" + " --- |" * len(r["cost_model"]),
              "| block-local (model) | " + " | ".join(
                  f"{v['bll']:.0f}" for v in r["cost_model"].values()) + " |",
              f"| GPipe M={tried[-1]} (model) | " + " | ".join(
                  f"{v['gpipe']:.0f}" for v in r["cost_model"].values()) + " |",
              ""]
  return "\n".join(lines)


def plot(report: dict, path: str) -> None:
  """Examples/s against workers: the cost model and the measured points."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(report["results"]),
                           figsize=(5 * len(report["results"]), 4))
  axes = axes if hasattr(axes, "__len__") else [axes]
  for ax, (model, r) in zip(axes, report["results"].items()):
    last = gpipe_tried(r)[-1]
    workers = [int(b) for b in r["cost_model"]]
    ax.plot(workers, [r["cost_model"][str(b)]["bll"] for b in workers], "-",
            label="block-local pipelined (model)")
    ax.plot(workers, [r["cost_model"][str(b)]["gpipe"] for b in workers], "--",
            label=f"GPipe M={last} (model)")
    b = r["bll_pipelined"]["processes"]
    ax.plot([b], [r["bll_pipelined"]["steady_examples_per_second"]], "o",
            label=f"block-local, measured (B={b})")
    ax.plot([b], [r[f"gpipe_m{last}"]["examples_per_second"]], "s",
            label=f"GPipe M={last}, measured (B={b})")
    ax.plot([1], [r["bll_pipelined_1"]["steady_examples_per_second"]], "^",
            label="block-local, 1 worker")
    ax.set(xscale="log", yscale="log", xlabel="workers (B)",
           ylabel="examples / s", title=model)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
