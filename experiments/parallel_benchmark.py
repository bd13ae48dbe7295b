"""Block-local against backprop on the same network: memory, time, pipeline.

    python -m experiments.parallel_benchmark --out experiments/results/parallel
    python -m experiments.parallel_benchmark --models resnet18 --batch-size 128

(the second on a GPU: `experiments/gpu_rows.sh`). For each model (ResNet-18
at 32x32 cut at its stages or by activation size, an 8-layer Transformer,
`--layers` to change it), in one run:

1. memory of one training step from XLA's compiled `memory_analysis()`
   (temporary buffers, i.e. activations and workspace; arguments and outputs
   are the state and are the same for both): backprop, the fused block-local
   step, and the largest single block step (what one device holding one
   block needs); on a GPU also `memory_stats()` peak bytes;
2. step time on one device: backprop, fused block-local, and the blocks'
   own steps in turn (median over timed repetitions, after compilation);
3. the `pipelined` schedule on B devices (MPMD, one block per device): time
   per tick against the slowest block's step alone, the fill bubble
   `(B - 1) / (M + B - 1)`, and throughput against running the block steps
   one after another on one device.

On CPU the devices are fake (`--fake-devices`, default 4): they share the
same cores, so step 3 shows the schedule and its overlap, not a speed-up.
Results go to `OUT/parallel_benchmark.json` and `OUT/parallel_benchmark.md`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from bll_jax import models
from bll_jax.parallel import MpmdRunner
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import schedule
from experiments.lib import machine
from experiments.lib import results as results_lib
from experiments.lib.models import benchmark_engine
from experiments.lib.models import random_batch
from experiments.lib.models import random_tokens
from experiments.lib.timing import timed

# Where each ResNet is cut. At the stage boundaries the stem and both 32x32
# residual blocks are block 0, most of the activations; `balanced` cuts by
# activation size instead: stem + 1 residual block | 1 | stage 2 | rest.
CUTS = {"resnet18": (3, 5, 7), "resnet18-balanced": (2, 3, 5)}
MODELS = (*CUTS, "transformer")


def cuts_of(name: str, layers: int) -> tuple[int, ...]:
  """Where a model is cut: a ResNet's `CUTS`; the Transformer's `layers`
  decoder layers a quarter per block, the embedding with the first quarter,
  the output head with the last (8 layers: 3, 5, 7)."""
  if name in CUTS:
    return CUTS[name]
  quarter = layers // 4
  return (1 + quarter, 1 + 2 * quarter, 1 + 3 * quarter)


def parse(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.parallel_benchmark",
      description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="resnet18,resnet18-balanced,"
                      "transformer", help="any of resnet18, resnet18-balanced "
                      "(cut by activation size), transformer")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seq-len", type=int, default=128)
  parser.add_argument("--layers", type=int, default=8,
                      help="the Transformer's decoder layers (a multiple of 4)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--micro-batches", type=int, default=16)
  parser.add_argument("--fake-devices", type=int, default=4,
                      help="CPU only: fake devices for the pipeline (unless "
                      "JAX_NUM_CPU_DEVICES is set)")
  parser.add_argument("--out", default="experiments/results/parallel")
  args = parser.parse_args(argv)
  unknown = set(args.models.split(",")) - set(MODELS)
  if unknown:
    parser.error(f"models must be among {list(MODELS)}, got {sorted(unknown)}")
  if args.layers < 4 or args.layers % 4:
    parser.error(f"--layers must be a positive multiple of 4, got "
                 f"{args.layers}")
  return args


def build(name: str, method: str, args):
  """`(engine, batch)` for a benchmark model cut into 4 blocks."""
  batch_size, seq_len = args.batch_size, args.seq_len
  cuts = cuts_of(name, args.layers)
  if name.startswith("resnet18"):
    classes, shape = 10, (32, 32, 3)
    engine = benchmark_engine(models.resnet(18, classes, "cifar"), method,
                              classes, shape, cuts=cuts)
    return engine, random_batch(0, batch_size, shape, classes)
  classes = 256
  engine = benchmark_engine(
      models.transformer(args.layers, 256, 8, 1024, classes, seq_len), method,
      classes, (seq_len,), jnp.int32, cuts=cuts)
  return engine, random_tokens(0, batch_size, seq_len, classes)


def compiled(jitted, *args):
  """`jitted` compiled ahead of time for `args`: the one executable whose
  `memory_analysis()` is read and whose calls are timed."""
  return jitted.lower(*args).compile()


def temp_bytes(executable) -> int:
  return int(executable.memory_analysis().temp_size_in_bytes)


def compiled_blocks(engine, state, batch, key):
  """Each block's compiled step and its arguments `(params, h_in, fb_k, ...)`
  for one batch (single device); block k's input is block k-1's output."""
  fb = engine.feedback_forward(state.feedback.params, None)
  h, out = batch["inputs"], []
  for k in range(engine.num_blocks):
    args = (state.blocks[k], h, fb[k] if k < len(fb) else None,
            batch["labels"], batch["weights"], key)
    step = compiled(engine.block_step(k), *args)
    out.append((step, args))
    _, h, _, _ = step(*args)
  return out


def pipeline(bll, state, batch, key, times: dict, args) -> dict | None:
  """The `pipelined` schedule over one block per device (None with fewer
  than 2 devices)."""
  num_devices = min(jax.device_count(), bll.num_blocks)
  if num_devices < 2:
    return None
  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(1, num_devices),
                            bll.num_blocks, jax.devices()[:num_devices])
  runner = MpmdRunner(bll, mesh, "pipelined")
  host = jax.device_get(batch)
  micro = [host] * args.micro_batches
  keys = [jax.random.fold_in(key, i) for i in range(args.micro_batches)]
  placed = runner.place(state)
  runner.warm_up(placed, host, keys[0])      # every per-stage program
  start = time.perf_counter()
  out, _ = runner.run_epoch(placed, iter(micro), keys)
  jax.block_until_ready(out)
  total = time.perf_counter() - start
  stages = runner.plan.num_stages
  ticks = args.micro_batches + stages - 1
  stage_times = [sum(times["bll_block_step_s"][k] for k in blocks)
                 for blocks in runner.plan.stage_blocks]
  result = {
      "stages": stages,
      "micro_batches": args.micro_batches,
      "ticks": ticks,
      "seconds": total,
      "time_per_tick_s": total / ticks,
      "slowest_stage_step_s": max(stage_times),
      "tick_over_slowest_stage": total / ticks / max(stage_times),
      "bubble_fraction": schedule.bubble_fraction(args.micro_batches,
                                                  stages),
      "examples_per_second": args.micro_batches * args.batch_size / total,
      "sequential_examples_per_second": (
          args.batch_size / times["bll_blocks_in_turn_s"]),
  }
  result["speedup_over_sequential"] = (
      result["examples_per_second"]
      / result["sequential_examples_per_second"])
  return result


def benchmark(name: str, args) -> dict:
  """Memory, step times and the pipeline of one model."""
  key = jax.random.key(0)
  bll, batch = build(name, "bll", args)
  bp, _ = build(name, "bp", args)
  batch = jax.device_put(batch, jax.devices()[0])
  state = bll.init(key, batch["inputs"])
  bp_state = bp.init(key, batch["inputs"])
  blocks = compiled_blocks(bll, state, batch, key)
  bp_step = compiled(bp.train_step, bp_state, batch, key)
  bll_step = compiled(bll.train_step, state, batch, key)

  memory = {
      "bp_temp_bytes": temp_bytes(bp_step),
      "bll_fused_temp_bytes": temp_bytes(bll_step),
      "bll_block_temp_bytes": [temp_bytes(step) for step, _ in blocks],
  }
  memory["bll_max_block_over_bp"] = (max(memory["bll_block_temp_bytes"])
                                     / memory["bp_temp_bytes"])
  memory["bll_fused_over_bp"] = (memory["bll_fused_temp_bytes"]
                                 / memory["bp_temp_bytes"])

  median = statistics.median
  times = {
      "bp_step_s": timed(lambda: bp_step(bp_state, batch, key)[1],
                         args.repeats, median),
      "bll_fused_step_s": timed(lambda: bll_step(state, batch, key)[1],
                                args.repeats, median),
      "bll_block_step_s": [
          timed(lambda step=step, a=a: step(*a)[3], args.repeats, median)
          for step, a in blocks],
  }
  times["bll_blocks_in_turn_s"] = sum(times["bll_block_step_s"])
  times["bll_fused_over_bp"] = times["bll_fused_step_s"] / times["bp_step_s"]
  peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
  transformer = name == "transformer"
  return {"model": name, "batch_size": args.batch_size,
          "seq_len": args.seq_len if transformer else None,
          "layers": args.layers if transformer else None,
          "cuts": list(cuts_of(name, args.layers)),
          "memory": memory, "time": times, "peak_bytes_in_use": peak,
          "pipeline": pipeline(bll, state, batch, key, times, args)}


def mib(n) -> str:
  return f"{n / 2**20:.1f}"


def markdown(results: list[dict], device: str) -> str:
  """The memory and time table, and the pipeline table."""
  lines = [f"Device: {device}; jax {jax.__version__}; "
           f"{platform.machine()}, {os.cpu_count()} CPUs.", "",
           "| model | batch | BP temp MiB | BLL fused temp MiB | BLL largest "
           "block temp MiB | largest block / BP | BP step ms | BLL fused "
           "step ms | fused / BP | blocks in turn ms |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in results:
    m, t = r["memory"], r["time"]
    lines.append(
        f"| {r['model']} | {r['batch_size']} | {mib(m['bp_temp_bytes'])} | "
        f"{mib(m['bll_fused_temp_bytes'])} | "
        f"{mib(max(m['bll_block_temp_bytes']))} | "
        f"{m['bll_max_block_over_bp']:.2f} | {1e3 * t['bp_step_s']:.1f} | "
        f"{1e3 * t['bll_fused_step_s']:.1f} | {t['bll_fused_over_bp']:.2f} | "
        f"{1e3 * t['bll_blocks_in_turn_s']:.1f} |")
  lines += ["", "| model | stages | micro-batches | ms per tick | slowest "
            "stage ms | tick / slowest | fill bubble | speed-up over "
            "blocks in turn |", "| --- | --- | --- | --- | --- | --- | --- "
            "| --- |"]
  for r in results:
    p = r["pipeline"]
    if p:
      lines.append(
          f"| {r['model']} | {p['stages']} | {p['micro_batches']} | "
          f"{1e3 * p['time_per_tick_s']:.1f} | "
          f"{1e3 * p['slowest_stage_step_s']:.1f} | "
          f"{p['tick_over_slowest_stage']:.2f} | {p['bubble_fraction']:.2f} | "
          f"{p['speedup_over_sequential']:.2f} |")
  return "\n".join(lines)


def main(argv=None):
  args = parse(argv)
  if "JAX_NUM_CPU_DEVICES" not in os.environ:     # before JAX's backend starts
    jax.config.update("jax_num_cpu_devices", args.fake_devices)
  device = machine.device_name()
  results = []
  for name in args.models.split(","):   # written after each model: a run
    print(f"benchmarking {name} ...", flush=True)   # stopped early keeps them
    start = time.perf_counter()
    results.append(benchmark(name, args))
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    report = {"device": device, "device_count": jax.device_count(),
              "jax": jax.__version__, "results": results}
    text = markdown(results, device)
    results_lib.write_report(args.out, "parallel_benchmark", report, text)
  print(text)


if __name__ == "__main__":
  main()
