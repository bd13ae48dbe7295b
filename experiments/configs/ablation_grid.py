"""Feature maps and feedback: global pooling against a grid (ResNet-18).

The Fashion-MNIST ResNet-18 experiment (`fashion_mnist_resnet18`, whose
preset now pools each block's map to 4 x 4 cells, `--grid 4`) first ran with
the single behaviour that existed then, one feedback vector per channel for
all positions (`--grid 0`). `bll` reached 0.717 against backprop's 0.862,
below `drtp` and `local`, with its first block at 0.525. This ablation keeps
everything else of that experiment and changes the grid. The `--grid 4` rows
are the main table's seed-0 runs (`fashion_mnist_resnet18`).
"""

from experiments.configs import fashion_mnist_resnet18

EXPERIMENT = {
    "title": "Ablation: feature maps pooled to a grid, Fashion-MNIST "
             "ResNet-18 (width 16), 4 blocks",
    "preset": "fashion_mnist_resnet18",
    "overrides": fashion_mnist_resnet18.EXPERIMENT["overrides"],
    "variants": {
        "bll, grid 0 (one prototype per channel)": {"grid": 0},
        "bll, grid 2": {"grid": 2},
        "drtp, grid 0": {"method": "drtp", "grid": 0},
        "local, grid 0 (global pooling)": {"method": "local", "grid": 0},
        # The MLP ablation's best setting (ablation_depth), on the grid.
        "bll, grid 4, temperature 3, decorrelation 1": {
            "temperature": 3.0, "decorrelation": 1.0},
    },
    "seeds": (0,),
}
