"""Loss recipes other than the principled one, handed to the engine.

A recipe is an object implementing
:class:`bll_jax.engine.objective.LossRecipe`; the engine's default is
:class:`bll_jax.engine.objective.BlockLocalLosses`.

* :mod:`~bll_jax.recipes.authors` -- the losses of the paper's authors'
  public code (:class:`~bll_jax.recipes.authors.AuthorsRecipe`).
"""

from bll_jax.recipes.authors import AuthorsRecipe

__all__ = ["AuthorsRecipe"]
