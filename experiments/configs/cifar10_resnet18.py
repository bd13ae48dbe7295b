"""CIFAR-10, ResNet-18 (CIFAR stem) at its stages, SGD 0.1 cosine, 100 epochs."""
from experiments.configs import LARGE

EXPERIMENT = {
    "title": "CIFAR-10, ResNet-18, 4 blocks, 100 epochs",
    "preset": "cifar10_resnet18",
    "methods": LARGE,
    "run_here": False,
    "why_not": "CIFAR-10 comes from tensorflow-datasets (download), and 100 "
               "epochs of ResNet-18 need an accelerator",
}
