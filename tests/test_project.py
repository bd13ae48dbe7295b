"""The project's promises about itself: README commands, CI, the example."""

import json
import pathlib
import re
import shlex
import subprocess
import sys

from tests import conftest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
  block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(),
                    re.S).group(1)
  return [l for l in block.splitlines() if l and not l.startswith("#")]


def test_readme_first_screen_has_exactly_two_commands():
  commands = _readme_commands()
  assert len(commands) == 2, commands
  main_job, tests = commands
  assert "pip install" in main_job and "pip install" in tests
  assert tests.rstrip().endswith("pytest")


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / ".ci" / "run").read_text().splitlines()
  assert _readme_commands()[1] in ci


def test_readme_example_is_the_example_file_and_learns():
  readme = (ROOT / "README.md").read_text()
  example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
  path = ROOT / "experiments" / "plain_jax_loop.py"
  assert example == path.read_text()
  out = subprocess.run([sys.executable, str(path)], capture_output=True,
                       text=True, timeout=600, cwd=ROOT,
                       env=conftest.compute_env())
  assert out.returncode == 0, out.stderr
  accuracy = float(re.search(r"test accuracy ([0-9.]+)", out.stdout).group(1))
  assert accuracy > 0.35, out.stdout       # chance is 0.10


def test_the_test_run_shares_one_fresh_compilation_cache():
  """tests/conftest.py: the process that starts the run makes the cache;
  xdist workers and the processes they start use that one directory."""
  import os
  directory = os.environ["JAX_COMPILATION_CACHE_DIR"]
  assert pathlib.Path(directory).is_dir()
  if os.environ.get("PYTEST_XDIST_WORKER"):       # made by the controller
    assert os.environ["BLL_TEST_CACHE_OWNER"] != str(os.getpid())
  out = subprocess.run(
      [sys.executable, "-c",
       "import jax; print(jax.config.jax_compilation_cache_dir)"],
      capture_output=True, text=True, timeout=120, check=True)
  assert out.stdout.strip() == directory


def test_readme_your_own_model_trains_as_written(tmp_path):
  """The README's "Your own model", its file and its command verbatim, on
  one CPU device as a user's machine has: a linen and an NNX unit trained
  by bll-train."""
  section = (ROOT / "README.md").read_text().split("## Your own model\n")[1]
  section = section.split("\n## ")[0]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  (command,) = re.findall(r"```\n(bll-train [^\n]*)\n```", section)
  (tmp_path / "my_model.py").write_text(code)
  script = pathlib.Path(sys.executable).parent / "bll-train"
  out = subprocess.run([str(script), *shlex.split(command)[1:]],
                       capture_output=True, text=True, timeout=600,
                       cwd=tmp_path,
                       env=conftest.compute_env(JAX_NUM_CPU_DEVICES="1"))
  assert out.returncode == 0, out.stderr[-3000:]
  (path,) = tmp_path.glob("runs/*/summary.json")
  summary = json.loads(path.read_text())
  assert summary["model"] == "my_model:make_model"
  assert (summary["blocks"], summary["epochs"]) == (3, 5)
  # MNIST-1D (40 inputs): Dense, the NNX Linear, Dense: a unit per block.
  assert summary["parameters_per_block"] == [40 * 256 + 256, 256 * 256 + 256,
                                             256 * 10 + 10]
  assert summary["test_accuracy"] > 0.25, summary    # chance 0.10; 0.359
