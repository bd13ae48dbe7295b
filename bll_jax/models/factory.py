"""Your own network in `bll-train`: `--model.factory module:function`.

The function is imported by name (the working directory is searched too,
as `python -m` does), called with the keywords among `num_classes`,
`input_shape` and `input_dtype` that it names, and may return a
:class:`~bll_jax.models.LayerStack`, a list of modules (flax linen layers,
NNX modules, plain functions) or an `nn.Sequential`;
:func:`bll_jax.models.units.as_stack` makes the stack of it. Every module is
a possible cut; `--blocks K` cuts evenly by unit count and `--cuts i,j`
where you say (docs/engine.md, "Choosing the cuts").

Example (`my_model.py` in the working directory)::

  import flax.linen as nn

  def make_model(num_classes):
    return [nn.Dense(256), nn.relu, nn.Dense(256), nn.relu,
            nn.Dense(num_classes)]

  # bll-train --model.factory my_model:make_model --blocks 3
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Callable

from bll_jax.models import base
from bll_jax.models import units

FORM = "'package.module:function'"


def load(spec: str) -> Callable:
  """The function `spec` names (`"my_package.models:make_model"`).

  Raises:
    ValueError: one line for a malformed spec, a module that cannot be
      imported, or a name that is not a function in it.
  """
  module_name, sep, name = spec.partition(":")
  if not sep or not module_name or not name.isidentifier():
    raise ValueError(f"model.factory must look like {FORM}, got {spec!r}")
  try:
    module = _import(module_name)
  except Exception as e:  # the user's module: whatever it raises
    raise ValueError(f"model.factory {spec!r}: importing {module_name!r} "
                     f"failed ({type(e).__name__}: {e})") from None
  function = getattr(module, name, None)
  if not callable(function):
    raise ValueError(f"model.factory {spec!r}: {module_name!r} has no "
                     f"function {name!r}")
  return function


def _import(module_name: str):
  try:
    return importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    cwd = os.getcwd()
    if e.name != module_name.split(".")[0] or cwd in sys.path:
      raise
    sys.path.insert(0, cwd)         # as `python -m` would have it
    return importlib.import_module(module_name)


def build(spec: str, num_classes: int, input_shape: tuple[int, ...],
          input_dtype: str = "float32", token_targets: bool = False
          ) -> base.LayerStack:
  """The stack the factory `spec` returns, for a dataset's shapes.

  Raises:
    ValueError: one line for a factory that cannot be loaded or called,
      or whose network cannot read the inputs or gives the wrong number of
      outputs.
  """
  function = load(spec)
  given = {"num_classes": num_classes, "input_shape": tuple(input_shape),
           "input_dtype": input_dtype}
  try:
    params = inspect.signature(function).parameters
  except (TypeError, ValueError):
    params = {}
  kwargs = {k: v for k, v in given.items() if k in params}
  try:
    value = function(**kwargs)
  except TypeError as e:
    raise ValueError(f"model.factory {spec!r} cannot be called with "
                     f"{sorted(kwargs) or 'no arguments'} ({e}); it may name "
                     "num_classes, input_shape and input_dtype") from None
  try:
    return units.as_stack(value, num_classes=num_classes,
                          input_shape=input_shape, input_dtype=input_dtype,
                          token_targets=token_targets)
  except (TypeError, ValueError) as e:
    raise ValueError(f"model.factory {spec!r}: {e}") from None
