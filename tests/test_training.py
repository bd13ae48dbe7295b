"""bll_jax.training: real runs, checked against independent recomputations.

Every run is tiny (a 40-32-32-10 MLP on MNIST-1D, a two-layer Transformer on
`reverse` with length 4) except the two convergence tests, which train the
presets' own networks for a few hundred steps on real data. Settings that a
test was calibrated with are set explicitly: the presets' defaults change.
"""

import contextlib
import glob
import io
import json
import math
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

from bll_jax import config as config_lib
from bll_jax import engine as engine_lib
from bll_jax import training as train
from bll_jax.data import idx
from bll_jax.training import checkpoint as checkpoint_lib
from tests import conftest

METHODS = ("bll", "bp", "local", "drtp")
# The latent family and feedback that local and drtp fix (bll trains with the
# configured ones; the summary reports None for bp, which has neither).
METHOD_LATENTS = {"bp": (None, None), "local": ("categorical", "onehot"),
                  "drtp": ("gaussian", "random")}
SUMMARY_KEYS = {"method", "dataset", "model", "blocks", "family", "feedback",
                "epochs", "steps", "final_train_loss", "test_accuracy",
                "per_block_test_accuracy", "wall_seconds",
                "examples_per_second", "devices"}

# A 3-unit MLP cut into 3 blocks, 30 steps of 50 examples (80 steps an epoch).
TINY = {"mesh": "data=1", "model.name": "mlp", "model.widths": (32, 32),
        "blocks": 3,
        "batch_size": 50, "eval_batch_size": 500, "progress": False,
        "log_every_steps": 5, "steps": 30}
TINY_FLAGS = ["--mesh", "data=1", "--model.name", "mlp", "--model.widths",
              "32,32", "--blocks", "3",
              "--batch-size", "50", "--eval-batch-size", "500",
              "--progress", "false", "--log-every-steps", "5"]
# The feedback the learning rates of the divergence tests and the reverse
# task's steps were measured with (the presets' defaults may change).
MEASURED_WITH = {"feedback": "direct", "feedback_loss": "ml"}
# A 4-unit Transformer (embedding, 2 layers, head) cut into 3 blocks; 8
# symbols and lr 3e-3 so that 30 steps decode some test sequences exactly,
# not all (measured: token accuracy 0.70, exact match 0.26).
TINY_REVERSE = {**MEASURED_WITH, "mesh": "data=1", "dataset.length": 4,
                "dataset.train_size": 2048,
                "dataset.num_symbols": 8, "model.num_layers": 2,
                "model.d_model": 32, "model.num_heads": 2, "model.mlp_dim": 64,
                "cuts": (2, 3), "lr": 3e-3, "batch_size": 32,
                "eval_batch_size": 500, "progress": False,
                "log_every_steps": 5, "steps": 30}


def _config(preset="mnist1d", base=None, **fields):
  """The preset with `base`, then `fields`, set (dotted names for nesting)."""
  config = config_lib.get_config(preset)
  for name, value in {**(base or {}), **fields}.items():
    node = config
    *path, leaf = name.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def _restore(config, workdir, step=None):
  """`(run, state, progress)` of the checkpoint `step` (default: latest)."""
  run = train.prepare(config)
  info = run.dataset.info
  sample = np.zeros((int(config.batch_size),) + info.input_shape,
                    info.input_dtype)
  template = run.engine.init(jax.random.key(0), sample)
  checkpoints = checkpoint_lib.Checkpointer(os.path.join(workdir,
                                                         "checkpoints"))
  try:
    step = checkpoints.latest_step() if step is None else step
    state, progress = checkpoints.restore(step, template)
  finally:
    checkpoints.close()
  return run, state, progress


def _checkpoint_steps(workdir):
  """Committed checkpoint steps (a save in progress is `N.orbax-...`)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _whole_test_set(dataset):
  """The test set as one unpadded batch."""
  (batch,) = list(dataset.test_batches(dataset.info.test_size))
  assert len(batch["labels"]) == dataset.info.test_size
  return batch


def _reference_classification(run, state):
  """Test loss, accuracy and per-block accuracies recomputed in float64."""
  batch = _whole_test_set(run.dataset)
  logits, local = jax.device_get(run.engine.predict(state, batch["inputs"]))
  labels = batch["labels"]
  logits = np.asarray(logits, np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  loss = -np.mean(log_probs[np.arange(len(labels)), labels])
  accuracy = lambda l: float(np.mean(np.argmax(l, -1) == labels))
  per_block = [None if l is None else accuracy(l) for l in local]
  per_block.append(accuracy(logits))
  return loss, per_block


def _tensorboard_scalars(directory):
  """`{tag: [(step, value), ...]}` read from raw TFRecord event files."""
  from tensorboardX.proto import event_pb2
  scalars = {}
  pattern = os.path.join(directory, "events.out.tfevents.*")
  for path in sorted(glob.glob(pattern)):
    data = pathlib.Path(path).read_bytes()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4          # length, its CRC, the event, its CRC
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step,
                                                  value.simple_value))
  return scalars


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _epoch_records(path):
  """The per-epoch records of `metrics.jsonl` (not the step records)."""
  return [r for r in _read_jsonl(path) if "epoch" in r]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  """`get(method) -> (workdir, summary)` of the tiny run, trained once.

  The run trains inside whichever test asks for it first; its progress
  output is kept out of that test's `capsys`, so a test that reads its own
  stderr sees the same lines whatever order the tests run in."""
  done = {}

  def get(method):
    if method not in done:
      workdir = str(tmp_path_factory.mktemp(f"tiny_{method}"))
      config = _config(base=TINY, method=method, checkpoint_every_steps=10)
      with contextlib.redirect_stderr(io.StringIO()), \
          contextlib.redirect_stdout(io.StringIO()):
        done[method] = (workdir, train.train_and_evaluate(config, workdir))
    return done[method]

  return get


# ------------------------------------------------------------ what a run writes


@pytest.mark.parametrize("method", METHODS)
def test_each_method_writes_summary_metrics_tensorboard_and_checkpoints(
    tiny_runs, method):
  workdir, summary = tiny_runs(method)
  with open(os.path.join(workdir, "summary.json")) as f:
    written = json.load(f)
  assert SUMMARY_KEYS <= set(written), SUMMARY_KEYS - set(written)
  assert written["test_accuracy"] == summary["test_accuracy"]
  config = _config(base=TINY, method=method)
  family, feedback = METHOD_LATENTS.get(method,
                                        (config.family, config.feedback))
  assert (written["method"], written["dataset"], written["model"]) == (
      method, "mnist1d", "mlp")
  assert (written["family"], written["feedback"]) == (family, feedback)
  assert (written["blocks"], written["epochs"], written["steps"]) == (3, 1, 30)
  if method in ("bll", "bp"):        # 40-32-32-10 (local adds readouts)
    assert written["parameters_per_block"] == [40 * 32 + 32, 32 * 32 + 32,
                                               32 * 10 + 10]
  assert written["devices"] == [str(d) for d in jax.devices()]
  assert written["wall_seconds"] > 0 and written["examples_per_second"] > 0
  assert math.isfinite(written["final_train_loss"])
  assert written["final_train_loss"] > 0

  per_block = written["per_block_test_accuracy"]
  assert len(per_block) == 3
  assert per_block[-1] == written["test_accuracy"]
  block_loss = written["per_block_test_loss"]
  assert block_loss[-1] == pytest.approx(written["test_loss"], rel=1e-6)
  if method == "bp":
    assert per_block[:-1] == block_loss[:-1] == [None, None]
    # The mixture of the output alone is the output.
    assert written["mixture_test_loss"] == pytest.approx(
        written["test_loss"], rel=1e-6)
    assert written["mixture_test_accuracy"] == written["test_accuracy"]
  else:
    assert all(0.0 <= a <= 1.0 for a in per_block[:-1])
    assert all(loss > 0 for loss in block_loss)
    assert written["mixture_test_loss"] <= np.mean(block_loss) + 1e-6

  # The final checkpoint holds the evaluated parameters: recomputing the test
  # metrics from it gives the summary's.
  assert _checkpoint_steps(workdir) == [20, 30]
  run, state, progress = _restore(config, workdir)
  assert int(state.step) == 30
  assert progress["history"][-1]["test/accuracy"] == written["test_accuracy"]
  loss, reference = _reference_classification(run, state)
  assert written["test_loss"] == pytest.approx(loss, rel=1e-5)
  assert reference == pytest.approx(per_block, abs=1e-9)

  records = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  (record,) = [r for r in records if "epoch" in r]
  assert (record["epoch"], record["step"]) == (1, 30)
  assert record["test/accuracy"] == written["test_accuracy"]
  assert record["train/block2/loss"] == written["final_train_loss"]
  # Every log_every_steps (5) a step record: the mean of its 5 steps, so
  # the six means average to the epoch's mean.
  steps = [r for r in records if "epoch" not in r]
  assert [r["step"] for r in steps] == [5, 10, 15, 20, 25, 30]
  assert np.mean([r["step/block2/loss"] for r in steps]) == pytest.approx(
      record["train/block2/loss"], rel=1e-6)

  scalars = _tensorboard_scalars(os.path.join(workdir, "tensorboard"))
  assert scalars["test/accuracy"] == [
      (30, pytest.approx(written["test_accuracy"], rel=1e-6))]
  assert scalars["test/per_block_accuracy/2"] == [
      (30, pytest.approx(per_block[-1], rel=1e-6))]
  assert scalars["step/block2/loss"] == [
      (r["step"], pytest.approx(r["step/block2/loss"], rel=1e-6))
      for r in steps]


@pytest.mark.parametrize("epochs, steps, expected", [
    (3, 19, [(1, 8), (2, 16), (3, 19)]),   # stops mid-epoch 3
    (1, 1000, [(1, 8)]),                   # more steps than the epochs hold
    (2, 0, [(1, 8), (2, 16)]),             # 0: every epoch
])
def test_steps_stop_the_run_after_that_many_updates_and_still_evaluate(
    tmp_path, epochs, steps, expected):
  # 4000 examples at batch size 500: 8 updates an epoch.
  config = _config(base=TINY, batch_size=500, epochs=epochs, steps=steps)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    summary = train.train_and_evaluate(config, str(tmp_path))
  # Stopping short of what `steps` asks for is said, with the epochs to ask.
  said = [str(w.message) for w in caught if "steps per epoch" in str(w.message)]
  if steps > 8 * epochs:
    assert said == ["steps 1000 is more than epochs x steps per epoch (1 x 8 "
                    "= 8): the run stops at 8; raise epochs to 125 for 1000 "
                    "updates"], said
  else:
    assert said == []
  assert summary["steps"] == expected[-1][1]
  assert summary["epochs"] == expected[-1][0]
  records = _epoch_records(tmp_path / "metrics.jsonl")
  assert [(r["epoch"], r["step"]) for r in records] == expected
  assert records[-1]["test/accuracy"] == summary["test_accuracy"]
  assert all(0.0 <= r["test/accuracy"] <= 1.0 for r in records)
  assert _checkpoint_steps(tmp_path)[-1] == expected[-1][1]


# ------------------------------------------------------------- real learning


# Test accuracy of the mnist1d preset's network after 600 steps of bll, seeds
# 0/1/2, 2-core CPU, jax 0.10.2 (chance is 0.10): the threshold, with margin.
MNIST1D_MEASURED = {"cnn": ((0.934, 0.929, 0.893), 0.75)}


def _train_for_real(workdir, *flags):
  """`bll-train` in a process compiled for speed (it trains hundreds of
  steps); returns its summary."""
  out = subprocess.run(
      [sys.executable, "-m", "bll_jax.cli", *flags, "--progress", "false",
       "--mesh", "data=1", "--workdir", str(workdir)],
      capture_output=True, text=True, timeout=900,
      env=conftest.compute_env(JAX_NUM_CPU_DEVICES="1"))
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads((workdir / "summary.json").read_text())


def test_mnist1d_preset_learns_well_above_chance(tmp_path):
  config = _config(method="bll", steps=600, progress=False, mesh="data=1")
  if config.model.name not in MNIST1D_MEASURED:
    pytest.fail(f"the mnist1d preset's network is now {config.model.name!r}: "
                "measure its accuracy and set MNIST1D_MEASURED")
  _, threshold = MNIST1D_MEASURED[config.model.name]
  summary = _train_for_real(tmp_path, "--method", "bll", "--steps", "600")
  assert summary["config"]["model"]["name"] == config.model.name
  assert summary["steps"] == 600 and summary["blocks"] == 4
  assert summary["test_accuracy"] >= threshold, summary[
      "per_block_test_accuracy"]
  assert all(a > 0.2 for a in summary["per_block_test_accuracy"])


def test_fashion_mnist_preset_learns_from_the_debian_idx_files(tmp_path):
  if not idx.has_files("/usr/share/datasets/fashion-mnist"):
    conftest.skip_unless_required(
        "BLL_REQUIRE_FASHION_MNIST",
        "the Fashion-MNIST IDX files are not in /usr/share/datasets/"
        "fashion-mnist (apt-get install dataset-fashion-mnist)")
  # Measured: 0.838 / 0.836 / 0.834 for seeds 0/1/2 (chance 0.10).
  summary = _train_for_real(tmp_path, "--preset", "fashion_mnist_mlp",
                            "--method", "bll", "--steps", "300")
  assert summary["dataset"] == "fashion_mnist" and summary["steps"] == 300
  assert summary["test_accuracy"] >= 0.70, summary["per_block_test_accuracy"]


# ---------------------------------------------------------- kill and resume


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path,
                                                           monkeypatch):
  flags = TINY_FLAGS + ["--epochs", "3", "--steps", "200",
                        "--checkpoint-every-steps", "10"]
  killed = str(tmp_path / "killed")
  with open(tmp_path / "killed.log", "w") as log:
    process = subprocess.Popen(
        [sys.executable, "-m", "bll_jax.cli", *flags, "--workdir", killed],
        stdout=log, stderr=subprocess.STDOUT)
    try:
      deadline = time.monotonic() + 300
      while not [s for s in _checkpoint_steps(killed) if s >= 20]:
        assert process.poll() is None, (
            "the run ended before it was killed: "
            + (tmp_path / "killed.log").read_text()[-2000:])
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.005)
      process.send_signal(signal.SIGKILL)
      process.wait(timeout=60)
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()
  assert process.returncode == -signal.SIGKILL
  killed_at = _checkpoint_steps(killed)[-1]
  assert 20 <= killed_at < 200
  assert not os.path.exists(os.path.join(killed, "summary.json"))

  # Resumed in this process, watching what it restores and saves.
  restored, saved = [], []
  original_restore = checkpoint_lib.Checkpointer.restore
  original_save = checkpoint_lib.Checkpointer.save

  def restore(self, step, template):
    restored.append(step)
    return original_restore(self, step, template)

  def save(self, step, state, progress):
    saved.append(step)
    return original_save(self, step, state, progress)

  from bll_jax import cli
  with monkeypatch.context() as patch:
    patch.setattr(checkpoint_lib.Checkpointer, "restore", restore)
    patch.setattr(checkpoint_lib.Checkpointer, "save", save)
    assert cli.main(flags + ["--workdir", killed, "--resume", "true"]) == 0
  assert restored == [killed_at]
  assert saved[0] == killed_at + 10 and saved[-1] == 200, saved
  whole = str(tmp_path / "whole")
  config = _config(base=TINY, epochs=3, steps=200, checkpoint_every_steps=10)
  expected = train.train_and_evaluate(config, whole)
  with open(os.path.join(killed, "summary.json")) as f:
    resumed = json.load(f)

  assert resumed["steps"] == expected["steps"] == 200
  for key in ("test_accuracy", "test_loss", "final_train_loss"):
    assert resumed[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key
  assert resumed["per_block_test_accuracy"] == pytest.approx(
      expected["per_block_test_accuracy"], abs=1e-9)
  # Every epoch's train and test metrics, before and after the kill.
  assert len(resumed["history"]) == len(expected["history"]) == 3
  for got, want in zip(resumed["history"], expected["history"]):
    assert got.keys() == want.keys()
    for key in set(want) - {"train_seconds"}:          # all but the clock
      assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
  assert ([(r["epoch"], r["step"]) for r in _epoch_records(
      os.path.join(killed, "metrics.jsonl"))] == [(1, 80), (2, 160), (3, 200)])
  # What the killed run logged after its checkpoint is dropped, once: every
  # step record once, equal to the uninterrupted run's.
  logged = _read_jsonl(os.path.join(killed, "metrics.jsonl"))
  whole_logged = _read_jsonl(os.path.join(whole, "metrics.jsonl"))
  assert [r["step"] for r in logged] == [r["step"] for r in whole_logged]
  for got, want in zip(logged, whole_logged):
    for key in set(want) - {"train_seconds"}:
      assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
  # The very same final parameters, BatchNorm statistics and optimiser state.
  _, state_resumed, _ = _restore(config, killed, 200)
  _, state_whole, _ = _restore(config, whole, 200)
  leaves_resumed = jax.tree.leaves(state_resumed)
  leaves_whole = jax.tree.leaves(state_whole)
  assert len(leaves_resumed) == len(leaves_whole) > 0
  for a, b in zip(leaves_resumed, leaves_whole):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                               atol=1e-7)


def test_a_resumed_writer_drops_what_was_logged_after_the_checkpoint(
    tmp_path):
  """A run killed at step 30 whose last checkpoint is step 20: the resumed
  run's writer keeps steps <= 20 in metrics.jsonl and asks TensorBoard to
  purge from step 21 (a SessionLog START at that step)."""
  from bll_jax.training import metric_writers
  from tensorboardX.proto import event_pb2
  writer = metric_writers.MetricWriter(tmp_path)
  for step in (5, 10, 15, 20, 25, 30):
    writer.write(step, {"step": step, "step/loss": float(step)})
  writer.close()
  resumed = metric_writers.MetricWriter(tmp_path, resume_step=20)
  resumed.write(25, {"step": 25, "step/loss": -25.0})
  resumed.close()
  logged = _read_jsonl(tmp_path / "metrics.jsonl")
  assert [(r["step"], r["step/loss"]) for r in logged] == [
      (5, 5.0), (10, 10.0), (15, 15.0), (20, 20.0), (25, -25.0)]
  starts = []
  for path in sorted(glob.glob(str(tmp_path / "tensorboard" /
                                   "events.out.tfevents.*"))):
    data, pos = pathlib.Path(path).read_bytes(), 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      if event.HasField("session_log"):
        starts.append(event.step)
  assert 21 in starts


# ------------------------------------------------------------ failure modes


DIVERGED = re.compile(r"(block\d+|feedback) loss is (nan|inf|-inf) at step "
                      r"(\d+); training stopped, (.*)")


def _first_non_finite_step(run, state, first_step, last_step, seed=0):
  """Replays updates `first_step + 1 ..` from `state`.

  Returns `(step, names)` of the first update (1-based, as the loop counts)
  whose losses are not all finite, and the blocks whose loss is not.
  """
  batch_size = int(run.config.batch_size)
  step_key = jax.random.fold_in(jax.random.key(seed), 1)
  for step in range(first_step, last_step):
    epoch, start = divmod(step, run.steps_per_epoch)
    batch = next(run.dataset.train_batches(batch_size, seed=seed, epoch=epoch,
                                           start_step=start))
    state, metrics = run.engine.train_step(state, batch,
                                           jax.random.fold_in(step_key, step))
    bad = {name.split("/")[0] for name, value in jax.device_get(metrics).items()
           if name.endswith("loss") and not math.isfinite(float(value))}
    if bad:
      return step + 1, bad
  return None, set()


def test_divergence_names_block_and_step_and_keeps_a_restorable_checkpoint(
    tmp_path):
  # lr 1e7 (Adam) blows the feedback loss up to inf after a few dozen steps;
  # lr 1e5 does not diverge within 200 steps, 1e9 within 2.
  config = _config(base={**TINY, **MEASURED_WITH}, lr=1e7, steps=200,
                   checkpoint_every_steps=10)
  with pytest.raises(train.TrainingDiverged) as info:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(info.value)
  match = DIVERGED.fullmatch(message)
  assert match, message
  where, step = match.group(1), int(match.group(3))
  assert not (tmp_path / "summary.json").exists()

  last = _checkpoint_steps(tmp_path)[-1]
  assert 10 <= last < step
  assert f"last good checkpoint is step {last} in " in message
  assert str(tmp_path / "checkpoints") in message
  run, state, _ = _restore(config, str(tmp_path), last)
  assert int(state.step) == last
  assert all(np.isfinite(np.asarray(leaf)).all()
             for leaf in jax.tree.leaves(state))
  # Replayed from that checkpoint, the first non-finite loss is the one named.
  replayed_step, bad = _first_non_finite_step(run, state, last, step)
  assert replayed_step == step
  assert where in bad


def test_the_last_good_checkpoint_does_not_hold_the_state_that_diverged(
    tmp_path):
  # lr 1e9: the loss of step 2 (from the parameters after update 1) is NaN.
  config = _config(base={**TINY, **MEASURED_WITH}, lr=1e9, steps=200,
                   checkpoint_every_steps=1, log_every_steps=1)
  with pytest.raises(train.TrainingDiverged) as info:
    train.train_and_evaluate(config, str(tmp_path))
  step = int(DIVERGED.fullmatch(str(info.value)).group(3))
  saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints")
                 if d.isdigit())
  # Checkpoints from step - 1 on hold (or are) the diverging state: gone.
  assert all(s < step - 1 for s in saved), (saved, step)
  named = re.search(r"last good checkpoint is step (\d+)", str(info.value))
  if named is None:
    assert "no good checkpoint remains" in str(info.value) and not saved
    return
  last = int(named.group(1))
  assert last == saved[-1]
  run, state, _ = _restore(config, str(tmp_path), last)
  # The named checkpoint must give finite losses on its next update.
  replayed_step, bad = _first_non_finite_step(run, state, last, last + 1)
  assert replayed_step is None, (
      f"checkpoint {last}, named good, gives a non-finite {sorted(bad)} loss "
      f"at step {replayed_step} (divergence reported at step {step})")


def _files(directory):
  return sorted(p for p in glob.glob(os.path.join(directory, "**"),
                                     recursive=True) if os.path.isfile(p))


def _truncate_every_state_file(checkpoint):
  for path in _files(os.path.join(checkpoint, "state")):
    open(path, "wb").close()


def _random_bytes_in_the_largest_array_file(checkpoint):
  path = max(_files(os.path.join(checkpoint, "state")), key=os.path.getsize)
  size = os.path.getsize(path)
  with open(path, "wb") as f:
    f.write(np.random.default_rng(0).bytes(size))


def _cut_the_largest_array_file_in_half(checkpoint):
  path = max(_files(os.path.join(checkpoint, "state")), key=os.path.getsize)
  data = pathlib.Path(path).read_bytes()
  pathlib.Path(path).write_bytes(data[:len(data) // 2])


def _empty_progress_record(checkpoint):
  open(os.path.join(checkpoint, "progress", "metadata"), "wb").close()


def _copy_run(tiny_runs, tmp_path, method="bll"):
  """A copy of the tiny run's directory (checkpoints 20 and 30)."""
  source, summary = tiny_runs(method)
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  return workdir, summary


@pytest.mark.parametrize("corrupt", [
    _truncate_every_state_file, _random_bytes_in_the_largest_array_file,
    _cut_the_largest_array_file_in_half, _empty_progress_record])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(
    tiny_runs, tmp_path, capsys, corrupt):
  """Issue 20: never advise deleting a checkpoint. The damaged one is kept
  aside, the run resumes from step 20 by itself and ends where the
  undamaged run ended (the same steps 21..30, replayed)."""
  from bll_jax import cli
  workdir, whole = _copy_run(tiny_runs, tmp_path)
  checkpoint = os.path.join(workdir, "checkpoints", "30")
  corrupt(checkpoint)
  damaged = {os.path.relpath(p, checkpoint): pathlib.Path(p).read_bytes()
             for p in _files(checkpoint)}
  assert cli.main(["--workdir", workdir, "--resume"]) == 0
  err = capsys.readouterr().err
  aside = os.path.join(workdir, "checkpoints-unreadable", "30")
  (line,) = [l for l in err.splitlines()
             if l.startswith("bll-train: checkpoint")]
  assert re.fullmatch(
      r"bll-train: checkpoint 30 is damaged \(.+\); resuming from step 20, "
      r"the damaged one kept in " + re.escape(aside), line), line
  assert {os.path.relpath(p, aside): pathlib.Path(p).read_bytes()
          for p in _files(aside)} == damaged
  with open(os.path.join(workdir, "summary.json")) as f:
    resumed = json.load(f)
  assert resumed["steps"] == 30
  for key in ("test_accuracy", "test_loss", "final_train_loss"):
    assert resumed[key] == pytest.approx(whole[key], rel=1e-6), key
  assert _checkpoint_steps(workdir) == [20, 30]


def test_every_checkpoint_damaged_is_one_line_and_changes_nothing(
    tiny_runs, tmp_path):
  workdir, _ = _copy_run(tiny_runs, tmp_path)
  for step in ("20", "30"):
    _cut_the_largest_array_file_in_half(
        os.path.join(workdir, "checkpoints", step))
  before = {p: pathlib.Path(p).read_bytes() for p in _files(workdir)}
  with pytest.raises(checkpoint_lib.CheckpointError) as info:
    train.train_and_evaluate(_config(base=TINY, resume=True), workdir)
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith(f"every checkpoint in {workdir}/checkpoints is "
                            "damaged (the latest, step 30: ")
  assert "delete" not in message
  assert {p: pathlib.Path(p).read_bytes() for p in _files(workdir)} == before


@pytest.mark.parametrize("with_config_json", [True, False])
def test_a_refused_resume_leaves_the_run_directory_as_it_was(
    tiny_runs, tmp_path, with_config_json):
  """A resume of another network changes nothing, config.json included
  (issue 20): refused by the saved config's fields, or (a run without
  config.json) by the checkpoint's array shapes, before any array is read."""
  workdir, _ = _copy_run(tiny_runs, tmp_path)
  if not with_config_json:
    os.remove(os.path.join(workdir, "config.json"))
  before = {p: pathlib.Path(p).read_bytes() for p in _files(workdir)}
  other = _config(base=TINY, resume=True)
  other.model.widths = tuple(2 * w for w in other.model.widths)
  if with_config_json:
    with pytest.raises(train.ConfigError, match=re.escape(
        "model.widths (32, 32) in the run, (64, 64) now")):
      train.train_and_evaluate(other, workdir)
  else:
    with pytest.raises(checkpoint_lib.CheckpointError, match=re.escape(
        "holds the state of another configuration (blocks.0.opt_state.0.mu."
        "units_0.Dense_0.bias: (32,) float32 saved, (64,) float32 here")):
      train.train_and_evaluate(other, workdir)
  assert {p: pathlib.Path(p).read_bytes() for p in _files(workdir)} == before


def test_resume_continues_the_runs_own_config(tiny_runs, tmp_path, capsys):
  """`bll-train --workdir W --resume` on a run that is not the default
  preset's network: the saved config, not the preset, is resumed; more
  steps are allowed, changed arithmetic is refused naming both values."""
  from bll_jax import cli
  workdir, _ = _copy_run(tiny_runs, tmp_path)
  assert cli.main(["--workdir", workdir, "--resume", "--lr", "0.1",
                   "--blocks", "2"]) == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert line == ("bll-train: error: --resume continues the run as it was "
                  "configured, but blocks 3 in the run, 2 now; lr 0.001 in "
                  "the run, 0.1 now: drop those flags, or start a new run in "
                  "another --workdir")
  assert cli.main(["--workdir", workdir, "--resume", "--steps", "40"]) == 0
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert (summary["model"], summary["blocks"], summary["steps"]) == (
      "mlp", 3, 40)


def test_resume_refuses_a_new_length_under_a_schedule(tiny_runs, tmp_path,
                                                      capsys):
  from bll_jax import cli
  workdir, _ = _copy_run(tiny_runs, tmp_path)
  path = os.path.join(workdir, "config.json")
  saved = json.loads(pathlib.Path(path).read_text())
  saved["lr_schedule"] = "cosine"
  pathlib.Path(path).write_text(json.dumps(saved))
  assert cli.main(["--workdir", workdir, "--resume", "--steps", "40"]) == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert ("steps 30 in the run, 40 now (the learning-rate schedule spans "
          "the run's length)") in line


def test_ctrl_c_names_the_step_and_the_checkpoint_to_resume(
    tiny_runs, tmp_path, capsys, monkeypatch):
  """Ctrl-C (here: at the save of step 20) ends in one line and exit 130;
  the command it names resumes the run to the uninterrupted result."""
  from bll_jax import cli
  _, whole = tiny_runs("bll")
  workdir = str(tmp_path / "run")
  original = checkpoint_lib.Checkpointer.save

  def save(self, step, state, progress):
    if step == 20:
      raise KeyboardInterrupt
    return original(self, step, state, progress)

  flags = TINY_FLAGS + ["--steps", "30", "--checkpoint-every-steps", "10",
                        "--workdir", workdir]
  with monkeypatch.context() as patch:
    patch.setattr(checkpoint_lib.Checkpointer, "save", save)
    assert cli.main(flags) == 130
  lines = capsys.readouterr().err.splitlines()
  assert lines[-1] == (f"bll-train: interrupted at step 20 of 30; the last "
                       f"checkpoint is step 10: continue with bll-train "
                       f"--workdir {workdir} --resume")
  assert cli.main(["--workdir", workdir, "--resume"]) == 0
  with open(os.path.join(workdir, "summary.json")) as f:
    resumed = json.load(f)
  assert resumed["test_accuracy"] == pytest.approx(whole["test_accuracy"])
  assert resumed["final_train_loss"] == pytest.approx(
      whole["final_train_loss"], rel=1e-6)


@pytest.mark.parametrize("failure", ["no room", "write fails",
                                     "tensorstore's full disk"])
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path, capsys, monkeypatch, failure):
  from bll_jax import cli
  workdir = str(tmp_path / "run")
  if failure == "no room":
    # The disk holds 10 MiB until the first checkpoint is written.
    usage = shutil.disk_usage(tmp_path)
    free = lambda path: usage._replace(
        free=0 if _checkpoint_steps(workdir) else 10 * 2**20)
    monkeypatch.setattr(checkpoint_lib.shutil, "disk_usage", free)
  else:
    # orbax's write of step 20 fails as a full disk makes it fail: an
    # OSError, or tensorstore's RESOURCE_EXHAUSTED.
    manager_save = checkpoint_lib.ocp.CheckpointManager.save

    error = (OSError(28, "No space left on device") if failure ==
             "write fails" else ValueError(
                 "RESOURCE_EXHAUSTED: Error writing \"blocks.0\" in OCDBT "
                 "database"))

    def save(self, step, *args, **kwargs):
      if step == 20:
        raise error
      return manager_save(self, step, *args, **kwargs)
    monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", save)
  assert cli.main(TINY_FLAGS + ["--steps", "30", "--checkpoint-every-steps",
                                "10", "--workdir", workdir]) == 1
  line = capsys.readouterr().err.splitlines()[-1]
  kept = ("the last complete checkpoint is step 10: make room and continue "
          "it with --resume")
  if failure == "no room":
    assert re.fullmatch(
        r"bll-train: error: no room for the checkpoint of step 20 in "
        + re.escape(os.path.join(workdir, "checkpoints")) + r": 0\.0 MiB "
        r"free, about \d+\.\d MiB needed; " + re.escape(kept), line), line
  elif failure == "write fails":
    assert line == (
        f"bll-train: error: the checkpoint of step 20 could not be written "
        f"in {os.path.join(workdir, 'checkpoints')} (OSError: [Errno 28] No "
        f"space left on device); {kept}")
  else:
    assert line == (
        f"bll-train: error: the checkpoint of step 20 could not be written "
        f"in {os.path.join(workdir, 'checkpoints')} (ValueError: "
        f"RESOURCE_EXHAUSTED: Error writing \"blocks.0\" in OCDBT "
        f"database); {kept}")
  assert _checkpoint_steps(workdir) == [10]


def test_resume_in_an_empty_workdir_is_refused(tmp_path):
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(train.ConfigError, match="no checkpoint found in"):
    train.train_and_evaluate(_config(base=TINY, resume=True), str(tmp_path))
  assert os.listdir(tmp_path) == ["checkpoints"]


def test_a_workdir_with_checkpoints_needs_resume(tiny_runs, tmp_path):
  source, _ = tiny_runs("bll")
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  before = {p: pathlib.Path(p).read_bytes() for p in _files(workdir)}
  with pytest.raises(train.ConfigError, match=r"already holds checkpoints.*"
                     r"--resume"):
    train.train_and_evaluate(_config(base=TINY), workdir)
  assert {p: pathlib.Path(p).read_bytes() for p in _files(workdir)} == before


# ------------------------------------------------------- other tasks, paths


def test_a_token_target_run_completes(tmp_path):
  config = _config("seq_transformer", base=TINY_REVERSE, steps=2)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= summary["test_exact_match"] <= 1.0
  (record,) = _epoch_records(tmp_path / "metrics.jsonl")
  assert record["test/exact_match"] == summary["test_exact_match"]


def test_a_language_model_reports_bits_per_character_and_writes_samples(
    tmp_path):
  """shakespeare_char on the slice of Hamlet in tests/data: the test loss
  recomputed in float64 from the checkpoint, bits = nats / ln 2, and the
  greedy continuation in samples.txt recomputed token by token."""
  slice_ = os.path.join(os.path.dirname(__file__), "data", "hamlet_act1.txt")
  config = _config("shakespeare_char", **{
      "dataset.data_dir": slice_, "dataset.context": 16,
      "dataset.train_size": 256, "model.num_layers": 2, "model.d_model": 32,
      "model.num_heads": 2, "model.mlp_dim": 64, "cuts": (), "blocks": 3,
      "batch_size": 16, "eval_batch_size": 64, "steps": 10,
      "progress": False, "mesh": "data=1"})
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["dataset"] == "text" and summary["corpus"]["documents"] == 1
  assert summary["test_bits_per_token"] == pytest.approx(
      summary["test_loss"] / math.log(2), rel=1e-12)
  assert summary["mixture_test_bits_per_token"] == pytest.approx(
      summary["mixture_test_loss"] / math.log(2), rel=1e-12)
  run, state, _ = _restore(config, str(tmp_path))
  inputs, labels = [], []
  for batch in run.dataset.test_batches(run.dataset.info.test_size):
    inputs.append(batch["inputs"])
    labels.append(batch["labels"])
  logits, _ = jax.device_get(run.engine.predict(state, np.concatenate(inputs)))
  logits = np.asarray(logits, np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  labels = np.concatenate(labels)
  nats = -np.take_along_axis(log_probs, labels[..., None], -1).mean()
  assert summary["test_loss"] == pytest.approx(nats, rel=1e-5)

  text = (tmp_path / "samples.txt").read_text(encoding="utf-8")
  assert summary["samples"] == text
  first = run.dataset.decode(next(iter(run.dataset.test_batches(1)))[
      "inputs"][0])
  header, rest = text.split("\n", 1)
  assert header == "# prompt: the first 16 characters of the test split"
  middle = "\n# greedy continuation, 500 characters\n"
  assert rest.startswith(first + middle) and rest.endswith("\n")
  sample = rest[len(first + middle):-1]
  assert len(sample) == 500
  assert set(sample) <= set(run.dataset.info.metadata["vocab"])
  window = list(run.dataset.encode(first))
  for expected in sample[:5]:
    step_logits, _ = run.engine.predict(state, np.asarray([window], np.int32))
    token = int(np.argmax(np.asarray(step_logits)[0, -1]))
    assert run.dataset.decode([token]) == expected
    window = window[1:] + [token]


def test_reverse_transformer_reports_exact_match_from_greedy_decoding(
    tmp_path):
  config = _config("seq_transformer", base=TINY_REVERSE)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert (summary["dataset"], summary["model"]) == ("reverse", "transformer")
  assert summary["blocks"] == 3 and summary["steps"] == 30
  # Some test sequences come out right, not all: the checks below can tell
  # greedy decoding from teacher forcing and exact match from token accuracy.
  assert 0.0 < summary["test_exact_match"] < summary["test_accuracy"] < 1.0
  for key in ("test_exact_match", "test_accuracy",
              "test_teacher_forced_accuracy"):
    assert 0.0 <= summary[key] <= 1.0, key
  assert summary["per_block_test_accuracy"][-1] == summary[
      "test_teacher_forced_accuracy"]

  # Greedy decoding, done here: feed back one predicted target token at a time.
  run, state, _ = _restore(config, str(tmp_path))
  batch = _whole_test_set(run.dataset)
  length = 4
  labels = batch["labels"][:, length:]
  tokens = batch["inputs"].copy()
  tokens[:, length + 1:] = 0
  predictions = np.zeros_like(labels)
  for i in range(length):
    logits, _ = run.engine.predict(state, tokens)
    predictions[:, i] = np.argmax(np.asarray(logits)[:, length + i], -1)
    if length + 1 + i < tokens.shape[1]:
      tokens[:, length + 1 + i] = predictions[:, i]
  # (The library divides in float32: equal to about 1e-7.)
  assert summary["test_accuracy"] == pytest.approx(
      np.mean(predictions == labels), rel=1e-6)
  assert summary["test_exact_match"] == pytest.approx(
      np.mean(np.all(predictions == labels, -1)), rel=1e-6)
  logits, _ = run.engine.predict(state, batch["inputs"])
  forced = np.argmax(np.asarray(logits)[:, length:], -1)
  assert summary["test_teacher_forced_accuracy"] == pytest.approx(
      np.mean(forced == labels), rel=1e-6)


def test_tfds_mnist_trains_on_mock_data(tmp_path):
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    conftest.skip_unless_required("BLL_REQUIRE_TFDS",
                          f"tensorflow_datasets is not importable: {e}")
  config = _config(base=TINY, **{"dataset.name": "mnist",
                                 "dataset.source": "tfds",
                                 "dataset.data_dir": str(tmp_path),
                                 "model.name": "mlp"},
                   batch_size=8, eval_batch_size=16, steps=5)
  with tfds.testing.mock_data(num_examples=48):
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    run, state, _ = _restore(config, str(tmp_path / "run"))
    loss, per_block = _reference_classification(run, state)
  assert (summary["dataset"], summary["steps"], summary["blocks"]) == (
      "mnist", 5, 3)
  assert run.dataset.info.input_shape == (28, 28, 1)
  assert summary["test_loss"] == pytest.approx(loss, rel=1e-5)
  assert summary["per_block_test_accuracy"] == pytest.approx(per_block,
                                                             abs=1e-9)


def test_per_block_and_fused_steps_train_the_same_network(tiny_runs, tmp_path,
                                                          monkeypatch):
  _, fused = tiny_runs("bll")
  config = _config(base=TINY, step_mode="per_block", checkpoint_every_steps=10)
  calls = []
  original = engine_lib.Engine.block_step

  def counted(self, k, **kw):
    step = original(self, k, **kw)
    return lambda *args: (calls.append(k), step(*args))[1]

  monkeypatch.setattr(engine_lib.Engine, "block_step", counted)
  per_block = train.train_and_evaluate(config, str(tmp_path))
  # Every block's own step in each of the 30 steps, and in the warm-up.
  assert calls == [0, 1, 2] * 31
  assert per_block["steps"] == fused["steps"] == 30
  for key in ("test_accuracy", "test_loss", "final_train_loss"):
    assert per_block[key] == pytest.approx(fused[key], rel=1e-5, abs=1e-5), key
  assert per_block["per_block_test_accuracy"] == pytest.approx(
      fused["per_block_test_accuracy"], abs=1e-5)


# ------------------------------------------------------------- pipelined


def _pipelined_reference_epoch(config):
  """The first epoch of `config`, replayed with the one-device oracle of its
  runner's tick plan: its micro-batches' metrics."""
  from bll_jax.parallel import reference
  run = train.prepare(config)
  seed, batch_size = int(config.seed), int(config.batch_size)
  count = min(run.steps_per_epoch, run.total_steps)
  batches = list(run.dataset.train_batches(batch_size, seed=seed, epoch=0))
  keys_of = jax.random.fold_in(jax.random.key(seed), 1)
  keys = [jax.random.fold_in(keys_of, i) for i in range(count)]
  state = run.engine.init(jax.random.key(seed), batches[0]["inputs"])
  _, metrics = reference.run(run.engine, state, batches[:count], keys,
                             run.runner.plan)
  return jax.device_get(metrics)


def test_a_pipelined_epoch_reports_the_means_over_its_micro_batches(tmp_path):
  """Every train metric of a pipelined epoch is the mean over its
  micro-batches, the feedback loss included (it was the mean over ticks
  divided by the epoch's step count)."""
  config = _config(base=TINY, mesh="data=1,block=2", schedule="pipelined",
                   steps=12)
  summary = train.train_and_evaluate(config, str(tmp_path))
  (record,) = summary["history"]
  metrics = _pipelined_reference_epoch(config)
  assert summary["pipeline"] == "mpmd" and len(metrics) == 12
  for name in metrics[0]:
    want = np.mean([float(m[name]) for m in metrics])
    assert record[f"train/{name}"] == pytest.approx(want, rel=1e-5), name
  assert 0.5 < record["train/feedback/loss"] < 10     # nats, not nats / 12


def test_a_pipelined_run_times_its_epochs_without_compilation(tmp_path):
  """Compilation happens in the runner's warm-up, outside the timed epochs:
  the first epoch takes about as long as the second (with it inside, the
  first took tens of times longer)."""
  config = _config(base=TINY, mesh="data=1,block=2", schedule="pipelined",
                   steps=0, epochs=2, **{"dataset.train_examples": 400})
  summary = train.train_and_evaluate(config, str(tmp_path))
  first, second = (r["train_seconds"] for r in summary["history"])
  assert first < 4 * second, (first, second)
  assert summary["train_seconds"] == pytest.approx(first + second)


def test_bll_train_runs_the_authors_recipe_pipelined(tmp_path, capsys):
  from bll_jax import cli
  status = cli.main(TINY_FLAGS + ["--steps", "8", "--recipe", "authors",
                                  "--schedule", "pipelined", "--mesh",
                                  "data=1,block=2", "--workdir",
                                  str(tmp_path)])
  assert status == 0, capsys.readouterr().err
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["pipeline"] == "mpmd" and summary["steps"] == 8
  assert np.isfinite(summary["history"][-1]["train/feedback/loss"])
