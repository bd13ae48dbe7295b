"""Accuracy against the number of blocks K on ResNet-18 (Fashion-MNIST).

The `fashion_mnist_resnet18` experiment's network and budget (width 16,
12,000 training images, 4 epochs, feature maps pooled to a 4 x 4 grid of
feedback prototypes), cut between residual blocks: K = 4 at the stages (the
preset's cuts: the main table's runs, copied), K = 8 and K = 10
(every unit its own block, the deepest cut) and K = 2; `CUTS` below. Three
seeds at K = 4 and K = 8 (and for backprop), one elsewhere (about 3-4
minutes a run here); backprop does not depend on the cut.
"""

from experiments.configs import METHODS
from experiments.configs import by_blocks
from experiments.configs import fashion_mnist_resnet18

# K = 8: the stem with the first residual block, one residual block each,
# the last with the head (an even cut would leave the head alone, a block
# that cannot learn much by itself: measured 0.649 against 0.843 for the
# block before it). K = 10: every unit, stem and head alone included.
# K = 2: the stem and the first four residual blocks | the rest.
CUTS = {2: (5,), 4: None, 8: (2, 3, 4, 5, 6, 7, 8), 10: tuple(range(1, 10))}

VARIANTS = {"bp": METHODS["bp"]}
for _method in ("bll", "local"):
  for _k, _cuts in CUTS.items():
    VARIANTS[f"{_method} K={_k}"] = (
        {**METHODS[_method]} if _cuts is None             # the stage cuts
        else {**METHODS[_method], "blocks": _k, "cuts": _cuts})
  # The even cut into 8, which leaves the head a block of its own.
  VARIANTS[f"{_method}, 8 blocks, the head alone"] = {**METHODS[_method],
                                                     "blocks": 8}

# What held K = 8 best on validation data (ablation_resnet18_depth): the
# per-block temperatures calibrated at init (K = 4: the main table's runs).
VARIANTS["bll-calibrated K=4"] = {**METHODS["bll-calibrated"]}
VARIANTS["bll-calibrated K=8"] = {**METHODS["bll-calibrated"], "blocks": 8,
                                  "cuts": CUTS[8]}

EXPERIMENT = {
    "title": "Fashion-MNIST, ResNet-18 (width 16): test accuracy against the "
             "number of blocks K",
    "preset": "fashion_mnist_resnet18",
    "overrides": fashion_mnist_resnet18.EXPERIMENT["overrides"],
    "variants": VARIANTS,
    "seeds": (0,),
    "by_blocks": by_blocks(VARIANTS),
    # Which block to predict with, chosen on the K = 8 validation runs
    # (experiments/lib/exits.py).
    "exits_from": "ablation_resnet18_depth",
}
