"""Each hidden block's activation size and local loss, at init and early on.

    python experiments/depth_probe.py                        # sorting, as ablation_sort
    python experiments/depth_probe.py --steps 32 -- --temperature 5
    python experiments/depth_probe.py -- --preset mnist1d    # any bll-train flags

Trains `bll-train`'s run (default: the sorting ablation's, 8-layer
Transformer in 4 blocks) with its own sync step and, at step 0 and after
`--steps` steps, reports for every hidden block k on one batch of held-out
(test) examples:

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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bll_jax import cli  # noqa: E402
from bll_jax import losses  # noqa: E402
from bll_jax import train  # noqa: E402
from bll_jax.step import weighted_mean  # noqa: E402

SORT = ["--preset", "seq_transformer", "--dataset.name", "sort",
        "--dataset.train-size", "4096", "--epochs", "4"]


def probe(engine, state, batch, key) -> list[dict]:
  """`[{"rms", "feedback_rms", "local_loss"}]` of every hidden block."""
  etas = engine.forward_train(state, batch["inputs"], key)
  fb = engine.feedback_forward(state.feedback.params, etas)
  rows = []
  for k, latent in enumerate(engine.latents):
    eta = etas[k]
    loss = losses.local_loss(
        latent.family, eta, fb[k], batch["labels"],
        temperature=engine._temperature(k, eta),
        position_ndim=latent.position_ndim)
    rows.append({"rms": _rms(eta), "feedback_rms": _rms(fb[k]),
                 "local_loss": float(weighted_mean(loss, batch["weights"]))})
  return rows


def _rms(x) -> float:
  return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=32,
                      help="the second probe's step (the first is at 0)")
  parser.add_argument("--out", default="", help="also write JSON here")
  parser.add_argument("flags", nargs="*",
                      help="bll-train flags after `--` (default: sorting)")
  args = parser.parse_args(argv)
  flags = args.flags or SORT
  if args.flags and "--preset" not in args.flags:
    flags = SORT + args.flags
  if args.steps < 1:
    parser.error(f"--steps must be at least 1, got {args.steps}")
  config, _ = cli.config_from_args(flags + ["--progress", "false"])
  del config.print_config
  run = train.prepare(config)
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
  state = run.parallel.place(state)
  for step, batch in enumerate(batches):
    if step == args.steps:
      break
    state, _ = run.parallel.sync_step(state, batch,
                                      jax.random.fold_in(key, step))
  report["probes"][args.steps] = probe(engine, jax.device_get(state),
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
