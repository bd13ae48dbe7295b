r"""The authors' recipe, from their public code, as a method of the engine.

`bll-train --method bll --recipe authors` trains with the losses of the only
public code of the paper's authors (an anonymous PyTorch ResNet-50/ImageNet
repository, described in `THEORY.md`, "What the authors' public code does").
Every block's output `h_k` is summarised as

    xn_k = normalise(maxpool_positions(h_k) - mean_channels(...))   (`feature_summary`)

and the feedback is a bias-free linear map of the one-hot label per block,
`b_k(y) = B_k onehot(y)` (`--feedback direct`). The losses:

* feedback (`prototype_loss`, gradient to `B_k` only): the squared distance
  of each class's feedback vector to the batch mean of the detached `xn_k` of
  that class;
* forward, a weighted sum (weights: every one a config field, defaults the
  authors'):
  - `output` (0.43): the task cross-entropy at the output block (with the
    config's label smoothing, as the authors' ImageNet run uses);
  - `decorrelation` (0.7): `losses.batch_decorrelation_loss(xn_k)`;
  - `similarity` (0.25): the cosine of `xn_k` and its detached class
    feedback vector `b_k(y)`;
  - `auxiliary` (0.55): the cross-entropy (label-smoothed likewise) of an
    auxiliary classifier per block (average-pool + linear);
  - `denoising` (1.0): `losses.denoising_loss(f_k(h + 0.01 eps), f_k(h))`.

Two apparent defects read from their code, each a switch (off = the code as
published, on = corrected):

* `similarity_pulls`: as published the similarity term is *added* to the
  loss, so minimising it pushes features away from their class prototype;
  corrected, it is subtracted and pulls them towards it;
* `train_auxiliary`: as published the auxiliary classifiers' parameters sit
  in the feedback optimiser, which zeroes their gradients before the forward
  loss reaches them: they never change, yet the block still learns through
  them; corrected, they are trained by their own cross-entropy.

A block's own test accuracy is its auxiliary classifier's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from bll_jax import losses
from bll_jax.step import task_loss

sg = jax.lax.stop_gradient

TERMS = ("output", "decorrelation", "similarity", "auxiliary", "denoising")


@dataclasses.dataclass(frozen=True)
class AuthorsRecipe:
  """Loss weights and the two switches (see the module docstring)."""

  output: float = 0.43
  decorrelation: float = 0.7
  similarity: float = 0.25
  auxiliary: float = 0.55
  denoising: float = 1.0
  noise_std: float = 0.01
  similarity_pulls: bool = False
  train_auxiliary: bool = False

  def weight(self, term: str) -> float:
    """The signed weight of a term in the forward loss."""
    w = getattr(self, term)
    return -w if term == "similarity" and self.similarity_pulls else w


def feature_summary(h: jax.Array, position_ndim: int, eps: float = 1e-6
                    ) -> jax.Array:
  """`xn`: max over positions, minus the mean over channels, L2-normalised.

  Args:
    h: a block output, `[N, *positions, C]`.
    position_ndim: how many position axes `h` has.

  Returns:
    `[N, C]`.
  """
  if position_ndim:
    h = jnp.max(h, axis=tuple(range(1, 1 + position_ndim)))
  h = h.reshape(h.shape[0], -1)
  centred = h - jnp.mean(h, -1, keepdims=True)
  return centred / (jnp.linalg.norm(centred, axis=-1, keepdims=True) + eps)


def prototype_loss(xn: jax.Array, fb: jax.Array, labels: jax.Array,
                   weights: jax.Array) -> jax.Array:
  """Mean over the classes in the batch of `|b_c - mean_{y_i = c} xn_i|^2`.

  Gradient to `fb` only (`xn` is stop-gradient'ed).
  """
  one_hot = jax.nn.one_hot(labels, fb.shape[0]) * weights[:, None]  # [N, C]
  counts = jnp.sum(one_hot, 0)
  means = (one_hot.T @ sg(xn)) / jnp.maximum(counts, 1.0)[:, None]
  present = (counts > 0).astype(xn.dtype)
  distances = jnp.sum(jnp.square(fb - means), -1)
  return jnp.sum(distances * present) / jnp.maximum(jnp.sum(present), 1.0)


def similarity(xn: jax.Array, fb: jax.Array, labels: jax.Array) -> jax.Array:
  """Per example, the cosine of `xn_i` and its class's (detached) `b_k(y_i)`."""
  proto = sg(fb)[labels]
  proto = proto / (jnp.linalg.norm(proto, axis=-1, keepdims=True) + 1e-6)
  return jnp.sum(xn * proto, -1)


def block_terms(recipe: AuthorsRecipe, engine, k: int, params, batch_stats,
                h_in, fb_k, labels, weights, key):
  """Block `k`'s unweighted loss terms, and `(eta, h_out, stats, aux)`."""
  mean = engine.mean_fn
  smoothing = engine.objective.label_smoothing
  eta, h_out, stats, aux = engine.forward_with_aux(k, params, batch_stats,
                                                   h_in, True, key)
  if k == engine.num_blocks - 1:
    return {"output": mean(task_loss(eta, labels, smoothing), weights)}, (
        eta, h_out, stats, aux)
  position_ndim = engine.latents[k].position_ndim
  xn = feature_summary(h_out, position_ndim)
  noise = recipe.noise_std * jax.random.normal(
      jax.random.fold_in(key, 7919 + k), h_in.shape, h_in.dtype)
  _, noisy, _, _ = engine.forward_with_aux(k, params, batch_stats,
                                           h_in + noise, True, key)
  terms = {
      "decorrelation": losses.batch_decorrelation_loss(xn),
      "similarity": mean(similarity(xn, fb_k, labels), weights),
      "auxiliary": mean(task_loss(aux, labels, smoothing), weights),
      "denoising": mean(losses.denoising_loss(
          noisy.reshape(noisy.shape[0], -1),
          h_out.reshape(h_out.shape[0], -1)), weights),
  }
  return terms, (eta, h_out, stats, aux)


def block_loss(recipe: AuthorsRecipe, engine, k: int, params, batch_stats,
               h_in, fb_k, labels, weights, key):
  """`(loss, (eta, h_out, stats, metrics))` in the engine's convention."""
  terms, (eta, h_out, stats, aux) = block_terms(
      recipe, engine, k, params, batch_stats, h_in, fb_k, labels, weights, key)
  loss = sum(recipe.weight(name) * value for name, value in terms.items())
  metrics = {"loss": loss, **{f"term/{n}": v for n, v in terms.items()}}
  if k == engine.num_blocks - 1:
    correct = (jnp.argmax(eta, -1) == labels).astype(jnp.float32)
    metrics["accuracy"] = engine.mean_fn(correct, weights)
  return loss, (eta, h_out, stats, metrics)


def feedback_loss(engine, etas, fb, labels, weights) -> jax.Array:
  """`sum_k prototype_loss(xn_k, B_k)` over the hidden blocks."""
  total = 0.0
  for k, latent in enumerate(engine.latents):
    xn = feature_summary(sg(etas[k]), latent.position_ndim)
    total += prototype_loss(xn, fb[k], labels, weights)
  return total


def freeze_auxiliary(recipe: AuthorsRecipe, tree: Any) -> Any:
  """As published, the auxiliary heads never change: zeroes their entries.

  Applied to a block's gradients and again to its optax updates, so that
  weight decay (`sgd` + decay, `adamw`) cannot move the frozen heads either.
  """
  if recipe.train_auxiliary or not isinstance(tree, dict) or "aux" not in tree:
    return tree
  return {**tree, "aux": jax.tree.map(jnp.zeros_like, tree["aux"])}
