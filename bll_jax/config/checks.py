"""The checks of a whole config, before anything is read or compiled.

Each field against its schema entry (allowed values, bounds), then the
fields that must agree with each other. Every failure is one line naming
the field and what it may be.
"""

from __future__ import annotations

import os

import ml_collections

from bll_jax.config import presets
from bll_jax.config import schema
from bll_jax.config.schema import ConfigError


def check(config: ml_collections.ConfigDict) -> None:
  """Checks every field and how they fit together, before anything is read
  or compiled.

  Raises:
    ConfigError: one line naming the field and what it may be.
  """
  for field in schema.FIELDS:
    schema.check_field(field, schema.get(config, field.name))
  if config.preset and config.preset not in presets.PRESETS:
    raise ConfigError(f"preset must be one of {sorted(presets.PRESETS)}, "
                      f"got {config.preset!r}")
  data_dir = config.dataset.data_dir
  if data_dir and config.dataset.name in schema.GENERATED_DATASETS:
    raise ConfigError(
        f"dataset.data_dir is for datasets read from files; "
        f"{config.dataset.name!r} is generated and reads none: drop "
        f"--data-dir (given {data_dir!r})")
  if data_dir and not (os.path.isdir(data_dir) or (
      config.dataset.name == "text" and os.path.isfile(data_dir))):
    raise ConfigError(f"dataset.data_dir {data_dir!r} does not exist or is "
                      "not a directory")
  if config.temperature_calibration != "none" and (
      config.method == "bp" or config.recipe):
    raise ConfigError(
        "temperature_calibration scales the distributional local losses: it "
        f"needs method bll, local or drtp and no recipe, got method "
        f"{config.method!r}"
        + (f", recipe {config.recipe!r}" if config.recipe else ""))
  if config.recipe and config.method != "bll":
    raise ConfigError(f"recipe {config.recipe!r} is a form of method 'bll', "
                      f"got method {config.method!r}")
  if config.schedule == "pipelined" and int(config.checkpoint_every_steps):
    raise ConfigError("checkpoint_every_steps must be 0 with schedule "
                      "'pipelined' (the pipeline drains, and is saved, at the "
                      "end of each epoch)")
  if int(config.feedback_lag) and config.schedule != "pipelined":
    raise ConfigError("feedback_lag delays the feedback of the pipelined "
                      f"schedule; it must be 0 with schedule "
                      f"{config.schedule!r}")
  if config.method == "bp" and config.transmit == "sample":
    raise ConfigError("transmit must be 'mean' for method 'bp' (no gradient "
                      "through a sample), got 'sample'")
