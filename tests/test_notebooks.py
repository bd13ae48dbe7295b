"""The notebooks under notebooks/: committed without outputs, and they run.

Each notebook is executed top to bottom with nbclient in a temporary copy
(nothing is written back to the repository), on a kernel that runs this
interpreter (`sys.executable`, through a kernelspec written to a temporary
directory, so a `python3` kernelspec installed elsewhere on the machine is
never picked up), with `MPLBACKEND=Agg`.
"""

import json
import os
import pathlib
import shutil
import sys

import pytest

from tests import conftest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ("01_quickstart.ipynb", "02_probabilistic_view.ipynb",
            "03_block_parallel.ipynb")
CELL_TIMEOUT_S = 300
# It trains for thousands of steps: run with XLA's full optimisation. The
# others run many small programs, where compilation dominates (measured on 2
# cores: notebook 02 51 s under full optimisation, 35 s under the tests'
# fast-compile flags).
COMPUTE_BOUND = ("01_quickstart.ipynb",)
# Printed by a cell the test appends to its in-memory copy of each notebook.
PROBE = ("import sys, matplotlib\n"
         "print(sys.executable, sys.prefix, matplotlib.get_backend(), sep='\\n')")


def _ids(paths):
  return [p.name for p in paths]


def test_the_three_notebooks_exist():
  assert set(EXPECTED) <= set(_ids(NOTEBOOKS)), _ids(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(path):
  notebook = json.loads(path.read_text())
  dirty = []
  for i, cell in enumerate(notebook["cells"]):
    if cell["cell_type"] != "code":
      continue
    if cell.get("outputs"):
      dirty.append(f"cell {i}: {len(cell['outputs'])} outputs")
    if cell.get("execution_count") is not None:
      dirty.append(f"cell {i}: execution_count {cell['execution_count']}")
  assert not dirty, (
      f"{path.name} has outputs or execution counts ({'; '.join(dirty)}); "
      "strip them, e.g. `jupyter nbconvert --clear-output --inplace "
      f"notebooks/{path.name}`")


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
  """A `python3` kernelspec for this interpreter, in a temporary directory."""
  from jupyter_client.kernelspec import KernelSpecManager
  kernels = tmp_path_factory.mktemp("kernels")
  (kernels / "python3").mkdir()
  spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                   "{connection_file}"],
          "display_name": "Python 3 (bll_jax tests)", "language": "python",
          "env": {"MPLBACKEND": "Agg"}}
  (kernels / "python3" / "kernel.json").write_text(json.dumps(spec))
  return KernelSpecManager(kernel_dirs=[str(kernels)],
                           ensure_native_kernel=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(path, tmp_path, kernel_spec_manager,
                                     monkeypatch):
  import nbclient
  import nbformat
  from jupyter_client.manager import KernelManager

  # The kernel inherits this environment. tests/conftest.py asks for 8 fake
  # CPU devices; the notebooks must arrange that themselves (as in Colab).
  monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
  if path.name in COMPUTE_BOUND:
    monkeypatch.setenv("XLA_FLAGS", conftest.compute_env()["XLA_FLAGS"])
  committed = path.read_bytes()
  copy = tmp_path / path.name
  shutil.copy(path, copy)
  notebook = nbformat.read(copy, as_version=4)
  notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
  km = KernelManager(kernel_name="python3",
                     kernel_spec_manager=kernel_spec_manager)
  client = nbclient.NotebookClient(
      notebook, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
      resources={"metadata": {"path": str(tmp_path)}})
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as error:
    pytest.fail(f"{path.name} failed:\n{str(error)[-4000:]}")
  finally:
    nbformat.write(notebook, tmp_path / f"executed-{path.name}")
  probe = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
  executable, prefix, backend = probe.splitlines()
  # The kernel ran this interpreter, in this environment (a venv's python is
  # a link to the base interpreter, so compare the prefix too).
  assert os.path.normpath(executable) == os.path.normpath(sys.executable)
  assert os.path.normpath(prefix) == os.path.normpath(sys.prefix)
  assert backend.lower() == "agg"
  assert path.read_bytes() == committed    # nothing was written back
