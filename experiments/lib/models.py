"""The benchmarks' engines and their random batches.

Every benchmark trains a network cut into 4 blocks with the library's
defaults, as `bll` (Gaussian latents, chained feedback trained
discriminatively) or as `bp` on the same network, Adam 1e-3.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
import optax

from bll_jax import blocks
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax.models import LayerStack

NUM_BLOCKS = 4


def benchmark_engine(stack: LayerStack, method: str, num_classes: int,
                     input_shape: tuple[int, ...], input_dtype=jnp.float32,
                     cuts: Sequence[int] | None = None,
                     feedback: str = "chained") -> engine_lib.Engine:
  """`stack` in 4 blocks (at `cuts`, else evenly), trained as `method`
  (`feedback`: the mode of bll's feedback network)."""
  edges = blocks.boundaries(len(stack), NUM_BLOCKS, cuts)
  return engine_lib.Engine(
      stack, edges, [blocks.Latent(families.Gaussian())] * (NUM_BLOCKS - 1),
      method=method, feedback_mode=feedback, num_classes=num_classes,
      input_shape=input_shape, input_dtype=input_dtype, tx=optax.adam(1e-3),
      objective=engine_lib.Objective(feedback_loss="discriminative"))


def random_batch(seed: int, batch_size: int, input_shape: tuple[int, ...],
                 num_classes: int) -> dict[str, np.ndarray]:
  """Normal float inputs, uniform labels, unit weights (host arrays)."""
  rng = np.random.default_rng(seed)
  return {"inputs": rng.normal(size=(batch_size,) + tuple(input_shape)
                               ).astype(np.float32),
          "labels": rng.integers(0, num_classes, batch_size).astype(np.int32),
          "weights": np.ones(batch_size, np.float32)}


def random_tokens(seed: int, batch_size: int, seq_len: int,
                  vocab: int) -> dict[str, np.ndarray]:
  """Uniform tokens in `[1, vocab)`, each position's label the next token
  (the last wraps around), unit weights per token (host arrays)."""
  tokens = np.random.default_rng(seed).integers(
      1, vocab, (batch_size, seq_len)).astype(np.int32)
  return {"inputs": tokens, "labels": np.roll(tokens, -1, 1),
          "weights": np.ones((batch_size, seq_len), np.float32)}
