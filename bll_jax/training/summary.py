"""What a run reports: `summary.json`, and a language model's samples.

:func:`make_summary` gathers the run's final metrics (the last epoch's
record), its layout, timing and machine, and the config; :func:`jsonable`
makes it JSON; :func:`write_samples` writes a language model's greedy
continuation of the first evaluation window (`samples.txt`).
"""

from __future__ import annotations

import itertools
import os
import platform
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bll_jax.training import evaluate as evaluate_lib

SAMPLE_LENGTH = 500


def make_summary(cfg, engine, runner, dataset,
                 history: Sequence[dict[str, Any]], *,
                 parameters_per_block: Sequence[int], steps_run: int,
                 train_seconds: float, wall_seconds: float
                 ) -> dict[str, Any]:
  """The summary of a finished run (its last epoch's metrics)."""
  final = history[-1]
  out = f"block{engine.num_blocks - 1}"
  batch_size = int(cfg.batch_size)
  layout = runner.describe()
  summary = {
      "preset": cfg.preset,
      "method": cfg.method,
      "dataset": cfg.dataset.name,
      "model": cfg.model.factory or cfg.model.name,
      "blocks": engine.num_blocks,
      "cuts": list(engine.edges),
      # What each block holds (auxiliary heads included): for balancing cuts.
      "parameters_per_block": list(parameters_per_block),
      "family": None if cfg.method == "bp" else cfg.family,
      "feedback": None if cfg.method == "bp" else cfg.feedback,
      # One per hidden block where calibrated, else the run's one value.
      "temperature": engine.objective.temperature,
      "epochs": final["epoch"],
      "steps": final["step"],
      "batch_size": batch_size,
      "seed": int(cfg.seed),
      "final_train_loss": final.get(f"train/{out}/loss"),
      "test_loss": final["test/loss"],
      "test_accuracy": final["test/accuracy"],
      "per_block_test_accuracy": final["test/per_block_accuracy"],
      "per_block_test_loss": final["test/per_block_loss"],
      # Every block's prediction averaged (evaluation only, not the network).
      "mixture_test_loss": final["test/mixture_loss"],
      "mixture_test_accuracy": final["test/mixture_accuracy"],
      "wall_seconds": wall_seconds,
      "train_seconds": train_seconds,   # compilation excluded (warm_up)
      "examples_per_second": (steps_run * batch_size / train_seconds
                              if steps_run and train_seconds > 0 else None),
      "devices": [str(d) for d in jax.devices()],
      "mesh": layout["mesh"],
      "schedule": cfg.schedule,
      "pipeline": layout["pipeline"],
      "machine": {"platform": platform.platform(),
                  "processor": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "jax": jax.__version__,
                  "backend": jax.default_backend(),
                  "device_kind": jax.devices()[0].device_kind},
      "history": list(history),
      "config": cfg.to_dict(),
  }
  if "test/exact_match" in final:
    summary["test_exact_match"] = final["test/exact_match"]
    summary["test_teacher_forced_accuracy"] = final[
        "test/teacher_forced_accuracy"]
  if dataset.info.task == "language":
    summary["test_bits_per_token"] = final["test/bits_per_token"]
    summary["mixture_test_bits_per_token"] = final[
        "test/mixture_bits_per_token"]
    summary["corpus"] = dataset.info.metadata
  return summary


def write_samples(path: str, engine, state, dataset) -> str:
  """Writes the first evaluation window and its greedy continuation, as
  text, to `path`; returns that text."""
  (first,) = itertools.islice(dataset.test_batches(1), 1)
  prompt = first["inputs"][0]
  continuation = evaluate_lib.greedy_text(engine, state, prompt,
                                          SAMPLE_LENGTH)
  split = dataset.info.metadata.get("eval_split", "test")
  text = (f"# prompt: the first {len(prompt)} characters of the {split} "
          f"split\n{dataset.decode(prompt)}\n# greedy continuation, "
          f"{SAMPLE_LENGTH} characters\n{dataset.decode(continuation)}\n")
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return text


def jsonable(value):
  """`value` with numpy and JAX scalars and arrays as JSON lists/numbers."""
  if isinstance(value, dict):
    return {k: jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, (np.generic, jnp.ndarray)):
    return np.asarray(value).tolist()
  return value
