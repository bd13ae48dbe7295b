r"""The authors' recipe, from their public code, as a loss recipe.

`bll-train --method bll --recipe authors` trains with the losses of the only
public code of the paper's authors (an anonymous PyTorch ResNet-50/ImageNet
repository, described in `docs/theory.md`, "The authors' public code"),
handed to the engine as an :class:`AuthorsRecipe`
(a :class:`bll_jax.engine.objective.LossRecipe`).
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
  them; corrected, they are trained by their own cross-entropy. Frozen, they
  are the `"frozen"` partition of an `optax.multi_transform` whose
  transformation is `optax.set_to_zero()` (:meth:`AuthorsRecipe.block_tx`),
  so neither gradient nor weight decay nor momentum moves them.

A block's own test accuracy is its auxiliary classifier's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from bll_jax import losses
from bll_jax.engine import objective as objective_lib

sg = jax.lax.stop_gradient

TERMS = ("output", "decorrelation", "similarity", "auxiliary", "denoising")


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


def _frozen_heads(params):
  """Partition labels of a block's parameters: its auxiliary head frozen."""
  return {name: "frozen" if name == "aux" else "trained" for name in params}


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

  # ------------------------------------------------ the LossRecipe protocol

  def auxiliary_classes(self, num_classes: int) -> int:
    """Every hidden block has an auxiliary classifier over the classes."""
    return num_classes

  def check(self, engine) -> None:
    if engine.method != "bll":
      raise ValueError("the authors' recipe is a form of method 'bll', got "
                       f"method {engine.method!r}")
    if engine.feedback_mode != "direct":
      raise ValueError("the authors' recipe uses feedback 'direct' (a "
                       "linear map of the label), got "
                       f"{engine.feedback_mode!r}")
    if engine.objective.target_offsets != (0,):
      raise ValueError("the authors' recipe scores the next target only: "
                       "use horizon 1 and history 0")

  def block_tx(self, tx: optax.GradientTransformation
               ) -> optax.GradientTransformation:
    """`tx`, with the auxiliary heads frozen unless `train_auxiliary`."""
    if self.train_auxiliary:
      return tx
    return optax.multi_transform({"trained": tx,
                                  "frozen": optax.set_to_zero()},
                                 _frozen_heads)

  def block_terms(self, engine, k: int, out, fb_k, labels, weights, *, h_in,
                  key, rerun, mean=objective_lib.weighted_mean
                  ) -> dict[str, jax.Array]:
    """Block `k`'s unweighted loss terms."""
    smoothing = engine.objective.label_smoothing
    if k == engine.num_blocks - 1:
      return {"output": mean(objective_lib.task_loss(out.eta, labels,
                                                     smoothing), weights)}
    position_ndim = engine.latents[k].position_ndim
    xn = feature_summary(out.h_out, position_ndim)
    noise = self.noise_std * jax.random.normal(
        jax.random.fold_in(key, 7919 + k), h_in.shape, h_in.dtype)
    noisy = rerun(h_in + noise).h_out
    h_out = out.h_out
    return {
        "decorrelation": losses.batch_decorrelation_loss(xn),
        "similarity": mean(similarity(xn, fb_k, labels), weights),
        "auxiliary": mean(objective_lib.task_loss(out.aux, labels, smoothing),
                          weights),
        "denoising": mean(losses.denoising_loss(
            noisy.reshape(noisy.shape[0], -1),
            h_out.reshape(h_out.shape[0], -1)), weights),
    }

  def block_objective(self, engine, k, out, fb_k, labels, weights, *, h_in,
                      key, rerun, mean=objective_lib.weighted_mean):
    terms = self.block_terms(engine, k, out, fb_k, labels, weights, h_in=h_in,
                             key=key, rerun=rerun, mean=mean)
    loss = sum(self.weight(name) * value for name, value in terms.items())
    metrics = {"loss": loss, **{f"term/{n}": v for n, v in terms.items()}}
    if k == engine.num_blocks - 1:
      correct = (jnp.argmax(out.eta, -1) == labels).astype(jnp.float32)
      metrics["accuracy"] = mean(correct, weights)
    return loss, metrics

  def feedback_term(self, engine, k, eta, fb_k, labels, weights):
    """`prototype_loss(xn_k, B_k)`."""
    xn = feature_summary(sg(eta), engine.latents[k].position_ndim)
    return prototype_loss(xn, fb_k, labels, weights)

  def hidden_logits(self, engine, k, out, fb_k):
    """A block's own prediction is its auxiliary classifier's."""
    del engine, k, fb_k
    return out.aux
