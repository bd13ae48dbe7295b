"""Resuming a run: the config it was started with, and what may change.

A run writes its (resolved) config to `workdir/config.json` before its
first checkpoint. `bll-train --workdir W --resume` starts from that file,
not from a preset, and applies only the flags given; :func:`check_resumable`
then compares the two configs field by field. A resume may change the
fields of :data:`RESUMABLE`, which change how the run is watched, saved or
where it runs (a 2-process run may continue on one device), never what it
computes, and its length (:data:`LENGTH`:
more epochs or steps) while the learning rate is constant: a schedule
spans the run's length, so changing the length would change the learning
rate of the steps already taken. Anything else that differs is refused, in
one line naming each field and both values.
"""

from __future__ import annotations

import json
import os

import ml_collections

from bll_jax.config import schema
from bll_jax.config.schema import ConfigError

CONFIG_FILE = "config.json"

# What a resume may change: the run's book-keeping and where it runs (a
# checkpoint is restored onto any mesh: the same updates, up to the order
# of floating-point sums), never its arithmetic (the schedule stays).
RESUMABLE = frozenset({
    "workdir", "resume", "progress", "log_every_steps",
    "checkpoint_every_steps", "keep_checkpoints", "eval_batch_size",
    "dataset.data_dir", "distributed", "coordinator_address",
    "num_processes", "process_id", "mesh", "pipeline", "step_mode",
    "micro_batches"})
# The run's length: resumable under a constant learning rate only.
LENGTH = frozenset({"epochs", "steps"})


def saved_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The config a run in `workdir` was started with, or None if it wrote
  none (a run of an older version).

  Raises:
    ConfigError: an unreadable `config.json`, or one naming a field this
      version does not know (one line).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} cannot be read ({e}): resume with the run's "
                      "flags after moving it aside") from None
  config = schema.base_config()
  for name, value in _flatten(values).items():
    field = schema.FIELDS_BY_NAME.get(name)
    if field is None:
      raise ConfigError(f"{path} holds the field {name!r}, unknown to this "
                        "version of bll_jax")
    node = config
    *path_to, leaf = name.split(".")
    for part in path_to:
      node = node[part]
    node[leaf] = tuple(value) if isinstance(field.default, tuple) else value
  return config


def check_resumable(saved: ml_collections.ConfigDict,
                    config: ml_collections.ConfigDict) -> None:
  """Refuses a resume whose config differs from the run's where it may not.

  Raises:
    ConfigError: one line naming each differing field and both values.
  """
  constant_lr = (saved.lr_schedule == "constant"
                 and config.lr_schedule == "constant")
  allowed = RESUMABLE | (LENGTH if constant_lr else frozenset())
  differ = []
  for field in schema.FIELDS:
    if field.name in allowed:
      continue
    before, after = (_normal(schema.get(c, field.name))
                     for c in (saved, config))
    if before != after:
      differ.append(f"{field.name} {before!r} in the run, {after!r} now")
  if differ:
    why = ("" if constant_lr or not any(d.split()[0] in LENGTH
                                        for d in differ)
           else " (the learning-rate schedule spans the run's length)")
    raise ConfigError(
        "--resume continues the run as it was configured, but "
        + "; ".join(differ) + why + ": drop those flags, or start a new run "
        "in another --workdir")


def _normal(value):
  return tuple(value) if isinstance(value, list) else value


def _flatten(values: dict, prefix: str = "") -> dict:
  flat = {}
  for name, value in values.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{name}."))
    else:
      flat[f"{prefix}{name}"] = value
  return flat
