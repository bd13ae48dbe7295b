"""Test set-up: 8 fake CPU devices (before JAX starts) and shared helpers."""

import os

# Multi-device code is tested on fake CPU devices; this must run before jax
# initialises its backend, which is why it sits at the top of conftest.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after the environment is set)
import pytest  # noqa: E402


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
