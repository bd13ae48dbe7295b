"""A stage's tick as one program or one per block, with and without donation.

    python -m experiments.stage_program --out experiments/results/stage_program

The first stage of a 2-stage cut (blocks 0 and 1 of each model of
`experiments.process_benchmark`) on one device, pinned to one core, its
tick timed three ways (best of `--repeats` windows of `--steps` ticks):

1. `per-block`: each block's jitted step, its state copied (no donation),
   the form `MpmdRunner` had before `bll_jax.parallel.stage`;
2. `per-block, donated`: each block's step its own program, its state
   donated (`StageProgram(fused=False)`, what the runner uses on CPU);
3. `fused, donated`: the whole tick one program (`StageProgram(fused=True)`).

With `--end-to-end`, also the runner itself: examples per second of
block-local `pipelined` on 2 pinned workers and on one, with the replicated
and the owned feedback (`experiments.process_benchmark`'s `bll` and
`bll_owned` workers, M = 16 micro-batches). Run it at two commits to compare
the runner's forms.

Writes `OUT/stage_program.json` and `OUT/stage_program.md`. This is what
chose the runner's default (`bll_jax/parallel/stage.py`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax

from bll_jax.parallel import stage as stage_lib
from experiments import process_benchmark
from experiments.lib import machine
from experiments.lib import results as results_lib

FORMS = ("per-block", "per-block, donated", "fused, donated")


def measure(model: str, steps: int, repeats: int) -> dict[str, float]:
  """Seconds per tick of blocks 0 and 1 of `model`, in each of `FORMS`."""
  engine, batch = process_benchmark.build(model, "bll")
  b, key = jax.device_put(batch(0)), jax.random.key(0)
  state = engine.init(key, b["inputs"])
  fb = engine.feedback_forward(state.feedback.params, None)
  ks = (0, 1)
  args = (b["labels"], b["weights"], key)

  def plain(states):
    h, new = b["inputs"], []
    for k, st in zip(ks, states):
      st, h, _, _ = engine.block_step(k)(st, h, fb[k], *args)
      new.append(st)
    return tuple(new)

  def staged(fused):
    program = stage_lib.StageProgram(engine, [ks, (2, 3)], ["given"] * 2,
                                     fused)
    return lambda states: program(0)(states, fb, b["inputs"], *args)[0]

  result = {}
  for form, tick in zip(FORMS, (plain, staged(False), staged(True))):
    states = stage_lib.copy(tuple(state.blocks[k] for k in ks))
    states = jax.block_until_ready(tick(states))          # compile
    best = float("inf")
    for _ in range(repeats):
      start = time.perf_counter()
      for _ in range(steps):
        states = tick(states)
      jax.block_until_ready(states)
      best = min(best, (time.perf_counter() - start) / steps)
    result[form] = best
  return result


def end_to_end(model: str, repeats: int) -> dict[str, float]:
  """Examples/s of the pipelined runner on 2 workers and on one."""
  out = {}
  for mode in ("bll", "bll_owned"):
    r = process_benchmark.run_workers(2, model, mode, 16, repeats,
                                      tempfile.mkdtemp(prefix="bll-stage-"))
    out[f"{mode}, 2 workers"] = r["examples_per_second"]
    out[f"{mode}, 1 worker"] = r["one_worker"]["examples_per_second"]
  return out


def markdown(report: dict) -> str:
  rows = ["| model | " + " | ".join(f"{f} (ms)" for f in FORMS)
          + " | fused / per-block donated |",
          "| --- |" + " --- |" * (len(FORMS) + 1)]
  for model, r in report["results"].items():
    rows.append(f"| {model} | " + " | ".join(
        f"{1e3 * r[f]:.2f}" for f in FORMS)
        + f" | {r[FORMS[2]] / r[FORMS[1]]:.2f} |")
  text = (f"One core of {report['machine']['cpu']}, jax "
          f"{report['machine']['jax']}: seconds per tick of a stage's two "
          "blocks (best window).\n\n" + "\n".join(rows))
  if report.get("end_to_end"):
    names = list(next(iter(report["end_to_end"].values())))
    rows = ["| model | " + " | ".join(names) + " |",
            "| --- |" + " --- |" * len(names)]
    for model, r in report["end_to_end"].items():
      rows.append(f"| {model} | " + " | ".join(f"{r[n]:.0f}" for n in names)
                  + " |")
    text += ("\n\nThe runner, block-local `pipelined` (M = 16), examples "
             "per second (`bll`: replicated feedback; `bll_owned`: owned "
             "by the stages):\n\n" + "\n".join(rows))
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m experiments.stage_program",
      description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="mlp,cnn,mlp-tiny")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--end-to-end", action="store_true",
                      help="also time the runner on 2 pinned workers")
  parser.add_argument("--out", default="experiments/results/stage_program")
  args = parser.parse_args(argv)
  if args.end_to_end:     # first: the workers pin themselves, not this one
    e2e = {model: end_to_end(model, args.repeats)
           for model in args.models.split(",")}
  # One core, as a pinned worker has (before the backend starts threads).
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  report = {"machine": {"cpu": machine.cpu_name(), "jax": jax.__version__,
                        "backend": jax.default_backend()}, "results": {}}
  for model in args.models.split(","):
    report["results"][model] = measure(model, args.steps, args.repeats)
    print(model, {f: f"{1e3 * s:.2f} ms" for f, s in
                  report["results"][model].items()}, flush=True)
  if args.end_to_end:
    report["end_to_end"] = e2e
  text = markdown(report)
  results_lib.write_report(args.out, "stage_program", report, text)
  print(text)


if __name__ == "__main__":
  main()
