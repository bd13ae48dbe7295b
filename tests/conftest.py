"""Test set-up: 8 fake CPU devices (before JAX starts) and shared helpers."""

import os
import shutil
import tempfile

# Multi-device code is tested on fake CPU devices; this must run before jax
# initialises its backend, which is why it sits at the top of conftest.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One XLA compilation cache for the whole test run: this process, its xdist
# workers and every process they start (bll-train, notebook kernels, launched
# workers) inherit it through the environment, so a program that several
# tests build (the mnist1d train step of each CLI test, say) compiles once per
# run instead of once per test. The directory is new on every run, so a run
# here costs what it costs on a clean CI checkout. A size limit turns on the
# cache's file lock: xdist workers never read an entry another is writing.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
      prefix="bll_jax-tests-xla-cache-")
  os.environ["BLL_TEST_CACHE_OWNER"] = str(os.getpid())
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 * 2**30))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402  (after the environment is set)
import pytest  # noqa: E402


def pytest_unconfigure(config):
  """The process that made the compilation cache removes it at the end."""
  del config
  if os.environ.get("BLL_TEST_CACHE_OWNER") == str(os.getpid()):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def x64():
  """Runs a test with 64-bit JAX types (for float64 reference comparisons)."""
  with jax.enable_x64(True):
    yield


def pytest_collection_modifyitems(config, items):
  """`slow` tests run with BLL_FULL=1; otherwise they are skipped, by name.

  Every slow test has a short form that always runs (see its module).
  """
  del config
  if os.environ.get("BLL_FULL") == "1":
    return
  skip = pytest.mark.skip(reason="slow: the full form runs with BLL_FULL=1; "
                          "its short form runs in every test run")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
