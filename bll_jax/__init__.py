"""bll_jax: block-local learning with probabilistic latent representations.

The pure core is imported eagerly and stays light (jax and numpy only):

* :mod:`bll_jax.families` -- exponential-family latents (Bernoulli,
  Categorical, Gaussian with fixed or learned variance).
* :mod:`bll_jax.losses` -- the block-local losses as functions of arrays.

Everything heavier (models, training, data, parallel execution) is a
submodule imported on first use, so `import bll_jax.losses` never pulls in
flax, optax, orbax or tensorflow.
"""

from bll_jax import families
from bll_jax import losses
from bll_jax.families import Bernoulli
from bll_jax.families import Categorical
from bll_jax.families import Family
from bll_jax.families import Gaussian
from bll_jax.families import GaussianLearnedVariance
from bll_jax.losses import batch_decorrelation_loss
from bll_jax.losses import denoising_loss
from bll_jax.losses import feedback_discriminative_loss
from bll_jax.losses import feedback_ml_loss
from bll_jax.losses import local_logits
from bll_jax.losses import local_loss

__version__ = "0.1.0"

__all__ = [
    "Bernoulli",
    "Categorical",
    "Family",
    "Gaussian",
    "GaussianLearnedVariance",
    "batch_decorrelation_loss",
    "denoising_loss",
    "families",
    "feedback_discriminative_loss",
    "feedback_ml_loss",
    "local_logits",
    "local_loss",
    "losses",
]
