"""A decoder-only pre-LayerNorm Transformer for token targets.

Units: the embedding (tokens plus learned positions), one unit per decoder
layer, and the output head (final LayerNorm and unembedding). Every unit's
output is the residual stream, so its activation is the identity and a block
boundary reads the stream itself as the natural parameters of a per-token
latent; labels are per token (`[batch, time]`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from bll_jax.models import base


class Embed(nn.Module):
  vocab_size: int
  d_model: int
  max_len: int

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    del train
    x = nn.Embed(self.vocab_size, self.d_model,
                 embedding_init=nn.initializers.normal(0.02))(tokens)
    pos = self.param("position", nn.initializers.normal(0.02),
                     (self.max_len, self.d_model))
    return x + pos[:tokens.shape[1]]


class DecoderLayer(nn.Module):
  """`x + Attn(LN(x))`, then `x + MLP(LN(x))`, with a causal mask."""

  d_model: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
    y = nn.LayerNorm()(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout,
        deterministic=not train)(y, y, mask=mask)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
    y = nn.LayerNorm()(x)
    y = nn.Dense(self.d_model)(nn.gelu(nn.Dense(self.mlp_dim)(y)))
    return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class OutputHead(nn.Module):
  vocab_size: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))


def transformer(num_layers: int, d_model: int, num_heads: int, mlp_dim: int,
                vocab_size: int, max_len: int,
                dropout: float = 0.0) -> base.LayerStack:
  """`num_layers + 2` units: embedding, decoder layers, output head."""
  if num_layers < 1 or d_model % num_heads:
    raise ValueError(
        f"need num_layers >= 1 and d_model divisible by num_heads, got "
        f"num_layers={num_layers}, d_model={d_model}, num_heads={num_heads}")
  units = ((Embed(vocab_size, d_model, max_len),)
           + tuple(DecoderLayer(d_model, num_heads, mlp_dim, dropout)
                   for _ in range(num_layers))
           + (OutputHead(vocab_size),))
  n = len(units)
  return base.LayerStack("transformer", units, (base.identity,) * n, (0,) * n,
                         token_targets=True)
