"""MNIST-1D, the `mnist1d` preset: CNN (3 conv + head) in 4 blocks, 30 epochs."""
from experiments.configs import CLASSIFICATION

EXPERIMENT = {
    "title": "MNIST-1D, CNN (3 conv units + dense head), 4 blocks",
    "preset": "mnist1d",
    "methods": CLASSIFICATION,
}
