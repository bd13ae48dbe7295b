"""`experiments.cost_model`: its terms by hand, its fit recovers known
machine constants, its extrapolation follows from both."""

import numpy as np
import pytest

from experiments import cost_model

SIZE = {"P": 4_000_000, "P_bll": 4_400_000, "F": 1_000_000, "A": 8_000,
        "A_2_stages": 4_000, "classes": 10}


def test_terms_are_the_documented_formulas():
  tau, g = 1e-3, 128
  # Data-parallel backprop on 8: an all-reduce of P (a ring's bytes, a
  # tree's 2 log2 8 latencies).
  assert cost_model.terms("bp-dp-2", SIZE, tau, g, 8, 1) == pytest.approx(
      (tau * g / 8, 6, 2 * 7 / 8 * SIZE["P"]))
  # GPipe, 4 stages x 2 replicas, M = 4: 7 ticks each way, remat 4/3.
  compute, count, nbytes = cost_model.terms("bp-gpipe-2", SIZE, tau, g, 8, 4)
  assert compute == pytest.approx(4 / 3 * tau * 64 / 4 * 7 / 4)
  assert count == 2 * 7 + 2
  assert nbytes == pytest.approx(2 * 7 * SIZE["A"] * 64 / 4
                                 + SIZE["P"] / 4)
  # Block-local, feedback owned: the stage's share, one activation, one
  # message, the stage's blocks and feedback reduced over its 2 replicas.
  compute, count, nbytes = cost_model.terms("bll-owned-2", SIZE, tau, g, 8, 4)
  assert compute == pytest.approx(tau * 64 / 4)
  assert count == 1 + 1 + 2
  assert nbytes == pytest.approx(SIZE["A"] * 64 + SIZE["classes"] * SIZE["A"]
                                 + (SIZE["P_bll"] + SIZE["F"]) / 4)
  # Replicated feedback: all-reduced over every device; 2 stages use the
  # middle boundary.
  compute, count, nbytes = cost_model.terms("bll-2", SIZE, tau, g, 2, 2)
  assert (count, nbytes) == pytest.approx((1 + 2, SIZE["A_2_stages"] * g
                                           + SIZE["F"]))
  assert cost_model.ring(123.0, 1) == (0.0, 0.0)
  assert cost_model.ring(10.0, 3) == (4.0, pytest.approx(40 / 3))  # ring
  assert cost_model.ring(10.0, 512)[0] == 18.0                    # tree


def _report(gamma, alpha, beta):
  """Runs whose seconds per step are exactly the model's, for 2 models."""
  results = {}
  for model, tau in (("a", 2e-4), ("b", 5e-5)):
    methods = {}
    for method, workers in (("bll-1", 1), ("bp-1", 1), ("bll-2", 2),
                            ("bll-owned-2", 2), ("bp-dp-2", 2),
                            ("bp-gpipe-2", 2), ("bp-1f1b-2", 2)):
      t = tau * (1.5 if method.startswith("bll") else 1.0)
      steps, batch = 100, 128
      if workers == 1:
        step = t * batch
      else:
        stages = 1 if method == "bp-dp-2" else 2
        c, n, b = cost_model.terms(method, SIZE, t, batch, 2, stages)
        step = gamma * c + alpha * n + b / beta
      methods[method] = {
          "workers": workers, "steps": steps, "batch_size": batch,
          "train_seconds": step * steps,
          "curve": [(step * 50, 0.5), (step * 100, 0.9)]}
    results[model] = {"target": 0.8, "methods": methods}
  return {"results": results}


def test_the_fit_recovers_the_constants_that_made_the_runs():
  report = _report(gamma=1.3, alpha=4e-4, beta=2e9)
  rows = cost_model.measured(report, {"a": SIZE, "b": SIZE})
  assert len(rows) == 10
  machine = cost_model.fit(rows)
  assert machine["gamma"] == pytest.approx(1.3, rel=1e-6)
  assert machine["alpha_s"] == pytest.approx(4e-4, rel=1e-6)
  assert machine["beta_bytes_per_s"] == pytest.approx(2e9, rel=1e-6)
  assert max(abs(r["error"]) for r in rows) < 1e-9


def test_extrapolation_is_examples_over_throughput():
  report = _report(gamma=1.0, alpha=1e-5, beta=1e10)
  machine = {"gamma": 1.0, "alpha_s": 1e-5, "beta_bytes_per_s": 1e10}
  predicted = cost_model.extrapolate(report, {"a": SIZE, "b": SIZE}, machine)
  row = report["results"]["a"]["methods"]["bp-dp-2"]
  tau = 2e-4
  n, batch = 64, 128 * 64 // 2                # weak scaling
  c, count, nbytes = cost_model.terms("bp-dp-2", SIZE, tau, batch, n, 1)
  step = c + 1e-5 * count + nbytes / 1e10
  examples = 2 * 100 / 2 * 128                # the second epoch's end
  got = predicted["a"]["this machine (fitted)"]["64"]["bp-dp-2"]
  assert got == pytest.approx(examples / batch * step)
  assert cost_model.examples_to_target(row, 0.95) is None
  assert "bll-1" not in predicted["a"]["this machine (fitted)"]["8"]
  # More bandwidth never predicts a slower run.
  slow = predicted["a"]["InfiniBand NDR, 400 Gb/s per device"]["512"]
  fast = predicted["a"]["NVLink 4 (H100), 450 GB/s per direction"]["512"]
  assert all(fast[k] <= slow[k] * (1 + 1e-12) for k in fast)
  rows = cost_model.measured(report, {"a": SIZE, "b": SIZE})
  for r in rows:
    r.update(predicted_s=r["step_s"], error=0.0)
  text = cost_model.markdown({"machine": machine, "source": "synthetic",
                              "cpu": "none", "fit": rows,
                              "predicted": predicted})
  assert "| a | bp-dp-2 |" in text and "fastest |" in text
  assert np.isfinite(got)


def test_crossover_is_where_the_two_times_meet():
  """At the bandwidth `crossover` names, block-local and data-parallel
  backprop are predicted to reach the target together; on the side it
  names, block-local is ahead."""
  report = _report(gamma=1.0, alpha=1e-5, beta=1e10)
  sizes = {"a": SIZE, "b": SIZE}
  cross = cost_model.crossover(report, sizes, alpha=5e-6)
  methods = report["results"]["a"]["methods"]

  def seconds(method, n, beta):
    c, count, nbytes = cost_model.to_target(method, methods, SIZE, 0.8, n)
    return c + 5e-6 * count + nbytes / beta

  checked = 0
  for n, c in cross["a"].items():
    n = int(n)
    if c["ahead"] in ("above", "below"):
      beta = c["beta"]
      assert seconds(c["method"], n, beta) == pytest.approx(
          seconds("bp-dp-2", n, beta), rel=1e-9)
      toward = 10.0 if c["ahead"] == "above" else 0.1
      assert seconds(c["method"], n, beta * toward) < seconds(
          "bp-dp-2", n, beta * toward)
      checked += 1
    else:
      for beta in (1e6, 1e9, 1e12):
        ahead = seconds(c["method"], n, beta) < seconds("bp-dp-2", n, beta)
        assert ahead == (c["ahead"] == "always")
  assert checked     # the synthetic sizes cross somewhere
