"""Bring your own network: stock flax layers and NNX modules as units.

A :class:`~bll_jax.models.LayerStack` is a tuple of linen modules, each
called by its :class:`~bll_jax.blocks.Block` as `unit(h, train=train)`,
with the random streams "dropout" and "latent", and the collections
"params" (trained by the block's optimiser) and "batch_stats" (BatchNorm
statistics, mutable in training). A stock layer does not speak that
protocol: `nn.Dense(10)(h, train=True)` fails on the keyword, and a flax
NNX module is not a linen module at all. :func:`as_unit` adapts each to it:

* a linen module whose `__call__` takes `train` is already a unit;
* one that takes `deterministic` (`nn.Dropout`), or `use_running_average`
  (`nn.BatchNorm`), is called with `not train`; one that takes neither
  (`nn.Dense`, `nn.Conv`) is called as `module(h)`. The adapter shares the
  module's scope, so its variables are exactly the module's own
  (`{"kernel": ..., "bias": ...}` for a Dense);
* an `nn.Sequential` becomes a chain of adapted layers (it would pass the
  keyword to its first layer only), with the same variable names;
* an NNX module instance becomes a linen unit that holds the instance's
  weights (see :func:`as_unit`);
* a plain function (`jax.nn.relu`) becomes a parameter-free unit.

:func:`from_units` makes a stack of such units, reading each unit's
positions from the rank of its output (an abstract run, no compilation), and
:func:`as_stack` turns whatever a user's model factory returned into a stack
with the right number of outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp

from bll_jax.models import base
from bll_jax.models import nnx_unit

Array = jax.Array


class _LinenUnit(nn.Module):
  """A linen module without a `train` keyword, called as a unit.

  It shares the module's scope: its variables are the module's own.
  """

  module: nn.Module
  keyword: str | None = None

  def setup(self):
    nn.share_scope(self, self.module)

  def __call__(self, h, train: bool = False):
    if self.keyword is None:
      return self.module(h)
    return self.module(h, **{self.keyword: nnx_unit.mode_value(self.keyword, train)})


class _Chain(nn.Module):
  """An `nn.Sequential`'s layers in turn, each a unit or a plain function;
  its variables are named as the Sequential's (`layers_0`, ...)."""

  layers: tuple[Any, ...]

  def __call__(self, h, train: bool = False):
    for layer in self.layers:
      h = layer(h, train=train) if isinstance(layer, nn.Module) else layer(h)
    return h


class _Function(nn.Module):
  """A parameter-free unit: `fn(h)`."""

  fn: Callable[[Array], Array]

  def __call__(self, h, train: bool = False):
    del train
    return self.fn(h)


def as_unit(module) -> nn.Module:
  """`module` as a unit a :class:`~bll_jax.blocks.Block` can call as
  `unit(h, train=...)`.

  * A linen module whose `__call__` takes `train`: returned unchanged.
  * A linen module that takes `deterministic` (`nn.Dropout`) or
    `use_running_average` (`nn.BatchNorm`) instead: called with
    `not train`; one that takes none of them (`nn.Dense`, `nn.Conv`): called
    as `module(h)`. The adapter shares the module's scope, so the variables
    are the module's own.
  * An `nn.Sequential`: its layers in turn, each adapted, with the
    Sequential's variable names (it would pass `train` to its first layer
    only). Each layer gets the previous one's output as its one argument.
  * An NNX module instance: a linen unit that keeps the instance's weights.
    Its `nnx.Param`s are the unit's "params" (so the block's optimiser
    trains them), its `nnx.BatchStat`s its "batch_stats" (updated in
    training where that collection is mutable, as the engine makes it).
    The initial values are the instance's own, copied when `as_unit` is
    called: the engine's init key does not re-draw them (to draw them from
    it instead, pass `nnx.bridge.to_linen(SomeNnxModule, *args)`, flax's
    bridge, which builds the module from linen's "params" stream). Every
    call sets `deterministic` and `use_running_average` to `not train` on
    the module's layers that have them (`nnx.Dropout`, `nnx.BatchNorm`,
    through `nnx.view`), passes `train`, `deterministic` or
    `use_running_average` to its `__call__` where that names one, and in
    training reseeds its RNG streams from the block's "dropout" stream, so
    every step draws new dropout masks. Refused: an `nnx.Dropout` without
    `rngs` (build it with `rngs=nnx.Rngs(dropout=0)`), and variables other
    than Param, BatchStat and RNG state (a cache, a counter): the engine
    keeps only "params" and "batch_stats". One instance used for two units
    gives two units with equal initial weights, trained apart (a linen
    module used twice in one block shares its weights, linen's rule).
  * A linen module from `nnx.bridge.to_linen`: called with `train`,
    `deterministic` or `use_running_average` where the NNX class's
    `__call__` names one (the bridge sets no modes of its own).
  * A plain function (`jax.nn.relu`): a parameter-free unit.

  Args:
    module: a linen module, an NNX module instance or a function of one
      array.

  Returns:
    A linen module called as `unit(h, train=...)`.

  Raises:
    TypeError: for a class instead of an instance, or anything else that is
      not one of the above.
    ValueError: for an empty `nn.Sequential`, or an NNX module it refuses.

  Example::

    unit = as_unit(nn.Sequential([nn.Dense(512), nn.relu]))
    variables = unit.init(jax.random.key(0), x)
    y = unit.apply(variables, x, train=True)
  """
  if isinstance(module, type):
    raise TypeError(
        f"as_unit takes a module instance or a function, got the class "
        f"{module.__name__} (instantiate it, e.g. nn.Dense(10) or "
        "nnx.Linear(8, 10, rngs=nnx.Rngs(0)))")
  if isinstance(module, nn.Module):
    if type(module).__call__ is nn.Sequential.__call__:
      if not module.layers:
        raise ValueError("as_unit got an nn.Sequential without layers")
      return _Chain(tuple(as_unit(layer) if isinstance(
          layer, (nn.Module, nnx.Module)) else layer
                          for layer in module.layers))
    if isinstance(module, nnx.bridge.ToLinen):
      keyword = nnx_unit.mode_keyword(getattr(module.nnx_class, "__call__", None))
      return _LinenUnit(module, keyword)
    keyword = nnx_unit.mode_keyword(type(module).__call__)
    if keyword == "train":
      return module
    return _LinenUnit(module, keyword)
  if isinstance(module, nnx.Module):
    if not callable(module):
      raise TypeError(f"as_unit got the NNX module {type(module).__name__}, "
                      "which has no __call__")
    return nnx_unit.adapt(module)
  if callable(module):
    return _Function(module)
  raise TypeError(
      f"as_unit takes a linen module, an NNX module or a function, got "
      f"{type(module).__name__}")


def _describe(shape, dtype) -> str:
  return f"{tuple(shape)} {jnp.dtype(dtype).name}"


def _output_shapes(units: Sequence[nn.Module],
                   activations: Sequence[Callable[[Array], Array]],
                   originals: Sequence[Any], input_shape: Sequence[int],
                   input_dtype) -> list[tuple[int, ...]]:
  """Every unit's output shape (after its activation) on one example, run
  abstractly (`jax.eval_shape`: no compilation, no arithmetic)."""
  h = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.dtype(input_dtype))
  shapes = []
  for i, (unit, act, orig) in enumerate(zip(units, activations, originals)):
    def run(x, unit=unit, act=act):
      rngs = {"params": jax.random.key(0), "latent": jax.random.key(0)}
      out, _ = unit.init_with_output(rngs, x, train=False)
      return act(out)
    try:
      out = jax.eval_shape(run, h)
    except Exception as e:   # whatever fails, it is the unit's call
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise ValueError(
          f"unit {i} ({type(orig).__name__}) fails on an input of shape "
          f"{_describe(h.shape, h.dtype)}: {first}") from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim < 2:
      got = (_describe(out.shape, out.dtype)
             if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__)
      raise ValueError(
          f"unit {i} ({type(orig).__name__}) must return one array "
          f"[batch, ..., features], got {got}")
    shapes.append(tuple(out.shape))
    h = out
  return shapes


def _check_input_shape(input_shape) -> tuple[int, ...]:
  try:
    shape = tuple(int(d) for d in input_shape)
  except TypeError:
    shape = None
  if not shape or any(d < 1 for d in shape):
    raise ValueError(f"input_shape must be one example's shape, a non-empty "
                     f"tuple of positive integers, got {input_shape!r}")
  return shape


def from_units(units: Sequence[Any], *, input_shape: Sequence[int],
               activations: Sequence[Callable[[Array], Array]] | None = None,
               token_targets: bool = False, input_dtype: Any = "float32",
               name: str = "custom") -> base.LayerStack:
  """A :class:`~bll_jax.models.LayerStack` of `units`, each through
  :func:`as_unit`.

  Each unit's `position_ndim` is read from the rank of its output on one
  example of `input_shape`, run abstractly (`jax.eval_shape`): `ndim - 2`
  for a feature map (`[B, H, W, C]` gives 2, `[B, L, C]` 1), 0 for vectors
  `[B, F]`, and 0 for every unit when `token_targets` (the time axis
  carries labels). The number of outputs is not checked here
  (:func:`as_stack` does).

  Args:
    units: the modules, in order; every cut between two is a possible block
      boundary.
    input_shape: one example's shape, without the batch axis.
    activations: one per unit, applied to its output. Default: a plain
      function that follows a module (`[nn.Dense(512), nn.relu, ...]`) is
      that module's activation, not a unit of its own; the identity
      elsewhere.
    token_targets: labels per token (`[batch, time]`).
    input_dtype: the inputs' dtype (`"int32"` for tokens).
    name: the stack's name.

  Raises:
    TypeError: when `units` is not a sequence, or a unit is not a module or
      a function (:func:`as_unit`).
    ValueError: for no units, a wrong number of activations, or a unit whose
      abstract call fails (naming the unit's index and type).

  Example::

    stack = from_units([nn.Sequential([nn.Dense(16), nn.relu]),
                        nn.Sequential([nn.Dense(16), nn.relu]),
                        nn.Dense(10)], input_shape=(784,))
    stack.position_ndim   # (0, 0, 0)
  """
  return _build(units, input_shape, activations, token_targets, input_dtype,
                name)[0]


def _build(units, input_shape, activations, token_targets, input_dtype, name
           ) -> tuple[base.LayerStack, list[tuple[int, ...]]]:
  """:func:`from_units`, and every unit's output shape."""
  if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
    raise TypeError(f"units must be a sequence of modules, got "
                    f"{type(units).__name__}")
  if not units:
    raise ValueError("units must hold at least one module, got an empty "
                     "sequence")
  shape = _check_input_shape(input_shape)
  if activations is None:
    units, activations = _fold_functions(units)
  adapted = tuple(as_unit(u) for u in units)
  activations = tuple(activations)
  if len(activations) != len(adapted) or not all(map(callable, activations)):
    raise ValueError(f"activations must be {len(adapted)} functions (one per "
                     f"unit), got {len(activations)} entries")
  shapes = _output_shapes(adapted, activations, units, shape, input_dtype)
  position_ndim = tuple(0 if token_targets or len(s) < 3 else len(s) - 2
                        for s in shapes)
  return base.LayerStack(name, adapted, activations, position_ndim,
                         bool(token_targets)), shapes


def _is_function(value) -> bool:
  return callable(value) and not isinstance(value, (nn.Module, nnx.Module,
                                                    type))


def _fold_functions(units) -> tuple[list[Any], list[Callable]]:
  """Units and activations: a plain function that follows a module is that
  module's activation (`[Dense, relu, Dense]` is two units, the first with
  the activation relu), so no cut can fall between a layer and its
  nonlinearity and no block is left without parameters."""
  grouped, activations = [], []
  for unit in units:
    if _is_function(unit) and grouped:
      before = activations[-1]
      activations[-1] = (unit if before is base.identity else
                         lambda h, f=before, g=unit: g(f(h)))
    else:
      grouped.append(unit)
      activations.append(base.identity)
  return grouped, activations


def as_stack(value: Any, *, num_classes: int, input_shape: Sequence[int],
             input_dtype: Any = "float32", token_targets: bool = False
             ) -> base.LayerStack:
  """What a user's model factory returned, as a checked
  :class:`~bll_jax.models.LayerStack`.

  * a LayerStack: its units through :func:`as_unit` (so stock layers work
    there too), the rest as it is (its own `token_targets` stands);
  * a sequence of modules: :func:`from_units`;
  * an `nn.Sequential`: :func:`from_units` of its layers (each module one
    unit; a plain function such as `nn.relu` after a module is that unit's
    activation).

  The last unit must give `num_classes` features on its last axis (checked
  abstractly, on one example of `input_shape`).

  Args:
    value: what the factory returned.
    num_classes: classes (or the vocabulary size for token targets).
    input_shape: one example's shape, without the batch axis.
    input_dtype: the inputs' dtype.
    token_targets: labels per token (for a sequence or an `nn.Sequential`).

  Raises:
    TypeError: when `value` is none of the above.
    ValueError: for no units, a unit whose abstract call fails, or a wrong
      number of outputs.

  Example::

    def factory():
      return [nn.Sequential([nn.Dense(64), nn.relu]), nn.Dense(10)]
    stack = as_stack(factory(), num_classes=10, input_shape=(40,))
  """
  if isinstance(value, base.LayerStack):
    stack = dataclasses.replace(
        value, units=tuple(as_unit(u) for u in value.units))
    shapes = _output_shapes(stack.units, stack.activations, value.units,
                            _check_input_shape(input_shape), input_dtype)
  else:
    if isinstance(value, nn.Module) and (
        type(value).__call__ is nn.Sequential.__call__):
      units = value.layers
    elif isinstance(value, (list, tuple)):
      units = value
    else:
      raise TypeError(
          "the model factory must return a LayerStack, a list or tuple of "
          f"modules, or an nn.Sequential, got {type(value).__name__}")
    stack, shapes = _build(units, input_shape, None, token_targets,
                           input_dtype, "custom")
  features = shapes[-1][-1]
  if features != num_classes:
    raise ValueError(
        f"the model's last unit gives {features} features on its last axis, "
        f"but num_classes is {num_classes}")
  return stack
