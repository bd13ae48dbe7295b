"""ImageNet, ResNet-50 at its stages, 90 epochs, batch 1024, SGD 0.4 cosine."""
from experiments.configs import LARGE

EXPERIMENT = {
    "title": "ImageNet, ResNet-50, 4 blocks, 90 epochs",
    "preset": "imagenet_resnet50",
    "methods": LARGE,
    "seeds": (0,),
    "run_here": False,
    "why_not": "ImageNet must be prepared for tensorflow-datasets by hand, and "
               "needs accelerators",
}
