"""MNIST (tensorflow-datasets), ResNet-18 (CIFAR stem), 4 blocks, 10 epochs."""
from experiments.configs import LARGE

EXPERIMENT = {
    "title": "MNIST, ResNet-18, 4 blocks",
    "preset": "fashion_mnist_resnet18",
    "overrides": {"dataset.name": "mnist", "dataset.source": "tfds"},
    "methods": LARGE,
    "run_here": False,
    "why_not": "MNIST comes from tensorflow-datasets, which needs a download",
}
