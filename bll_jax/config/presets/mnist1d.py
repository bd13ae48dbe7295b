"""The embedded default: a 4-block CNN on MNIST-1D, generated offline
(about a minute on two CPU cores)."""

from bll_jax.config import schema


def get_config():
  c = schema.base_config()
  c.preset = "mnist1d"
  c.dataset.name = "mnist1d"
  c.model.name = "cnn"          # 3 conv units + dense head: 4 blocks
  c.model.channels = (32, 64, 128)
  c.model.kernels = (5, 3, 3)
  c.model.strides = (1, 2, 2)
  c.blocks = 4
  c.epochs = 30
  c.batch_size = 100
  return c
