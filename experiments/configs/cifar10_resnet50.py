"""CIFAR-10, ResNet-50 (CIFAR stem) cut at its stages, SGD 0.1 cosine."""
from experiments.configs import LARGE

EXPERIMENT = {
    "title": "CIFAR-10, ResNet-50, 4 blocks, 100 epochs",
    "preset": "cifar10_resnet18",
    "overrides": {"model.name": "resnet50", "cuts": (4, 8, 14)},
    "methods": LARGE,
    "run_here": False,
    "why_not": "CIFAR-10 comes from tensorflow-datasets (download), and 100 "
               "epochs of ResNet-50 need an accelerator",
}
