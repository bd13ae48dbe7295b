"""`ablation_calibration` on the Fashion-MNIST MLP (784-512-512-512-10)."""
from experiments.configs import ablation_calibration

EXPERIMENT = {
    **ablation_calibration.EXPERIMENT,
    "title": "Ablation: per-block temperatures calibrated at init, chosen on "
             "held-out training examples, Fashion-MNIST MLP, 4 blocks",
    "preset": "fashion_mnist_mlp",
}
