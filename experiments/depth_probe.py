"""Each hidden block's activation size and local loss, at init and early on.

    python -m experiments.depth_probe               # sorting, as ablation_sort
    python -m experiments.depth_probe --steps 32 -- --temperature 5
    python -m experiments.depth_probe -- --preset mnist1d  # bll-train flags

Trains `bll-train`'s run (default: the preset and overrides of the sorting
ablation, `experiments/configs/ablation_sort.py`, an 8-layer Transformer in
4 blocks; flags after `--` are added to them, or replace them if they name a
`--preset`) with its runner's steps and, at step 0 and after `--steps`
steps, reports for every hidden block k on one batch of held-out (test)
examples:

* the RMS of its natural parameters `eta_k` (the block's output as read by
  its latent) and of its feedback `eta_fb` (every class's vector), and
* its local loss `L_k = -log q(y | eta_k, eta_fb)` at the run's temperature,
  against `log C`, the loss of a uniform guess over the `C` classes.

The class scores compare `eta_k` with the feedback (for the Gaussian their
class-dependent part is `(2 mu . mu_y - |mu_y|^2) / 4v`), so their spread,
and the loss of a confident wrong guess, grows with the two sizes.
"""

from __future__ import annotations

import argparse
import json
import math

import jax
import jax.numpy as jnp

from bll_jax import losses
from bll_jax import training
from bll_jax.config import flags as flags_lib
from bll_jax.engine import weighted_mean
from experiments import configs
from experiments.lib import overrides as overrides_lib


def sort_flags() -> list[str]:
  """The sorting ablation's preset and overrides as `bll-train` flags."""
  sort = configs.load("ablation_sort")
  out = ["--preset", sort["preset"]]
  for name, value in sort["overrides"].items():
    out += [f"--{name.replace('_', '-')}", overrides_lib.value_text(value)]
  return out


def probe(engine, state, batch, key) -> list[dict]:
  """`[{"rms", "feedback_rms", "local_loss"}]` of every hidden block."""
  etas = engine.forward_train(state, batch["inputs"], key)
  fb = engine.feedback_forward(state.feedback.params, etas)
  rows = []
  for k, latent in enumerate(engine.latents):
    eta = etas[k]
    loss = losses.local_loss(
        latent.family, eta, fb[k], batch["labels"],
        temperature=engine.score_temperature(k, eta),
        position_ndim=latent.position_ndim)
    rows.append({"rms": _rms(eta), "feedback_rms": _rms(fb[k]),
                 "local_loss": float(weighted_mean(loss, batch["weights"]))})
  return rows


def _rms(x) -> float:
  return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.depth_probe",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=32,
                      help="the second probe's step (the first is at 0)")
  parser.add_argument("--out", default="", help="also write JSON here")
  parser.add_argument("flags", nargs="*",
                      help="bll-train flags after `--` (default: sorting)")
  args = parser.parse_args(argv)
  flags = args.flags
  if "--preset" not in flags:
    flags = sort_flags() + flags
  if args.steps < 1:
    parser.error(f"--steps must be at least 1, got {args.steps}")
  config, _, _ = flags_lib.config_from_args(flags + ["--progress", "false"])
  run = training.prepare(config)
  engine, batch_size = run.engine, int(config.batch_size)
  if engine.feedback is None:
    raise SystemExit("the probe needs block-local learning with a feedback "
                     f"network; method {config.method!r} has none")
  batches = (batch for epoch in range(args.steps) for batch in
             run.dataset.train_batches(batch_size, seed=int(config.seed),
                                       epoch=epoch))
  held_out = next(iter(run.dataset.test_batches(batch_size)))
  key = jax.random.key(int(config.seed))
  state = engine.init(key, held_out["inputs"])
  report = {"flags": flags, "num_classes": run.dataset.info.num_classes,
            "probes": {0: probe(engine, state, held_out, key)}}
  state = run.runner.place(state)
  for step, batch in enumerate(batches):
    if step == args.steps:
      break
    state, _ = run.runner.step(state, batch, jax.random.fold_in(key, step))
  report["probes"][args.steps] = probe(engine, run.runner.to_host(state),
                                       held_out, key)
  uniform = math.log(report["num_classes"])
  for step, rows in report["probes"].items():
    for k, row in enumerate(rows):
      print(f"step {step:4d}, block {k + 1}: RMS of eta {row['rms']:.3f}, "
            f"of its feedback {row['feedback_rms']:.3f}, local loss "
            f"{row['local_loss']:.3f} nats (uniform guess {uniform:.3f})")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main()
