"""`bll-train`: the command line of :func:`bll_jax.train.train_and_evaluate`.

Every config field is a flag: `--epochs 3`, `--model.widths 256,256`,
`--optimizer sgd` (underscores may be written as dashes). A few have short
aliases: `--batch-size`, `--data-dir`. With no flags the embedded default runs:
`--preset mnist1d --method bll`, offline, in about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from typing import Any, Sequence

from bll_jax.configs import presets

ALIASES = {"data_dir": "dataset.data_dir", "data-dir": "dataset.data_dir"}


def _leaves(config, prefix=""):
  for key, value in config.items():
    name = f"{prefix}{key}"
    if hasattr(value, "items"):
      yield from _leaves(value, name + ".")
    else:
      yield name, value


def _parser_type(default: Any):
  if isinstance(default, bool):
    return _parse_bool
  if isinstance(default, tuple):
    return _parse_ints
  return type(default)


def _parse_bool(text: str) -> bool:
  if text.lower() in ("1", "true", "yes", "on"):
    return True
  if text.lower() in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated integers, got {text!r}") from None


_METAVARS = {int: "INT", float: "FLOAT", str: "TEXT", _parse_bool: "BOOL",
             _parse_ints: "INTS"}


def _field_comments() -> dict[str, str]:
  """`name -> comment` of each `c.name = value  # comment` in base_config.

  The comments of :func:`presets.base_config` document the allowed values
  (`adam | adamw | sgd`); `--help` shows them, so they are written once.
  """
  comments = {}
  for line in inspect.getsource(presets.base_config).splitlines():
    match = re.match(r"\s*c\.([\w.]+)\s*=.*?#\s*(.+)$", line)
    if match:
      comments[match.group(1)] = match.group(2).strip()
  return comments


class _Parser(argparse.ArgumentParser):
  """Reports a bad flag in one line (the usage is one `--help` away)."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog="bll-train",
      description="Train a network cut into blocks with block-local learning "
                  "(or its baselines) and evaluate it.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  base = presets.base_config()
  comments = _field_comments()
  for name, default in _leaves(base):
    flags = [f"--{name}"]
    if "_" in name:
      flags.append(f"--{name.replace('_', '-')}")
    for alias, target in ALIASES.items():
      if target == name:
        flags.append(f"--{alias}")
    kind = _parser_type(default)
    help_text = f"(default from the preset; base {default!r})"
    if name in comments:
      help_text = f"{comments[name]} {help_text}".replace("%", "%%")
    if name == "preset":
      parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                          choices=sorted(presets.PRESETS),
                          help="the preset to start from (default mnist1d)")
    elif name == "resume":
      parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                          nargs="?", const=True, type=_parse_bool,
                          help="continue the latest checkpoint in --workdir")
    else:
      parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                          type=kind, metavar=_METAVARS.get(kind, "VALUE"),
                          help=help_text)
  parser.add_argument("--print-config", action="store_true",
                      default=argparse.SUPPRESS,
                      help="print the resolved config and exit")
  parser.add_argument("--processes", type=int, default=argparse.SUPPRESS,
                      help="run as N processes on this machine, one block "
                           "(stage) and one core each (bll_jax.launch)")
  return parser


def config_from_args(argv: Sequence[str] | None = None):
  """The config of the command line: a preset with the flags applied.

  Returns:
    `(config, explicit)`: the config and the names of the fields given.
  """
  parser = build_parser()
  args = vars(parser.parse_args(argv))
  print_config = args.pop("print_config", False)
  config = presets.get_config(args.pop("preset", "mnist1d"))
  for name, value in args.items():
    node = config
    *path, leaf = name.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  explicit = set(args)
  try:
    _resolve_cut(config, explicit)
  except ValueError as e:
    parser.error(str(e))
  config.print_config = print_config
  return config, explicit


def _resolve_cut(config, explicit: set[str]) -> None:
  """`--blocks N` alone re-cuts evenly, even on a preset with cut points.

  Presets such as `fashion_mnist_resnet18` cut at stage boundaries
  (`cuts`), which take precedence over `blocks`; a user who asks for
  `--blocks 2` means two blocks, so the preset's cut points are dropped.
  Both flags given must agree (`len(cuts) + 1 == blocks`).
  """
  if "blocks" in explicit and "cuts" not in explicit:
    config.cuts = ()
  elif {"blocks", "cuts"} <= explicit and config.cuts and (
      len(config.cuts) + 1 != config.blocks):
    raise ValueError(
        f"--cuts {','.join(map(str, config.cuts))} makes "
        f"{len(config.cuts) + 1} blocks but --blocks is {config.blocks}; "
        f"give one of the two")


def _check_method_conflicts(config, explicit: set[str]) -> None:
  from bll_jax import experiment
  from bll_jax import train

  fixed = experiment.METHOD_SETTINGS.get(config.method, {})
  for field, value in fixed.items():
    if field in explicit and value is None:
      raise train.ConfigError(
          f"method {config.method!r} sets {field} to the number of classes; "
          f"do not pass --{field} (or use --method bll to choose it)")
    if field in explicit and config[field] != value:
      raise train.ConfigError(
          f"method {config.method!r} fixes {field}={value!r}; got "
          f"--{field} {config[field]!r} (use --method bll to choose it)")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0, 1 or 2).

  `--processes N` hands the rest of the command line to
  :mod:`bll_jax.launch`: N worker processes on this machine, one per core.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  if "--processes" in argv:
    i = argv.index("--processes")
    if i + 1 >= len(argv) or not argv[i + 1].isdigit():
      print("bll-train: error: --processes needs a positive integer",
            file=sys.stderr)
      return 2
    from bll_jax import launch
    return launch.launch(int(argv[i + 1]), argv[:i] + argv[i + 2:])
  config, explicit = config_from_args(argv)
  print_config = config.print_config
  del config.print_config
  # Imported after parsing, so --help never waits for JAX.
  from bll_jax import checkpoint as checkpoint_lib
  from bll_jax import train

  try:
    _check_method_conflicts(config, explicit)
    if print_config:
      print(config.to_json_best_effort(indent=2))
      return 0
    if config.distributed:
      initialize_distributed(config)
    summary = train.train_and_evaluate(config)
  except train.ConfigError as e:
    print(f"bll-train: error: {e}", file=sys.stderr)
    return 2
  except (train.TrainingDiverged, checkpoint_lib.CheckpointError) as e:
    print(f"bll-train: error: {e}", file=sys.stderr)
    return 1
  blocks = ", ".join("-" if a is None else f"{a:.4f}"
                     for a in summary["per_block_test_accuracy"])
  line = {k: summary[k] for k in ("preset", "method", "dataset", "model",
                                  "blocks", "steps", "test_accuracy")}
  print(json.dumps(line))
  print(f"per-block test accuracy: {blocks}; "
        f"{summary['examples_per_second'] or 0:.0f} examples/s; "
        f"{summary['wall_seconds']:.1f} s")
  return 0


def initialize_distributed(config) -> None:
  """`jax.distributed.initialize`, auto-detected unless the config says.

  On a TPU pod slice and under SLURM every argument is detected; elsewhere
  give `--coordinator-address host:port --num-processes N --process-id i`.
  """
  import jax

  kwargs = {}
  if config.coordinator_address:
    kwargs["coordinator_address"] = config.coordinator_address
  if config.num_processes:
    kwargs["num_processes"] = int(config.num_processes)
  if config.process_id >= 0:
    kwargs["process_id"] = int(config.process_id)
  jax.distributed.initialize(**kwargs)


def entry_point() -> None:  # console script
  sys.exit(main())


if __name__ == "__main__":
  entry_point()
