"""CIFAR-10 (tensorflow-datasets): the Fashion-MNIST ResNet-18 (same cuts,
same 4 x 4 grid) trained with SGD and a cosine schedule."""

from bll_jax.config.presets import fashion_mnist_resnet18


def get_config():
  c = fashion_mnist_resnet18.get_config()
  c.preset = "cifar10_resnet18"
  c.dataset.name = "cifar10"
  c.optimizer = "sgd"
  c.lr = 0.1
  c.nesterov = True
  c.weight_decay = 5e-4
  c.lr_schedule = "cosine"
  c.epochs = 100
  return c
