"""Test set-up: 8 fake CPU devices (before JAX starts) and shared helpers."""

import os
import shutil
import tempfile

# Multi-device code is tested on fake CPU devices; this must run before jax
# initialises its backend, which is why it sits at the top of conftest.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests compile far more than they compute (programs of a few steps on
# tiny shapes). LLVM's cheap pipeline and XLA's older CPU fusion emitters
# compile them about 3x faster (a ResNet-18 step: 17.2 s -> 6.0 s; a 4-block
# MLP's block step 1.0 s -> 0.33 s) and run them slower. Every path a test
# compares is compiled alike; the processes the tests start inherit it,
# except those that train for real (`compute_env`).
FAST_COMPILE = ("--xla_backend_optimization_level=0",
                "--xla_llvm_disable_expensive_passes=true",
                "--xla_cpu_use_fusion_emitters=false")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      [os.environ.get("XLA_FLAGS", ""), *FAST_COMPILE]).strip()

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
  # Likewise the generated datasets (MNIST-1D: 7-10 s to generate; every
  # default-preset run and launched worker would otherwise pay it).
  os.environ["BLL_JAX_CACHE_DIR"] = tempfile.mkdtemp(
      prefix="bll_jax-tests-data-")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 * 2**30))
# Programs that take a while to compile (caching every small eager op as
# well made the run slower: thousands of entries behind one file lock).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402  (after the environment is set)
import pytest  # noqa: E402


def pytest_unconfigure(config):
  """The process that made the caches removes them at the end."""
  del config
  if os.environ.get("BLL_TEST_CACHE_OWNER") == str(os.getpid()):
    for name in ("JAX_COMPILATION_CACHE_DIR", "BLL_JAX_CACHE_DIR"):
      shutil.rmtree(os.environ[name], ignore_errors=True)


def skip_unless_required(variable, reason):
  """Skips with `reason`, or fails when the environment requires what is
  missing (CI sets BLL_REQUIRE_FASHION_MNIST=1 and BLL_REQUIRE_TFDS=1)."""
  if os.environ.get(variable) == "1":
    pytest.fail(f"{reason} (required: {variable}=1)")
  pytest.skip(reason)


def compute_env(**extra) -> dict[str, str]:
  """This environment for a process that trains for real (a notebook, the
  README's example, a preset's convergence run): XLA's full optimisation,
  which runs those programs several times faster than `FAST_COMPILE`."""
  env = dict(os.environ, **extra)
  env["XLA_FLAGS"] = " ".join(w for w in env.get("XLA_FLAGS", "").split()
                              if w not in FAST_COMPILE)
  return env


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
