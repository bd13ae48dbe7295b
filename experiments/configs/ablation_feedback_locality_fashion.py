"""The feedback-locality ablation on the Fashion-MNIST MLP (4 blocks)."""

from experiments.configs import ablation_feedback_locality

EXPERIMENT = {
    **ablation_feedback_locality.EXPERIMENT,
    "title": "Ablation: feedback layers that learn locally, Fashion-MNIST MLP "
             "784-512-512-512-10, 4 blocks",
    "preset": "fashion_mnist_mlp",
}
