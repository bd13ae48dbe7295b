"""What holds ResNet-18's accuracy at K = 8 (Fashion-MNIST), chosen on
validation data.

`fashion_mnist_resnet18_blocks` found `bll` at K = 8 (each residual block its
own block) 7.6 points below backprop and 6.4 below greedy `local`
classifiers on the test split, its bottom blocks learning less on their own
than `local`'s. The settings that might close it, each at the same cut, on a
tenth of the training images held out (never the test split): the
per-block temperatures calibrated at init (what held the 16-block MLP,
`fashion_mnist_mlp_blocks`), a fixed softer temperature, direct feedback
(each block's prototypes from the label, not through the blocks above),
a coarser grid of prototypes, and a deeper local head (a copy of the
residual block after the cut), for greedy classifiers and calibrated bll.
"""

from experiments.configs import METHODS
from experiments.configs import fashion_mnist_resnet18_blocks

CUTS_8 = fashion_mnist_resnet18_blocks.CUTS[8]

_K8 = {"blocks": 8, "cuts": CUTS_8}
VARIANTS = {
    "bp": METHODS["bp"],
    "local K=8": {**METHODS["local"], **_K8},
    "bll K=8": {**METHODS["bll"], **_K8},
    "bll-calibrated K=8": {**METHODS["bll-calibrated"], **_K8},
    "bll T=3 K=8": {"temperature": 3.0, **_K8},
    "bll-direct K=8": {**METHODS["bll-direct"], **_K8},
    "bll grid=2 K=8": {"grid": 2, **_K8},
    # The deeper local head that held the language model at K = 8
    # (ablation_lm_screen): a fresh copy of the residual block after the
    # cut, LayerNorm, the 4 x 4 grid, a dense layer; for greedy
    # classifiers too, so that both methods get the same head.
    "local readout=unit K=8": {**METHODS["local"], "readout": "unit", **_K8},
    "bll-calibrated readout=unit K=8": {
        **METHODS["bll-calibrated"], "readout": "unit",
        "readout_features": 256, **_K8},
}

EXPERIMENT = {
    "title": "Ablation: holding ResNet-18's accuracy at K = 8 (Fashion-MNIST, "
             "width 16), on validation data",
    "preset": "fashion_mnist_resnet18",
    "overrides": {**fashion_mnist_resnet18_blocks.EXPERIMENT["overrides"],
                  "dataset.eval_split": "validation"},
    "variants": VARIANTS,
    "seeds": (0,),
}
