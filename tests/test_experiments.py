"""The experiment scripts run (tiny sizes): they cannot rot unnoticed."""

import json
import os
import pathlib
import subprocess
import sys

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
