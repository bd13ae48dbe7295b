"""What makes local accuracy fall block after block (Fashion-MNIST MLP).

In every variant of the prototype of `docs/theory.md` (section 10), local
accuracy fell with depth (0.866, 0.846, 0.807 for blocks 1 to 3). Each row changes one thing of the
default `bll` (Gaussian latents, chained feedback trained discriminatively,
temperature 1, width 512): the feedback mode and its loss, bootstrapping, the
family, the temperature, decorrelation, the block width.
"""

EXPERIMENT = {
    "title": "Ablation: depth degradation, Fashion-MNIST MLP, 4 blocks",
    "preset": "fashion_mnist_mlp",
    "variants": {
        "bll (chained, discriminative)": {},
        "feedback direct, discriminative": {"feedback": "direct"},
        "feedback direct, ml": {"feedback": "direct", "feedback_loss": "ml"},
        "feedback chained, ml": {"feedback_loss": "ml"},
        "feedback chained, both": {"feedback_loss": "both"},
        "bootstrapped, discriminative": {"feedback": "bootstrapped"},
        "family bernoulli": {"family": "bernoulli"},
        "family categorical (G=4)": {"family": "categorical",
                                     "group_size": 4},
        "family gaussian, learned variance": {
            "family": "gaussian_learned_variance"},
        "temperature 0.3": {"temperature": 0.3},
        "temperature 3": {"temperature": 3.0},
        "temperature 10": {"temperature": 10.0},
        "decorrelation 0.1": {"decorrelation": 0.1},
        "decorrelation 1": {"decorrelation": 1.0},
        "width 256": {"model.widths": (256, 256, 256)},
        "width 1024": {"model.widths": (1024, 1024, 1024)},
        "temperature 3, decorrelation 1": {"temperature": 3.0,
                                           "decorrelation": 1.0},
        "local (reference)": {"method": "local"},
        "bp (reference)": {"method": "bp"},
    },
}
