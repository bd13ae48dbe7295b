"""The command line: `bll-train` (:mod:`~bll_jax.cli.main`) and the process
launcher that runs it as one process per core (:mod:`~bll_jax.cli.launch`)."""

from bll_jax.cli.main import entry_point
from bll_jax.cli.main import main

__all__ = ["entry_point", "main"]
