"""The peers block-local training is measured against, on the same workers
and the same network.

* :mod:`~bll_jax.baselines.gpipe` -- backprop pipelined over the stages,
  GPipe-style (:class:`~bll_jax.baselines.gpipe.GPipe`);
* :mod:`~bll_jax.baselines.one_f_one_b` -- the same passes in the
  one-forward-one-backward order (:class:`OneFOneB`), which holds fewer
  activations;
* :mod:`~bll_jax.baselines.runner` -- both as runners of the training loop
  (`bll-train --method bp --pipeline gpipe|1f1b`): :func:`make_runner`;
* data-parallel backprop is `method bp` on a mesh `data=N` (every worker a
  replica, gradients averaged every step): the engine's own step under the
  `sync` runner (:func:`bll_jax.parallel.make_runner`), no code of its own.
"""

from bll_jax.baselines.gpipe import GPipe
from bll_jax.baselines.one_f_one_b import OneFOneB
from bll_jax.baselines.runner import PipelinedBackprop
from bll_jax.baselines.runner import make_runner

__all__ = ["GPipe", "OneFOneB", "PipelinedBackprop", "make_runner"]
