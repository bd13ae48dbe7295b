"""MNIST-1D, MLP 40-256-256-256-10 cut into 4 blocks, 30 epochs, Adam 1e-3."""
from experiments.configs import CLASSIFICATION

EXPERIMENT = {
    "title": "MNIST-1D, MLP 40-256-256-256-10, 4 blocks",
    "preset": "mnist1d",
    "overrides": {"model.name": "mlp", "model.widths": (256, 256, 256)},
    "methods": CLASSIFICATION,
}
