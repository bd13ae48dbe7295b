"""The time-to-accuracy cost model: fitted on 2 workers, extrapolated.

    python -m experiments.cost_model          # after experiments.time_to_accuracy

Every method's time per step is compute plus what it sends, each message
costing `alpha + bytes / beta` (a latency and a bandwidth). For a global
batch of `G` examples on `N = S x D` devices (`S` pipeline stages, `D`
data replicas of each; `tau` one device's seconds per example for the
method's whole step, measured on one worker):

* data-parallel backprop (`S = 1`): `gamma tau_bp G / N + AR(P, N)`;
* GPipe and 1F1B, `M` micro-batches, the forward re-run in the backward
  pass: `gamma (4/3) tau_bp G / (D S) (M + S - 1) / M
  + 2 (M + S - 1) X(A G / (D M)) + AR(P / S, D)`;
* block-local pipelined (the bubble is paid once per epoch, not per step):
  `gamma tau_bll G / (D S) + X(A G / D)`, plus `AR(F, N)` with the feedback
  replicated on every stage (`bll-2`), or `X(C A_1) + AR((P_bll + F) / S, D)`
  with the feedback owned by the stages (`bll-owned-2`: a `[classes,
  features]` message per tick, gradients reduced over a stage's replicas
  only);

with `X(b) = alpha + b / beta`, the ring all-reduce
`AR(b, n) = 2 (n - 1) / n b / beta + 2 (n - 1) alpha`, `P` backprop's
parameter bytes, `P_bll` the block-local blocks', `F` the feedback
network's, `A` the bytes of one example's activation at a stage boundary
(`A_1` its features) and `gamma >= 1` the slow-down of compute when every
core of the machine works at once (shared memory bandwidth and caches).

The three machine constants `(gamma, alpha, 1 / beta)` enter linearly: they
are fitted by non-negative least squares to the 2-worker runs of
`experiments/results/time_to_accuracy` (each method's measured seconds per
step), and each run's error is reported. Then, with the per-device batch of
those runs held fixed (weak scaling: the global batch grows with `N`) and
the examples each method needed to reach its target held fixed (true below
the critical batch size; not measured here), it predicts the time to
target at 8, 64 and 512 devices over this machine's fitted links and over
published ones; pipelines use `S = 4` stages (one block each) and
`D = N / 4` replicas. Compute per device stays this machine's core:
a device `k` times faster is the same prediction with links `k` times
slower. Writes `OUT/cost_model.json` and `OUT/cost_model.md`.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from bll_jax import config as config_lib
from bll_jax import training
from experiments import time_to_accuracy as tta
from experiments.lib import results as results_lib

# Published per-device link speeds (one direction) and typical latencies.
LINKS = {
    "this machine (fitted)": None,
    "InfiniBand NDR, 400 Gb/s per device": (50e9, 5e-6),
    "TPU v5p ICI, 4 800 Gb/s per chip": (600e9, 2e-6),
    "NVLink 4 (H100), 450 GB/s per direction": (450e9, 2e-6),
}
DEVICES = (8, 64, 512)
STAGES = 4               # one block per stage at scale
REMAT = 4 / 3            # a backward pass re-running the stage's forward


def tree_bytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def sizes(flags: list[str]) -> dict:
  """Parameter and activation bytes of a `time_to_accuracy` model."""
  out = {}
  for method in ("bp", "bll"):
    cfg, _, _ = config_lib.config_from_args([*flags, "--method", method,
                                             "--progress", "false"])
    run = training.prepare(cfg)
    engine = run.engine
    sample = next(iter(run.dataset.test_batches(1)))["inputs"][:1]
    state = jax.eval_shape(engine.init, jax.random.key(0), sample)
    params = [b.params for b in state.blocks]
    if method == "bp":
      out["P"] = tree_bytes(params)
      continue
    out["P_bll"] = tree_bytes(params)
    out["F"] = tree_bytes(state.feedback.params)
    outs = jax.eval_shape(
        lambda s, x: engine.forward(tuple(b.params for b in s.blocks),
                                    [b.batch_stats for b in s.blocks], x,
                                    False, None), state, sample)
    # One example's activation at each boundary: the largest sets the pace.
    boundary = [tree_bytes(o.h_out) for o in outs[:-1]]
    out["A"] = max(boundary)
    out["A_2_stages"] = boundary[engine.num_blocks // 2 - 1]
    out["classes"] = int(run.dataset.info.num_classes)
  return out


def ring(nbytes: float, n: int) -> tuple[float, float]:
  """`(latency count, bytes on the wire)` of a ring all-reduce over `n`."""
  if n <= 1:
    return 0.0, 0.0
  return 2.0 * (n - 1), 2.0 * (n - 1) / n * nbytes


def terms(method: str, size: dict, tau: float, batch: int, n: int,
          stages: int, micro: int = 4) -> tuple[float, float, float]:
  """`(compute seconds, latency count, bytes)` of one step: the
  coefficients of `(gamma, alpha, 1 / beta)`."""
  if method.startswith("bp-dp") or method in ("bp-1", "bll-1"):
    count, nbytes = ring(size["P"], n) if method.startswith("bp-dp") else (
        0.0, 0.0)
    return tau * batch / n, count, nbytes
  d = n // stages
  per_replica = batch / d
  if method.startswith(("bp-gpipe", "bp-1f1b")):
    ticks = micro + stages - 1
    count, nbytes = ring(size["P"] / stages, d)
    return (REMAT * tau * per_replica / stages * ticks / micro,
            2 * ticks + count,
            2 * ticks * size["A"] * per_replica / micro + nbytes)
  a = size["A_2_stages"] if stages == 2 else size["A"]
  if method == "bll-2":                 # the feedback replicated everywhere
    count, nbytes = ring(size["F"], n)
  else:                                 # owned: a message and its replicas
    count, nbytes = ring((size["P_bll"] + size["F"]) / stages, d)
    count, nbytes = count + 1, nbytes + size["classes"] * a
  return tau * per_replica / stages, 1 + count, a * per_replica + nbytes


def measured(report: dict, sizes_of: dict) -> list[dict]:
  """Every 2-worker run: its coefficients and its seconds per step."""
  rows = []
  for model, r in report["results"].items():
    methods = r["methods"]
    for method, row in methods.items():
      if row["workers"] != 2:
        continue
      one = methods["bll-1" if method.startswith("bll") else "bp-1"]
      tau = one["train_seconds"] / (one["steps"] * one["batch_size"])
      stages = 1 if method.startswith("bp-dp") else 2
      rows.append({"model": model, "method": method,
                   "terms": terms(method, sizes_of[model], tau,
                                  row["batch_size"], 2, stages),
                   "step_s": row["train_seconds"] / row["steps"]})
  return rows


def fit(rows: list[dict]) -> dict:
  """`(gamma, alpha, 1 / beta)` by non-negative least squares on relative
  errors; each run's prediction and error."""
  from scipy import optimize

  a = np.array([r["terms"] for r in rows]) / np.array(
      [[r["step_s"]] for r in rows])
  coef, _ = optimize.nnls(a, np.ones(len(rows)))
  gamma, alpha, inv_beta = coef
  for r in rows:
    r["predicted_s"] = float(np.dot(r["terms"], coef))
    r["error"] = r["predicted_s"] / r["step_s"] - 1
  return {"gamma": float(gamma), "alpha_s": float(alpha),
          "beta_bytes_per_s": float(1 / inv_beta) if inv_beta else None}


def examples_to_target(row: dict, target: float) -> float | None:
  per_epoch = row["steps"] / len(row["curve"]) * row["batch_size"]
  for i, (_, accuracy) in enumerate(row["curve"]):
    if accuracy >= target:
      return (i + 1) * per_epoch
  return None


def extrapolate(report: dict, sizes_of: dict, machine: dict) -> dict:
  """Predicted seconds to target per model, link, device count, method."""
  out = {}
  for model, r in report["results"].items():
    methods, target = r["methods"], r["target"]
    per_model = {}
    for link, spec in LINKS.items():
      beta, alpha = ((machine["beta_bytes_per_s"], machine["alpha_s"])
                     if spec is None else spec)
      gamma = machine["gamma"] if spec is None else 1.0
      per_link = {}
      for n in DEVICES:
        per_n = {}
        for method, row in methods.items():
          if row["workers"] != 2:
            continue
          one = methods["bll-1" if method.startswith("bll") else "bp-1"]
          tau = one["train_seconds"] / (one["steps"] * one["batch_size"])
          examples = examples_to_target(row, target)
          # Weak scaling: each device keeps the 2-worker run's share.
          batch = row["batch_size"] * n // 2
          stages = 1 if method.startswith("bp-dp") else STAGES
          compute, count, nbytes = terms(method, sizes_of[model], tau, batch,
                                         n, stages)
          step = gamma * compute + alpha * count + nbytes / beta
          per_n[method] = (None if examples is None
                           else examples / batch * step)
        per_link[str(n)] = per_n
      per_model[link] = per_link
    out[model] = per_model
  return out


def markdown(result: dict) -> str:
  m = result["machine"]
  beta = m["beta_bytes_per_s"]
  lines = [
      f"Fitted on {result['source']} ({result['cpu']}): gamma = "
      f"{m['gamma']:.2f}, alpha = {1e3 * m['alpha_s']:.3f} ms, beta = "
      + (f"{beta / 1e9:.2f} GB/s." if beta else "unbounded."), "",
      "| model | method | measured s/step | predicted | error |",
      "| --- | --- | --- | --- | --- |"]
  lines += [f"| {r['model']} | {r['method']} | {r['step_s']:.4f} | "
            f"{r['predicted_s']:.4f} | {100 * r['error']:+.0f} % |"
            for r in result["fit"]]
  errors = [abs(r["error"]) for r in result["fit"]]
  lines += ["", f"Mean absolute error {100 * np.mean(errors):.0f} %, "
            f"largest {100 * max(errors):.0f} %.", ""]
  for model, per_model in result["predicted"].items():
    lines += [f"### {model}: predicted seconds to target (per-device batch "
              "of the 2-worker runs; compute per device: this machine's "
              "core)", ""]
    methods = list(next(iter(next(iter(per_model.values())).values())))
    lines += ["| link | devices | " + " | ".join(methods) + " | fastest |",
              "| --- | --- |" + " --- |" * (len(methods) + 1)]
    for link, per_link in per_model.items():
      for n, per_n in per_link.items():
        done = {k: v for k, v in per_n.items() if v is not None}
        best = min(done, key=done.get) if done else "-"
        cells = " | ".join("not reached" if per_n[k] is None
                           else f"{per_n[k]:.1f}" for k in methods)
        lines.append(f"| {link} | {n} | {cells} | {best} |")
    lines.append("")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.cost_model",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--measured", default="experiments/results/"
                      "time_to_accuracy/time_to_accuracy.json")
  parser.add_argument("--out", default="experiments/results/time_to_accuracy")
  args = parser.parse_args(argv)
  with open(args.measured) as f:
    report = json.load(f)
  sizes_of = {model: sizes(tta.MODELS[model][1])
              for model in report["results"]}
  rows = measured(report, sizes_of)
  if len(rows) < 3:
    parser.error(f"{args.measured} holds {len(rows)} two-worker runs; the "
                 "fit needs at least 3")
  machine = fit(rows)
  result = {"source": args.measured, "cpu": report["machine"]["cpu"],
            "sizes": sizes_of, "machine": machine, "fit": rows,
            "predicted": extrapolate(report, sizes_of, machine)}
  text = markdown(result)
  results_lib.write_report(args.out, "cost_model", result, text)
  print(text)
  return result


if __name__ == "__main__":
  main()
