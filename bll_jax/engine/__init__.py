"""The block-local engine: one network cut into blocks, its losses, its steps.

* :mod:`~bll_jax.engine.state` -- :class:`BlockState`, :class:`TrainState`,
  :func:`apply_update`: what a block owns and how an update changes it.
* :mod:`~bll_jax.engine.network` -- :class:`Network`, the block walker
  (`block_forward`, `forward`, `feedback_forward`).
* :mod:`~bll_jax.engine.objective` -- :class:`Objective` (loss settings),
  the :class:`LossRecipe` protocol and the principled
  :class:`BlockLocalLosses`.
* :mod:`~bll_jax.engine.steps` -- block step, feedback step and gradient,
  the fused step, backprop.
* :mod:`~bll_jax.engine.predict` -- predictions and evaluation sums.
* :mod:`~bll_jax.engine.core` -- :class:`Engine`, which composes them and
  compiles its steps.

The engine knows nothing of meshes, schedules, configs or recipes other
than the object it is handed (`docs/engine.md`).
"""

from bll_jax.engine.core import METHODS
from bll_jax.engine.core import Engine
from bll_jax.engine.network import BlockOutput
from bll_jax.engine.network import Network
from bll_jax.engine.network import block_keys
from bll_jax.engine.objective import FEEDBACK_LOSSES
from bll_jax.engine.objective import BlockLocalLosses
from bll_jax.engine.objective import LossRecipe
from bll_jax.engine.objective import Objective
from bll_jax.engine.objective import output_objective
from bll_jax.engine.objective import task_loss
from bll_jax.engine.objective import weighted_mean
from bll_jax.engine.state import BlockState
from bll_jax.engine.state import TrainState
from bll_jax.engine.state import apply_update

__all__ = [
    "FEEDBACK_LOSSES",
    "METHODS",
    "BlockLocalLosses",
    "BlockOutput",
    "BlockState",
    "Engine",
    "LossRecipe",
    "Network",
    "Objective",
    "TrainState",
    "apply_update",
    "block_keys",
    "output_objective",
    "task_loss",
    "weighted_mean",
]
