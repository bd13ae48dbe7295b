"""Every config field, once: its default, what it means, what it may be.

:data:`FIELDS` is the single source of truth: :func:`base_config` builds the
default `ml_collections.ConfigDict` from it, `bll-train --help` prints its
help texts and allowed values, and :func:`bll_jax.config.check` enforces them. Allowed
values that the library owns (datasets, models, families, feedback modes)
are written here as data so that `--help` never imports JAX; a test holds
them equal to the library's own tuples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """An invalid config or missing data, found before anything compiles."""


# What a number must be (`Field.bound`).
BOUNDS = {
    "positive": (lambda v: v > 0, "> 0"),
    "non_negative": (lambda v: v >= 0, ">= 0"),
    "at_least_one": (lambda v: v >= 1, ">= 1"),
    "at_least_minus_one": (lambda v: v >= -1, ">= -1"),
    "fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field.

  Attributes:
    name: dotted name (`model.widths`); also the flag `--model.widths`.
    default: the base value (its type is the field's type).
    help: what it means.
    choices: the allowed values, if it is one of a few.
    bound: a key of :data:`BOUNDS` for numbers (and every element of a
      tuple of numbers); numbers must also be finite.
  """

  name: str
  default: Any
  help: str
  choices: tuple[Any, ...] | None = None
  bound: str | None = None

  def describe(self) -> str:
    """The help text, with the allowed values (for `--help`)."""
    text = self.help
    if self.choices is not None:
      text += " (one of: " + ", ".join(repr(c) if c == "" else str(c)
                                       for c in self.choices) + ")"
    elif self.bound:
      text += f" ({BOUNDS[self.bound][1]})"
    return text


DATASETS = ("mnist1d", "fashion_mnist", "mnist", "cifar10", "imagenet2012",
            "reverse", "sort", "copy", "text")
# Made, not read: they take no data_dir.
GENERATED_DATASETS = ("mnist1d", "reverse", "sort", "copy")
DATA_SOURCES = ("auto", "generated", "idx", "tfds", "files")
MODELS = ("mlp", "cnn", "resnet18", "resnet34", "resnet50", "transformer")
METHODS = ("bll", "bp", "local", "drtp")
FAMILIES = ("bernoulli", "categorical", "gaussian",
            "gaussian_learned_variance")
FEEDBACK_MODES = ("direct", "chained", "chained_local", "bootstrapped",
                  "random", "onehot")
FEEDBACK_LOSSES = ("ml", "discriminative", "both")
READOUTS = ("identity", "linear", "mlp", "unit")
TRANSMITS = ("mean", "sample")
BOUNDARIES = ("auto", "pre", "post")
RECIPES = ("", "authors")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "triangular")
TEMPERATURE_CALIBRATIONS = ("none", "init")
STEP_MODES = ("fused", "per_block")
SCHEDULES = ("sync", "pipelined")
PIPELINES = ("auto", "mpmd", "spmd", "gpipe", "1f1b")

F = Field
FIELDS: tuple[Field, ...] = (
    F("preset", "", "the preset the config started from"),
    # The data.
    F("dataset.name", "mnist1d", "the dataset", DATASETS),
    F("dataset.data_dir", "", "where the dataset's files are (\"\": its "
      "default location; text: a file or a folder of *.txt)"),
    F("dataset.source", "auto", "where the data comes from (see "
      "bll_jax.data)", DATA_SOURCES),
    F("dataset.length", 16, "sequence tasks: source length L",
      bound="at_least_one"),
    F("dataset.num_symbols", 16, "sequence tasks: symbols (vocabulary - 2)",
      bound="at_least_one"),
    F("dataset.train_size", 65536, "sequence tasks, text: examples (windows) "
      "per epoch", bound="at_least_one"),
    F("dataset.context", 128, "text: characters per example",
      bound="at_least_one"),
    F("dataset.eval_split", "test", "evaluate on held-out data to choose "
      "settings on: sequences their own validation stream, in-memory "
      "datasets a tenth of the training examples, not trained on",
      ("test", "validation")),
    F("dataset.train_examples", 0, "> 0: a fixed random subset of the "
      "training set", bound="non_negative"),
    F("dataset.image_size", 224, "imagenet2012: crop size",
      bound="at_least_one"),
    F("dataset.progressive", (), "imagenet2012: (min_res, max_res, start "
      "epoch, end epoch)", bound="non_negative"),
    # The network.
    F("model.name", "mlp", "the network", MODELS),
    F("model.factory", "", "your own network instead: \"module:function\" "
      "returning a list of modules (flax linen, NNX, functions), an "
      "nn.Sequential or a LayerStack; called with num_classes, input_shape, "
      "input_dtype where it names them (bll_jax.models.factory)"),
    F("model.widths", (512, 512, 512), "mlp: hidden widths",
      bound="at_least_one"),
    F("model.channels", (32, 64, 128), "cnn: channels per conv unit",
      bound="at_least_one"),
    F("model.kernels", (5, 3, 3), "cnn: kernel sizes", bound="at_least_one"),
    F("model.strides", (1, 2, 2), "cnn: strides", bound="at_least_one"),
    F("model.norm", True, "cnn: BatchNorm after each conv"),
    F("model.head", "flatten", "cnn: the head's input", ("flatten", "pool")),
    F("model.stem", "cifar", "resnet: the stem", ("cifar", "imagenet")),
    F("model.width", 64, "resnet: channels of the first stage",
      bound="at_least_one"),
    F("model.num_layers", 8, "transformer: layers", bound="at_least_one"),
    F("model.d_model", 128, "transformer: width", bound="at_least_one"),
    F("model.num_heads", 4, "transformer: attention heads",
      bound="at_least_one"),
    F("model.mlp_dim", 512, "transformer: MLP width", bound="at_least_one"),
    F("model.dropout", 0.0, "dropout rate", bound="fraction"),
    # The method. local and drtp are bll with fixed settings
    # (METHOD_SETTINGS below).
    F("method", "bll", "bll (block-local), bp (end-to-end backprop, same "
      "network), local (greedy local classifiers), drtp (fixed random "
      "feedback)", METHODS),
    F("family", "gaussian", "the latent's exponential family", FAMILIES),
    F("variance", 1.0, "gaussian: the fixed variance", bound="positive"),
    F("group_size", 2, "categorical: states per group",
      bound="at_least_one"),
    F("min_precision", 1e-3, "gaussian_learned_variance: least precision",
      bound="positive"),
    F("feedback", "chained", "the feedback network", FEEDBACK_MODES),
    F("feedback_loss", "discriminative", "what the feedback learns from",
      FEEDBACK_LOSSES),
    F("feedback_init_scale", 1.0, "standard deviation of the feedback "
      "tables at init", bound="positive"),
    F("onehot_scale", 30.0, "s of the onehot feedback (and of the output "
      "in bootstrapped feedback)", bound="positive"),
    F("readout", "identity", "how a hidden block's output is read as its "
      "latent (bll_jax.blocks.Latent)", READOUTS),
    F("readout_features", 0, "linear readout: latent units",
      bound="non_negative"),
    F("readout_depth", 1, "readout unit: how many units after the block "
      "its head copies", bound="at_least_one"),
    F("grid", 0, "feature maps: 0 = one prototype per channel for all "
      "positions; g = pool to g x g cells, a prototype per cell",
      bound="non_negative"),
    F("transmit", "mean", "what a hidden block passes on", TRANSMITS),
    F("boundary", "auto", "where the natural parameters are read "
      "(bll_jax.blocks.Latent)", BOUNDARIES),
    F("temperature", 1.0, "T of the local losses", bound="positive"),
    F("temperature_calibration", "none", "init: each hidden block's T = "
      "temperature x its class scores' spread at init",
      TEMPERATURE_CALIBRATIONS),
    F("chunk_size", 0, "classes scored at a time (0 = all at once)",
      bound="non_negative"),
    F("decorrelation", 0.0, "weight of the batch decorrelation term",
      bound="non_negative"),
    F("horizon", 1, "token targets: score each position's hidden latent "
      "against the next this many tokens (a feedback table each)",
      bound="at_least_one"),
    F("history", 0, "token targets: and against this many of the tokens "
      "it has read (1 = the current one; docs/theory.md section 6)",
      bound="non_negative"),
    F("accumulate_evidence", False, "each block's prediction a Bayesian "
      "update of the one below's (docs/theory.md section 8)"),
    # The authors' recipe (bll_jax.recipes.authors).
    F("recipe", "", "\"\" = the principled losses; authors = the losses of "
      "the authors' public code", RECIPES),
    F("authors.output", 0.43, "authors: weight of the output loss",
      bound="non_negative"),
    F("authors.decorrelation", 0.7, "authors: weight of decorrelation",
      bound="non_negative"),
    F("authors.similarity", 0.25, "authors: weight of similarity",
      bound="non_negative"),
    F("authors.auxiliary", 0.55, "authors: weight of the auxiliary "
      "classifiers", bound="non_negative"),
    F("authors.denoising", 1.0, "authors: weight of denoising",
      bound="non_negative"),
    F("authors.noise_std", 0.01, "authors: denoising noise",
      bound="non_negative"),
    F("authors.similarity_pulls", False, "authors: fix 1 (off: as "
      "published)"),
    F("authors.train_auxiliary", False, "authors: fix 2 (off: as "
      "published)"),
    # Where the network is cut.
    F("blocks", 4, "cut evenly into this many blocks ...",
      bound="at_least_one"),
    F("cuts", (), "... unless explicit cut points are given (--blocks alone "
      "drops a preset's cuts)"),
    # Optimisation.
    F("optimizer", "adam", "every block's optax optimiser", OPTIMIZERS),
    F("lr", 1e-3, "learning rate", bound="positive"),
    F("feedback_lr", 0.0, "the feedback's learning rate (0 = lr)",
      bound="non_negative"),
    F("momentum", 0.9, "sgd: momentum", bound="non_negative"),
    F("nesterov", False, "sgd: Nesterov momentum"),
    F("weight_decay", 0.0, "adamw, sgd: weight decay", bound="non_negative"),
    F("lr_schedule", "constant", "the learning-rate schedule", LR_SCHEDULES),
    F("lr_peak_epoch", 2.0, "triangular: 0 -> lr at this epoch -> 0 at the "
      "end", bound="non_negative"),
    F("warmup_epochs", 0.0, "cosine: linear warm-up epochs",
      bound="non_negative"),
    F("label_smoothing", 0.0, "of the output's cross-entropy",
      bound="fraction"),
    # The run.
    F("epochs", 5, "passes over the training set", bound="at_least_one"),
    F("steps", 0, "> 0: stop after this many updates (still evaluates); "
      "never more than the epochs hold (a warning says so)",
      bound="non_negative"),
    F("batch_size", 128, "global batch", bound="at_least_one"),
    F("eval_batch_size", 1000, "evaluation batch", bound="at_least_one"),
    F("seed", 0, "of the initial state, the batch order and every step's "
      "key", bound="non_negative"),
    F("step_mode", "fused", "one device: fused (one program) or per_block "
      "(a program per block)", STEP_MODES),
    F("mesh", "", "\"data=D,block=B\"; \"\" = all devices on data"),
    F("schedule", "sync", "sync | pipelined (bll_jax.parallel.schedule)",
      SCHEDULES),
    F("pipeline", "auto", "the pipelined runner: auto | mpmd | spmd "
      "(block-local, schedule pipelined); gpipe | 1f1b (method bp)",
      PIPELINES),
    F("micro_batches", 4, "gpipe | 1f1b: micro-batches per step",
      bound="at_least_one"),
    F("feedback_lag", 0, "pipelined (mpmd): blocks see the feedback of L "
      "updates ago", bound="non_negative"),
    F("distributed", False, "call jax.distributed.initialize() first"),
    F("coordinator_address", "", "distributed: \"\" = auto-detect (TPU, "
      "SLURM)"),
    F("num_processes", 0, "distributed: 0 = auto-detect",
      bound="non_negative"),
    F("process_id", -1, "distributed: -1 = auto-detect",
      bound="at_least_minus_one"),
    F("workdir", "", "where the run writes (\"\" = runs/<preset>-<method>-"
      "<time>)"),
    F("resume", False, "continue the latest checkpoint in --workdir"),
    F("log_every_steps", 50, "bring step metrics to the host, check them "
      "and log them every this many steps", bound="at_least_one"),
    F("checkpoint_every_steps", 0, "0 = at the end of every epoch only",
      bound="non_negative"),
    F("keep_checkpoints", 2, "checkpoints kept", bound="at_least_one"),
    F("progress", True, "progress bars"),
)
del F

FIELDS_BY_NAME = {field.name: field for field in FIELDS}

# What each special-case method fixes (field -> value; None = the number of
# classes, known once the dataset is loaded).
METHOD_SETTINGS = {
    "local": {"family": "categorical", "group_size": None, "readout": "linear",
              "readout_features": None, "feedback": "onehot"},
    "drtp": {"family": "gaussian", "readout": "identity", "feedback": "random"},
}
# Fixed fields a method still lets the user choose among some values (the
# first is what METHOD_SETTINGS sets): local classifiers with a deeper head.
METHOD_CHOICES = {
    "local": {"readout": ("linear", "mlp", "unit")},
}


def base_config() -> ml_collections.ConfigDict:
  """Every field, with its default. Presets change some of them."""
  config = ml_collections.ConfigDict()
  for field in FIELDS:
    node = config
    *path, leaf = field.name.split(".")
    for part in path:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[leaf] = field.default
  return config


def get(config, name: str):
  """The value of a dotted field."""
  node = config
  for part in name.split("."):
    node = node[part]
  return node


def check_field(field: Field, value) -> None:
  """Raises a one-line `ConfigError` unless `value` is allowed in `field`."""
  if field.choices is not None and value not in field.choices:
    raise ConfigError(f"{field.name} must be one of {list(field.choices)}, "
                      f"got {value!r}")
  if field.bound is None:
    return
  test, words = BOUNDS[field.bound]
  values = value if isinstance(value, tuple) else (value,)
  for v in values:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      raise ConfigError(f"{field.name} must be a number {words}, got "
                        f"{value!r}")
    if not (math.isfinite(v) and test(v)):
      raise ConfigError(f"{field.name} must be {words}, got {value!r}")
