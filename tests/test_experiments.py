"""The experiment scripts run (tiny sizes): they cannot rot unnoticed."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_parallel_benchmark_runs_and_reports_both_methods(tmp_path):
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4"}
  out = subprocess.run(
      [sys.executable, "experiments/parallel_benchmark.py", "--models",
       "transformer", "--batch-size", "2", "--seq-len", "8", "--repeats", "1",
       "--micro-batches", "3", "--out", str(tmp_path)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  report = json.loads((tmp_path / "parallel_benchmark.json").read_text())
  (result,) = report["results"]
  memory, times, pipe = result["memory"], result["time"], result["pipeline"]
  assert len(memory["bll_block_temp_bytes"]) == 4
  assert 0 < memory["bll_max_block_over_bp"] < 1     # a block needs less
  assert all(t > 0 for t in times["bll_block_step_s"])
  assert pipe["stages"] == 4 and pipe["ticks"] == 3 + 4 - 1
  assert pipe["bubble_fraction"] == 3 / 6
  assert "| transformer |" in (tmp_path / "parallel_benchmark.md").read_text()


def test_process_benchmark_runs_every_configuration(tmp_path):
  """The short form of `experiments/process_benchmark.py`: real worker
  processes, one core each; what it measures is checked for shape and
  sense, not speed (CI's two cores are shared)."""
  out = subprocess.run(
      [sys.executable, "experiments/process_benchmark.py", "--models",
       "mlp-tiny", "--micro-batches", "4", "--repeats", "1", "--gpipe-m", "2",
       "--out", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((tmp_path / "process_benchmark.json").read_text())
  r = report["results"]["mlp-tiny"]
  bll, one, gpipe = r["bll_pipelined"], r["bll_pipelined_1"], r["gpipe_m2"]
  assert bll["processes"] == 2 and bll["ticks"] == 8 + 2 - 1
  assert bll["bubble_fraction"] == 1 / 9
  assert one["ticks"] == 8 and gpipe["micro_batches"] == 2
  for run in (bll, gpipe):
    assert len(run["live_mib"]) == len(run["max_rss_mib"]) == 2
    assert all(v > 0 for v in run["live_mib"] + run["max_rss_mib"])
  assert all(t > 0 for t in (one["seconds"], bll["seconds"],
                             gpipe["step_s"], bll["transfer_s"]))
  assert set(r["cost_model"]) == {"1", "2", "4", "8", "16", "32", "64"}
  text = (tmp_path / "process_benchmark.md").read_text()
  assert "block-local pipelined, 2 workers" in text and "GPipe" in text
  assert (tmp_path / "throughput.png").stat().st_size > 1000


def test_compare_writes_one_json_per_run_and_a_table(tmp_path):
  out = subprocess.run(
      [sys.executable, "experiments/compare.py", "--preset", "mnist1d",
       "--methods", "bp,bll", "--seeds", "0", "--set", "steps=20", "--set",
       "mesh=data=1", "--out", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  for method in ("bp", "bll"):
    summary = json.loads(
        (tmp_path / f"mnist1d-{method}-seed0.json").read_text())
    assert summary["method"] == method and summary["steps"] == 20
  table = (tmp_path / "mnist1d.md").read_text()
  assert "| bp | 1 |" in table and "| bll | 1 |" in table


def test_init_compile_cost_times_each_prng_and_refuses_no_leaves():
  from experiments import init_compile_cost
  cost = init_compile_cost.draw_cost(2)
  assert set(cost) == {"threefry2x32", "rbg", "unsafe_rbg"}
  assert all(0 < s < 600 for s in cost.values())
  with pytest.raises(SystemExit):
    init_compile_cost.main(["--leaves", "0"])


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
