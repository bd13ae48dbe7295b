"""Block-local against backprop on the same network: memory, time, pipeline.

    python experiments/parallel_benchmark.py --out experiments/results/parallel
    python experiments/parallel_benchmark.py --models resnet18 --batch-size 128  # on a GPU

For each model (ResNet-18 at 32x32 cut at its stages or by activation
size, an 8-layer Transformer), in one run:

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
import json
import os
import platform
import statistics
import sys
import time


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="resnet18,resnet18-balanced,"
                      "transformer", help="any of resnet18, resnet18-balanced "
                      "(cut by activation size), transformer")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seq-len", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--micro-batches", type=int, default=16)
  parser.add_argument("--fake-devices", type=int, default=4,
                      help="CPU only: fake devices for the pipeline")
  parser.add_argument("--out", default="experiments/results/parallel")
  return parser.parse_args(argv)


ARGS = _parse(sys.argv[1:] if __name__ == "__main__" else [])
if "JAX_NUM_CPU_DEVICES" not in os.environ:
  os.environ["JAX_NUM_CPU_DEVICES"] = str(ARGS.fake_devices)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bll_jax import blocks  # noqa: E402
from bll_jax import families  # noqa: E402
from bll_jax import models  # noqa: E402
from bll_jax import step  # noqa: E402
from bll_jax.parallel import mesh as mesh_lib  # noqa: E402
from bll_jax.parallel import mpmd  # noqa: E402
from bll_jax.parallel import schedules  # noqa: E402


# Where each model is cut. ResNet-18 at the stage boundaries puts the stem and
# both 32x32 residual blocks in block 0, most of the activations; `balanced`
# cuts by activation size instead: stem + 1 residual block | 1 | stage 2 | rest.
CUTS = {"resnet18": (3, 5, 7), "resnet18-balanced": (2, 3, 5),
        "transformer": (3, 5, 7)}


def build(name: str, method: str, batch_size: int, seq_len: int):
  """`(engine, batch)` for a benchmark model cut into 4 blocks."""
  if name not in CUTS:
    raise SystemExit(f"model must be one of {list(CUTS)}, got {name!r}")
  cuts = CUTS[name]
  if name.startswith("resnet18"):
    stack, classes = models.resnet(18, 10, "cifar"), 10
    shape, dtype = (32, 32, 3), jnp.float32
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.normal(size=(batch_size,) + shape).astype(np.float32),
             "labels": rng.integers(0, classes, batch_size).astype(np.int32),
             "weights": np.ones(batch_size, np.float32)}
  else:
    classes = 256
    stack = models.transformer(8, 256, 8, 1024, classes, seq_len)
    shape, dtype = (seq_len,), jnp.int32
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, classes, (batch_size, seq_len)).astype(np.int32)
    batch = {"inputs": tokens, "labels": np.roll(tokens, -1, 1),
             "weights": np.ones((batch_size, seq_len), np.float32)}
  edges = blocks.boundaries(len(stack), None, cuts)
  engine = step.Engine(
      stack, edges, [blocks.Latent(families.Gaussian())] * 3, method=method,
      feedback_mode="chained", num_classes=classes, input_shape=shape,
      input_dtype=dtype, tx=optax.adam(1e-3),
      objective=step.Objective(feedback_loss="discriminative"))
  return engine, batch


def _timed(fn, repeats):
  """Median seconds of `fn()` (blocking), after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _compile(jitted, *args):
  """`jitted` compiled ahead of time for `args`: the one executable whose
  `memory_analysis()` is read and whose calls are timed."""
  return jitted.lower(*args).compile()


def _temp_bytes(compiled):
  return int(compiled.memory_analysis().temp_size_in_bytes)


def _peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def compiled_blocks(engine, state, batch, key):
  """Each block's compiled step and its arguments `(params, h_in, fb_k, ...)`
  for one batch (single device); block k's input is block k-1's output."""
  fb = engine.feedback_forward(state.feedback.params, None)
  h, out = batch["inputs"], []
  for k in range(engine.num_blocks):
    args = (state.blocks[k], h, fb[k] if k < len(fb) else None,
            batch["labels"], batch["weights"], key)
    compiled = _compile(engine.block_step(k), *args)
    out.append((compiled, args))
    _, h, _, _ = compiled(*args)
  return out


def benchmark(name: str, args) -> dict:
  key = jax.random.key(0)
  bll, batch = build(name, "bll", args.batch_size, args.seq_len)
  bp, _ = build(name, "bp", args.batch_size, args.seq_len)
  batch = jax.device_put(batch, jax.devices()[0])
  state = bll.init(key, batch["inputs"])
  bp_state = bp.init(key, batch["inputs"])
  blocks = compiled_blocks(bll, state, batch, key)
  bp_step = _compile(bp.train_step, bp_state, batch, key)
  bll_step = _compile(bll.train_step, state, batch, key)

  memory = {
      "bp_temp_bytes": _temp_bytes(bp_step),
      "bll_fused_temp_bytes": _temp_bytes(bll_step),
      "bll_block_temp_bytes": [_temp_bytes(step) for step, _ in blocks],
  }
  memory["bll_max_block_over_bp"] = (max(memory["bll_block_temp_bytes"])
                                     / memory["bp_temp_bytes"])
  memory["bll_fused_over_bp"] = (memory["bll_fused_temp_bytes"]
                                 / memory["bp_temp_bytes"])

  times = {
      "bp_step_s": _timed(lambda: bp_step(bp_state, batch, key)[1],
                          args.repeats),
      "bll_fused_step_s": _timed(lambda: bll_step(state, batch, key)[1],
                                 args.repeats),
      "bll_block_step_s": [
          _timed(lambda step=step, a=a: step(*a)[3], args.repeats)
          for step, a in blocks],
  }
  times["bll_blocks_in_turn_s"] = sum(times["bll_block_step_s"])
  times["bll_fused_over_bp"] = times["bll_fused_step_s"] / times["bp_step_s"]
  peak = _peak_bytes()

  pipeline = None
  num_devices = min(jax.device_count(), bll.num_blocks)
  if num_devices >= 2:
    mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(1, num_devices),
                              bll.num_blocks, jax.devices()[:num_devices])
    parallel = mpmd.BlockParallel(bll, mesh)
    host = jax.device_get(batch)
    micro = [host] * args.micro_batches
    keys = [jax.random.fold_in(key, i) for i in range(args.micro_batches)]
    placed = parallel.place(state)
    # Compile every per-stage program once.
    warm, _, _ = parallel.pipelined(placed, iter(micro[:num_devices]),
                                    keys[:num_devices])
    jax.block_until_ready(warm)
    start = time.perf_counter()
    out, _, _ = parallel.pipelined(placed, iter(micro), keys)
    jax.block_until_ready(out)
    total = time.perf_counter() - start
    ticks = args.micro_batches + parallel.num_stages - 1
    stage_times = [sum(times["bll_block_step_s"][k] for k in blocks_)
                   for blocks_ in parallel.stage_blocks]
    pipeline = {
        "stages": parallel.num_stages,
        "micro_batches": args.micro_batches,
        "ticks": ticks,
        "seconds": total,
        "time_per_tick_s": total / ticks,
        "slowest_stage_step_s": max(stage_times),
        "tick_over_slowest_stage": total / ticks / max(stage_times),
        "bubble_fraction": schedules.bubble_fraction(args.micro_batches,
                                                     parallel.num_stages),
        "examples_per_second": args.micro_batches * args.batch_size / total,
        "sequential_examples_per_second": (
            args.batch_size / times["bll_blocks_in_turn_s"]),
    }
    pipeline["speedup_over_sequential"] = (
        pipeline["examples_per_second"]
        / pipeline["sequential_examples_per_second"])
  return {"model": name, "batch_size": args.batch_size,
          "seq_len": args.seq_len if name == "transformer" else None,
          "cuts": list(CUTS[name]),
          "memory": memory, "time": times, "peak_bytes_in_use": peak,
          "pipeline": pipeline}


def _mib(n):
  return f"{n / 2**20:.1f}"


def markdown(results: list[dict], device: str) -> str:
  lines = [f"Device: {device}; jax {jax.__version__}; "
           f"{platform.machine()}, {os.cpu_count()} CPUs.", "",
           "| model | batch | BP temp MiB | BLL fused temp MiB | BLL largest "
           "block temp MiB | largest block / BP | BP step ms | BLL fused "
           "step ms | fused / BP | blocks in turn ms |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in results:
    m, t = r["memory"], r["time"]
    lines.append(
        f"| {r['model']} | {r['batch_size']} | {_mib(m['bp_temp_bytes'])} | "
        f"{_mib(m['bll_fused_temp_bytes'])} | "
        f"{_mib(max(m['bll_block_temp_bytes']))} | "
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


def main(args=ARGS):
  os.makedirs(args.out, exist_ok=True)
  device = jax.devices()[0]
  device_name = f"{device.platform}: {getattr(device, 'device_kind', '')}"
  results = []
  for name in args.models.split(","):   # written after each model: a run
    print(f"benchmarking {name} ...", flush=True)   # stopped early keeps them
    start = time.perf_counter()
    results.append(benchmark(name, args))
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    report = {"device": device_name, "device_count": jax.device_count(),
              "jax": jax.__version__, "results": results}
    with open(os.path.join(args.out, "parallel_benchmark.json"), "w") as f:
      json.dump(report, f, indent=2)
    text = markdown(results, device_name)
    with open(os.path.join(args.out, "parallel_benchmark.md"), "w") as f:
      f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
