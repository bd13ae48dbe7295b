"""MNIST-1D, the `mnist1d` preset: CNN (3 conv + head) in 4 blocks, 30 epochs."""
from experiments.configs import CLASSIFICATION

EXPERIMENT = {
    "title": "MNIST-1D, CNN (3 conv units + dense head), 4 blocks",
    "preset": "mnist1d",
    "methods": CLASSIFICATION,
    "notes": """
**Reading it.** With learned variances the third block's own prediction
(0.969) beats both the network's output (0.922) and backprop (0.953). A
likely reason, not tested separately: that prediction scores each class by a
precision-weighted distance, `(mu - b_y)^2 / (var + var_y)`, whose variances
come from a precision head on the block's features, so it is a nonlinear
classifier of them, while the output block is one dense layer on the means
alone. With a fixed variance the block's classifier is linear too, and the
output matches or beats it (0.944 against 0.948).
""",
}
