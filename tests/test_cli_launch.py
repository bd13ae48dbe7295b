"""bll_jax.cli.launch: one process per block on this machine, real processes,
real kills."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bll_jax import cli
from bll_jax import training as train
from bll_jax.cli import launch
from bll_jax.config import flags as flags_lib
from bll_jax.parallel import reference as reference_lib
from bll_jax.parallel import schedule
from bll_jax.training import checkpoint as checkpoint_lib

TINY = ["--model.name", "mlp", "--model.widths", "32,32,32", "--batch-size",
        "50", "--eval-batch-size", "500", "--progress", "false",
        "--log-every-steps", "5"]


def _launch(args, timeout=300):
  return subprocess.run([sys.executable, "-m", "bll_jax.cli.launch", *args],
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pipelined_run(tmp_path_factory):
  """Two workers, one core each, 12 micro-batches through the pipeline."""
  if len(os.sched_getaffinity(0)) < 2:
    pytest.fail("the launcher tests need 2 cores (CI has 2)")
  workdir = tmp_path_factory.mktemp("pipelined")
  # Two epochs of 6 micro-batches (300 examples): a checkpoint at step 6.
  flags = TINY + ["--schedule", "pipelined", "--dataset.train-examples",
                  "300", "--steps", "12", "--workdir", str(workdir)]
  out = _launch(["-n", "2", "--", *flags])
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, flags


def _assert_equals_the_sequential_simulation(workdir, flags):
  config, _, _ = flags_lib.config_from_args(flags + ["--mesh",
                                                    "data=1,block=2"])
  run = train.prepare(config)
  dataset, engine = run.dataset, run.engine
  seed = int(config.seed)
  sample = np.zeros((50,) + dataset.info.input_shape, np.float32)
  initial = engine.init(jax.random.key(seed), sample)
  step_key = jax.random.fold_in(jax.random.key(seed), 1)
  # Two processes take the MPMD runner: two stages of two blocks; the
  # pipeline fills and drains once per epoch.
  plan = schedule.plan_for("pipelined", engine.num_blocks, 2)
  reference = initial
  for epoch in range(2):
    batches = list(dataset.train_batches(50, seed=seed, epoch=epoch))
    assert len(batches) == 6
    keys = [jax.random.fold_in(step_key, 6 * epoch + i) for i in range(6)]
    reference, _ = reference_lib.run(engine, reference, batches, keys, plan)
  checkpoints = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  assert checkpoints.latest_step() == 12
  state, _ = checkpoints.restore(12, jax.device_get(initial))
  checkpoints.close()
  for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["mesh"]["axes"] == {"data": 1, "block": 2}
  assert summary["pipeline"] == "mpmd"


def test_two_processes_pipelined_equal_the_sequential_simulation(pipelined_run):
  _assert_equals_the_sequential_simulation(*pipelined_run)


def test_two_processes_with_owned_feedback_equal_the_simulation(tmp_path):
  """The feedback owned by the stages (no all-reduce; stage 1 sends its
  message to stage 0, across processes, every tick)."""
  flags = TINY + ["--schedule", "pipelined", "--dataset.train-examples",
                  "300", "--steps", "12", "--feedback", "chained_local",
                  "--workdir", str(tmp_path)]
  out = _launch(["-n", "2", "--", *flags])
  assert out.returncode == 0, out.stderr[-3000:]
  _assert_equals_the_sequential_simulation(tmp_path, flags)


def _final_state(workdir, flags):
  """The step-12 checkpoint of a run of `flags`, on the host."""
  config, _, _ = flags_lib.config_from_args(flags + ["--mesh",
                                                    "data=1,block=2"])
  run = train.prepare(config)
  sample = np.zeros((50,) + run.dataset.info.input_shape, np.float32)
  template = jax.device_get(run.engine.init(jax.random.key(0), sample))
  checkpoints = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  try:
    return checkpoints.restore(12, template)
  finally:
    checkpoints.close()


def test_two_processes_resumed_from_a_checkpoint_end_as_the_whole_run(
    pipelined_run, tmp_path):
  """A 2-process pipelined run stopped at its step-6 checkpoint and resumed
  in 2 processes ends bit for bit where the uninterrupted run ends (a
  SIGKILL leaves that checkpoint intact: the killed-worker test)."""
  whole_dir, flags = pipelined_run
  workdir = tmp_path / "resumed"
  first = [f if f != str(whole_dir) else str(workdir) for f in flags]
  first[first.index("--steps") + 1] = "6"
  out = _launch(["-n", "2", "--", *first])
  assert out.returncode == 0, out.stderr[-3000:]
  out = _launch(["-n", "2", "--", "--workdir", str(workdir), "--resume",
                 "--steps", "12"])
  assert out.returncode == 0, out.stderr[-3000:]
  (state, progress), (whole, whole_progress) = (
      _final_state(workdir, flags), _final_state(whole_dir, flags))
  for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(whole)):
    np.testing.assert_array_equal(got, want)
  assert progress["history"] == [
      {k: v for k, v in r.items() if k != "train_seconds"} | {
          "train_seconds": got["train_seconds"]}
      for r, got in zip(whole_progress["history"], progress["history"])]


def test_each_worker_runs_on_one_core_of_its_own(pipelined_run):
  workdir, _ = pipelined_run
  workers = json.loads((workdir / "launch.json").read_text())["workers"]
  assert [w["affinity"] for w in workers] == [[w["core"]] for w in workers]
  assert len({w["core"] for w in workers}) == 2
  for w in workers:
    # CPU time can exceed wall time only with more than one core busy.
    assert w["cpu_seconds"] <= 1.05 * w["wall_seconds"], w


def test_a_killed_worker_stops_the_others_and_the_checkpoint_resumes(tmp_path):
  workdir = tmp_path / "run"
  flags = TINY + ["--steps", "2000", "--epochs", "50", "--checkpoint-every-steps",
                  "10", "--workdir", str(workdir)]
  launcher = subprocess.Popen(
      [sys.executable, "-m", "bll_jax.cli.launch", "-n", "2", "--",
       *flags],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
      steps = [int(d) for d in os.listdir(workdir / "checkpoints")
               if d.isdigit()] if (workdir / "checkpoints").exists() else []
      if steps and max(steps) >= 20:
        break
      assert launcher.poll() is None, launcher.communicate()
      time.sleep(0.2)
    else:
      pytest.fail("no checkpoint within 240 s")
    pids = json.loads((workdir / "workers.json").read_text())
    killed_at = time.monotonic()
    os.kill(pids[1]["pid"], signal.SIGKILL)
    _, err = launcher.communicate(timeout=60)
    stopped_in = time.monotonic() - killed_at
  finally:
    if launcher.poll() is None:
      launcher.kill()
  assert launcher.returncode == 1
  assert stopped_in < 30, stopped_in
  lines = [l for l in err.splitlines() if l.startswith("bll-train: error")]
  assert lines == [f"bll-train: error: worker 1 (pid {pids[1]['pid']}, core "
                   f"{pids[1]['core']}) killed by SIGKILL; stopped the other "
                   "workers"], err[-2000:]
  for worker in pids:                       # nobody is left running
    assert not os.path.exists(f"/proc/{worker['pid']}") or open(
        f"/proc/{worker['pid']}/stat").read().split()[2] == "Z"
  assert not (workdir / "summary.json").exists()
  # The last checkpoint is intact: resume it, in one process, to the end.
  resumed = cli.main(flags[:-2] + ["--workdir", str(workdir), "--resume",
                                   "true", "--steps", "60", "--mesh", "data=1"])
  assert resumed == 0
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["steps"] == 60


def test_workers_die_with_a_killed_launcher(tmp_path):
  """A launcher killed outright (a scheduler's timeout) leaves no worker
  waiting on a collective."""
  workdir = tmp_path / "run"
  launcher = subprocess.Popen(
      [sys.executable, "-m", "bll_jax.cli.launch", "-n", "2", "--", *TINY,
       "--schedule", "pipelined", "--steps", "5000", "--epochs", "100",
       "--workdir", str(workdir)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline, pids = time.monotonic() + 120, None
    while pids is None:
      assert time.monotonic() < deadline and launcher.poll() is None
      try:
        pids = [w["pid"] for w in json.loads(
            (workdir / "workers.json").read_text())]
      except (OSError, ValueError):      # not there, or half written
        time.sleep(0.1)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    alive = lambda pid: os.path.exists(f"/proc/{pid}") and open(
        f"/proc/{pid}/stat").read().split()[2] != "Z"
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
      time.sleep(0.1)
    assert not any(alive(p) for p in pids), pids
  finally:
    if launcher.poll() is None:
      launcher.kill()


def test_bad_launches_fail_in_one_line_before_any_worker_starts(tmp_path):
  cores = len(os.sched_getaffinity(0))
  cases = [
      (["-n", "2", "--", *TINY, "--blocks", "1"], "2 processes for 1 blocks"),
      (["-n", str(cores + 1), "--", *TINY, "--blocks", str(cores + 1)],
       f"need {cores + 1} cores"),
  ]
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cases.append((["-n", "2", "--port", str(port), "--", *TINY],
                  f"port {port} is in use"))
    for args, message in cases:
      workdir = tmp_path / str(len(os.listdir(tmp_path)))
      start = time.monotonic()
      out = _launch(args + ["--workdir", str(workdir)])
      assert out.returncode == 2, out.stderr
      assert out.stderr.strip().count("\n") == 0, out.stderr
      assert message in out.stderr
      assert not workdir.exists()                # no worker ever started
      assert time.monotonic() - start < 60


def test_bll_train_processes_flag_hands_over_to_the_launcher(tmp_path,
                                                             monkeypatch):
  calls = []
  monkeypatch.setattr(launch, "launch",
                      lambda n, args, *a, **k: calls.append((n, args)) or 0)
  assert cli.main(["--processes", "2", "--steps", "3"]) == 0
  assert calls == [(2, ["--steps", "3"])]


def test_a_worker_environment_holds_only_flags_xla_knows():
  """XLA aborts on an unknown `--flag` and ignores a word without `--`: the
  worker's XLA_FLAGS must be real flags only (it held the bare word
  `intra_op_parallelism_threads=1`, which XLA ignored). A process started
  with that environment runs JAX."""
  env = launch.worker_environment(0)
  words = env["XLA_FLAGS"].split()
  assert "--xla_cpu_multi_thread_eigen=false" in words
  assert all(w.startswith("--") for w in words), words
  out = subprocess.run(
      [sys.executable, "-c", "import jax.numpy as jnp; print(int(jnp.ones(3)"
       ".sum()))"], env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr[-2000:]
