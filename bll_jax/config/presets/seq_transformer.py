"""A sequence task (reverse by default) with an 8-layer pre-LN Transformer
cut into 4 blocks."""

from bll_jax.config import schema


def get_config():
  c = schema.base_config()
  c.preset = "seq_transformer"
  c.dataset.name = "reverse"
  c.dataset.length = 16
  c.dataset.num_symbols = 16
  c.model.name = "transformer"
  c.model.num_layers = 8
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.mlp_dim = 512
  c.cuts = (3, 5, 7)            # embedding + 2 layers | 2 | 2 | 2 + head
  c.lr = 3e-4
  c.epochs = 4
  c.batch_size = 128
  c.eval_batch_size = 500
  return c
