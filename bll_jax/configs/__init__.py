"""Presets: every experiment is a config (an `ml_collections.ConfigDict`).

`get_config(name)` returns a fresh copy of a preset; every field can be
overridden from the command line (`bll-train --help` lists them all).
"""

from bll_jax.configs.presets import PRESETS
from bll_jax.configs.presets import base_config
from bll_jax.configs.presets import get_config

__all__ = ["PRESETS", "base_config", "get_config"]
