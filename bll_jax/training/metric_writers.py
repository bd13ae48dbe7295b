"""Per-epoch metrics: `WORKDIR/metrics.jsonl` and TensorBoard event files."""

from __future__ import annotations

import json
import os
from typing import Any


class MetricWriter:
  """Appends one JSON line per record and mirrors scalars to TensorBoard.

  TensorBoard files are written with `tensorboardX` (no TensorFlow needed)
  under `WORKDIR/tensorboard`; `tensorboard --logdir WORKDIR` shows them.
  """

  def __init__(self, workdir: str | os.PathLike):
    self.path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    from tensorboardX import SummaryWriter  # light; imported with the loop
    self._tb = SummaryWriter(os.path.join(os.fspath(workdir), "tensorboard"))

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
