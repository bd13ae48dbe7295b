"""What holds `bll` back on sorting (8-layer Transformer, 4 blocks).

The sort table's `bll` row is the reference: the default `bll` (Gaussian
latents, chained feedback trained discriminatively, temperature 1), same
budget (128 steps) and seed. Each row here changes the knobs that moved
the MLP's depth ablation: the feedback loss, the temperature, decorrelation.
The families and direct feedback are rows of the sort table itself.
"""
from experiments.configs.seq_reverse_transformer import BUDGET

EXPERIMENT = {
    "title": "Ablation: sorting, 8-layer Transformer, 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "overrides": {"dataset.name": "sort", **BUDGET},
    "metrics": ("test_accuracy", "test_exact_match"),
    "seeds": (0, 1, 2),
    "variants": {
        "feedback chained, both": {"feedback_loss": "both"},
        "temperature 2": {"temperature": 2.0},
        "temperature 3": {"temperature": 3.0},
        "temperature 5": {"temperature": 5.0},
        "temperature 10": {"temperature": 10.0},
        "decorrelation 1": {"decorrelation": 1.0},
        "temperature 3, decorrelation 1": {"temperature": 3.0,
                                           "decorrelation": 1.0},
    },
}
