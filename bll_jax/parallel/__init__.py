"""Block-parallel training across devices (see `docs/parallel.md`).

The training loop asks :func:`make_runner` for a runner and talks to it
alone; this package is the only place in bll_jax that builds a mesh, names
its axes or moves arrays between devices and processes.

* :mod:`~bll_jax.parallel.schedule` -- the tick plan every runner follows
  (`sync`, `pipelined`): which (stage, micro-batch) works at each tick.
* :mod:`~bll_jax.parallel.reference` -- the plan run block by block on one
  device: the oracle every runner is tested against.
* :mod:`~bll_jax.parallel.mpmd` -- any network: one jitted program per stage
  per tick (:mod:`~bll_jax.parallel.stage`) on its stage's sub-mesh.
* :mod:`~bll_jax.parallel.spmd` -- homogeneous stacks: parameters stacked
  on a block axis, one `shard_map` program per tick.
* :mod:`~bll_jax.parallel.mesh`, :mod:`~bll_jax.parallel.placement`,
  :mod:`~bll_jax.parallel.transfer`, :mod:`~bll_jax.parallel.replicas` --
  the `(data, block)` mesh, where arrays live, moving activations between
  stages, the replicated feedback network.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Protocol, Sequence

import jax

from bll_jax.engine import steps as steps_lib
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import schedule as schedule_lib
from bll_jax.parallel.mpmd import MpmdRunner
from bll_jax.parallel.schedule import SCHEDULES
from bll_jax.parallel.spmd import SpmdRunner

PIPELINES = ("auto", "mpmd", "spmd", "gpipe", "1f1b")
STEP_MODES = ("fused", "per_block")


@dataclasses.dataclass(frozen=True)
class RunnerSpec:
  """How a run is laid out on devices.

  Attributes:
    mesh: `"data=D,block=B"` (`""`: every device on `data`).
    schedule: "sync" or "pipelined" (:mod:`bll_jax.parallel.schedule`).
    pipeline: the pipelined runner: "auto", "mpmd" or "spmd".
    step_mode: on one stage, "fused" (the engine's one-program step) or
      "per_block" (the per-block steps of the tick plan).
    feedback_lag: `L` of the pipelined schedule (MPMD only).
    micro_batches: `M` of the backprop pipelines (`gpipe`, `1f1b`: the
      peers in `bll_jax.baselines`, method bp).
  """

  mesh: str = ""
  schedule: str = "sync"
  pipeline: str = "auto"
  step_mode: str = "fused"
  feedback_lag: int = 0
  micro_batches: int = 4


class Runner(Protocol):
  """What the training loop may ask of a runner.

  `run_epoch(state, batches, keys, on_step=None) -> (state, metrics)` runs
  a stream (one step per batch, `metrics[i]` the `i`th batch's); a runner
  whose `fills_and_drains` is true fills and drains its pipeline in every
  call, so the loop hands it whole epochs. `warm_up(state, batch, key)`
  compiles every program on a discarded copy. `place` and `to_host` move a
  state onto the runner's devices and back; `checkpoint_layout` is what a
  checkpoint saves and restores onto; `input_shard()` the keyword arguments
  that split the data loader over processes; `describe()` the layout for
  the run's summary.
  """

  name: str
  fills_and_drains: bool
  data_replicas: int

  def place(self, state): ...
  def to_host(self, tree): ...
  def checkpoint_layout(self, state): ...
  def input_shard(self) -> dict[str, int]: ...
  def describe(self) -> dict[str, Any]: ...
  def warm_up(self, state, batch, key) -> None: ...
  def step(self, state, batch, key): ...
  def run_epoch(self, state, batches: Iterable[dict], keys: Sequence[Any],
                on_step: Callable[[], None] | None = None): ...


def mesh_of(engine, spec: RunnerSpec,
            devices: Sequence[jax.Device] | None = None):
  """The `(data, block)` mesh `spec.mesh` asks for (checked against the
  engine's blocks and the devices; one-line `ValueError` otherwise)."""
  return mesh_lib.make_mesh(mesh_lib.MeshSpec.parse(spec.mesh),
                            engine.num_blocks, devices)


def make_runner(engine, spec: RunnerSpec, batch_size: int | None = None,
                devices: Sequence[jax.Device] | None = None) -> Runner:
  """The runner of `spec` for `engine` (everything checked, nothing run).

  Args:
    engine: the engine.
    spec: mesh, schedule and runner choices.
    batch_size: the global batch, checked to split over the `data` axis.
    devices: the devices of the mesh (default: all).

  Raises:
    ValueError: one line, for a mesh, schedule or runner that does not fit
      the engine or the devices.
  """
  if spec.schedule not in SCHEDULES:
    raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got "
                     f"{spec.schedule!r}")
  if spec.pipeline not in PIPELINES:
    raise ValueError(f"pipeline must be one of {list(PIPELINES)}, got "
                     f"{spec.pipeline!r}")
  if spec.step_mode not in STEP_MODES:
    raise ValueError(f"step_mode must be one of {list(STEP_MODES)}, got "
                     f"{spec.step_mode!r}")
  mesh = mesh_of(engine, spec, devices)
  data = mesh.shape["data"]
  if batch_size is not None and batch_size % data:
    raise ValueError(f"batch_size {batch_size} must be divisible by the "
                     f"mesh's data axis ({data})")
  if engine.objective.accumulate_evidence and (
      spec.schedule != "sync" or mesh.shape["block"] > 1
      or spec.step_mode != "fused"):
    raise ValueError(steps_lib.NEEDS_FUSED)
  if spec.pipeline in ("gpipe", "1f1b"):
    raise ValueError(f"pipeline {spec.pipeline!r} is a backprop peer: "
                     "bll_jax.baselines.make_runner builds it")
  if spec.schedule == "pipelined":
    schedule_lib.check_pipelined(engine)
    from bll_jax.parallel import spmd
    reason = spmd.unsupported(engine, mesh, spec.feedback_lag)
    if spec.pipeline == "spmd":
      if reason:
        raise ValueError(reason)
      return SpmdRunner(engine, mesh)
    if spec.pipeline == "auto" and not reason:
      return SpmdRunner(engine, mesh)
  return MpmdRunner(engine, mesh, spec.schedule,
                    fused=spec.step_mode == "fused",
                    feedback_lag=spec.feedback_lag)


__all__ = ["PIPELINES", "STEP_MODES", "MpmdRunner", "Runner", "RunnerSpec",
           "mesh_of",
           "SpmdRunner", "make_runner"]
