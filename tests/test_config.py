"""bll_jax.config: one schema, presets as files, overrides, checks."""

import pytest

from bll_jax import config as config_lib
from bll_jax import data
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax import feedback
from bll_jax import models
from bll_jax import parallel
from bll_jax.config import schema
from bll_jax.parallel import schedule


def test_the_schemas_allowed_values_are_the_librarys():
  """The schema writes them as data (so that --help imports no JAX); these
  are the tuples the code they configure accepts."""
  from bll_jax import blocks
  assert schema.DATASETS == data.DATASETS
  assert schema.DATA_SOURCES == data.SOURCES
  assert schema.GENERATED_DATASETS == data.GENERATED
  assert schema.MODELS == models.MODELS
  assert sorted(schema.FAMILIES) == sorted(families.FAMILIES)
  assert schema.FEEDBACK_MODES == feedback.MODES
  assert schema.FEEDBACK_LOSSES == engine_lib.FEEDBACK_LOSSES
  assert schema.READOUTS == blocks.READOUTS
  assert schema.TRANSMITS == blocks.TRANSMITS
  assert schema.BOUNDARIES == blocks.BOUNDARIES
  assert schema.SCHEDULES == schedule.SCHEDULES
  assert schema.PIPELINES == parallel.PIPELINES
  assert schema.STEP_MODES == parallel.STEP_MODES


def test_base_config_holds_every_field_once_with_its_default():
  base = config_lib.base_config()
  names = [field.name for field in config_lib.FIELDS]
  assert len(names) == len(set(names))
  for field in config_lib.FIELDS:
    assert schema.get(base, field.name) == field.default, field.name
  # and nothing else: the leaves of the config are the fields.
  def leaves(node, prefix=""):
    for key, value in node.items():
      if hasattr(value, "items"):
        yield from leaves(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}"
  assert sorted(leaves(base)) == sorted(names)


@pytest.mark.parametrize("preset", config_lib.PRESETS)
def test_every_preset_is_a_file_whose_config_passes_the_checks(preset):
  config = config_lib.get_config(preset)
  assert config.preset == preset
  config_lib.check(config)
  # A fresh copy each time: changing one does not change the next.
  config.epochs = 999
  assert config_lib.get_config(preset).epochs != 999


@pytest.mark.parametrize("field,value,words", [
    ("label_smoothing", 5.0, ["label_smoothing", "in [0, 1)", "5.0"]),
    ("feedback_lr", -1.0, ["feedback_lr", ">= 0"]),
    ("model.dropout", 1.5, ["model.dropout", "in [0, 1)"]),
    ("model.dropout", -0.5, ["model.dropout", "in [0, 1)"]),
    ("keep_checkpoints", -1, ["keep_checkpoints", ">= 1"]),
    ("lr", float("inf"), ["lr", "> 0", "inf"]),
    ("seed", -1, ["seed", ">= 0"]),
    ("model.channels", (0, 0, 0), ["model.channels", ">= 1"]),
    ("model.strides", (0, 0, 0), ["model.strides", ">= 1"]),
    ("optimizer", "lion", ["optimizer", "'adam'", "'lion'"]),
])
def test_out_of_range_values_are_refused_in_one_line(field, value, words):
  config = config_lib.get_config("mnist1d")
  config_lib.apply_overrides(config, {field: value})
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.check(config)
  message = str(info.value)
  assert "\n" not in message
  for word in words:
    assert word in message, (word, message)


def test_fields_that_must_agree_are_checked_together():
  config = config_lib.from_overrides("mnist1d", {"feedback_lag": 1})
  with pytest.raises(config_lib.ConfigError, match="feedback_lag"):
    config_lib.check(config)
  config = config_lib.from_overrides("mnist1d", {"schedule": "pipelined",
                                                 "checkpoint_every_steps": 5})
  with pytest.raises(config_lib.ConfigError, match="checkpoint_every_steps"):
    config_lib.check(config)
  # The data source "generated" is one the datasets accept.
  config_lib.check(config_lib.from_overrides("mnist1d",
                                             {"dataset.source": "generated"}))


def test_overrides_follow_the_command_lines_rules():
  config = config_lib.get_config("fashion_mnist_resnet18")
  assert config.cuts == (3, 5, 7)
  explicit = config_lib.apply_overrides(config, {"blocks": 2})
  assert explicit == {"blocks"} and config.cuts == ()
  assert config_lib.num_blocks(config) == 2
  both = config_lib.from_overrides("fashion_mnist_resnet18",
                                   {"blocks": 3, "cuts": (3, 5)})
  assert config_lib.num_blocks(both) == 3
  for overrides, match in [
      ({"blocks": 2, "cuts": (3, 5)}, "make 3 blocks but blocks is 2"),
      ({"method": "local", "family": "gaussian"}, "fixes family"),
      ({"method": "local", "readout": "identity"},
       r"fixes readout='linear' \(or one of"),
      ({"method": "local", "group_size": 4}, "number of classes"),
      ({"model.depth": 3}, "unknown config field 'model.depth'"),
      ({"epochs": "three"}, "epochs")]:
    with pytest.raises(config_lib.ConfigError, match=match):
      config_lib.from_overrides("fashion_mnist_resnet18", overrides)


def test_local_keeps_a_deeper_head_and_a_head_per_target():
  from bll_jax.training import build
  for readout in ("linear", "mlp", "unit"):
    config = config_lib.from_overrides(
        "shakespeare_char", {"method": "local", "readout": readout,
                             "horizon": 2, "history": 1})
    resolved = build.resolve(config, 84)
    assert resolved.readout == readout and resolved.family == "categorical"
    # One Categorical group of the 84 classes per target: 3 targets.
    assert resolved.group_size == 84 and resolved.readout_features == 3 * 84
  default = build.resolve(config_lib.from_overrides(
      "shakespeare_char", {"method": "local"}), 84)
  assert default.readout == "linear" and default.readout_features == 84


def test_the_default_workdir_is_unique_per_run():
  config = config_lib.get_config("mnist1d")
  first, second = (config_lib.default_workdir(config) for _ in range(2))
  assert first != second
  assert first.startswith("runs/mnist1d-bll-")
