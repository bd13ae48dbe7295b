"""Config overrides as text: read from `field=value`, written back as words.

`python -m experiments.sweep ... --set steps=20 --set model.widths=8,8`
reads each value as `bll-train` reads the field's flag
(:func:`bll_jax.config.flags.parse_value`): integers, floats, text,
`true`/`false`, comma-separated integers for tuples. :func:`describe` writes
overrides back in the same form, e.g.
`model.width=16 dataset.train_examples=12000`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from bll_jax import config as config_lib
from bll_jax.config.flags import parse_value


def parse(items: Iterable[str]) -> dict[str, Any]:
  """`["steps=20", "mesh=data=1"]` -> `{"steps": 20, "mesh": "data=1"}`.

  A name may be written with dashes (`dataset.train-examples`).

  Raises:
    bll_jax.config.ConfigError: an item without `=`, an unknown field, or a
      value that is not of its type.
  """
  overrides = {}
  for item in items:
    name, equals, text = item.partition("=")
    if not equals:
      raise config_lib.ConfigError(f"expected field=value, got {item!r}")
    name = name.strip().replace("-", "_")
    overrides[name] = parse_value(name, text)
  return overrides


def value_text(value: Any) -> str:
  """One value as :func:`~bll_jax.config.flags.parse_value` reads it
  back."""
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value)
  return str(value)


def describe(overrides: Mapping[str, Any]) -> str:
  """`name=value` words, in order (`(none)` for no overrides)."""
  return " ".join(f"{name}={value_text(value)}"
                  for name, value in overrides.items()) or "(none)"
