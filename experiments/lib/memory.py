"""Memory of a process: peak resident set, and bytes alive on its devices.

:func:`reset_peak_rss` and :func:`peak_rss_mib` read the kernel's count of
the process's peak resident memory (Linux, `VmHWM`); :class:`LiveBytes`
samples, in a thread, the bytes of the JAX arrays alive on the process's
devices.
"""

from __future__ import annotations

import threading

import jax


def reset_peak_rss() -> None:
  """Restarts the kernel's peak-RSS count (Linux): the peak that
  :func:`peak_rss_mib` reads afterwards leaves out what came before
  (compilation, say). Does nothing where the kernel does not allow it."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
  except OSError:
    pass


def peak_rss_mib() -> float:
  """Peak resident memory since the last reset (VmHWM), in MiB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def live_bytes() -> int:
  """Bytes of the arrays alive on this process's devices now."""
  total = 0
  for x in jax.live_arrays():
    try:
      total += sum(s.data.nbytes for s in x.addressable_shards)
    except Exception:          # deleted while we looked
      pass
  return total


class LiveBytes:
  """Samples :func:`live_bytes` in a thread while its `with` block runs.

  `peak_mib` is the largest sample. It sees what a step keeps between its
  programs (parameters, optimiser states, activations held for later) but
  not the temporaries inside one program.
  """

  def __init__(self, interval_s: float = 0.002):
    self.interval_s, self.peak = interval_s, 0
    self.stop = threading.Event()
    self.thread = threading.Thread(target=self.run, daemon=True)

  def run(self) -> None:
    while not self.stop.is_set():
      self.peak = max(self.peak, live_bytes())
      self.stop.wait(self.interval_s)

  def __enter__(self) -> LiveBytes:
    self.thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self.stop.set()
    self.thread.join()
    self.peak = max(self.peak, live_bytes())

  @property
  def peak_mib(self) -> float:
    return self.peak / 2 ** 20
