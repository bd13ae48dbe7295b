"""The experiment scripts run (tiny sizes): they cannot rot unnoticed.

The scripts that start processes or need devices of their own, and the
sweep with its table end to end, run as `python -m experiments.<name>` from
the repository root, as their users run them; the others are called in this
process.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_module(name, *args, env=None):
  """`python -m experiments.<name> ARGS` from the repository root."""
  return subprocess.run([sys.executable, "-m", f"experiments.{name}", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


def test_parallel_benchmark_runs_and_reports_both_methods(tmp_path):
  """The short form: the Transformer with 4 layers (the benchmark's has 8)
  on 4 fake devices, tiny batches, one timed repetition."""
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4"}
  out = run_module("parallel_benchmark", "--models", "transformer",
                   "--layers", "4", "--batch-size", "2", "--seq-len", "8",
                   "--repeats", "1", "--micro-batches", "3", "--out",
                   str(tmp_path), env=env)
  assert out.returncode == 0, out.stderr[-2000:]
  report = json.loads((tmp_path / "parallel_benchmark.json").read_text())
  (result,) = report["results"]
  assert result["layers"] == 4 and result["cuts"] == [2, 3, 4]
  memory, times, pipe = result["memory"], result["time"], result["pipeline"]
  assert len(memory["bll_block_temp_bytes"]) == 4
  assert 0 < memory["bll_max_block_over_bp"] < 1     # a block needs less
  assert all(t > 0 for t in times["bll_block_step_s"])
  assert pipe["stages"] == 4 and pipe["ticks"] == 3 + 4 - 1
  assert pipe["bubble_fraction"] == 3 / 6
  assert "| transformer |" in (tmp_path / "parallel_benchmark.md").read_text()


def test_process_benchmark_runs_every_configuration(tmp_path):
  """The short form of `python -m experiments.process_benchmark`: real worker
  processes, one core each; what it measures is checked for shape and
  sense, not speed (CI's two cores are shared)."""
  out = run_module("process_benchmark", "--models", "mlp-tiny",
                   "--micro-batches", "4", "--repeats", "1", "--gpipe-m", "2",
                   "--window", "0.25", "--out", str(tmp_path))
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((tmp_path / "process_benchmark.json").read_text())
  r = report["results"]["mlp-tiny"]
  bll, one, gpipe = r["bll_pipelined"], r["bll_pipelined_1"], r["gpipe_m2"]
  one_f_one_b = r["one_f_one_b_m2"]
  assert one_f_one_b["micro_batches"] == 2 and one_f_one_b["step_s"] > 0
  # Stage inputs held at once: GPipe all M, 1F1B at most S - s.
  assert gpipe["peak_stage_inputs"] == [2, 2]
  assert one_f_one_b["peak_stage_inputs"] == [2, 1]
  assert bll["processes"] == 2 and bll["ticks"] == 8 + 2 - 1
  assert bll["bubble_fraction"] == 1 / 9
  assert one["ticks"] == 8 and gpipe["micro_batches"] == 2
  owned = r["bll_owned_pipelined"]        # the feedback owned by the stages
  assert owned["processes"] == 2 and owned["ticks"] == bll["ticks"]
  for run in (bll, one, owned, r["bll_owned_pipelined_1"]):
    assert run["steady_tick_s"] > 0 and isinstance(run["steady_resolved"], bool)
  for run in (bll, gpipe):
    assert len(run["live_mib"]) == len(run["max_rss_mib"]) == 2
    assert all(v > 0 for v in run["live_mib"] + run["max_rss_mib"])
  assert all(t > 0 for t in (one["seconds"], bll["seconds"],
                             gpipe["step_s"], bll["transfer_s"]))
  for single in (r["single"], r["all_cores"]):    # one worker, every core
    assert all(single[name] > 0 for name in (
        "bp_step_s", "bp_forward_s", "bll_fused_step_s", "bll_in_turn_step_s"))
  assert r["single"]["processes"] == 1
  ceiling = r["independent"]                      # nothing exchanged
  assert ceiling["processes"] == 2 and len(ceiling["max_rss_mib"]) == 2
  assert ceiling["bp_step_s"] > 0 and ceiling["bll_fused_step_s"] > 0
  assert set(r["cost_model"]) == {"1", "2", "4", "8", "16", "32", "64"}
  text = (tmp_path / "process_benchmark.md").read_text()
  assert "block-local pipelined, 2 workers" in text and "GPipe" in text
  assert "block-local pipelined, owned feedback, 2 workers" in text
  assert "backprop 1F1B, 2 workers, M=2" in text
  assert "backprop, 2 independent copies at once" in text
  assert "The machine's ceiling for 2 workers" in text
  assert (tmp_path / "throughput.png").stat().st_size > 1000


def test_process_benchmark_trains_the_transformer_on_next_tokens():
  """The benchmark's Transformer (measured only in the full form): 4 blocks
  on int32 token windows, every position labelled with the next token, and
  one fused step of block-local learning on its micro-batch learns."""
  import jax
  import numpy as np
  from experiments import process_benchmark
  engine, batch = process_benchmark.build("transformer", "bll")
  b = batch(0)
  assert engine.num_blocks == 4
  assert b["inputs"].shape == b["labels"].shape == (8, 64)
  assert b["inputs"].dtype == np.int32 and b["weights"].shape == (8, 64)
  np.testing.assert_array_equal(b["labels"][:, :-1], b["inputs"][:, 1:])
  state = engine.init(jax.random.key(0), b["inputs"])
  step = jax.jit(engine.train_step)
  first, before = step(state, b, jax.random.key(1))
  _, after = step(first, b, jax.random.key(1))
  # Every block's loss is finite, and after one update the output's loss on
  # the same batch is lower (a step reports the loss it descended).
  assert all(np.isfinite(float(v)) for v in after.values())
  assert float(after["block3/loss"]) < float(before["block3/loss"])


def test_stage_program_times_every_form_of_a_stage_tick(tmp_path):
  """The short form of `python -m experiments.stage_program` (one pinned
  process, the tiny MLP, 2 ticks a window)."""
  out = run_module("stage_program", "--models", "mlp-tiny", "--steps", "2",
                   "--repeats", "1", "--out", str(tmp_path))
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((tmp_path / "stage_program.json").read_text())
  times = report["results"]["mlp-tiny"]
  assert set(times) == {"per-block", "per-block, donated", "fused, donated"}
  assert all(t > 0 for t in times.values())
  assert "| mlp-tiny |" in (tmp_path / "stage_program.md").read_text()


def test_steady_tick_cancels_fill_and_drain_or_says_it_could_not():
  from experiments.process_benchmark import steady_tick
  # 2 stages, 0.1 s a tick: 4 micro-batches in 5 ticks, 8 in 9.
  assert steady_tick(0.5, 0.9, 4, 2) == pytest.approx((0.1, True))
  # Noise larger than 4 ticks: the mean tick of the longer run, flagged.
  assert steady_tick(0.9, 0.9, 4, 2) == pytest.approx((0.1, False))


def test_time_to_accuracy_trains_each_method_in_its_workers(tmp_path):
  """The short form of `python -m experiments.time_to_accuracy`: 2 epochs of
  400 examples, the owned-feedback pipeline on 2 launched workers and
  backprop on 1; what it reports is checked for shape and sense, not
  speed. Called again over the same runs, it reads them back."""
  from experiments.time_to_accuracy import METHODS
  args = ["time_to_accuracy", "--models", "cnn-mnist1d", "--methods",
          "bll-owned-2,bp-1", "--set",
          "--epochs 2 --dataset.train-examples 400",
          "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)]
  out = run_module(*args)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((tmp_path / "time_to_accuracy.json").read_text())
  again = run_module(*args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("read, not rerun") == 2
  assert json.loads((tmp_path / "time_to_accuracy.json").read_text()) == report
  cnn = report["results"]["cnn-mnist1d"]
  assert set(cnn["methods"]) == {"bll-owned-2", "bp-1"}
  for method, row in cnn["methods"].items():
    workers = METHODS[method][1]
    assert row["workers"] == workers and len(row["curve"]) == 2
    (s1, a1), (s2, a2) = row["curve"]
    assert 0 < s1 < s2 and 0 <= a1 <= 1 and 0 <= a2 <= 1
    assert row["final_test_accuracy"] == a2 and row["examples_per_second"] > 0
    assert len(row["max_rss_mib"]) == workers
    assert min(row["max_rss_mib"]) > 100
    reached = [s for s, a in row["curve"] if a >= cnn["target"]]
    assert row["time_to_target_s"] == (reached[0] if reached else None)
  text = (tmp_path / "time_to_accuracy.md").read_text()
  assert "| backprop, 1 worker | 1 |" in text
  assert "feedback owned by the stages (chained_local), 2 workers | 2 |" in text
  assert (tmp_path / "cnn-mnist1d.png").stat().st_size > 1000


def test_time_to_target_is_the_first_epoch_end_at_the_target():
  from experiments import time_to_accuracy as tta
  summary = {"history": [{"train_seconds": 2.0, "test/accuracy": 0.5},
                         {"train_seconds": 3.0, "test/accuracy": 0.9},
                         {"train_seconds": 1.0, "test/accuracy": 0.8}]}
  points = tta.curve(summary)
  assert points == [(2.0, 0.5), (5.0, 0.9), (6.0, 0.8)]
  assert tta.time_to(points, 0.9) == 5.0 and tta.time_to(points, 0.95) is None
  with pytest.raises(SystemExit):
    tta.main(["--methods", "bp-3"])


def test_sweep_trains_and_make_table_reads_the_run(tmp_path):
  """One real run of the sweep (4 steps of a small MLP), then its table."""
  results = tmp_path / "results"
  out = run_module("sweep", "mnist1d_mlp", "--methods", "bll", "--seeds", "1",
                   "--set", "steps=4", "--set", "model.widths=16,16,16",
                   "--set", "mesh=data=1", "--results", str(results))
  assert out.returncode == 0, out.stderr[-2000:]
  assert "mnist1d_mlp | bll | seed 1: test accuracy " in out.stdout
  summary = json.loads((results / "mnist1d_mlp" / "bll-seed1.json").read_text())
  assert summary["overrides"] == {
      "model.name": "mlp", "model.widths": [16, 16, 16], "seed": 1,
      "progress": False, "steps": 4, "mesh": "data=1"}
  assert summary["steps"] == 4 and summary["seed"] == 1
  assert summary["config"]["model"]["widths"] == [16, 16, 16]
  table = tmp_path / "RESULTS.md"
  out = run_module("make_table", "--results", str(results), "--out",
                   str(table))
  assert out.returncode == 0, out.stderr[-2000:]
  (row,) = [line for line in table.read_text().splitlines()
            if line.startswith("| bll | 1 | ")]
  assert f"| {summary['test_accuracy']:.4f} |" in row


def test_init_compile_cost_times_each_prng_and_refuses_no_leaves():
  from experiments import init_compile_cost
  cost = init_compile_cost.draw_cost(2)
  assert set(cost) == {"threefry2x32", "rbg", "unsafe_rbg"}
  assert all(0 < s < 600 for s in cost.values())
  with pytest.raises(SystemExit):
    init_compile_cost.main(["--leaves", "0"])


def test_score_speed_times_both_categorical_forms(capsys):
  """The products form is the faster one (about 18x at the LM's 2048
  tokens on 2 cores; at 1024 a 2.4x run-to-run noise cannot flip it)."""
  from experiments import score_speed
  rows = score_speed.main(["--tokens", "1024", "--repeats", "3"])
  assert len(rows) == 3 and all(0 < ms < 1e4 for ms in rows.values())
  products, generic = (rows[f"categorical, one-hot feedback, {form}"]
                       for form in ("by products", "generic"))
  assert products < generic, rows
  assert "by products" in capsys.readouterr().out


def test_loop_overhead_times_the_loop_and_the_bare_step(capsys):
  from experiments import loop_overhead
  rows = loop_overhead.main(["--methods", "bp,bll", "--steps", "40"])
  assert [method for method, _, _ in rows] == ["bp", "bll"]
  for _, loop_ms, step_ms in rows:
    assert 0 < step_ms < 1e3 and 0 < loop_ms < 1e3
  out = capsys.readouterr().out
  assert "bll: loop " in out and "compiled step alone" in out


def test_depth_probe_reports_every_hidden_block_at_both_steps(tmp_path):
  from experiments import depth_probe
  out = tmp_path / "probe.json"
  report = depth_probe.main([
      "--steps", "2", "--out", str(out), "--",
      "--model.num-layers", "3", "--model.d-model", "16",
      "--model.num-heads", "2", "--model.mlp-dim", "32", "--cuts", "1,2,3",
      "--dataset.train-size", "64", "--batch-size", "16",
      "--dataset.length", "4"])
  assert report["num_classes"] == 18            # 16 symbols, padding, SEP
  assert sorted(report["probes"]) == [0, 2]
  for rows in report["probes"].values():
    assert len(rows) == 3                       # the hidden blocks
    for row in rows:
      assert row["rms"] > 0 and row["feedback_rms"] > 0
      assert 0 < row["local_loss"] < 1e3
  assert json.loads(out.read_text())["probes"]["2"] == report["probes"][2]
  with pytest.raises(SystemExit):
    depth_probe.main(["--steps", "0"])
