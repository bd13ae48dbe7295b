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
