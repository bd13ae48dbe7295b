"""GPipe and 1F1B as runners of the training loop (`--pipeline gpipe|1f1b`).

`bll-train --method bp --mesh block=B --pipeline gpipe --micro-batches M`
trains the same network, on the same data, with the same evaluation,
checkpoints and summary as every other run, but each step is one GPipe (or
1F1B) step over the stages: the batch split into `M` micro-batches, the
update that of backprop on the whole batch (:mod:`bll_jax.baselines.gpipe`).
So the peers are timed by the same loop that times block-local learning
(`train_seconds` per epoch, compilation excluded).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import jax

from bll_jax import parallel
from bll_jax.baselines.gpipe import GPipe
from bll_jax.baselines.one_f_one_b import OneFOneB
from bll_jax.engine import TrainState
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import placement

PIPELINES = {"gpipe": GPipe, "1f1b": OneFOneB}


class PipelinedBackprop:
  """A :class:`bll_jax.parallel.Runner` that steps with GPipe or 1F1B.

  Args:
    engine: a `bp` engine.
    mesh: the `(data, block)` mesh; its `block` columns are the stages.
    name: "gpipe" or "1f1b".
    micro_batches: `M`, micro-batches per step (the batch must split
      into `M` equal micro-batches, each over the `data` devices).
  """

  fills_and_drains = False     # a flush every step: any segment will do

  def __init__(self, engine, mesh, name: str = "gpipe",
               micro_batches: int = 4):
    if name not in PIPELINES:
      raise ValueError(f"pipeline must be one of {list(PIPELINES)}, got "
                       f"{name!r}")
    if micro_batches < 1:
      raise ValueError(f"micro_batches must be >= 1, got {micro_batches}")
    self.name = name
    self.mesh = mesh
    self.micro_batches = micro_batches
    self.pipeline = PIPELINES[name](engine, mesh)
    if jax.process_count() > 1 and self.data_replicas > 1:
      # Each process would read whole batches and place its rows of every
      # micro-batch: not written; one line instead of a wrong split.
      raise ValueError(f"pipeline {name!r} across processes runs with "
                       f"data=1, got data={self.data_replicas}")

  @property
  def data_replicas(self) -> int:
    return self.pipeline.stages.data_size

  def describe(self) -> dict[str, Any]:
    return {"mesh": mesh_lib.describe(self.mesh), "pipeline": self.name,
            "micro_batches": self.micro_batches}

  def input_shard(self) -> dict[str, int]:
    return {}       # every process reads whole batches

  def place(self, state: TrainState) -> TrainState:
    return self.pipeline.place(state)

  def to_host(self, tree):
    return placement.to_host(tree, self.mesh)

  def checkpoint_layout(self, state: TrainState):
    return state if jax.process_count() == 1 else self.to_host(state)

  def split(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch as `M` micro-batches of consecutive rows."""
    rows = len(batch["labels"])
    size, extra = divmod(rows, self.micro_batches)
    if extra or size % self.data_replicas:
      raise ValueError(
          f"a batch of {rows} does not split into {self.micro_batches} "
          f"micro-batches over {self.data_replicas} data devices: choose "
          "batch_size divisible by micro_batches x data")
    return [{k: v[i * size:(i + 1) * size] for k, v in batch.items()}
            for i in range(self.micro_batches)]

  def step(self, state: TrainState, batch: dict[str, Any], key: jax.Array):
    return self.pipeline.step(state, self.split(batch), key)

  def warm_up(self, state: TrainState, batch: dict[str, Any],
              key: jax.Array) -> None:
    """Compiles every stage's programs on a discarded step."""
    jax.block_until_ready(self._local(self.step(state, batch, key)))

  def run_epoch(self, state: TrainState, batches: Iterable[dict[str, Any]],
                keys: Sequence[jax.Array],
                on_step: Callable[[], None] | None = None):
    metrics = []
    for batch, key in zip(batches, keys):
      state, m = self.step(state, batch, key)
      metrics.append(m)
      if on_step:
        on_step()
    return state, metrics

  @staticmethod
  def _local(tree) -> list[jax.Array]:
    return [x for x in jax.tree.leaves(tree)
            if isinstance(x, jax.Array) and x.is_fully_addressable]


def make_runner(engine, spec: parallel.RunnerSpec,
                batch_size: int | None = None):
  """The runner of `spec`: GPipe or 1F1B where `spec.pipeline` names one,
  else :func:`bll_jax.parallel.make_runner`'s.

  Raises:
    ValueError: one line, for a layout that does not fit (as
      :func:`bll_jax.parallel.make_runner`), a block-local method or a
      pipelined schedule with a backprop pipeline, or a batch that does not
      split into the micro-batches.
  """
  if spec.pipeline not in PIPELINES:
    return parallel.make_runner(engine, spec, batch_size)
  if engine.method != "bp":
    raise ValueError(f"pipeline {spec.pipeline!r} pipelines backprop: use "
                     f"method bp (got {engine.method!r}); block-local "
                     "methods pipeline with schedule 'pipelined'")
  if spec.schedule != "sync":
    raise ValueError(f"pipeline {spec.pipeline!r} flushes every step (its "
                     "own schedule): leave schedule at 'sync'")
  variables = jax.eval_shape(
      engine.network.init, jax.random.key(0),
      jax.ShapeDtypeStruct((2,) + tuple(engine.input_shape),
                           engine.input_dtype))[0]
  if any(v.get("batch_stats") for v in variables):
    raise ValueError(f"pipeline {spec.pipeline!r} does not run networks with "
                     "BatchNorm: its statistics would be the micro-batch's, "
                     "not the whole batch's (cnn: model.norm false)")
  runner = PipelinedBackprop(engine, parallel.mesh_of(engine, spec),
                             spec.pipeline, spec.micro_batches)
  if batch_size is not None:
    runner.split({"labels": range(batch_size)})     # checks the split
  return runner
