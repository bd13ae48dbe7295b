"""Fashion-MNIST, a 784-512-512-512-10 MLP in 4 blocks (the Debian package's
IDX files, offline)."""

from bll_jax.config import schema


def get_config():
  c = schema.base_config()
  c.preset = "fashion_mnist_mlp"
  c.dataset.name = "fashion_mnist"
  c.model.name = "mlp"
  c.model.widths = (512, 512, 512)
  c.blocks = 4
  c.epochs = 5
  c.batch_size = 128
  return c
