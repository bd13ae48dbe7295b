"""Accuracy against the number of blocks K on a deep MLP (Fashion-MNIST).

A 16-unit MLP (15 hidden layers of 256, then the logits; 5 epochs, Adam
1e-3) cut evenly into K = 2, 4, 8 and 16 blocks (16: every layer its own
block, the deepest cut). Backprop does not depend on the cut: one run is its
band.
"""

from experiments.configs import METHODS

BLOCKS = (2, 4, 8, 16)
SWEPT = ("bll", "local", "bll-calibrated", "drtp")

VARIANTS = {"bp": METHODS["bp"]}
for _method in SWEPT:
  for _k in BLOCKS:
    VARIANTS[f"{_method} K={_k}"] = {**METHODS[_method], "blocks": _k}

EXPERIMENT = {
    "title": "Fashion-MNIST, MLP of 15 hidden layers (256): test accuracy "
             "against the number of blocks K",
    "preset": "fashion_mnist_mlp",
    "overrides": {"model.widths": (256,) * 15},
    "variants": VARIANTS,
    "seeds": (0,),
    "by_blocks": {label: (label.split(" K=")[0], int(label.split(" K=")[1]))
                  for label in VARIANTS if " K=" in label},
}
