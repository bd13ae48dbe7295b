"""The training loop: `train_and_evaluate(config, workdir) -> summary`.

In the manner of the Flax examples, this module is a library (the command
line is :mod:`bll_jax.cli`; `python -m bll_jax.train` runs it). A run:

1. checks the config and loads the data (one-line errors, nothing compiled);
2. builds the engine (blocks, feedback, one optax state per block; with
   `temperature_calibration="init"` one forward measures each block's
   temperature, after every check has passed) and
   restores the latest checkpoint with `resume=True`;
3. trains epoch by epoch with a progress bar; every `log_every_steps` the
   step metrics come to the host, are checked for NaN/inf (training stops
   naming the block and step, keeping the last good checkpoint) and summed;
4. evaluates at the end of every epoch (`metrics.jsonl`, TensorBoard) and
   saves a checkpoint; `checkpoint_every_steps` adds saves within an epoch;
5. writes `summary.json`.

The batch order is a function of `(seed, epoch)` and the step's random key of
`(seed, step)`, so a run killed mid-epoch and resumed reaches the same final
metrics as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bll_jax import checkpoint as checkpoint_lib
from bll_jax import evaluate as evaluate_lib
from bll_jax import experiment
from bll_jax import metric_writers
from bll_jax import step as step_lib
from bll_jax.parallel import mesh as mesh_lib


# `fold_in` of the step number, compiled once: eager, it costs ~0.15 ms of
# host time per step (the same key either way).
_step_key = jax.jit(jax.random.fold_in)


class ConfigError(ValueError):
  """An invalid config or missing data, found before anything compiles."""


class TrainingDiverged(RuntimeError):
  """A NaN or infinite loss; names the block and the step."""


@dataclasses.dataclass
class Run:
  """Everything a run is made of, built by :func:`prepare`."""

  config: Any                      # resolved: local/drtp spelled out
  dataset: Any
  engine: step_lib.Engine
  steps_per_epoch: int
  total_steps: int
  mesh: Any = None                 # the (data, block) mesh
  parallel: Any = None             # mpmd.BlockParallel: placement, sync steps
  pipeline: Any = None             # the pipelined runner (MPMD or SPMD)


def prepare(config) -> Run:
  """Checks the config, loads the data, builds the engine.

  Raises:
    ConfigError: one line naming the field and the allowed values (or the
      missing data).
  """
  try:
    experiment.check(config)
    dataset = experiment.load_dataset(config)
    resolved = experiment.resolve(config, dataset.info.num_classes)
    steps_per_epoch = dataset.steps_per_epoch(int(resolved.batch_size))
    total = int(resolved.epochs) * steps_per_epoch
    if resolved.steps:
      total = min(total, int(resolved.steps))
    engine = experiment.make_engine(resolved, dataset.info, steps_per_epoch,
                                    total)
    mesh, parallel, pipeline = _parallel(resolved, engine)   # all checked
    if resolved.temperature_calibration == "init":
      engine = experiment.make_engine(
          resolved, dataset.info, steps_per_epoch, total,
          temperature=_calibrated_temperatures(
              resolved, dataset, engine, int(mesh.shape["data"])))
      mesh, parallel, pipeline = _parallel(resolved, engine)
  except (ValueError, FileNotFoundError, ImportError) as e:
    raise ConfigError(str(e).splitlines()[0] if str(e) else repr(e)) from e
  return Run(resolved, dataset, engine, steps_per_epoch, total, mesh,
             parallel, pipeline)


def _calibrated_temperatures(config, dataset, engine, data_replicas: int = 1
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
  key = _step_key(jax.random.fold_in(jax.random.key(seed), 1), 0)
  return calibration.calibrated_temperatures(
      engine, state, batch, key, float(config.temperature))


def _parallel(config, engine):
  """The mesh and the runners of `config.mesh`, `schedule`, `pipeline`."""
  from bll_jax.parallel import mpmd
  from bll_jax.parallel import schedules
  from bll_jax.parallel import spmd

  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec.parse(config.mesh),
                            engine.num_blocks)
  data = mesh.shape["data"]
  if int(config.batch_size) % data:
    raise ValueError(f"batch_size {config.batch_size} must be divisible by "
                     f"the mesh's data axis ({data})")
  parallel = mpmd.BlockParallel(engine, mesh,
                                fused=config.step_mode == "fused")
  pipeline = None
  if config.schedule == "pipelined":
    schedules.check_pipelined(engine)
    if config.pipeline == "spmd" and jax.process_count() > 1:
      raise ValueError("pipeline 'spmd' runs in one process; with several "
                       "processes use 'mpmd' (or 'auto')")
    use_spmd = config.pipeline == "spmd" or (
        config.pipeline == "auto" and jax.process_count() == 1
        and spmd.homogeneous_middle(engine)
        and len(spmd.homogeneous_middle(engine)) % mesh.shape["block"] == 0
        and mesh.shape["block"] > 1)
    if use_spmd and int(config.feedback_lag):
      if config.pipeline == "spmd":
        raise ValueError("feedback_lag needs pipeline 'mpmd' (the SPMD "
                         "stack updates its feedback without lag)")
      use_spmd = False
    pipeline = spmd.StackedPipeline(engine, mesh) if use_spmd else parallel
  return mesh, parallel, pipeline


def default_workdir(config) -> str:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", f"{config.preset or 'custom'}-{config.method}-"
                      f"{stamp}")


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


def train_and_evaluate(config, workdir: str | None = None) -> dict[str, Any]:
  """Trains and evaluates `config`; returns (and writes) the summary.

  Args:
    config: a ConfigDict from :func:`bll_jax.configs.get_config`.
    workdir: where checkpoints, metrics and `summary.json` go (default
      `config.workdir`, else `runs/<preset>-<method>-<time>`).

  Raises:
    ConfigError: invalid config or missing data (before any compile).
    TrainingDiverged: a NaN or infinite loss.
    bll_jax.checkpoint.CheckpointError: `resume` with an unreadable
      checkpoint.
  """
  run = prepare(config)
  cfg, dataset, engine = run.config, run.dataset, run.engine
  workdir = workdir or cfg.workdir or default_workdir(cfg)
  os.makedirs(workdir, exist_ok=True)
  checkpoints = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), int(cfg.keep_checkpoints))
  if not cfg.resume and checkpoints.latest_step() is not None:
    raise ConfigError(f"workdir {workdir!r} already holds checkpoints: pass "
                      "--resume to continue it, or choose another --workdir")
  chief = jax.process_index() == 0    # one writer of metrics and summaries
  if chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2))

  batch_size, seed = int(cfg.batch_size), int(cfg.seed)
  sample = np.zeros((batch_size,) + dataset.info.input_shape,
                    dataset.info.input_dtype)
  initial = engine.init(jax.random.key(seed), sample)
  state = run.parallel.place(initial)
  progress: dict[str, Any] = {"sums": {}, "count": 0, "history": []}
  latest = checkpoints.latest_step() if cfg.resume else None
  if latest is not None and jax.process_count() == 1:
    state, progress = checkpoints.restore(latest, state)   # onto this mesh
  elif latest is not None:        # saved from the host (see `save` below)
    state, progress = checkpoints.restore(latest, jax.device_get(initial))
    state = run.parallel.place(state)

  def save(step, state):
    """Orbax writes arrays in place in one process; with several, a block
    lives on one process's devices, which orbax refuses: the state then
    goes through the host of every process, and process 0 writes it."""
    if jax.process_count() > 1:
      state = _on_host(state, run.mesh)
    checkpoints.save(step, state, progress)
  # Data parallel across processes: each reads its rows of every batch.
  # Blocks across processes (MPMD stages): every process builds the global
  # batch (each stage takes what its blocks need from it).
  local = jax.process_count() > 1 and run.mesh.shape["block"] == 1
  shard = ({"process_index": jax.process_index(),
            "process_count": jax.process_count()} if local else {})

  def step_fn(state, batch, key):
    return run.parallel.sync_step(state, batch, key, local=local)

  step_key = jax.random.fold_in(jax.random.key(seed), 1)
  writer = metric_writers.MetricWriter(workdir) if chief else None

  step = int(_on_host(state.step, run.mesh))
  first_step_of_run, train_seconds = step, 0.0
  pending: list[Any] = []

  def flush(current_step):
    """Brings pending step metrics to the host, checks and sums them."""
    nonlocal pending
    if not pending:
      return None
    records = _on_host(pending, run.mesh)
    _check_finite(records, current_step - len(records) + 1, checkpoints)
    for record in records:
      for name, value in record.items():
        progress["sums"][name] = progress["sums"].get(name, 0.0) + float(value)
    progress["count"] += len(records)
    pending = []
    return records[-1]

  wall_start = time.perf_counter()
  while step < run.total_steps:
    epoch, start = divmod(step, run.steps_per_epoch)
    end = min(run.steps_per_epoch, run.total_steps - epoch * run.steps_per_epoch)
    bar = tqdm(total=end, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not cfg.progress, leave=False, dynamic_ncols=True)
    tick = time.perf_counter()
    batches = dataset.train_batches(batch_size, seed=seed, epoch=epoch,
                                    start_step=start, **shard)
    if run.pipeline is not None:
      state, step, last = _pipelined_epoch(run, state, batches, step, end,
                                           epoch, step_key, bar, pending,
                                           local)
      last = flush(step)
      _postfix(bar, engine, last)
      batches = ()
    for batch in batches:
      state, metrics = step_fn(state, batch, _step_key(step_key, step))
      pending.append(metrics)
      step += 1
      bar.update(1)
      if step == first_step_of_run + 1:   # exclude compilation from timing
        jax.block_until_ready(state)
        tick = time.perf_counter()
      at_end = step - epoch * run.steps_per_epoch >= end
      save_now = (cfg.checkpoint_every_steps
                  and step % int(cfg.checkpoint_every_steps) == 0 and not at_end)
      if step % int(cfg.log_every_steps) == 0 or at_end or save_now:
        _postfix(bar, engine, flush(step))
      if save_now:
        train_seconds += time.perf_counter() - tick
        save(step, state)
        tick = time.perf_counter()
      if at_end:
        break
    jax.block_until_ready(state)
    train_seconds += time.perf_counter() - tick
    bar.close()

    # Evaluated on one device: the blocks' states may live on several.
    test = evaluate_lib.evaluate(engine, _on_host(state, run.mesh), dataset,
                                 int(cfg.eval_batch_size))
    count = max(progress["count"], 1)
    record = {"epoch": epoch + 1, "step": step,
              **{f"train/{k}": v / count for k, v in progress["sums"].items()},
              **{f"test/{k}": v for k, v in test.items()}}
    if writer:
      writer.write(step, record)
    progress["history"].append(record)
    progress["sums"], progress["count"] = {}, 0
    save(step, state)
    if cfg.progress:
      blocks = ", ".join("-" if a is None else f"{a:.3f}"
                         for a in test["per_block_accuracy"])
      tqdm.write(f"epoch {epoch + 1}: step {step}, test accuracy "
                 f"{test['accuracy']:.4f} (blocks: {blocks})")

  if writer:
    writer.close()
  checkpoints.close()
  if not progress["history"]:
    raise ConfigError("nothing to train: the run had no steps")
  final = progress["history"][-1]
  out = f"block{engine.num_blocks - 1}"
  steps_run = step - first_step_of_run
  summary = {
      "preset": cfg.preset,
      "method": cfg.method,
      "dataset": cfg.dataset.name,
      "model": cfg.model.name,
      "blocks": engine.num_blocks,
      "cuts": list(engine_edges(engine)),
      "family": None if cfg.method == "bp" else cfg.family,
      "feedback": None if cfg.method == "bp" else cfg.feedback,
      # One per hidden block where calibrated, else the run's one value.
      "temperature": engine.objective.temperature,
      "epochs": final["epoch"],
      "steps": final["step"],
      "batch_size": batch_size,
      "seed": seed,
      "final_train_loss": final.get(f"train/{out}/loss"),
      "test_loss": final["test/loss"],
      "test_accuracy": final["test/accuracy"],
      "per_block_test_accuracy": final["test/per_block_accuracy"],
      "wall_seconds": time.perf_counter() - wall_start,
      "train_seconds": train_seconds,   # without the first (compiling) step
      "examples_per_second": ((steps_run - 1) * batch_size / train_seconds
                              if steps_run > 1 and train_seconds > 0
                              else None),
      "devices": [str(d) for d in jax.devices()],
      "mesh": _describe_mesh(run.mesh),
      "schedule": cfg.schedule,
      "pipeline": (None if run.pipeline is None
                   else type(run.pipeline).__name__),
      "machine": {"platform": platform.platform(),
                  "processor": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "jax": jax.__version__,
                  "backend": jax.default_backend(),
                  "device_kind": jax.devices()[0].device_kind},
      "history": progress["history"],
      "config": cfg.to_dict(),
  }
  if "test/exact_match" in final:
    summary["test_exact_match"] = final["test/exact_match"]
    summary["test_teacher_forced_accuracy"] = final[
        "test/teacher_forced_accuracy"]
  if chief:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(_jsonable(summary), f, indent=2)
  return summary


def _on_host(tree, mesh):
  """`tree` as host arrays, in every process.

  An array that not every process holds (a block of another stage, its
  metrics) is copied to one device of every process in turn (cross-process
  transfers are one-to-one) and each process reads its own copy. What is
  copied depends only on where arrays live, not on which process asks, so
  every process makes the same transfers; all must call this together.
  """
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  every = sorted({d.process_index for d in mesh.devices.flat})
  targets = {}
  for device in mesh.devices.flat:
    targets.setdefault(device.process_index, NamedSharding(
        Mesh(np.asarray([device]), ("one",)), PartitionSpec()))
  leaves, treedef = jax.tree.flatten(tree)
  out, copied = [], False
  for leaf in leaves:
    if not isinstance(leaf, jax.Array):
      out.append(leaf)
      continue
    holders = sorted({d.process_index for d in leaf.sharding.device_set})
    if holders == every and leaf.is_fully_replicated:
      out.append(np.asarray(leaf.addressable_shards[0].data))
      continue
    copies = [jax.device_put(leaf, targets[p]) for p in every]
    out.append(np.asarray(copies[every.index(jax.process_index())]))
    copied = True
  if copied:
    # A process serves the copies it sends only when its queue of device
    # work gets to them; none may queue more (a collective, say) until
    # every process holds its copy.
    mesh_lib.host_barrier("on_host")
  return jax.tree.unflatten(treedef, out)


def _postfix(bar, engine, last):
  if last is not None:
    out = f"block{engine.num_blocks - 1}"
    bar.set_postfix(loss=f"{last[f'{out}/loss']:.4f}",
                    acc=f"{last[f'{out}/accuracy']:.3f}")


def _pipelined_epoch(run, state, batches, step, end, epoch, step_key, bar,
                     pending, local):
  """One epoch through the pipeline (filled at its start, drained at its end).

  Returns `(state, step, None)`; every micro-batch's metrics go to `pending`.
  """
  start = step - epoch * run.steps_per_epoch
  count = end - start

  def stream():
    for i, batch in enumerate(batches):
      if i >= count:
        return
      bar.update(1)
      yield batch

  keys = [jax.random.fold_in(step_key, step + i) for i in range(count)]
  kwargs = ({"local": local, "feedback_lag": int(run.config.feedback_lag)}
            if hasattr(run.pipeline, "sync_step") else {})
  state, metrics, feedback_losses = run.pipeline.pipelined(
      state, stream(), keys, **kwargs)
  state = run.parallel.place(state)      # the placement checkpoints expect
  for m in metrics:
    pending.append(m)
  if feedback_losses:
    mean_fb = sum(feedback_losses) / len(feedback_losses)
    pending[-1] = {**pending[-1], "feedback/loss": mean_fb}
  return state, step + len(metrics), None


def _describe_mesh(mesh):
  if mesh is None:
    return None
  return mesh_lib.describe(mesh)


def engine_edges(engine: step_lib.Engine) -> tuple[int, ...]:
  """Unit boundaries of the engine's blocks."""
  edges, total = [0], 0
  for block in engine.blocks:
    total += len(block.units)
    edges.append(total)
  return tuple(edges)


def _jsonable(value):
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.generic, jnp.ndarray)):
    return np.asarray(value).tolist()
  return value


if __name__ == "__main__":
  from bll_jax import cli
  cli.entry_point()
