"""Accuracy under the pipelined schedule: the Fashion-MNIST MLP (4 blocks).

    JAX_NUM_CPU_DEVICES=4 python -m experiments.sweep pipelined_accuracy_fashion
"""

from experiments.configs import pipelined_accuracy

EXPERIMENT = {
    **pipelined_accuracy.EXPERIMENT,
    "title": "Pipelined against sync: Fashion-MNIST MLP 784-512-512-512-10, "
             "4 blocks",
    "preset": "fashion_mnist_mlp",
}
