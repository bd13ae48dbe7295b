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

with `X(b) = alpha + b / beta`, the all-reduce
`AR(b, n) = 2 (n - 1) / n b / beta + min(2 (n - 1), 2 ceil(log2 n)) alpha`
(a ring's bytes, the fewer of a ring's and a tree's latencies; its
latency paid once per parameter array on this machine, where gloo under
XLA's CPU backend reduces each array as its own collective, and once per
all-reduce over published links, where XLA buckets the gradients), `P` backprop's
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
import math

import jax
import numpy as np

from bll_jax import training
from bll_jax.config import flags as flags_lib
from experiments import time_to_accuracy as tta
from experiments.lib import results as results_lib

# Published per-device link speeds (one direction) and typical latencies.
LINKS = {
    "this machine (fitted)": None,
    "InfiniBand NDR, 400 Gb/s per device": (50e9, 5e-6),
    # Google's figure for all of a chip's ICI links together: a bound.
    "TPU v5p ICI, 4,800 Gb/s per chip": (600e9, 2e-6),
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
    cfg, _, _ = flags_lib.config_from_args([*flags, "--method", method,
                                             "--progress", "false"])
    run = training.prepare(cfg)
    engine = run.engine
    sample = next(iter(run.dataset.test_batches(1)))["inputs"][:1]
    state = jax.eval_shape(engine.init, jax.random.key(0), sample)
    params = [b.params for b in state.blocks]
    if method == "bp":
      out["P"] = tree_bytes(params)
      out["P_arrays"] = len(jax.tree.leaves(params))
      continue
    out["P_bll"] = tree_bytes(params)
    out["P_bll_arrays"] = len(jax.tree.leaves(params))
    out["F"] = tree_bytes(state.feedback.params)
    out["F_arrays"] = len(jax.tree.leaves(state.feedback.params))
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
  """`(latency count, bytes on the wire)` of an all-reduce over `n`: a
  ring's bytes, `2 (n - 1) / n b`, and the fewer of a ring's `2 (n - 1)`
  and a tree's `2 ceil(log2 n)` latencies (what NCCL picks between; the
  generous choice for data-parallel backprop at scale)."""
  if n <= 1:
    return 0.0, 0.0
  return (float(min(2 * (n - 1), 2 * math.ceil(math.log2(n)))),
          2.0 * (n - 1) / n * nbytes)


def terms(method: str, size: dict, tau: float, batch: int, n: int,
          stages: int, micro: int = 4, per_array: bool = True
          ) -> tuple[float, float, float]:
  """`(compute seconds, latency count, bytes)` of one step: the
  coefficients of `(gamma, alpha, 1 / beta)`. `per_array`: every
  parameter array all-reduced as its own collective (what this machine's
  runtime, gloo under XLA's CPU backend, measured); else one collective
  per all-reduce (gradients bucketed, as XLA combines them on GPUs and
  TPUs)."""
  def reduce(nbytes: float, over: int, arrays: str) -> tuple[float, float]:
    count, wire = ring(nbytes, over)
    return count * (size.get(arrays, 1) if per_array else 1), wire

  if method.startswith("bp-dp") or method in ("bp-1", "bll-1"):
    count, nbytes = (reduce(size["P"], n, "P_arrays")
                     if method.startswith("bp-dp") else (0.0, 0.0))
    return tau * batch / n, count, nbytes
  d = n // stages
  per_replica = batch / d
  if method.startswith(("bp-gpipe", "bp-1f1b")):
    ticks = micro + stages - 1
    count, nbytes = reduce(size["P"] / stages, d, "P_arrays")
    return (REMAT * tau * per_replica / stages * ticks / micro,
            2 * ticks + count,
            2 * ticks * size["A"] * per_replica / micro + nbytes)
  a = size["A_2_stages"] if stages == 2 else size["A"]
  if method == "bll-2":                 # the feedback replicated everywhere
    count, nbytes = reduce(size["F"], n, "F_arrays")
  else:                                 # owned: a message and its replicas
    count, nbytes = reduce((size["P_bll"] + size["F"]) / stages, d,
                           "P_bll_arrays")
    count, nbytes = count + 1, nbytes + size["classes"] * a
  return tau * per_replica / stages, 1 + count, a * per_replica + nbytes


def seconds_per_example(method: str, methods: dict) -> float:
  """`tau`: one worker's training seconds per example for `method`'s kind
  of step (block-local's or backprop's)."""
  one = methods["bll-1" if method.startswith("bll") else "bp-1"]
  return one["train_seconds"] / (one["steps"] * one["batch_size"])


def measured(report: dict, sizes_of: dict) -> list[dict]:
  """Every 2-worker run: its coefficients and its seconds per step."""
  rows = []
  for model, r in report["results"].items():
    methods = r["methods"]
    for method, row in methods.items():
      if row["workers"] != 2:
        continue
      tau = seconds_per_example(method, methods)
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


def to_target(method: str, methods: dict, size: dict, target: float,
              n: int, per_array: bool = False
              ) -> tuple[float, float, float] | None:
  """`(compute, latency count, bytes)` summed over the steps `method`
  needs to reach `target` on `n` devices: its predicted seconds are
  `gamma c + alpha l + b / beta`. None: the target never reached."""
  row = methods[method]
  tau = seconds_per_example(method, methods)
  examples = examples_to_target(row, target)
  if examples is None:
    return None
  # Weak scaling: each device keeps the 2-worker run's share.
  batch = row["batch_size"] * n // 2
  stages = 1 if method.startswith("bp-dp") else STAGES
  return tuple(examples / batch * x for x in terms(
      method, size, tau, batch, n, stages, per_array=per_array))


def extrapolate(report: dict, sizes_of: dict, machine: dict) -> dict:
  """Predicted seconds to target per model, link, device count, method."""
  out = {}
  for model, r in report["results"].items():
    methods, per_model = r["methods"], {}
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
          sums = to_target(method, methods, sizes_of[model], r["target"], n,
                           per_array=spec is None)
          per_n[method] = None if sums is None else (
              gamma * sums[0] + alpha * sums[1] + sums[2] / beta)
        per_link[str(n)] = per_n
      per_model[link] = per_link
    out[model] = per_model
  return out


def crossover(report: dict, sizes_of: dict, alpha: float = 5e-6) -> dict:
  """Per model and device count: the link bandwidth (bytes/s) at which
  block-local (the faster of its two feedback modes) and data-parallel
  backprop reach the target at the same time, and on which side
  block-local is ahead.

  Both times are `C + K / beta` (`C`: compute and latency, `K`: bytes), so
  the crossing is exact: `beta* = (K_bll - K_dp) / (C_dp - C_bll)`.
  Returns `{model: {n: {"method", "beta", "ahead"}}}`, `ahead` one of
  "above" (block-local ahead on links faster than `beta`), "below",
  "always", "never", or None where a method never reached the target.
  """
  out = {}
  for model, r in report["results"].items():
    methods, per_model = r["methods"], {}
    for n in DEVICES:
      def line(method):
        sums = to_target(method, methods, sizes_of[model], r["target"], n)
        return None if sums is None else (sums[0] + alpha * sums[1], sums[2])
      dp = line("bp-dp-2") if "bp-dp-2" in methods else None
      bll = {m: line(m) for m in ("bll-2", "bll-owned-2") if m in methods}
      bll = {m: v for m, v in bll.items() if v is not None}
      if dp is None or not bll:
        per_model[str(n)] = None
        continue
      # The faster block-local mode on fast links (ties: fewer bytes).
      method = min(bll, key=lambda m: bll[m])
      (c_b, k_b), (c_d, k_d) = bll[method], dp
      if c_b <= c_d and k_b <= k_d:
        ahead, beta = "always", None
      elif c_b >= c_d and k_b >= k_d:
        ahead, beta = "never", None
      else:
        beta = (k_b - k_d) / (c_d - c_b)
        ahead = "above" if c_b < c_d else "below"
      per_model[str(n)] = {"method": method, "beta": beta, "ahead": ahead}
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
                           else f"{per_n[k]:.3g}" for k in methods)
        lines.append(f"| {link} | {n} | {cells} | {best} |")
    lines.append("")
    cross = result.get("crossover", {}).get(model)
    if cross:
      lines += [f"Block-local against data-parallel backprop on {model} "
                "(links of 5 us latency; compute as above):", ""]
      for n, c in cross.items():
        if c is None:
          lines.append(f"* {n} devices: one of them never reached the "
                       "target.")
        elif c["ahead"] in ("always", "never"):
          lines.append(f"* {n} devices: {c['method']} is {c['ahead']} "
                       "ahead, at any bandwidth.")
        else:
          side = "faster" if c["ahead"] == "above" else "slower"
          lines.append(f"* {n} devices: {c['method']} ahead on links "
                       f"{side} than {c['beta'] / 1e9:.3g} GB/s.")
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
            "predicted": extrapolate(report, sizes_of, machine),
            "crossover": crossover(report, sizes_of)}
  text = markdown(result)
  results_lib.write_report(args.out, "cost_model", result, text)
  print(text)
  return result


if __name__ == "__main__":
  main()
