r"""What initialising an engine costs to compile on this machine.

    python -m experiments.init_compile_cost [--leaves 108] \
        [--models mlp-tiny,cnn]

1. Compile time of one jitted program that draws `--leaves` normal tensors,
   one per parameter leaf (each its own random kernel), for each PRNG
   implementation (threefry, the default; rbg; unsafe_rbg).
2. For the `experiments.process_benchmark` models: `Engine.init` as it
   runs (eagerly, op by op) against `jax.jit(Engine.init)`, each twice in
   one process (bll, then bp): eager ops are compiled once per shape and
   reused, a jitted init is a new program per engine.

Run with `JAX_ENABLE_COMPILATION_CACHE=false` to time compilation, not a
cache. Prints one line per measurement (seconds of wall time).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import jax

from experiments import process_benchmark

# The repository root: where `python -m experiments...` finds the package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = ((3, 3, 8, 8), (8,), (64, 10))


def draw_cost(leaves: int) -> dict[str, float]:
  """Seconds to compile `leaves` per-leaf normal draws, per PRNG impl."""
  shapes = [SHAPES[i % len(SHAPES)] for i in range(leaves)]

  def draws(key):
    return [jax.random.normal(jax.random.fold_in(key, i), s)
            for i, s in enumerate(shapes)]

  out = {}
  for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
    lowered = jax.jit(draws).lower(jax.random.key(0, impl=impl))
    start = time.perf_counter()
    lowered.compile()
    out[impl] = time.perf_counter() - start
  return out


def init_cost(model: str, mode: str) -> list[float]:
  """Seconds of `Engine.init` for bll then bp (one process), eager or jit."""
  times = []
  for method in ("bll", "bp"):
    engine, batch = process_benchmark.build(model, method)
    init = engine.init if mode == "eager" else jax.jit(engine.init)
    start = time.perf_counter()
    jax.block_until_ready(init(jax.random.key(0), batch(0)["inputs"]))
    times.append(time.perf_counter() - start)
  return times


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m experiments.init_compile_cost",
      description=__doc__.splitlines()[0])
  parser.add_argument("--leaves", type=int, default=108)
  parser.add_argument("--models", default="mlp-tiny,cnn")
  parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.leaves < 1:
    parser.error(f"--leaves must be >= 1, got {args.leaves}")
  if args.child:                        # one fresh process per measurement
    bll, bp = init_cost(*args.child)
    print(f"{bll:.3f} {bp:.3f}")
    return
  for impl, seconds in draw_cost(args.leaves).items():
    print(f"{args.leaves} per-leaf normal draws, {impl}: compile "
          f"{seconds:.2f} s", flush=True)
  for model in args.models.split(","):
    for mode in ("eager", "jit"):
      out = subprocess.run(
          [sys.executable, "-m", "experiments.init_compile_cost", "--child",
           model, mode], cwd=ROOT, capture_output=True, text=True,
          check=True)
      bll, bp = out.stdout.split()[-2:]
      print(f"{model} init, {mode}: first engine (bll) {bll} s, second "
            f"engine (bp) in the same process {bp} s", flush=True)


if __name__ == "__main__":
  main()
