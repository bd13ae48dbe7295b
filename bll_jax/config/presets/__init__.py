"""The presets of `bll-train`: one module per preset, each with a
`get_config()` (in the manner of Flax's `configs/default.py`).

A preset fixes the dataset, the network, where it is cut, the method and
the optimisation; :data:`PRESETS` lists them (every module of this package).
"""

from __future__ import annotations

import importlib
import pkgutil

PRESETS: tuple[str, ...] = tuple(sorted(
    m.name for m in pkgutil.iter_modules(__path__)))


def get_config(preset: str = "mnist1d"):
  """A fresh config of `preset`.

  Raises:
    ConfigError: for an unknown preset, naming the allowed ones.
  """
  from bll_jax.config.schema import ConfigError
  if preset not in PRESETS:
    raise ConfigError(f"preset must be one of {list(PRESETS)}, got "
                      f"{preset!r}")
  return importlib.import_module(f"{__name__}.{preset}").get_config()
