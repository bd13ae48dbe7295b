"""`python -m bll_jax.cli`: the same as `bll-train`."""

from bll_jax.cli.main import entry_point

entry_point()
