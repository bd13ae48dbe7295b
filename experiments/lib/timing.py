"""How long a call takes: repeated, waited for, after a warm-up call."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax


def timed(fn: Callable[[], Any], repeats: int,
          reduce: Callable[[Sequence[float]], float] = min) -> float:
  """Seconds of `fn()`, waiting for its result, over `repeats` calls.

  One call first, untimed (compilation, caches). `reduce` summarises the
  timed calls: `min` (the default, best of `repeats`: the least disturbed
  call) or e.g. `statistics.median`.
  """
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return reduce(times)
