"""Sorting (16 symbols, length 16), 8-layer Transformer in 4 blocks."""
from experiments.configs import SEQUENCE
from experiments.configs.seq_reverse_transformer import BUDGET

EXPERIMENT = {
    "title": "Sort, 8-layer pre-LN Transformer (d 128), 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "overrides": {"dataset.name": "sort", **BUDGET},
    "methods": SEQUENCE,
    "metrics": ("test_accuracy", "test_exact_match"),
}
