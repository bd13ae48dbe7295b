"""Deprecated: the engine moved to :mod:`bll_jax.engine`.

`from bll_jax import step` keeps working for one release; import from
`bll_jax.engine` instead (same names: `Engine`, `Objective`, `BlockState`,
`TrainState`, `task_loss`, `weighted_mean`, ...).
"""

from bll_jax.engine import *  # noqa: F401,F403
from bll_jax.engine import __all__  # noqa: F401
