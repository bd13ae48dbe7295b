"""MNIST (tensorflow-datasets), MLP 784-512-512-512-10 in 4 blocks, 5 epochs."""
from experiments.configs import CLASSIFICATION

EXPERIMENT = {
    "title": "MNIST, MLP 784-512-512-512-10, 4 blocks",
    "preset": "fashion_mnist_mlp",
    "overrides": {"dataset.name": "mnist", "dataset.source": "tfds"},
    "methods": CLASSIFICATION,
    "run_here": False,
    "why_not": "MNIST comes from tensorflow-datasets, which needs a download",
}
