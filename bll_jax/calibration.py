r"""Per-block temperatures that make the local losses scale-free at init.

A hidden block's class scores compare its natural parameters with the
feedback's (for the fixed-variance Gaussian, minus the squared distance of
their means), so their spread over classes grows with the size of both. In
a deep network both grow with depth (a residual stream adds up layer by
layer, chained feedback is largest next to the output), and the
deeper blocks start out confidently wrong: `experiments/depth_probe.py`
measures initial local losses of 6.4, 15.8 and 31.3 nats for the three
hidden blocks of the sorting Transformer, where a uniform guess scores 2.9.
One tuned temperature for all blocks (5 there) helps; this module instead
measures each block's spread once, at initialisation, and divides it out:

.. math::

   \sigma_k^2 = \frac{\sum_n w_n \operatorname{Var}_y s_k(x_n, y)}
                     {\sum_n w_n},
   \qquad T_k = T \sigma_k,

where `s_k(x, y)` are block `k`'s scores at temperature 1 (the logits of
:func:`bll_jax.losses.local_logits`, divided by the block's positions, or
grid cells, when they are averaged, as in its loss), `w_n` the example (or
token) weights of one training batch, and `T` the run's temperature, now
dimensionless: at
initialisation every block's scores `s_k / T_k` have standard deviation
`1 / T` over classes, whatever the block's scale. The `T_k` stay fixed for
the whole run (they are static in the compiled steps).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from bll_jax import losses


def score_spread(family, eta_fwd, eta_fb, weights, *, position_scale=1,
                 position_ndim: int = 0, chunk_size: int | None = None
                 ) -> float:
  """`sigma` of one block: the weighted RMS over examples of the standard
  deviation over classes of its scores at temperature `position_scale`.

  Args:
    family, eta_fwd, eta_fb, position_ndim, chunk_size: as for
      :func:`bll_jax.losses.local_logits`.
    weights: `[*batch]`, one per example (or token); zero for padding.
    position_scale: what the block's loss divides its summed scores by
      besides `T` (its positions when they are averaged).

  Raises:
    ValueError: scores that do not vary over classes (nothing to scale).
  """
  logits = losses.local_logits(family, eta_fwd, eta_fb,
                               temperature=float(position_scale),
                               chunk_size=chunk_size,
                               position_ndim=position_ndim)
  weights = jnp.asarray(weights, jnp.float32)
  variance = jnp.var(logits.astype(jnp.float32), axis=-1)
  spread = math.sqrt(float(jnp.sum(variance * weights)
                           / jnp.maximum(jnp.sum(weights), 1.0)))
  if not (math.isfinite(spread) and spread > 1e-6):
    raise ValueError(f"class scores that do not vary (spread {spread!r}): "
                     "no scale to calibrate")
  return spread


def score_spreads(engine, state, batch, key) -> tuple[float, ...]:
  """`sigma_k` of every hidden block of `engine` at `state`, on `batch`
  (errors name blocks from 1, the first hidden block).

  Args:
    engine: a :class:`bll_jax.engine.Engine` with a feedback network.
    state: its `TrainState` (e.g. fresh from `engine.init`).
    batch: `{"inputs", "labels", "weights"}`, one training batch.
    key: the forward's key (dropout, sampled latents).

  Raises:
    ValueError: an engine without hidden blocks or feedback (backprop), or
      a block whose scores do not vary over classes.
  """
  if engine.feedback is None or not engine.latents:
    raise ValueError("temperature calibration needs hidden blocks with "
                     f"feedback; this engine ({engine.method!r}) has "
                     f"{len(engine.latents)} hidden blocks and "
                     f"{'no' if engine.feedback is None else 'a'} feedback "
                     "network")
  etas = engine.forward_train(state, batch["inputs"], key)
  fb = engine.feedback_forward(state.feedback.params, etas)
  spreads = []
  for k, latent in enumerate(engine.latents):
    try:
      spreads.append(score_spread(
          latent.family, etas[k], engine.next_token_feedback(fb[k]),
          batch["weights"],
          position_scale=engine.position_scale(k, etas[k]),
          position_ndim=latent.position_ndim,
          chunk_size=engine.objective.chunk_size))
    except ValueError as e:
      raise ValueError(f"block {k + 1}: {e}") from e
  return tuple(spreads)


def calibrated_temperatures(engine, state, batch, key,
                            temperature: float = 1.0) -> tuple[float, ...]:
  """`T_k = temperature * sigma_k` for every hidden block (see module)."""
  return tuple(temperature * s
               for s in score_spreads(engine, state, batch, key))


def first_batch(dataset, batch_size: int, seed: int):
  """Batch 0 of epoch 0 (numpy arrays): what a run of `seed` trains on
  first."""
  return next(iter(dataset.train_batches(batch_size, seed=seed, epoch=0)))
