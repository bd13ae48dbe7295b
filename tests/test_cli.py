"""`bll-train`: bad input stops before anything compiles; flags become config.

`bll_jax.cli.main` runs in this process (stderr captured); the installed
console script runs once in a subprocess.
"""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from bll_jax import cli
from bll_jax import config as config_lib
from bll_jax import training  # noqa: F401  (imports flax, optax, orbax first)

PRESETS = ["cifar10_resnet18", "fashion_mnist_mlp", "fashion_mnist_resnet18",
           "imagenet_resnet50", "mnist1d", "seq_transformer"]
TINY_FLAGS = ["--mesh", "data=1", "--model.name", "mlp", "--model.widths",
              "32,32", "--blocks", "3",
              "--batch-size", "50", "--eval-batch-size", "500",
              "--progress", "false", "--log-every-steps", "5"]
MLP_4_UNITS = ["--model.name", "mlp", "--model.widths", "16,16,16"]
TESTS = os.path.dirname(os.path.abspath(__file__))   # a folder without data


class Compiled(AssertionError):
  """Raised by the guard: something was jitted or compiled."""


@pytest.fixture
def no_compile(monkeypatch):
  """Fails on any jit or XLA compile.

  The in-memory compilation caches are cleared first, so that a computation
  compiled by an earlier test is compiled (and caught) again.
  """
  from jax._src import compiler

  def refuse(*args, **kwargs):
    raise Compiled("compiled before the bad input was reported")

  jax.clear_caches()
  monkeypatch.setattr(jax, "jit", refuse)
  monkeypatch.setattr(compiler, "compile_or_get_cached", refuse)


@pytest.fixture
def empty_cwd(monkeypatch, tmp_path):
  """Runs in an empty working directory and checks that it stays empty."""
  monkeypatch.chdir(tmp_path)
  yield tmp_path
  assert os.listdir(tmp_path) == [], "the command left files behind"


def test_the_compile_guard_catches_jit_and_eager_computations(no_compile):
  with pytest.raises(Compiled):
    jax.jit(lambda x: x)
  with pytest.raises(Compiled):
    jnp.arange(7.0) * 3.0 + 1.0


# name, flags, words the one line must hold: the field and the allowed values.
BAD_INPUTS = [
    ("unknown method", ["--method", "sgd"],
     ["method", "'bll'", "'bp'", "'local'", "'drtp'", "'sgd'"]),
    ("unknown family", ["--family", "poisson"],
     ["family", "'bernoulli'", "'categorical'", "'gaussian'",
      "'gaussian_learned_variance'", "'poisson'"]),
    ("unknown feedback", ["--feedback", "magic"],
     ["feedback", "'direct'", "'chained'", "'bootstrapped'", "'random'",
      "'onehot'", "'magic'"]),
    ("more blocks than units", MLP_4_UNITS + ["--blocks", "99"],
     ["blocks", "[1, 4]", "99"]),
    ("cut out of range", MLP_4_UNITS + ["--cuts", "0,99"],
     ["cuts", "[1, 3]", "[0, 99]"]),
    ("missing data directory", ["--preset", "fashion_mnist_mlp",
                                "--data-dir", "/nonexistent"],
     ["data_dir", "'/nonexistent'"]),
    # The inputs of issue 20, each once accepted or met with a traceback:
    # out of bounds (field, flag value, the bound, the value as read) ...
    *((f"{field} {value}", [f"--{field}", value], [field, bound, shown])
      for field, value, bound, shown in (
          ("seed", "-1", ">= 0", "-1"),
          ("model.channels", "0,0,0", ">= 1", "(0, 0, 0)"),
          ("model.strides", "0,0,0", ">= 1", "(0, 0, 0)"),
          ("label_smoothing", "5", "[0, 1)", "5.0"),
          ("feedback_lr", "-1", ">= 0", "-1.0"),
          ("model.dropout", "1.5", "[0, 1)", "1.5"),
          ("model.dropout", "-0.5", "[0, 1)", "-0.5"),
          ("keep_checkpoints", "-1", ">= 1", "-1"),
          ("lr", "inf", "> 0", "inf"))),
    # ... and the rest.
    ("mesh axis named twice", ["--mesh", "block=2,block=3"],
     ["mesh", "'block' twice", "block=2,block=3"]),
    ("data dir for a generated dataset", ["--data-dir", "/tmp"],
     ["data_dir", "'mnist1d' is generated", "'/tmp'"]),
    ("data dir without the IDX files", ["--preset", "fashion_mnist_mlp",
                                        "--data-dir", TESTS],
     ["neither the IDX files of fashion_mnist", "train-images-idx3-ubyte",
      "--dataset.source tfds"]),
    ("a CNN on a sequence dataset", ["--dataset.name", "reverse"],
     ["model.name 'cnn'", "'reverse'", "label per token", "transformer"]),
    ("a Transformer on signals", ["--model.name", "transformer"],
     ["model.name 'transformer'", "token sequences", "'mnist1d'"]),
    ("a ResNet on signals", ["--model.name", "resnet18"],
     ["model.name 'resnet18'", "images", "'mnist1d'"]),
    ("workdir under a file", ["--workdir", os.path.join(TESTS, "conftest.py",
                                                        "run")],
     ["workdir", "cannot be created", "Not a directory"]),
    ("malformed model factory", ["--model.factory", "my_model"],
     ["model.factory must look like 'package.module:function'",
      "'my_model'"]),
    ("model factory that is not there", ["--model.factory", "json:nothing"],
     ["model.factory 'json:nothing'", "'json' has no function 'nothing'"]),
    ("workdir under /proc", ["--workdir", "/proc/bll_jax_run"],
     ["workdir '/proc/bll_jax_run' cannot be created"]),
    ("local fixes the family", ["--method", "local", "--family", "gaussian"],
     ["local", "family", "'categorical'", "'gaussian'"]),
    ("drtp fixes the feedback", ["--method", "drtp", "--feedback", "direct"],
     ["drtp", "feedback", "'random'", "'direct'"]),
    ("negative grid", ["--grid", "-1"], ["grid", ">= 0", "-1"]),
    ("evidence on the pipelined schedule",
     ["--accumulate-evidence", "true", "--schedule", "pipelined", "--mesh",
      "block=2", "--blocks", "2"],
     ["accumulate_evidence", "only the fused step", "sync schedule"]),
    ("evidence with backprop", ["--accumulate-evidence", "true", "--method",
                                "bp"], ["accumulate_evidence", "method bll"]),
    ("grid finer than a feature map", ["--grid", "64"],
     ["grid=64", "at least 64 positions"]),
    # --resume never starts a new run (issue 20): a mistyped or empty
    # workdir, or none at all, is refused before anything is written.
    ("resume a missing workdir", ["--resume", "--workdir", "runs/typo"],
     ["no checkpoint found in 'runs/typo'", "--resume"]),
    ("resume without a workdir", ["--resume"], ["--resume needs --workdir"]),
]


@pytest.mark.parametrize("flags, words",
                         [pytest.param(f, w, id=n) for n, f, w in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_before_any_compile(
    no_compile, empty_cwd, capsys, flags, words):
  status = cli.main(flags + ["--progress", "false"])
  out, err = capsys.readouterr()
  assert status == 2
  assert out == ""
  lines = err.splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("bll-train: error: ")
  for word in words:
    assert word in lines[0], (word, lines[0])


def _unknown_preset(capsys):
  with pytest.raises(SystemExit) as info:
    cli.main(["--preset", "mnist2d"])
  out, err = capsys.readouterr()
  return info.value.code, out, err


def test_unknown_preset_exits_2_naming_the_presets(no_compile, empty_cwd,
                                                   capsys):
  status, out, err = _unknown_preset(capsys)
  assert status == 2 and out == ""
  last = err.splitlines()[-1]
  assert last.startswith("bll-train: error: argument --preset")
  assert "'mnist2d'" in last
  for preset in PRESETS:
    assert f"'{preset}'" in last


def test_unknown_preset_is_reported_in_one_line(no_compile, capsys):
  _, _, err = _unknown_preset(capsys)
  assert len(err.splitlines()) == 1, err


def test_local_with_another_group_size_is_a_conflict(no_compile, tmp_path,
                                                     capsys):
  # Fixed: exit 2 before compiling. Not fixed: it goes on to train, and the
  # guard stops it at the first compile (the expected failure, `Compiled`).
  status = cli.main(TINY_FLAGS + ["--steps", "1", "--method", "local",
                                  "--group-size", "3",
                                  "--workdir", str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert status == 2
  assert "group_size" in err and "local" in err


def test_print_config_applies_the_overrides(no_compile, empty_cwd, capsys):
  status = cli.main(["--print-config", "--epochs", "3", "--model.widths",
                     "64,64", "--batch-size", "32", "--data-dir", "/tmp",
                     "--feedback_loss", "both", "--progress", "off"])
  out, err = capsys.readouterr()
  assert status == 0 and err == ""
  config = json.loads(out)
  assert config["epochs"] == 3
  assert config["model"]["widths"] == [64, 64]
  assert config["batch_size"] == 32
  assert config["dataset"]["data_dir"] == "/tmp"
  assert config["feedback_loss"] == "both"
  assert config["progress"] is False
  # The rest is the default preset's.
  assert config["preset"] == "mnist1d"
  assert config["dataset"]["name"] == "mnist1d"
  assert config["method"] == "bll" and config["blocks"] == 4
  assert "print_config" not in config


def test_print_config_starts_from_the_named_preset(no_compile, empty_cwd,
                                                   capsys):
  assert cli.main(["--preset", "seq_transformer", "--print-config",
                   "--dataset.length", "4"]) == 0
  config = json.loads(capsys.readouterr().out)
  assert config["preset"] == "seq_transformer"
  assert config["dataset"]["name"] == "reverse"
  assert config["dataset"]["length"] == 4
  assert config["model"]["name"] == "transformer"
  assert config["cuts"] == [3, 5, 7]


def test_blocks_alone_drops_the_presets_cut_points(no_compile, empty_cwd,
                                                   capsys):
  assert cli.main(["--preset", "fashion_mnist_resnet18", "--blocks", "2",
                   "--print-config"]) == 0
  config = json.loads(capsys.readouterr().out)
  assert config["blocks"] == 2 and config["cuts"] == []


def test_blocks_and_cuts_that_disagree_are_refused(no_compile, empty_cwd,
                                                    capsys):
  assert cli.main(["--preset", "fashion_mnist_resnet18", "--blocks", "2",
                   "--cuts", "3,5", "--print-config"]) == 2
  err = capsys.readouterr().err
  assert err.strip() == ("bll-train: error: cuts 3,5 make 3 blocks but "
                         "blocks is 2; give one of the two")
  # Agreeing flags are fine.
  assert cli.main(["--preset", "fashion_mnist_resnet18", "--blocks", "3",
                   "--cuts", "3,5", "--print-config"]) == 0
  config = json.loads(capsys.readouterr().out)
  assert config["blocks"] == 3 and config["cuts"] == [3, 5]


def test_help_lists_the_flags(no_compile, empty_cwd, capsys):
  with pytest.raises(SystemExit) as info:
    cli.main(["--help"])
  out = capsys.readouterr().out
  assert info.value.code == 0
  for flag in ("--feedback-loss", "--data-dir", "--batch-size", "--preset",
               "--resume", "--print-config", "--model.widths"):
    assert flag in out, flag
  # Every field's help text and allowed values, from the schema.
  flat = " ".join(out.split())
  for field in config_lib.FIELDS:
    if field.name != "preset":
      assert " ".join(field.describe().split()) in flat, field.name
  assert "(one of: adam, adamw, sgd)" in flat
  assert "(one of: bll, bp, local, drtp)" in flat
  # The values of the run it describes: the default preset builds a CNN.
  assert re.search(r"--model\.name TEXT the network \(one of: [^)]*\) "
                   r"\[default cnn\]", flat), flat
  assert "value of the preset 'mnist1d'" in flat


def test_help_shows_the_values_of_the_preset_named(no_compile, empty_cwd,
                                                    capsys):
  with pytest.raises(SystemExit):
    cli.main(["--preset", "fashion_mnist_mlp", "--help"])
  flat = " ".join(capsys.readouterr().out.split())
  assert re.search(r"--model\.name TEXT the network \(one of: [^)]*\) "
                   r"\[default mlp\]", flat)
  assert "--model.widths INTS mlp: hidden widths (>= 1) [default " \
         "512,512,512]" in flat


def test_help_does_not_import_the_training_stack():
  code = ("import sys\n"
          "from bll_jax import cli\n"
          "try:\n"
          "  cli.main(['--help'])\n"
          "except SystemExit as e:\n"
          "  assert e.code == 0\n"
          "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'flax', "
          "'optax', 'orbax', 'tensorflow', 'tensorflow_datasets', "
          "'mnist1d'})\n"
          "print(heavy, file=sys.stderr)\n"
          "sys.exit(1 if heavy else 0)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr


def test_the_console_script_trains_end_to_end(tmp_path):
  script = os.path.join(os.path.dirname(sys.executable), "bll-train")
  assert os.access(script, os.X_OK), f"{script} is not installed"
  workdir = tmp_path / "run"
  result = subprocess.run(
      [script, *TINY_FLAGS, "--steps", "5", "--workdir", str(workdir)],
      capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  lines = [json.loads(line) for line in result.stdout.splitlines()
           if line.startswith("{")]
  assert len(lines) == 1, result.stdout
  (line,) = lines
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert line["steps"] == summary["steps"] == 5
  # Without progress bars the epoch's line stays; the run directory is
  # named first and last.
  assert re.search(r"^epoch 1: step 5, test accuracy [0-9.]+ \(blocks: ",
                   result.stdout, re.M), result.stdout
  err = result.stderr.splitlines()
  assert err[0] == f"bll-train: run directory {workdir}", result.stderr
  assert err[-1] == f"bll-train: wrote {workdir / 'summary.json'}"
  assert line["test_accuracy"] == summary["test_accuracy"]
  assert 0.0 <= line["test_accuracy"] <= 1.0
  assert (line["preset"], line["method"], line["blocks"]) == ("mnist1d",
                                                             "bll", 3)


def test_progress_says_compiling_while_the_programs_compile(tmp_path,
                                                           capsys):
  flags = [f for f in TINY_FLAGS if f not in ("--progress", "false")]
  assert cli.main(flags + ["--progress", "true", "--steps", "2",
                           "--workdir", str(tmp_path / "run")]) == 0
  err = capsys.readouterr().err
  assert "compiling (" in err
  # The first epoch bar starts after it: its ETA does not count the compile.
  assert err.index("compiling (") < err.index("epoch 1/")


def test_a_diverging_run_exits_1_naming_the_block_and_step(tmp_path, capsys):
  # lr 1e9 (with this feedback): the loss of the second update is NaN.
  status = cli.main(TINY_FLAGS + ["--steps", "20", "--lr", "1e9",
                                  "--feedback", "direct", "--feedback-loss",
                                  "ml", "--workdir", str(tmp_path / "run")])
  out, err = capsys.readouterr()
  assert status == 1
  assert "test accuracy" not in out
  run_line, *lines = err.splitlines()
  assert run_line == f"bll-train: run directory {tmp_path / 'run'}"
  assert len(lines) == 1, err
  assert re.fullmatch(r"bll-train: error: (block\d+|feedback) loss is "
                      r"(nan|inf|-inf) at step \d+; training stopped, .*",
                      lines[0]), lines[0]
  assert not (tmp_path / "run" / "summary.json").exists()
