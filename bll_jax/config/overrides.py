"""Overrides of config fields, with the rules a user expects of them.

The command line (:mod:`bll_jax.config.flags`) and the experiment configs
(`experiments/configs/`) both describe a run as a preset plus overrides
`{dotted field: value}`; both go through :func:`apply_overrides`.
"""

from __future__ import annotations

import datetime
import os
import uuid
from typing import Any, Mapping

import ml_collections

from bll_jax.config import presets
from bll_jax.config.schema import FIELDS_BY_NAME
from bll_jax.config.schema import METHOD_CHOICES
from bll_jax.config.schema import METHOD_SETTINGS
from bll_jax.config.schema import ConfigError


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any]) -> set[str]:
  """Sets dotted fields of `config` in place; returns the names set.

  The rules a user expects of explicit settings:

  * `blocks` alone re-cuts evenly, even on a preset with cut points
    (`cuts`, which otherwise take precedence): the preset's cuts are
    dropped; both given must agree (`len(cuts) + 1 == blocks`);
  * `local` and `drtp` fix some fields (:data:`METHOD_SETTINGS`): setting
    one of them to another value is refused, except the alternatives of
    :data:`METHOD_CHOICES` (local's deeper heads).

  Raises:
    ConfigError: an unknown field, a value of the wrong type, or settings
      that contradict each other (one line).
  """
  for name, value in overrides.items():
    if name not in FIELDS_BY_NAME:
      raise ConfigError(f"unknown config field {name!r} (see bll-train "
                        "--help)")
    node = config
    *path, leaf = name.split(".")
    for part in path:
      node = node[part]
    try:
      node[leaf] = value
    except TypeError as e:
      raise ConfigError(f"{name}: {e}") from None
  explicit = set(overrides)
  if "blocks" in explicit and "cuts" not in explicit:
    config.cuts = ()
  elif {"blocks", "cuts"} <= explicit and config.cuts and (
      len(config.cuts) + 1 != config.blocks):
    raise ConfigError(
        f"cuts {','.join(map(str, config.cuts))} make {len(config.cuts) + 1} "
        f"blocks but blocks is {config.blocks}; give one of the two")
  fixed = METHOD_SETTINGS.get(config.method, {})
  choices = METHOD_CHOICES.get(config.method, {})
  for field, value in fixed.items():
    if field in explicit and config[field] in choices.get(field, ()):
      continue
    if field in explicit and value is None:
      raise ConfigError(
          f"method {config.method!r} sets {field} to the number of classes; "
          f"do not set {field} (or use method bll to choose it)")
    if field in explicit and config[field] != value:
      raise ConfigError(
          f"method {config.method!r} fixes {field}={value!r}"
          + (f" (or one of {choices[field]})" if field in choices else "")
          + f"; got {field} {config[field]!r} (use method bll to choose it)")
  return explicit


def from_overrides(preset: str, overrides: Mapping[str, Any] | None = None
                   ) -> ml_collections.ConfigDict:
  """`get_config(preset)` with `overrides` applied."""
  config = presets.get_config(preset)
  apply_overrides(config, overrides or {})
  return config


def num_blocks(config) -> int:
  """How many blocks `config` cuts its network into."""
  return len(config.cuts) + 1 if config.cuts else int(config.blocks)


def default_workdir(config) -> str:
  """`runs/<preset>-<method>-<time>-<unique>`: never the folder of another
  run, even one started in the same second."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", f"{config.preset or 'custom'}-{config.method}-"
                      f"{stamp}-{uuid.uuid4().hex[:6]}")
