"""The training loop: `train_and_evaluate(config, workdir) -> summary`.

In the manner of the Flax examples, this module is a library (the command
line is :mod:`bll_jax.cli`). A run:

1. checks the config and loads the data (one-line errors, nothing compiled);
2. builds the engine (blocks, feedback, one optax state per block; with
   `temperature_calibration="init"` one forward measures each block's
   temperature, after every check has passed) and asks
   :func:`bll_jax.parallel.make_runner` for the runner of its mesh and
   schedule; restores the latest checkpoint with `resume=True`;
3. compiles the runner's programs on a discarded copy of the state
   (`warm_up`), so that the training time it reports excludes compilation;
4. trains epoch by epoch with a progress bar; every `log_every_steps` the
   step metrics come to the host, are checked for NaN/inf (training stops
   naming the block and step, keeping the last good checkpoint) and summed
   (a pipelined runner fills and drains once per epoch, and its metrics
   come at the epoch's end);
5. evaluates at the end of every epoch (`metrics.jsonl`, TensorBoard) and
   saves a checkpoint; `checkpoint_every_steps` adds saves within an epoch;
6. writes `summary.json`.

The batch order is a function of `(seed, epoch)` and the step's random key of
`(seed, step)`, so a run killed mid-epoch and resumed reaches the same final
metrics as an uninterrupted one. The loop never names a mesh axis or moves
an array between devices: the runner does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from bll_jax import config as config_lib
from bll_jax import engine as engine_lib
from bll_jax import baselines
from bll_jax import parallel
from bll_jax.config import ConfigError
from bll_jax.training import build
from bll_jax.training import checkpoint as checkpoint_lib
from bll_jax.training import evaluate as evaluate_lib
from bll_jax.training import metric_writers
from bll_jax.training import summary as summary_lib

# `fold_in` of the step number, compiled once: eager, it costs ~0.15 ms of
# host time per step (the same key either way).
step_key = jax.jit(jax.random.fold_in)


class TrainingDiverged(RuntimeError):
  """A NaN or infinite loss; names the block and the step."""


class Interrupted(RuntimeError):
  """Ctrl-C while training; names the step and the checkpoint to resume."""


@dataclasses.dataclass
class Run:
  """Everything a run is made of, built by :func:`prepare`."""

  config: Any                      # resolved: local/drtp spelled out
  dataset: Any
  engine: engine_lib.Engine
  steps_per_epoch: int
  total_steps: int
  runner: parallel.Runner


def runner_spec(config) -> parallel.RunnerSpec:
  """The device layout a config asks for."""
  return parallel.RunnerSpec(
      mesh=config.mesh, schedule=config.schedule, pipeline=config.pipeline,
      step_mode=config.step_mode, feedback_lag=int(config.feedback_lag),
      micro_batches=int(config.micro_batches))


def prepare(config) -> Run:
  """Checks the config, loads the data, builds the engine and its runner.

  Raises:
    ConfigError: one line naming the field and the allowed values (or the
      missing data).
  """
  try:
    config_lib.check(config)
    dataset = build.load_dataset(config)
    resolved = build.resolve(config, dataset.info.num_classes)
    steps_per_epoch = dataset.steps_per_epoch(int(resolved.batch_size))
    total = int(resolved.epochs) * steps_per_epoch
    steps = int(resolved.steps)
    if steps > total:
      # `steps` only stops a run early; more than the epochs hold would
      # otherwise end the run short without a word.
      warnings.warn(
          f"steps {steps} is more than epochs x steps per epoch "
          f"({int(resolved.epochs)} x {steps_per_epoch} = {total}): the run "
          f"stops at {total}; raise epochs to "
          f"{math.ceil(steps / steps_per_epoch)} for {steps} updates",
          UserWarning, stacklevel=2)
    if steps:
      total = min(total, steps)
    engine = build.make_engine(resolved, dataset.info, steps_per_epoch, total)
    spec, batch_size = runner_spec(resolved), int(resolved.batch_size)
    # All checked; the backprop pipelines (gpipe, 1f1b) are the peers'.
    runner = baselines.make_runner(engine, spec, batch_size)
    if resolved.temperature_calibration == "init":
      engine = build.make_engine(
          resolved, dataset.info, steps_per_epoch, total,
          temperature=calibrated_temperatures(resolved, dataset, engine,
                                              runner.data_replicas))
      runner = baselines.make_runner(engine, spec, batch_size)
  except (ValueError, FileNotFoundError, ImportError) as e:
    raise ConfigError(str(e).splitlines()[0] if str(e) else repr(e)) from e
  return Run(resolved, dataset, engine, steps_per_epoch, total, runner)


def calibrated_temperatures(config, dataset, engine, data_replicas: int = 1
                            ) -> tuple[float, ...]:
  """Each hidden block's `T_k` (:mod:`bll_jax.calibration`), measured at
  the run's own initial state and step-0 key, on the first replica's share
  of its first training batch (one device holds that much in training).

  Deterministic in the seed, so every process, and a resumed run, computes
  the same values; the summary records them.
  """
  from bll_jax import calibration
  seed = int(config.seed)
  batch = calibration.first_batch(dataset, int(config.batch_size), seed)
  share = int(config.batch_size) // data_replicas
  batch = {name: value[:share] for name, value in batch.items()}
  state = engine.init(jax.random.key(seed), batch["inputs"])
  key = step_key(jax.random.fold_in(jax.random.key(seed), 1), 0)
  return calibration.calibrated_temperatures(
      engine, state, batch, key, float(config.temperature))


def _check_finite(records: list[dict[str, Any]], first_step: int,
                  checkpoints: checkpoint_lib.Checkpointer) -> None:
  for i, metrics in enumerate(records):
    for name, value in metrics.items():
      if name.endswith("loss") and not math.isfinite(float(value)):
        where, bad_step = name.split("/")[0], first_step + i
        # The loss of step N comes from the parameters after update N - 1:
        # a checkpoint of step N - 1 or later is not known to be good.
        checkpoints.discard_from(bad_step - 1)
        last = checkpoints.latest_step()
        kept = (f"the last good checkpoint is step {last} in "
                f"{checkpoints.directory}" if last is not None
                else "no good checkpoint remains")
        raise TrainingDiverged(
            f"{where} loss is {float(value)} at step {bad_step}; "
            f"training stopped, {kept}")


def _segment(cfg, runner, step: int, epoch_end: int) -> int:
  """How many steps to run before the metrics come to the host: to the
  next log or checkpoint step, or to the epoch's end (a pipelined runner
  fills and drains once per epoch)."""
  if runner.fills_and_drains:
    return epoch_end - step
  stops = [epoch_end, (step // int(cfg.log_every_steps) + 1)
           * int(cfg.log_every_steps)]
  if cfg.checkpoint_every_steps:
    every = int(cfg.checkpoint_every_steps)
    stops.append((step // every + 1) * every)
  return min(stops) - step


def _has_checkpoints(workdir: str | None) -> bool:
  """Whether `workdir/checkpoints` holds a finished checkpoint (a step
  folder, as orbax names them), without creating anything."""
  if not workdir:
    return False
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(
      name.isdigit() and os.path.isdir(os.path.join(directory, name))
      for name in os.listdir(directory))


def make_workdir(workdir: str) -> list[str]:
  """Creates `workdir` (and its missing parents); returns the folders it
  created, deepest first.

  Raises:
    ConfigError: one line when it cannot be created (under a file, on a
      read-only or virtual file system, no permission).
  """
  created, path = [], os.path.abspath(workdir)
  while not os.path.exists(path):
    created.append(path)
    path = os.path.dirname(path)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"workdir {workdir!r} cannot be created "
                      f"({e.strerror or e}): choose another --workdir"
                      ) from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise ConfigError(f"workdir {workdir!r} is not writable: choose another "
                      "--workdir")
  return created


def train_and_evaluate(config, workdir: str | None = None) -> dict[str, Any]:
  """Trains and evaluates `config`; returns (and writes) the summary.

  Args:
    config: a ConfigDict from :func:`bll_jax.config.get_config`.
    workdir: where checkpoints, metrics and `summary.json` go (default
      `config.workdir`, else :func:`bll_jax.config.default_workdir`).

  Raises:
    ConfigError: invalid config or missing data (before any compile).
    TrainingDiverged: a NaN or infinite loss.
    Interrupted: Ctrl-C (KeyboardInterrupt) while training.
    bll_jax.training.checkpoint.CheckpointError: `resume` with an unreadable
      checkpoint.
  """
  workdir = workdir or config.get("workdir") or None
  if config.get("resume") and not _has_checkpoints(workdir):
    raise ConfigError(
        f"no checkpoint found in {workdir!r}: nothing to resume (check "
        "--workdir, or drop --resume to start a new run)" if workdir else
        "--resume needs --workdir: the run directory to continue")
  workdir = workdir or config_lib.default_workdir(config)
  created = make_workdir(workdir)
  try:
    run = prepare(config)
  except BaseException:
    for directory in created:       # a refused run leaves nothing behind
      if os.path.isdir(directory) and not os.listdir(directory):
        os.rmdir(directory)
    raise
  cfg, dataset, engine, runner = run.config, run.dataset, run.engine, run.runner
  if cfg.resume:
    saved = config_lib.saved_config(workdir)
    if saved is not None:
      config_lib.check_resumable(saved, cfg)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), int(cfg.keep_checkpoints))
  if not cfg.resume and checkpoints.latest_step() is not None:
    raise ConfigError(f"workdir {workdir!r} already holds checkpoints: pass "
                      "--resume to continue it, or choose another --workdir")

  batch_size, seed = int(cfg.batch_size), int(cfg.seed)
  sample = np.zeros((batch_size,) + dataset.info.input_shape,
                    dataset.info.input_dtype)
  initial = engine.init(jax.random.key(seed), sample)
  # What each block holds (auxiliary heads included): for balancing cuts.
  parameters_per_block = [
      sum(int(np.prod(x.shape)) for x in jax.tree.leaves(block.params))
      for block in initial.blocks]
  state = runner.place(initial)
  del initial
  progress: dict[str, Any] = {"sums": {}, "count": 0, "history": []}
  if cfg.resume:
    restored = checkpoints.restore_latest(runner.checkpoint_layout(state))
    for step, folder, why in restored.set_aside:
      print(f"bll-train: checkpoint {step} is damaged ({why}); resuming "
            f"from step {restored.step}, the damaged one kept in {folder}",
            file=sys.stderr)
    state, progress = runner.place(restored.state), restored.progress
  # Written once the restore has succeeded: a refused resume leaves the run
  # directory as it was.
  chief = jax.process_index() == 0    # one writer of metrics and summaries
  if chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2))
    print(f"bll-train: run directory {workdir}", file=sys.stderr)

  def save(step, state):
    checkpoints.save(step, runner.checkpoint_layout(state), progress)

  shard = runner.input_shard()
  keys_of = jax.random.fold_in(jax.random.key(seed), 1)
  step = int(runner.to_host(state.step))
  writer = (metric_writers.MetricWriter(workdir, step if cfg.resume else None)
            if chief else None)
  first_step_of_run, train_seconds = step, 0.0

  window: list[dict[str, Any]] = []   # the steps since the last step record

  def flush(pending, first):
    """Brings step metrics to the host, checks and sums them (`first`: the
    1-based number of the step of `pending[0]`); every `log_every_steps`
    (and at the last step) logs the mean of the steps since the last log as
    `step/<metric>`."""
    records = runner.to_host(pending)
    _check_finite(records, first, checkpoints)
    every = int(cfg.log_every_steps)
    for at, record in enumerate(records, start=first):
      for name, value in record.items():
        progress["sums"][name] = progress["sums"].get(name, 0.0) + float(value)
      window.append(record)
      if at % every == 0 or at == run.total_steps:
        if writer:
          writer.write(at, {"step": at, **{
              f"step/{name}": sum(float(r[name]) for r in window) / len(window)
              for name in window[0]}})
        window.clear()
    progress["count"] += len(records)
    return records[-1] if records else None

  try:
    if step < run.total_steps:      # compile, on a copy, outside the timing
      epoch, start = divmod(step, run.steps_per_epoch)
      first = next(iter(dataset.train_batches(
          batch_size, seed=seed, epoch=epoch, start_step=start, **shard)))
      # No ETA while the programs compile (it would count the compile).
      compiling = tqdm(total=None, desc="compiling", disable=not cfg.progress,
                       leave=False, bar_format="{desc} ({elapsed})")
      runner.warm_up(state, first, step_key(keys_of, step))
      compiling.close()

    wall_start = time.perf_counter()
    while step < run.total_steps:
      epoch_seconds = train_seconds
      epoch, start = divmod(step, run.steps_per_epoch)
      end = min(run.steps_per_epoch,
                run.total_steps - epoch * run.steps_per_epoch)
      epoch_end = epoch * run.steps_per_epoch + end
      bar = tqdm(total=end, initial=start,
                 desc=f"epoch {epoch + 1}/{cfg.epochs}",
                 disable=not cfg.progress, leave=False, dynamic_ncols=True)
      tick = time.perf_counter()
      batches = iter(dataset.train_batches(batch_size, seed=seed, epoch=epoch,
                                           start_step=start, **shard))
      while step < epoch_end:
        count = _segment(cfg, runner, step, epoch_end)
        keys = [step_key(keys_of, step + i) for i in range(count)]
        state, metrics = runner.run_epoch(
            state, itertools.islice(batches, count), keys,
            on_step=lambda: bar.update(1))
        first, step = step + 1, step + len(metrics)
        _postfix(bar, engine, flush(metrics, first))
        if (cfg.checkpoint_every_steps and step < epoch_end
            and step % int(cfg.checkpoint_every_steps) == 0):
          jax.block_until_ready(state)
          train_seconds += time.perf_counter() - tick
          save(step, state)
          tick = time.perf_counter()
      jax.block_until_ready(state)
      train_seconds += time.perf_counter() - tick
      bar.close()

      # Evaluated on one device: the blocks' states may live on several.
      test = evaluate_lib.evaluate(engine, runner.to_host(state), dataset,
                                   int(cfg.eval_batch_size))
      count = max(progress["count"], 1)
      record = {"epoch": epoch + 1, "step": step,
                # This epoch's training time, compilation excluded (warm_up).
                "train_seconds": train_seconds - epoch_seconds,
                **{f"train/{k}": v / count
                   for k, v in progress["sums"].items()},
                **{f"test/{k}": v for k, v in test.items()}}
      if writer:
        writer.write(step, record)
      progress["history"].append(record)
      progress["sums"], progress["count"] = {}, 0
      save(step, state)
      if chief:           # with or without progress bars
        blocks = ", ".join("-" if a is None else f"{a:.3f}"
                           for a in test["per_block_accuracy"])
        tqdm.write(f"epoch {epoch + 1}: step {step}, test accuracy "
                   f"{test['accuracy']:.4f} (blocks: {blocks})")

  except KeyboardInterrupt:
    checkpoints.close()
    last = checkpoints.latest_step()
    raise Interrupted(
        f"interrupted at step {step} of {run.total_steps}; " + (
            f"the last checkpoint is step {last}: continue with bll-train "
            f"--workdir {workdir} --resume" if last is not None else
            "no checkpoint was written yet (--checkpoint-every-steps N saves "
            "within an epoch)")) from None
  if writer:
    writer.close()
  checkpoints.close()
  if not progress["history"]:
    raise ConfigError("nothing to train: the run had no steps")
  summary = summary_lib.make_summary(
      cfg, engine, runner, dataset, progress["history"],
      parameters_per_block=parameters_per_block,
      steps_run=step - first_step_of_run, train_seconds=train_seconds,
      wall_seconds=time.perf_counter() - wall_start)
  if chief and dataset.info.task == "language":
    summary["samples"] = summary_lib.write_samples(
        os.path.join(workdir, "samples.txt"), engine, runner.to_host(state),
        dataset)
  if chief:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary_lib.jsonable(summary), f, indent=2)
  return summary


def _postfix(bar, engine, last):
  if last is not None:
    out = f"block{engine.num_blocks - 1}"
    bar.set_postfix(loss=f"{last[f'{out}/loss']:.4f}",
                    acc=f"{last[f'{out}/accuracy']:.3f}")

