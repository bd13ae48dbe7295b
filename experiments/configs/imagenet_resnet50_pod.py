"""ImageNet, ResNet-50 on a TPU pod slice: the global batch and lr spelled out.

A v4-32 slice (4 hosts, 16 chips): `--mesh data=4,block=4` gives every block
a column of 4 chips; the global batch is 1024, 64 per chip, and the learning
rate follows the linear rule `0.1 * global_batch / 256` = 0.4, with 5 warm-up
epochs and cosine decay over 90 epochs (the `imagenet_resnet50` preset). On
a v4-128 (64 chips): `--mesh data=16,block=4 --batch-size 4096 --lr 1.6`.
Launch each run on every host with `--distributed true` (docs/parallel.md).
"""
from experiments.configs import LARGE

EXPERIMENT = {
    "title": "ImageNet, ResNet-50, TPU v4-32 pod slice, global batch 1024",
    "preset": "imagenet_resnet50",
    "overrides": {"mesh": "data=4,block=4", "distributed": True,
                  "batch_size": 1024, "lr": 0.4, "warmup_epochs": 5.0},
    "methods": LARGE,
    "seeds": (0,),
    "run_here": False,
    "why_not": "needs a TPU pod slice and ImageNet",
}
