"""The test accuracy of `ablation_calibration`'s choice, MNIST-1D CNN.

The held-out examples choose calibrated temperature 0.25 (by a margin
within the spread over seeds); these runs train it on all the training
examples and evaluate it on the test set, as the `mnist1d_cnn` rows are.
Temperature 1 without calibration is that table's `bll` row, calibrated
temperature 1 its `bll-calibrated` row.
"""
from experiments.configs.ablation_calibration import VARIANTS

EXPERIMENT = {
    "title": "Ablation: the held-out choice of calibrated temperature on the "
             "test set, MNIST-1D CNN, 4 blocks",
    "preset": "mnist1d",
    "variants": {"calibrated, temperature 0.25":
                 VARIANTS["calibrated, temperature 0.25"]},
}
