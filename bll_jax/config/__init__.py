"""Configuration: presets, the field schema, overrides, checks.

Every run is a config (an `ml_collections.ConfigDict`): a preset
(:func:`get_config`) with overrides applied (:func:`apply_overrides`, which
the command line and the experiment configs both use), checked by
:func:`check` before anything is read or compiled. A resumed run starts
from its own saved config (:func:`saved_config`, :func:`check_resumable`).
The fields, their defaults, help and allowed values are data:
:data:`FIELDS`.
"""

from __future__ import annotations

from bll_jax.config.checks import check
from bll_jax.config.overrides import apply_overrides
from bll_jax.config.overrides import default_workdir
from bll_jax.config.overrides import from_overrides
from bll_jax.config.overrides import num_blocks
from bll_jax.config.presets import PRESETS
from bll_jax.config.presets import get_config
from bll_jax.config.resume import check_resumable
from bll_jax.config.resume import saved_config
from bll_jax.config.schema import FIELDS
from bll_jax.config.schema import FIELDS_BY_NAME
from bll_jax.config.schema import METHOD_CHOICES
from bll_jax.config.schema import METHOD_SETTINGS
from bll_jax.config.schema import ConfigError
from bll_jax.config.schema import Field
from bll_jax.config.schema import base_config

__all__ = ["FIELDS", "FIELDS_BY_NAME", "METHOD_CHOICES", "METHOD_SETTINGS",
           "PRESETS",
           "ConfigError", "Field", "apply_overrides", "base_config", "check",
           "check_resumable", "default_workdir", "from_overrides",
           "get_config", "num_blocks", "saved_config"]
