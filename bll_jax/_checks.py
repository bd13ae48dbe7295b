"""Argument checks shared by the pure functions: one clear `ValueError` each.

Every check looks at static information only (shapes and dtypes), so it runs
once at trace time and costs nothing under `jax.jit`. Value checks (a label out
of range) run only when the value is concrete, never on a tracer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def floating(name: str, x: Any) -> jax.Array:
  """Returns `x` as an array, or raises unless its dtype is floating point."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"{name} must have a floating dtype (float32, bfloat16, ...), "
        f"got {x.dtype} with shape {x.shape}")
  return x


def at_least_1d(name: str, x: jax.Array, what: str = "[..., features]") -> None:
  if x.ndim < 1:
    raise ValueError(f"{name} must have shape {what}, got a scalar")


def same_dtype(names: tuple[str, str], a: jax.Array, b: jax.Array) -> None:
  if a.dtype != b.dtype:
    raise ValueError(
        f"{names[0]} and {names[1]} must have the same dtype, got "
        f"{a.dtype} and {b.dtype}; cast one explicitly")


def same_shape(names: tuple[str, str], a: jax.Array, b: jax.Array) -> None:
  if a.shape != b.shape:
    raise ValueError(
        f"{names[1]} must have the shape of {names[0]}, {a.shape}, got "
        f"{b.shape} (no implicit broadcasting)")


def integer_labels(name: str, labels: Any, batch_shape: tuple[int, ...],
                   num_classes: int) -> jax.Array:
  """Checks integer class labels of shape `batch_shape` in [0, num_classes)."""
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
        f"{name} must be integer class indices, got dtype {labels.dtype}")
  if labels.shape != tuple(batch_shape):
    raise ValueError(
        f"{name} must have shape {tuple(batch_shape)} (the leading shape of "
        f"eta_fwd), got {labels.shape}")
  if not isinstance(labels, jax.core.Tracer) and labels.size:
    values = np.asarray(labels)   # concrete: an eager call, or a jit constant
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"{name} must lie in [0, {num_classes}) (eta_fb holds "
          f"{num_classes} classes), got values in [{lo}, {hi}]")
  return labels
