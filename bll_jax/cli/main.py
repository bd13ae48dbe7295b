"""`bll-train`: the command line of :func:`bll_jax.training.train_and_evaluate`.

Every config field is a flag, generated from :data:`bll_jax.config.FIELDS`
(its help text and allowed values included; :mod:`bll_jax.config.flags`):
`--epochs 3`, `--model.widths 256,256`, `--optimizer sgd` (underscores may
be written as dashes). A few have short aliases: `--batch-size`,
`--data-dir`. With no
flags the embedded default runs: `--preset mnist1d --method bll`, offline,
in about a minute on two CPU cores.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from bll_jax import config as config_lib
from bll_jax.config import ConfigError
from bll_jax.config import flags

def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0, 1 or 2).

  `--processes N` hands the rest of the command line to
  :mod:`bll_jax.cli.launch`: N worker processes on this machine, one per
  core.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  if "--processes" in argv:
    i = argv.index("--processes")
    if i + 1 >= len(argv) or not argv[i + 1].isdigit():
      print("bll-train: error: --processes needs a positive integer",
            file=sys.stderr)
      return 2
    from bll_jax.cli import launch
    return launch.launch(int(argv[i + 1]), argv[:i] + argv[i + 2:])
  try:
    config, _, print_config = flags.config_from_args(argv)
  except ConfigError as e:
    print(f"bll-train: error: {e}", file=sys.stderr)
    return 2
  if print_config:
    print(config.to_json_best_effort(indent=2))
    return 0
  if not config.workdir and not config.resume:
    config.workdir = config_lib.default_workdir(config)
  interrupted = "bll-train: interrupted before training began"
  try:
    # Imported after parsing, so --help never waits for the training stack.
    from bll_jax import training
  except KeyboardInterrupt:
    print(interrupted, file=sys.stderr)
    return 130
  try:
    if config.distributed:
      initialize_distributed(config)
    summary = training.train_and_evaluate(config)
  except ConfigError as e:
    print(f"bll-train: error: {e}", file=sys.stderr)
    return 2
  except (training.TrainingDiverged, training.CheckpointError) as e:
    print(f"bll-train: error: {e}", file=sys.stderr)
    return 1
  except training.Interrupted as e:
    print(f"bll-train: {e}", file=sys.stderr)
    return 130
  except KeyboardInterrupt:       # while loading data or compiling
    print(interrupted, file=sys.stderr)
    return 130
  except OSError as e:            # disk full, permissions, lost mounts
    where = f" ({e.filename})" if e.filename else ""
    print(f"bll-train: error: {e.strerror or e}{where}; the checkpoints "
          f"written so far in {config.workdir} are intact", file=sys.stderr)
    return 1
  blocks = ", ".join("-" if a is None else f"{a:.4f}"
                     for a in summary["per_block_test_accuracy"])
  line = {k: summary[k] for k in ("preset", "method", "dataset", "model",
                                  "blocks", "steps", "test_accuracy")}
  print(json.dumps(line))
  print(f"per-block test accuracy: {blocks}; the blocks' mixture "
        f"{summary['mixture_test_accuracy']:.4f} (evaluation only); "
        f"{summary['examples_per_second'] or 0:.0f} examples/s; "
        f"{summary['wall_seconds']:.1f} s")
  print(f"bll-train: wrote {os.path.join(config.workdir, 'summary.json')}",
        file=sys.stderr)
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
  status = main()
  if status:
    # A failed checkpoint read or write leaves orbax's threads to complain
    # at interpreter shutdown; the one line above has said what happened.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
  sys.exit(status)
