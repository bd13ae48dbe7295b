"""Flax NNX modules as units of a :class:`~bll_jax.models.LayerStack`.

:func:`adapt` turns an NNX instance into a linen module that keeps the
instance's weights: its `nnx.Param`s are the unit's "params" (trained by the
block's optimiser), its `nnx.BatchStat`s its "batch_stats"; every call
merges a fresh copy of the module from its graph definition and those
variables, sets its Dropout and BatchNorm layers to the mode of `train`
(`nnx.view`), and in training reseeds its RNG streams from the block's
"dropout" stream. :func:`mode_keyword` finds the keyword (`train`,
`deterministic`, `use_running_average`) through which a module's call takes
the mode; :mod:`bll_jax.models.units` uses both.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import flax.linen as nn
from flax import nnx

# The call keywords an adapted linen or NNX module may take, in order of
# preference, and the value each gets in training mode `train`.
MODE_KEYWORDS = ("train", "deterministic", "use_running_average")


def mode_value(keyword: str, train: bool) -> bool:
  return train if keyword == "train" else not train


def mode_keyword(call: Callable) -> str | None:
  """The first of `MODE_KEYWORDS` that `call` names as a parameter (a
  `**kwargs` does not count: `nn.Sequential` passes it on to one layer)."""
  try:
    params = inspect.signature(call).parameters
  except (TypeError, ValueError):
    return None
  for keyword in MODE_KEYWORDS:
    p = params.get(keyword)
    if p is not None and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    inspect.Parameter.KEYWORD_ONLY):
      return keyword
  return None


class _Frozen:
  """An NNX instance's variables, kept as a field of a linen module: hashed
  and compared by identity (arrays are neither hashable nor comparable)."""

  def __init__(self, groups: dict[str, tuple[tuple[tuple, Any], ...]]):
    self.groups = groups


def _nest(flat: Sequence[tuple[tuple, Any]]) -> dict:
  """`(path, value)` pairs as a nested dict with string keys."""
  out: dict = {}
  for path, value in flat:
    node = out
    for part in path[:-1]:
      node = node.setdefault(str(part), {})
    node[str(path[-1])] = value
  return out


def _get(tree, path: tuple):
  for part in path:
    tree = tree[str(part)]
  return tree


class _NnxUnit(nn.Module):
  """An NNX module as a linen unit (see :func:`as_unit`).

  Every call merges a fresh copy of the module from its graph definition and
  the linen variables: `nnx.Param`s from "params", `nnx.BatchStat`s from
  "batch_stats" (written back where that collection is mutable), and its RNG
  streams reseeded from the linen "dropout" stream in training.
  """

  graphdef: Any
  frozen: _Frozen
  keyword: str | None = None

  @nn.compact
  def __call__(self, h, train: bool = False):
    groups = self.frozen.groups
    params = {name: self.param(name, lambda _, v=v: v)
              for name, v in _nest([(p, v.get_value())
                                    for p, v in groups["params"]]).items()}
    stats = {name: self.variable("batch_stats", name, lambda v=v: v)
             for name, v in _nest([(p, v.get_value())
                                   for p, v in groups["batch_stats"]]).items()}
    stat_values = {name: var.value for name, var in stats.items()}
    flat = ([(p, v.copy(_get(params, p))) for p, v in groups["params"]]
            + [(p, v.copy(_get(stat_values, p)))
               for p, v in groups["batch_stats"]]
            + [(p, v.copy(v.get_value())) for p, v in groups["rngs"]])
    module = nnx.merge(self.graphdef, nnx.from_flat_state(flat))
    module = _set_mode(module, train)
    if train and groups["rngs"]:
      tags = sorted({v.tag for _, v in groups["rngs"]
                     if isinstance(v, nnx.RngKey)})
      nnx.reseed(module, policy="match_shape",
                 **{tag: self.make_rng("dropout") for tag in tags})
    kwargs = ({} if self.keyword is None
              else {self.keyword: mode_value(self.keyword, train)})
    out = module(h, **kwargs)
    if (stats and not self.is_initializing()
        and self.is_mutable_collection("batch_stats")):
      new = _nest([(p, v.get_value()) for p, v in
                   nnx.to_flat_state(nnx.state(module, nnx.BatchStat))])
      for name, var in stats.items():
        var.value = new[name]
    return out


def _set_mode(module, train: bool):
  """`module` with its Dropout and BatchNorm layers in the mode of `train`."""
  mode = {"deterministic": not train, "use_running_average": not train}
  if hasattr(nnx, "view"):
    return nnx.view(module, raise_if_not_found=False, **mode)
  module.set_attributes(raise_if_not_found=False, **mode)
  return module


def adapt(module: nnx.Module) -> nn.Module:
  """`module`, an NNX instance, as a linen unit (see
  :func:`bll_jax.models.units.as_unit`, which calls this).

  Raises:
    ValueError: an `nnx.Dropout` without `rngs`.
    TypeError: a variable other than Param, BatchStat or RNG state.
  """
  name = type(module).__name__
  for path, sub in nnx.iter_modules(module):
    if isinstance(sub, nnx.Dropout) and sub.rngs is None and sub.rate > 0:
      where = "/".join(map(str, path)) or "the module itself"
      raise ValueError(
          f"NNX unit {name} has an nnx.Dropout without rngs at {where}; "
          "build it with rngs=nnx.Rngs(dropout=0) so the block's dropout "
          "stream can drive it")
  graphdef, state = nnx.split(module)
  groups: dict[str, list] = {"params": [], "batch_stats": [], "rngs": []}
  for path, var in nnx.to_flat_state(state):
    if isinstance(var, nnx.Param):
      groups["params"].append((path, var.copy()))
    elif isinstance(var, nnx.BatchStat):
      groups["batch_stats"].append((path, var.copy()))
    elif isinstance(var, nnx.RngState):
      groups["rngs"].append((path, var.copy()))
    else:
      raise TypeError(
          f"NNX unit {name} holds a {type(var).__name__} at "
          f"{'/'.join(map(str, path))}; a unit may hold only nnx.Param, "
          "nnx.BatchStat and RNG state")
  return _NnxUnit(graphdef, _Frozen({k: tuple(v) for k, v in groups.items()}),
                  mode_keyword(type(module).__call__))
