"""Fashion-MNIST, MLP 784-512-512-512-10 in 4 blocks, 5 epochs, Adam 1e-3.

The setting of the prototype in `docs/theory.md`, section 10 (its best
block-local variant reached 0.847, backprop 0.874).
"""
from experiments.configs import CLASSIFICATION

EXPERIMENT = {
    "title": "Fashion-MNIST, MLP 784-512-512-512-10, 4 blocks",
    "preset": "fashion_mnist_mlp",
    "methods": CLASSIFICATION,
}
