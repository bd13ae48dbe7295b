"""Accuracy against the number of blocks K on a deep MLP (Fashion-MNIST).

A 16-unit MLP (15 hidden layers of 256, then the logits; 5 epochs, Adam
1e-3) cut evenly into K = 2, 4, 8 and 16 blocks (16: every layer its own
block, the deepest cut). Backprop does not depend on the cut: one run is its
band.
"""

from experiments.configs import blocks_sweep
from experiments.configs import by_blocks

VARIANTS = blocks_sweep(("bll", "local", "bll-calibrated", "drtp"),
                        (2, 4, 8, 16))

EXPERIMENT = {
    "title": "Fashion-MNIST, MLP of 15 hidden layers (256): test accuracy "
             "against the number of blocks K",
    "preset": "fashion_mnist_mlp",
    "overrides": {"model.widths": (256,) * 15},
    "variants": VARIANTS,
    "seeds": (0,),
    "by_blocks": by_blocks(VARIANTS),
}
