r"""The tick plan: which (stage, micro-batch) works at each tick, for every runner.

The blocks are grouped into stages `s = 0..S-1`
(:func:`bll_jax.parallel.mesh.stages`); a stream of batches is a stream of
micro-batches `m = 0..M-1`. A schedule gives each stage an offset `o(s)`: at
tick `t`, stage `s` works on micro-batch

.. math::

   m = t - o(s), \qquad 0 \le m < M, \qquad
   o(s) = \begin{cases} 0 & \texttt{sync} \\ s & \texttt{pipelined.} \end{cases}

A stage's first block takes the output of stage `s - 1` for the same
micro-batch (produced at tick `m + o(s - 1)`, this tick in `sync`, the tick
before in `pipelined`), or the micro-batch itself for stage 0; each of its
blocks runs its own step and updates itself at once. The feedback network
gives every active block the same parameters during a tick and is updated
once at its end, from the feedback gradients of the hidden blocks active in
it (each for its own micro-batch).

* `sync`: one tick is one step; every block sees the same batch, the stages
  run one after the other within the tick.
* `pipelined`: the stages of a tick run at the same time on different
  micro-batches. There is no flush between micro-batches: the pipeline fills
  once, at the start of the stream, and drains once, at its end.

Staleness, exactly (`pipelined`, feedback lag `L`). Block `k` in stage
`s(k)` processes micro-batch `m` with its own parameters after exactly `m`
updates, and with an input computed by block `k - 1` after exactly `m`
updates: the forward parameters see the versions of a `sync` run over the
same micro-batches. The feedback differs: the feedback takes one optimiser
step per tick with an active hidden block, so over the stream

.. math::

   U = M + S_h - 1

steps (:meth:`TickPlan.feedback_updates`; `S_h` the stages holding hidden
blocks, `U = M` in `sync`); the extra `S_h - 1` steps of the fill and the
drain each carry the gradients of fewer blocks. Block `k` on micro-batch `m`
sees the feedback after `max(0, m + s(k) - L)` of those steps (in `sync`,
after `m`), and takes its feedback gradient there; a step applies it to the
latest parameters. With a fixed feedback (`random`, `onehot`) `pipelined`
equals `sync` exactly (tested).
"""

from __future__ import annotations

import dataclasses
SCHEDULES = ("sync", "pipelined")


@dataclasses.dataclass(frozen=True)
class TickPlan:
  """The schedule of a stream over stages (see the module docstring).

  Attributes:
    schedule: "sync" or "pipelined".
    stage_blocks: the blocks of each stage, contiguous, in order.
  """

  schedule: str
  stage_blocks: tuple[tuple[int, ...], ...]

  def __post_init__(self):
    if self.schedule not in SCHEDULES:
      raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got "
                       f"{self.schedule!r}")
    flat = [k for blocks in self.stage_blocks for k in blocks]
    if not self.stage_blocks or flat != list(range(len(flat))) or any(
        not blocks for blocks in self.stage_blocks):
      raise ValueError("stage_blocks must split blocks 0..N-1 into non-empty "
                       f"consecutive stages, got {self.stage_blocks!r}")

  @property
  def num_stages(self) -> int:
    return len(self.stage_blocks)

  @property
  def num_blocks(self) -> int:
    return sum(len(blocks) for blocks in self.stage_blocks)

  def stage_of(self, k: int) -> int:
    """The stage that holds block `k`."""
    for s, blocks in enumerate(self.stage_blocks):
      if k in blocks:
        return s
    raise ValueError(f"no stage holds block {k}")

  def offset(self, stage: int) -> int:
    """`o(s)`: how many ticks stage `s` runs behind stage 0."""
    return stage if self.schedule == "pipelined" else 0

  def num_ticks(self, num_micro_batches: int) -> int:
    """Ticks from the first micro-batch in to the last one out."""
    if not num_micro_batches:
      return 0
    return num_micro_batches + self.offset(self.num_stages - 1)

  def active(self, tick: int, num_micro_batches: int
             ) -> tuple[tuple[int, int], ...]:
    """`(stage, micro-batch)` of every stage at work in `tick`, stage order.

    `num_micro_batches` is the length of the stream, or, while it is being
    read, how many micro-batches have arrived (stage 0 never needs one that
    has not).
    """
    return tuple((s, tick - self.offset(s)) for s in range(self.num_stages)
                 if 0 <= tick - self.offset(s) < num_micro_batches)

  def timeline(self, num_micro_batches: int) -> list[tuple[int, int, int]]:
    """`(tick, stage, micro-batch)` of every unit of work, in tick order."""
    return [(t, s, m) for t in range(self.num_ticks(num_micro_batches))
            for s, m in self.active(t, num_micro_batches)]

  def hidden_stages(self) -> tuple[int, ...]:
    """The stages that hold a hidden block (every block but the last)."""
    last = self.num_blocks - 1
    return tuple(s for s, blocks in enumerate(self.stage_blocks)
                 if any(k < last for k in blocks))

  def feedback_updates(self, num_micro_batches: int) -> int:
    """`U`: ticks with an active hidden block, one feedback step each."""
    hidden = set(self.hidden_stages())
    return sum(1 for t in range(self.num_ticks(num_micro_batches))
               if any(s in hidden
                      for s, _ in self.active(t, num_micro_batches)))

  def feedback_version(self, k: int, micro_batch: int, lag: int = 0) -> int:
    """How many feedback steps block `k` has seen on `micro_batch`:
    `max(0, m + o(s(k)) - L)`."""
    return max(0, micro_batch + self.offset(self.stage_of(k)) - lag)

  def bubble_fraction(self, num_micro_batches: int) -> float:
    """Stage-ticks without work over all stage-ticks, fill to drain.

    `(S - 1) / (M + S - 1)` for `pipelined`: each stage idles `S - 1` of
    the `M + S - 1` ticks. In `sync` every stage works in every tick, but
    one after the other: a stage then idles `(S - 1) / S` of the time.
    """
    ticks = self.num_ticks(num_micro_batches)
    return 1.0 - num_micro_batches / ticks if ticks else 0.0


def bubble_fraction(num_micro_batches: int, num_stages: int) -> float:
  """`(S - 1) / (M + S - 1)`: the bubble of the `pipelined` schedule (and of
  one GPipe step) with `M` micro-batches over `S` stages."""
  return (num_stages - 1) / (num_micro_batches + num_stages - 1)


def check_pipelined(engine) -> None:
  """Raises a one-line `ValueError` for an engine the pipelined schedule
  cannot train."""
  if engine.method != "bll":
    raise ValueError("schedule 'pipelined' needs method bll, local or drtp "
                     f"(block-local updates), got {engine.method!r}")
  if engine.feedback_mode == "bootstrapped":
    raise ValueError("schedule 'pipelined' does not support feedback "
                     "'bootstrapped' (the block above's output for the same "
                     "micro-batch arrives a tick late); use direct or chained")


def stage_blocks_of(num_blocks: int, num_stages: int
                    ) -> tuple[tuple[int, ...], ...]:
  """The blocks of each stage: contiguous, as even as possible (earlier
  stages take one more when it does not divide)."""
  size, extra = divmod(num_blocks, num_stages)
  out, start = [], 0
  for s in range(num_stages):
    end = start + size + (1 if s < extra else 0)
    out.append(tuple(range(start, end)))
    start = end
  return tuple(out)


def one_stage_per_block(num_blocks: int, schedule: str = "pipelined"
                        ) -> TickPlan:
  """The plan with every block its own stage (the SPMD stack's)."""
  return TickPlan(schedule, tuple((k,) for k in range(num_blocks)))


def plan_for(schedule: str, num_blocks: int, num_stages: int) -> TickPlan:
  """The plan of `schedule` over `num_stages` even stages."""
  return TickPlan(schedule, stage_blocks_of(num_blocks, num_stages))
