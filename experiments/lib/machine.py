"""What a benchmark ran on: the CPU's name and the JAX device's."""

from __future__ import annotations

import jax


def cpu_name() -> str:
  """The CPU's model name (Linux `/proc/cpuinfo`), else `unknown CPU`."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown CPU"


def device_name() -> str:
  """The first JAX device: `platform: kind`, e.g. `gpu: NVIDIA H200`."""
  device = jax.devices()[0]
  return f"{device.platform}: {getattr(device, 'device_kind', '')}"
