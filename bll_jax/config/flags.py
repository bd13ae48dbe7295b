"""Config from a command line: one flag per field of the schema.

:func:`build_parser` turns :data:`bll_jax.config.FIELDS` into flags (their
help texts and allowed values included): `--epochs 3`,
`--model.widths 256,256`, `--optimizer sgd` (underscores may be written as
dashes); :func:`config_from_args` applies them to a preset with
:func:`bll_jax.config.apply_overrides`, the same rules an experiment's
overrides follow. `bll-train` and the process launcher both parse here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from bll_jax.config import presets
from bll_jax.config import resume
from bll_jax.config import schema
from bll_jax.config.overrides import apply_overrides

ALIASES = {"data_dir": "dataset.data_dir", "data-dir": "dataset.data_dir"}


def parse_bool(text: str) -> bool:
  """`true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`)."""
  if text.lower() in ("1", "true", "yes", "on"):
    return True
  if text.lower() in ("0", "false", "no", "off"):
    return False
  raise ValueError(f"expected true or false, got {text!r}")


def parse_ints(text: str) -> tuple[int, ...]:
  """Comma-separated integers: `"512,512"` -> `(512, 512)`."""
  try:
    return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
  except ValueError:
    raise ValueError(
        f"expected comma-separated integers, got {text!r}") from None


def parser_of(default: Any):
  """The function that reads a field's value from text, by the type of its
  default: booleans, tuples of integers, or the type itself."""
  if isinstance(default, bool):
    return parse_bool
  if isinstance(default, tuple):
    return parse_ints
  return type(default)


def parse_value(name: str, text: str) -> Any:
  """`text` read as a value of the field `name` (what `--name text` sets).

  Raises:
    ConfigError: an unknown field, or text that is not of its type.
  """
  field = schema.FIELDS_BY_NAME.get(name)
  if field is None:
    raise schema.ConfigError(f"unknown config field {name!r} (see "
                             "bll-train --help)")
  parse = parser_of(field.default)
  try:
    return parse(text)
  except ValueError as e:
    what = (str(e) if parse in (parse_bool, parse_ints)
            else f"expected {parse.__name__}, got {text!r}")
    raise schema.ConfigError(f"{name}: {what}") from None


def _argparse_type(default: Any):
  """`parser_of(default)` with argparse's error for bad text."""
  parse = parser_of(default)
  if parse not in (parse_bool, parse_ints):
    return parse

  def parse_flag(text):
    try:
      return parse(text)
    except ValueError as e:
      raise argparse.ArgumentTypeError(str(e)) from None

  parse_flag.__name__ = parse.__name__
  return parse_flag


_METAVARS = {"int": "INT", "float": "FLOAT", "str": "TEXT",
             "parse_bool": "BOOL", "parse_ints": "INTS"}


class _Parser(argparse.ArgumentParser):
  """Reports a bad flag in one line (the usage is one `--help` away)."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(preset: str = "mnist1d") -> argparse.ArgumentParser:
  """The parser of every config field, from the schema; `--help` shows the
  values of `preset` (`bll-train --preset NAME --help` shows NAME's)."""
  defaults = presets.get_config(preset)
  parser = _Parser(
      prog="bll-train",
      description="Train a network cut into blocks with block-local learning "
                  "(or its baselines) and evaluate it. [default ...] is the "
                  f"value of the preset {preset!r}.")
  for field in schema.FIELDS:
    name = field.name
    flags = [f"--{name}"]
    if "_" in name:
      flags.append(f"--{name.replace('_', '-')}")
    for alias, target in ALIASES.items():
      if target == name:
        flags.append(f"--{alias}")
    if name == "preset":
      parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                          choices=presets.PRESETS,
                          help="the preset to start from (default mnist1d)")
    elif name == "resume":
      parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                          nargs="?", const=True,
                          type=_argparse_type(field.default),
                          help=field.describe())
    else:
      kind = _argparse_type(field.default)
      parser.add_argument(
          *flags, dest=name, default=argparse.SUPPRESS, type=kind,
          metavar=_METAVARS.get(kind.__name__, "VALUE"),
          help=(f"{field.describe()} [default "
                f"{_shown(schema.get(defaults, name))}]").replace("%", "%%"))
  parser.add_argument("--print-config", action="store_true",
                      help="print the resolved config and exit")
  parser.add_argument("--processes", type=int, default=argparse.SUPPRESS,
                      help="run as N processes on this machine, one block "
                           "(stage) and one core each (bll_jax.cli.launch)")
  return parser


def _shown(value: Any) -> str:
  if isinstance(value, tuple):
    return ",".join(map(str, value)) or '""'
  return '""' if value == "" else str(value)


def _preset_named(argv: Sequence[str]) -> str:
  """The `--preset` of a command line (for `--help`), else the default."""
  for i, arg in enumerate(argv):
    if arg == "--preset" and i + 1 < len(argv):
      return argv[i + 1] if argv[i + 1] in presets.PRESETS else "mnist1d"
    if arg.startswith("--preset="):
      name = arg.split("=", 1)[1]
      return name if name in presets.PRESETS else "mnist1d"
  return "mnist1d"


def config_from_args(argv: Sequence[str] | None = None):
  """The config of the command line: a preset with the flags applied (with
  `--resume --workdir W`: the run's saved config with the flags applied).

  Returns:
    `(config, explicit, print_config)`: the config, the names of the fields
    given, and whether `--print-config` was.

  Raises:
    SystemExit: a flag the parser refuses (one line, status 2).
    ConfigError: flags that contradict each other.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser(_preset_named(argv))
  args = vars(parser.parse_args(argv))
  print_config = args.pop("print_config")
  args.pop("processes", None)
  preset = args.pop("preset", None)
  config = None
  if args.get("resume") and args.get("workdir"):
    # A resume continues the run's own config; the flags override it
    # (training checks what they may change: config.check_resumable).
    config = resume.saved_config(args["workdir"])
    if config is not None and preset is not None:
      args["preset"] = preset
  if config is None:
    config = presets.get_config(preset or "mnist1d")
  explicit = apply_overrides(config, args)
  return config, explicit, print_config
