"""Fashion-MNIST, ResNet-18 (CIFAR stem) cut at its stages into 4 blocks."""

from bll_jax.config import schema


def get_config():
  c = schema.base_config()
  c.preset = "fashion_mnist_resnet18"
  c.dataset.name = "fashion_mnist"
  c.model.name = "resnet18"
  c.model.stem = "cifar"
  c.cuts = (3, 5, 7)            # at the stage boundaries: 4 blocks
  c.epochs = 10
  c.batch_size = 128
  # Feature maps pooled to 4 x 4 cells (experiments/notes/ablation_grid.md).
  c.grid = 4
  return c
