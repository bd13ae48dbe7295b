"""The peers block-local training is measured against, on the same workers
and the same network.

* :mod:`~bll_jax.baselines.gpipe` -- backprop pipelined over the stages,
  GPipe-style (:class:`~bll_jax.baselines.gpipe.GPipe`).
"""

from bll_jax.baselines.gpipe import GPipe

__all__ = ["GPipe"]
