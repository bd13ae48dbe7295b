"""From a checked config to the objects of a run: data, optimiser, engine.

:func:`resolve` turns the methods `local` and `drtp` (and the authors'
recipe) into the block-local settings they are special cases of;
:func:`make_engine` builds the engine of a resolved config, handing it the
config's loss recipe.
"""

from __future__ import annotations

import ml_collections
import optax

from bll_jax import blocks as blocks_lib
from bll_jax import engine as engine_lib
from bll_jax import families as families_lib
from bll_jax import models as models_lib
from bll_jax.config import METHOD_CHOICES
from bll_jax.config import METHOD_SETTINGS

# `--dataset.eval-split validation` on an in-memory classification dataset:
# this fraction of its training examples is held out and evaluated on.
VALIDATION_FRACTION = 0.1


def resolve(config: ml_collections.ConfigDict, num_classes: int
            ) -> ml_collections.ConfigDict:
  """A copy of `config` with the settings `local` and `drtp` stand for."""
  config = ml_collections.ConfigDict(config.to_dict())
  choices = METHOD_CHOICES.get(config.method, {})
  for field, value in METHOD_SETTINGS.get(config.method, {}).items():
    if config[field] not in choices.get(field, ()):
      config[field] = num_classes if value is None else value
  if config.method == "local":
    # One classifier head of C units per target (a Categorical group
    # each): the onehot feedback is s * I over all the targets' rows.
    config.readout_features = num_classes * (int(config.horizon)
                                             + int(config.history))
  if config.recipe == "authors":
    # The recipe reads the block outputs as features; its feedback is a
    # bias-free linear map of the label, initialised like PyTorch's Linear
    # (uniform +-1/sqrt(C): standard deviation 1/sqrt(3C)).
    for field, value in RECIPE_SETTINGS.items():
      config[field] = value
    config.feedback_init_scale = (3 * num_classes) ** -0.5
  return config


RECIPE_SETTINGS = {"family": "gaussian", "variance": 1.0, "boundary": "post",
                   "readout": "identity", "transmit": "mean",
                   "feedback": "direct", "grid": 0}


def make_family(config) -> families_lib.Family:
  kwargs = {"gaussian": {"variance": float(config.variance)},
            "categorical": {"group_size": int(config.group_size)},
            "gaussian_learned_variance": {
                "min_precision": float(config.min_precision)}}
  return families_lib.get(config.family, **kwargs.get(config.family, {}))


def make_optimizer(config, steps_per_epoch: int, total_steps: int,
                   lr: float | None = None) -> optax.GradientTransformation:
  """The optax transformation of `config` (each block holds its own state)."""
  lr = learning_rate(config, steps_per_epoch, total_steps, lr)
  if config.optimizer == "adam":
    return optax.adam(lr)
  if config.optimizer == "adamw":
    return optax.adamw(lr, weight_decay=config.weight_decay)
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(lr, momentum=config.momentum or None,
                nesterov=bool(config.nesterov)))


def learning_rate(config, steps_per_epoch: int, total_steps: int,
                  lr: float | None = None):
  """The learning rate of `config`: a float, or an optax schedule of steps.

  constant: `lr`; cosine: warm-up over `warmup_epochs`, cosine decay to 0;
  triangular (ffcv): linear from 0 to `lr` at `lr_peak_epoch`, then to 0 at
  the last step.
  """
  lr = float(config.lr if lr is None else lr)
  if config.lr_schedule == "triangular":
    peak = max(int(config.lr_peak_epoch * steps_per_epoch), 1)
    lr = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, peak),
         optax.linear_schedule(lr, 0.0, max(total_steps - peak, 1))], [peak])
  elif config.lr_schedule == "cosine":
    warmup = int(config.warmup_epochs * steps_per_epoch)
    lr = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1))
  return lr


def make_stack(config, info) -> models_lib.LayerStack:
  """The network of `config`, sized for the dataset `info` describes.

  Raises:
    ValueError: a model that cannot read the dataset's inputs (one line).
  """
  if not config.model.factory:      # a factory's network is checked by use
    check_model_fits_data(config.model.name, info)
  return models_lib.build(config.model, info.num_classes, info.input_shape,
                          info.input_dtype, info.task != "classification")


def check_model_fits_data(model: str, info) -> None:
  """Refuses, in one line, a model that cannot read the dataset's inputs:
  the Transformer reads token sequences (a label per token), the others
  float signals or images (a label per example), ResNets images only."""
  data = (f"dataset {info.name!r} gives {info.input_dtype} inputs of shape "
          f"{info.input_shape}")
  if model == "transformer" and info.task == "classification":
    raise ValueError(f"model.name 'transformer' reads token sequences (the "
                     f"datasets reverse, sort, copy, text); {data}: use mlp, "
                     "cnn or a resnet")
  if model != "transformer" and info.task != "classification":
    raise ValueError(f"model.name {model!r} predicts one class per example; "
                     f"{data} with a label per token: use model.name "
                     "transformer")
  if model.startswith("resnet") and len(info.input_shape) != 3:
    raise ValueError(f"model.name {model!r} reads images (height, width, "
                     f"channels); {data}: use mlp or cnn")


def make_engine(config, info, steps_per_epoch: int, total_steps: int,
                temperature: tuple[float, ...] | None = None
                ) -> engine_lib.Engine:
  """The engine of a resolved config for a dataset; checks the cut.

  `temperature`, one per hidden block, replaces `config.temperature` (see
  :func:`bll_jax.calibration.calibrated_temperatures`).

  Raises:
    ValueError: a cut that does not fit the model, or settings that do not
      fit the task (one line each).
  """
  stack = make_stack(config, info)
  edges = blocks_lib.boundaries(len(stack), int(config.blocks),
                                tuple(config.cuts) or None)
  if config.feedback == "bootstrapped" and stack.token_targets:
    raise ValueError("feedback 'bootstrapped' is per example and class: not "
                     "supported with token targets; use direct or chained")
  family = make_family(config)
  latent = blocks_lib.Latent(family, config.readout,
                             int(config.readout_features), config.transmit,
                             config.boundary, int(config.grid),
                             readout_depth=int(config.readout_depth))
  method = "bp" if config.method == "bp" else "bll"
  tx = make_optimizer(config, steps_per_epoch, total_steps)
  fb_tx = make_optimizer(config, steps_per_epoch, total_steps,
                         config.feedback_lr or None)
  objective = engine_lib.Objective(
      temperature=(float(config.temperature) if temperature is None
                   else tuple(temperature)),
      feedback_loss=config.feedback_loss,
      label_smoothing=float(config.label_smoothing),
      chunk_size=int(config.chunk_size) or None,
      decorrelation=float(config.decorrelation),
      horizon=int(config.horizon), history=int(config.history),
      accumulate_evidence=bool(config.accumulate_evidence))
  recipe = None
  if config.recipe == "authors":
    from bll_jax.recipes import authors
    recipe = authors.AuthorsRecipe(**config.authors.to_dict())
  return engine_lib.Engine(
      stack, edges, [latent] * (len(edges) - 2), method=method,
      feedback_mode=config.feedback, num_classes=info.num_classes,
      input_shape=info.input_shape, input_dtype=info.input_dtype, tx=tx,
      feedback_tx=fb_tx, objective=objective,
      feedback_init_scale=float(config.feedback_init_scale),
      onehot_scale=float(config.onehot_scale), recipe=recipe)


def load_dataset(config):
  """The dataset of `config` (this is where data is read or generated)."""
  from bll_jax import data as data_lib

  options = {}
  if config.dataset.name in ("reverse", "sort", "copy"):
    options = {"length": int(config.dataset.length),
               "num_symbols": int(config.dataset.num_symbols),
               "train_size": int(config.dataset.train_size),
               "eval_split": config.dataset.eval_split}
  elif config.dataset.name == "text":
    options = {"context": int(config.dataset.context),
               "train_size": int(config.dataset.train_size),
               "eval_split": config.dataset.eval_split}
  elif config.dataset.name == "imagenet2012":
    options = {"image_size": int(config.dataset.image_size)}
    if config.dataset.progressive:
      options["progressive"] = tuple(config.dataset.progressive)
  dataset = data_lib.load(config.dataset.name,
                          data_dir=config.dataset.data_dir or None,
                          source=config.dataset.source, **options)
  if config.dataset.eval_split == "validation" and "eval_split" not in options:
    if not hasattr(dataset, "validation_split"):
      raise ValueError("dataset.eval_split 'validation' holds out training "
                       "examples of an in-memory dataset (mnist1d, idx "
                       f"files), not {config.dataset.name!r} from tfds")
    dataset = dataset.validation_split(VALIDATION_FRACTION)
  if int(config.dataset.train_examples):
    if not hasattr(dataset, "subset"):
      raise ValueError("dataset.train_examples needs an in-memory dataset "
                       f"(mnist1d, idx files, sequences), not {config.dataset.name!r} "
                       "from tfds")
    dataset = dataset.subset(int(config.dataset.train_examples))
  return dataset
