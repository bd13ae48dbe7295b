"""What the training loop costs around the compiled step, per step.

    python -m experiments.loop_overhead [--methods bp,bll] [--steps 1500]

Trains a tiny MLP (MNIST-1D, widths 8,8,8, batch 32), whose compiled step
costs little, with `bll-train`'s own loop, and times the same compiled step
called back to back on one device-resident batch. The difference per step is
the loop's host work: fetching the batch, the step key, placing both, the
metrics. On a fast accelerator that work is what a small step waits on.
One device only: on several fake CPU devices, steps with collectives
dispatched back to back can stall XLA's CPU runtime (its all-reduce
rendezvous waits on threads that queued work holds).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax

from bll_jax import config as config_lib
from bll_jax import training
from experiments.lib import machine


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.loop_overhead",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default="bp,bll")
  parser.add_argument("--steps", type=int, default=1500)
  args = parser.parse_args(argv)
  rows = []
  for method in args.methods.split(","):
    config = config_lib.from_overrides("mnist1d", {
        "model.name": "mlp", "model.widths": (8, 8, 8), "method": method,
        "steps": args.steps, "batch_size": 32, "progress": False,
        "mesh": "data=1"})
    with tempfile.TemporaryDirectory(prefix="bll-loop-",
                                     ignore_cleanup_errors=True) as workdir:
      summary = training.train_and_evaluate(config, workdir)
    loop_ms = 1e3 * summary["train_seconds"] / (summary["steps"] - 1)
    step_ms = bare_step_ms(config, args.steps)
    rows.append((method, loop_ms, step_ms))
    print(f"{method}: loop {loop_ms:.3f} ms/step, compiled step alone "
          f"{step_ms:.3f} ms, host work {loop_ms - step_ms:.3f} ms "
          f"({machine.device_name()})", flush=True)
  return rows


def bare_step_ms(config, steps: int) -> float:
  """The loop's compiled step on one placed batch, called back to back."""
  run = training.prepare(config)
  batch = next(iter(run.dataset.train_batches(int(config.batch_size),
                                              seed=0, epoch=0)))
  state = run.runner.place(run.engine.init(jax.random.key(0),
                                           batch["inputs"]))
  batch = run.runner.stages.batch_on(batch, 0)
  key = run.runner.stages.key_on(jax.random.key(1), 0)
  step = run.engine.train_step              # one device, fused (the default)
  state, _ = jax.block_until_ready(step(state, batch, key))   # compile
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, key)
  jax.block_until_ready((state, metrics))
  return 1e3 * (time.perf_counter() - start) / steps


if __name__ == "__main__":
  main()
