"""Sequence reversal (16 symbols, length 16), 8-layer Transformer in 4 blocks."""
from experiments.configs import SEQUENCE

EXPERIMENT = {
    "title": "Reverse, 8-layer pre-LN Transformer (d 128), 4 blocks",
    "preset": "seq_transformer",
    "methods": SEQUENCE,
    "metrics": ("test_accuracy", "test_exact_match"),
}
