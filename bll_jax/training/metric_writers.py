"""Metrics: `WORKDIR/metrics.jsonl` and TensorBoard event files.

A resumed run continues from its checkpoint's step, so whatever was logged
after that step (by a run killed between a log and its next checkpoint, or
one that fell back to an earlier checkpoint) is dropped: the JSON lines
are rewritten without it, and TensorBoard is told to purge it
(`purge_step`).
"""

from __future__ import annotations

import json
import os
from typing import Any


class MetricWriter:
  """Appends one JSON line per record and mirrors scalars to TensorBoard.

  TensorBoard files are written with `tensorboardX` (no TensorFlow needed)
  under `WORKDIR/tensorboard`; `tensorboard --logdir WORKDIR` shows them.
  """

  def __init__(self, workdir: str | os.PathLike,
               resume_step: int | None = None):
    self.path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    if resume_step is not None and os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f
                if line.strip() and json.loads(line)["step"] <= resume_step]
      with open(self.path + ".tmp", "w") as f:
        f.writelines(kept)
      os.replace(self.path + ".tmp", self.path)
    from tensorboardX import SummaryWriter  # light; imported with the loop
    self._tb = SummaryWriter(
        os.path.join(os.fspath(workdir), "tensorboard"),
        purge_step=None if resume_step is None else resume_step + 1)

  def write(self, step: int, record: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in record.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        self._tb.add_scalar(key, value, step)
      elif isinstance(value, list):
        for k, v in enumerate(value):
          if isinstance(v, (int, float)):
            self._tb.add_scalar(f"{key}/{k}", v, step)
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()
