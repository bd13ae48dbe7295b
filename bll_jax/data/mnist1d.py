"""MNIST-1D: the embedded default dataset, generated offline.

The `mnist1d` package generates 1-D signals of length 40 in 10 classes (4000
training and 1000 test examples by default) from a fixed seed, so the data is
the same on every machine. Inputs are standardised with the training set's
scalar mean and standard deviation.

Generating the signals takes about 10 s on a 2-core CPU, so the generated
arrays are kept in `$BLL_JAX_CACHE_DIR` (default `~/.cache/bll_jax`), keyed by
the package's version and its arguments; a cache that cannot be written is
skipped, one that cannot be read is regenerated.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pathlib
import random
import tempfile
import zipfile

import numpy as np

from bll_jax.data import base

NUM_CLASSES = 10
DEFAULTS = {"num_samples": 5000}   # train + test; 80% of them train


def load(**options) -> base.ArrayDataset:
  """MNIST-1D as an in-memory dataset.

  Args:
    **options: `num_samples` (default 5000): train plus test examples, a
      multiple of 10 (the package draws `num_samples // 10` per class).

  Returns:
    The dataset, inputs float32 of shape `(40,)`.
  """
  options = base.check_options("mnist1d", options, DEFAULTS)
  num_samples = base.positive_int("num_samples", options["num_samples"])
  if num_samples % NUM_CLASSES or num_samples < 5 * NUM_CLASSES:
    raise ValueError(f"num_samples must be a multiple of {NUM_CLASSES} and at "
                     f"least {5 * NUM_CLASSES}, got {num_samples}")
  x, y, x_test, y_test = _generate(num_samples)
  mean, std = x.mean(), x.std()
  info = base.DatasetInfo(
      name="mnist1d", task="classification", num_classes=NUM_CLASSES,
      input_shape=x.shape[1:], input_dtype="float32", train_size=len(y),
      test_size=len(y_test), metadata={})
  return base.ArrayDataset(
      info,
      base.classification_arrays(((x - mean) / std).astype(np.float32), y),
      base.classification_arrays(((x_test - mean) / std).astype(np.float32),
                                 y_test))


CACHE_ENV = "BLL_JAX_CACHE_DIR"


def cache_dir() -> pathlib.Path:
  """Where generated datasets are kept: `$BLL_JAX_CACHE_DIR`, else
  `$XDG_CACHE_HOME/bll_jax`, else `~/.cache/bll_jax`."""
  if os.environ.get(CACHE_ENV):
    return pathlib.Path(os.environ[CACHE_ENV])
  base_dir = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(base_dir) / "bll_jax"


@functools.lru_cache(maxsize=4)
def _generate(num_samples: int):
  """The raw float64 arrays `(x, y, x_test, y_test)` (read-only, cached in
  memory and on disk)."""
  # The package's arguments are its defaults but `num_samples`, so its
  # version and `num_samples` name the arrays (importing the package, 2 s,
  # only when they must be generated).
  key = hashlib.sha256(repr((importlib.metadata.version("mnist1d"),
                             num_samples)).encode())
  path = cache_dir() / f"mnist1d-{key.hexdigest()[:16]}.npz"
  arrays = _read(path)
  if arrays is None:
    from mnist1d import data as mnist1d_data
    args = mnist1d_data.get_dataset_args()
    args.num_samples = num_samples
    # make_dataset seeds the global numpy and Python RNGs: restore both.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
      raw = mnist1d_data.make_dataset(args)
    finally:
      np.random.set_state(numpy_state)
      random.setstate(python_state)
    arrays = (raw["x"], raw["y"], raw["x_test"], raw["y_test"])
    _write(path, arrays)
  for array in arrays:
    array.flags.writeable = False
  return arrays


NAMES = ("x", "y", "x_test", "y_test")


def _read(path: pathlib.Path):
  try:
    with np.load(path) as f:
      return tuple(f[name] for name in NAMES)
  except (OSError, KeyError, ValueError, EOFError,
          zipfile.BadZipFile):         # missing, partial or foreign
    return None


def _write(path: pathlib.Path, arrays) -> None:
  """Atomically (a temporary file renamed), so concurrent runs never read a
  partial file; silently nothing where the directory is not writable."""
  temporary = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz",
                                     delete=False) as f:
      temporary = f.name
      np.savez(f, **dict(zip(NAMES, arrays)))
    os.replace(temporary, path)
  except OSError:
    if temporary is not None and os.path.exists(temporary):
      os.unlink(temporary)
