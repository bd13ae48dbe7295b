"""Accuracy under the pipelined schedule: Fashion-MNIST ResNet-18 (4 blocks).

The sizes of `fashion_mnist_resnet18` (width 16, 12k training images, 4
epochs): the sync row is its `bll`'s configuration (seed 0 gave 0.8525
there and 0.8532 here, run on different CPUs: convolutions' floating-point
sums differ between machines). BatchNorm's statistics
are a block's own (each stage normalises its own micro-batch, as sync
does). The two-stage rows only: a run here takes about 8 minutes.

    JAX_NUM_CPU_DEVICES=2 python -m experiments.sweep pipelined_accuracy_resnet18
"""

from experiments.configs import fashion_mnist_resnet18
from experiments.configs import pipelined_accuracy

_VARIANTS = pipelined_accuracy.EXPERIMENT["variants"]

EXPERIMENT = {
    "title": "Pipelined against sync: Fashion-MNIST ResNet-18 (width 16), 4 "
             "blocks, 12k training images, 4 epochs",
    "preset": "fashion_mnist_resnet18",
    "overrides": fashion_mnist_resnet18.EXPERIMENT["overrides"],
    "variants": {label: _VARIANTS[label] for label in (
        "bll sync (1 device)", "bll pipelined (2 stages)",
        "bll chained_local pipelined (2 stages, feedback owned)")},
}
