"""Training programs: from a config to a trained, evaluated, saved run.

* :mod:`~bll_jax.training.loop` -- :func:`train_and_evaluate`, the loop.
* :mod:`~bll_jax.training.build` -- data, optimiser and engine of a config.
* :mod:`~bll_jax.training.evaluate` -- test-set metrics, per block.
* :mod:`~bll_jax.training.checkpoint` -- orbax checkpoints of a run.
* :mod:`~bll_jax.training.metric_writers` -- `metrics.jsonl`, TensorBoard.
* :mod:`~bll_jax.training.summary` -- `summary.json`, a language model's
  samples.
"""

from bll_jax.config import ConfigError
from bll_jax.training.checkpoint import CheckpointError
from bll_jax.training.loop import Interrupted
from bll_jax.training.loop import Run
from bll_jax.training.loop import TrainingDiverged
from bll_jax.training.loop import prepare
from bll_jax.training.loop import train_and_evaluate
from bll_jax.training.summary import jsonable

__all__ = ["CheckpointError", "ConfigError", "Interrupted", "Run",
           "TrainingDiverged", "jsonable", "prepare", "train_and_evaluate"]
